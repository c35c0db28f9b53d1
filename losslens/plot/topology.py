"""Matplotlib figures of a surface's topology (``Topology``): persistence diagrams, barcodes, basins.

:math:`H_0` (basins) and :math:`H_1` (loops) are drawn in separate panels; a class that never dies is
drawn on a line above the values, labelled ``inf``; the band of width ``threshold`` above the diagonal
(noise, not counted as basins or loops) is shaded. The basins' figure marks each basin's minimum and
the saddle where it merges into a deeper one on the filled contours of the values analysed.
Results or file paths in, a new ``Figure`` (or the given one's) out; nothing is saved here.
"""

from __future__ import annotations

import os

import numpy as np

from losslens.landscape.topology import Topology
from losslens.plot._base import new_axes, new_figure

CLASS_NAMES: dict[int, str] = {0: "H0 (basins)", 1: "H1 (loops)"}


def plot_diagrams(result, *, fig=None):
    """Persistence diagrams of :math:`H_0` and :math:`H_1` side by side (birth along x, death along y).

    Args:
        result: a ``Topology`` or the path of its file.
        fig: a ``Figure`` or ``SubFigure`` to draw in (default: a new figure).

    Returns:
        The figure; each axes' last y tick is the ``inf`` line.
    """
    topo = _as_topology(result)
    fig = _new_figure(fig, (10, 4.6))
    lo, hi, top = _bounds(topo)
    for dim, ax in enumerate(fig.subplots(1, 2)):
        d = topo.diagram(dim)
        essential = np.isinf(d[:, 1])
        above = np.where(essential, True, d[:, 1] - d[:, 0] > topo.threshold)
        line = np.array([lo, top])
        ax.plot(line, line, color="black", linewidth=0.8)
        ax.fill_between(line, line, line + topo.threshold, color="grey", alpha=0.25, linewidth=0,
                        label=f"noise (persistence ≤ {topo.threshold:.3g})")
        ax.axhline(top, color="grey", linestyle="--", linewidth=0.8)
        deaths = np.where(essential, top, d[:, 1])
        ax.scatter(d[above, 0], deaths[above], color=f"C{dim}", s=25, zorder=3, label="above threshold")
        ax.scatter(d[~above, 0], deaths[~above], color="grey", s=8, zorder=2, label="below threshold")
        pad = 0.05 * (top - lo)
        ax.set_xlim(lo - pad, top + pad)
        ax.set_ylim(lo - pad, top + pad)
        ticks = [t for t in ax.get_yticks() if lo - pad <= t <= hi]
        ax.set_yticks(ticks + [top], [f"{t:.3g}" for t in ticks] + ["inf"])
        ax.set_xlabel(f"birth ({topo.meta['units']})")
        ax.set_ylabel("death")
        ax.set_title(f"{CLASS_NAMES[dim]}: {len(d)} classes, {int(above.sum())} above threshold", fontsize="medium")
        ax.legend(loc="lower right", fontsize="x-small")
    fig.suptitle(f"sublevel-set persistence ({topo.meta['construction']} construction)", fontsize="medium")
    return fig


