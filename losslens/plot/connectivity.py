"""Figures of a ``Connection`` (``losslens connect``): the loss and accuracy along ``t`` of every path, and the paths
drawn on the plane through A, B and the bend.

One encoding in both: a colour per kind of path (line, bezier, polychain, neb), a line style per alignment of B
(solid: B as it is; dashed: aligned by weights; dash-dotted: by activations), a thinner, lighter line per further
data split; the endpoints A and B marked in black and named.
"""

from __future__ import annotations

import numpy as np

from losslens.connectivity.connect import ALIGN_LABELS, PATHS
from losslens.connectivity.connection import Connection
from losslens.plot._base import new_axes, new_figure

_ALIGN_STYLES = dict(zip(ALIGN_LABELS, ("-", "--", "-.")))
_KINDS = tuple(PATHS)


def _style(p: dict, k: int = 0) -> dict:
    """The line's colour (by path kind), style (by alignment) and weight (the first split bold) of path ``p``'s
    split ``k``."""
    kind = _KINDS.index(p["path"]) if p["path"] in _KINDS else len(_KINDS)
    return {"color": f"C{kind % 10}", "linestyle": _ALIGN_STYLES.get(p["align"], ":"),
            "linewidth": 2.0 if k == 0 else 1.2, "alpha": 1.0 if k == 0 else 0.6}


def _mark(ax, x: float, y: float, name: str, below: bool = False) -> None:
    """A black dot at ``(x, y)``, named above it (or below)."""
    ax.plot([x], [y], "o", color="k", markersize=5, zorder=5)
    ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, -14 if below else 5), fontweight="bold")


def plot_connection(connection: Connection):
    """Loss (left) and accuracy (right, when measured) along ``t`` for every path, endpoints marked; the legend
    gives each path's ``barrier`` (max_t L(w(t)) - ((1-t) L(A) + t L(B))) on its split.

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    has_accuracy = any(np.isfinite(c[:, 3 + len(p["splits"]):]).any() for p, c in zip(connection.paths, connection.curves))
    names = ("loss", "accuracy") if has_accuracy else ("loss",)
    fig = new_figure(figsize=(11.0 if has_accuracy else 6.8, 5.2))
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for i, p in enumerate(connection.paths):
        cols = connection.columns(i)
        for k, split in enumerate(p["splits"]):
            label = f"{connection.label(i)}{f' ({split})' if len(p['splits']) > 1 else ''}: barrier " \
                    f"{p['barriers'][split]['loss']['barrier']:.3g}"
            for ax, name in zip(axes, names):
                ax.plot(cols["t"], cols[f"{name}/{split}"], label=label, **_style(p, k))
    first = connection.columns(0)
    for ax, name in zip(axes, names):
        y = first[f"{name}/{connection.paths[0]['splits'][0]}"]
        _mark(ax, 0.0, y[0], "A")
        _mark(ax, 1.0, y[-1], "B")
        ax.set_xlabel("t (A at 0, B at 1)")
        ax.set_ylabel(name)
        ax.set_title(name)
        ax.grid(alpha=0.3)
    split = connection.paths[0]["splits"][0]
    fig.suptitle(f"along the paths from A to B ({split} split)")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=min(2, len(connection.paths)),
               fontsize="small", title="path: barrier = max_t L(w(t)) - ((1-t) L(A) + t L(B))",
               title_fontsize="small")
    return fig


def plot_connection_plane(connection: Connection, *, ax=None):
    """Each path on the plane through A, its B and its bend (A at the origin, B on the x axis; an aligned B is
    another point, nearer to A), A and each B marked.

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    fig, ax = new_axes(ax)
    ends = {}
    for i, p in enumerate(connection.paths):
        cols = connection.columns(i)
        ax.plot(cols["x"], cols["y"], label=connection.label(i), **_style(p))
        ends[p["align"]] = cols
    _mark(ax, 0.0, 0.0, "A")
    for align, cols in ends.items():
        _mark(ax, cols["x"][-1], cols["y"][-1], "B" if align == "none" else f"B aligned by {align}",
              below=align != "none")
    ax.set_xlabel("along B - A")
    ax.set_ylabel("along the bend, orthogonal to B - A")
    ax.set_title("the paths on the plane through A, B and the bend")
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig
