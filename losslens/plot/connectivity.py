"""Figures of a ``Connection`` (``losslens connect``): the loss and accuracy along ``t`` of every path (one curve per
path and alignment, a line style per data split, the endpoints marked), and the paths drawn on the plane through
A, B and the bend."""

from __future__ import annotations

import numpy as np

from losslens.connectivity.connection import Connection
from losslens.plot._base import new_axes, new_figure

_STYLES = ("-", "--", ":", "-.")


def plot_connection(connection: Connection):
    """Loss (left) and accuracy (right, when measured) along ``t`` for every path, endpoints marked.

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    has_accuracy = any(np.isfinite(c[:, 3 + len(p["splits"]):]).any() for p, c in zip(connection.paths, connection.curves))
    fig = new_figure(figsize=(12.0 if has_accuracy else 6.8, 4.8))
    axes = fig.subplots(1, 2 if has_accuracy else 1, squeeze=False)[0]
    for i in range(len(connection.paths)):
        colour = f"C{i % 10}"
        cols = connection.columns(i)
        for k, split in enumerate(connection.paths[i]["splits"]):
            label = f"{connection.label(i)} ({split}), barrier " \
                    f"{connection.paths[i]['barriers'][split]['loss']['barrier']:.3g}"
            for ax, name in zip(axes, ("loss", "accuracy")):
                y = cols[f"{name}/{split}"]
                ax.plot(cols["t"], y, _STYLES[k % len(_STYLES)], color=colour, label=label)
                ax.plot(cols["t"][[0, -1]], y[[0, -1]], "o", color=colour)
    for ax, name in zip(axes, ("loss", "accuracy")):
        ax.set_xlabel("t (A at 0, B at 1)")
        ax.set_ylabel(name)
        ax.axvline(0, color="0.7", lw=0.8)
        ax.axvline(1, color="0.7", lw=0.8)
    axes[0].legend(fontsize="small")
    axes[0].set_title("along the paths from A to B")
    return fig


def plot_connection_plane(connection: Connection, *, ax=None):
    """Each path on the plane through A, B and its bend (A at the origin, B on the x axis), A and B marked.

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    fig, ax = new_axes(ax)
    for i in range(len(connection.paths)):
        cols = connection.columns(i)
        ax.plot(cols["x"], cols["y"], color=f"C{i % 10}", label=connection.label(i))
        ax.plot(cols["x"][[0, -1]], cols["y"][[0, -1]], "o", color=f"C{i % 10}")
    ax.annotate("A", (0.0, 0.0), textcoords="offset points", xytext=(-12, 6))
    for i in range(len(connection.paths)):
        cols = connection.columns(i)
        ax.annotate("B", (cols["x"][-1], cols["y"][-1]), textcoords="offset points", xytext=(6, 6))
    ax.set_xlabel("along B - A")
    ax.set_ylabel("along the bend, orthogonal to B - A")
    ax.set_title("the paths on the plane through A, B and the bend")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(fontsize="small")
    return fig