def plot_barcode(result, *, fig=None, max_bars: int = 40):
    """Barcodes of :math:`H_0` and :math:`H_1` side by side: one bar per class from birth to death, the
    longest on top; classes that never die reach the ``inf`` line.

    Args:
        result: a ``Topology`` or the path of its file.
        fig: a ``Figure`` or ``SubFigure`` to draw in (default: a new figure).
        max_bars: draw at most this many bars per panel, the longest (the title says how many are left out).

    Returns:
        The figure.
    """
    topo = _as_topology(result)
    fig = _new_figure(fig, (10, 4.6))
    lo, hi, top = _bounds(topo)
    for dim, ax in enumerate(fig.subplots(1, 2)):
        d = topo.diagram(dim)[:max_bars]  # sorted by persistence, longest first
        essential = np.isinf(d[:, 1])
        deaths = np.where(essential, top, d[:, 1])
        above = essential | (d[:, 1] - d[:, 0] > topo.threshold)
        rows = np.arange(len(d))[::-1]
        ax.hlines(rows, d[:, 0], deaths, colors=np.where(above, f"C{dim}", "darkgrey"), linewidth=3)
        ax.plot(deaths[essential], rows[essential], marker=">", color=f"C{dim}", linestyle="none")
        ax.axvline(top, color="grey", linestyle="--", linewidth=0.8)
        pad = 0.05 * (top - lo)
        ax.set_xlim(lo - pad, top + pad)
        ax.set_ylim(-1, max(len(d), 1))
        ticks = [t for t in ax.get_xticks() if lo - pad <= t <= hi]
        ax.set_xticks(ticks + [top], [f"{t:.3g}" for t in ticks] + ["inf"])
        ax.set_yticks([])
        ax.set_xlabel(f"filtration value ({topo.meta['units']})")
        shown = f"the {len(d)} longest of {len(topo.diagram(dim))}" if len(topo.diagram(dim)) > len(d) else len(d)
        ax.set_title(f"{CLASS_NAMES[dim]} barcode: {shown} bars\n(grey: persistence ≤ {topo.threshold:.3g})",
                     fontsize="medium")
    return fig


def plot_basins(result, *, ax=None, levels=30):
    """The values analysed (filled contours for a plane, a curve for a line) with each basin's minimum
    (numbered, deepest first) and its merge saddle marked.

    Args:
        result: a ``Topology`` or the path of its file.
        ax: axes to draw on (default: a new figure).
        levels: contour levels (as matplotlib's ``levels``).

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    topo = _as_topology(result)
    fig, ax = new_axes(ax)
    basins = topo.basins
    if topo.y is None:
        ax.plot(topo.x, topo.values, color="black", linewidth=1)
        ax.set_ylabel(topo.meta["units"])
        position = [(b.x, b.value) for b in basins]
        saddles = [(b.saddle["x"], b.saddle["value"]) for b in basins if b.saddle]
    else:
        contours = ax.contourf(topo.x, topo.y, topo.values, levels=levels, cmap="viridis")  # values are (ny, nx)
        fig.colorbar(contours, ax=ax, label=topo.meta["units"])
        ax.set_ylabel("y (direction 2)")
        position = [(b.x, b.y) for b in basins]
        saddles = [(b.saddle["x"], b.saddle["y"]) for b in basins if b.saddle]
    ax.plot(*np.transpose(position), marker="o", markersize=8, color="red", markeredgecolor="white",
            linestyle="none", label="basin minima")
    for k, (px, py) in enumerate(position, start=1):
        ax.annotate(str(k), (px, py), textcoords="offset points", xytext=(5, 5), color="red", fontsize="small")
    if saddles:
        ax.plot(*np.transpose(saddles), marker="X", markersize=8, color="white", markeredgecolor="black",
                linestyle="none", label="merge saddles")
    ax.set_xlabel("x (direction 1)")
    ax.legend(loc="upper right", fontsize="small")
    ax.set_title(f"{len(basins)} basin{'s' if len(basins) != 1 else ''} (persistence > {topo.threshold:.3g}, "
                 f"{topo.meta['construction']} construction)", fontsize="medium")
    return fig


def _bounds(topo: Topology) -> tuple[float, float, float]:
    """``(lowest value, highest value, the inf line)`` of the diagrams' axes."""
    lo, hi = float(np.min(topo.values)), float(np.max(topo.values))
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    return lo, hi, hi + 0.1 * span


def _new_figure(fig, size: tuple[float, float]):
    if fig is not None:
        return fig
    return new_figure(figsize=size)


def _as_topology(result) -> Topology:
    if isinstance(result, (str, os.PathLike)):
        result = Topology.load(result)
    if not isinstance(result, Topology):
        raise ValueError(f"expected a Topology (or the path of its file), not a {type(result).__name__}")
    return result

