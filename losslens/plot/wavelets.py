"""Matplotlib figures of a wavelet decomposition (``Multiscale``): coefficient panels and energy per level.

Level 1 is the finest, as in the result and the wavelet literature, and every figure says so. ``H`` is
the detail along ``y`` (horizontal features), ``V`` along ``x`` (vertical features), ``D`` diagonal.
Results or file paths in, a new ``Figure`` (or the given one's) out; nothing is saved here.
"""

from __future__ import annotations

import os

import numpy as np

from losslens.landscape.wavelets import Multiscale
from losslens.plot._base import new_axes, new_figure
from losslens.plot.levels import log_axis

ORIENTATION_NAMES: dict[str, str] = {"h": "H (along y)", "v": "V (along x)", "d": "D (diagonal)"}
COLORS: dict[str, str] = {"h": "C0", "v": "C1", "d": "C2"}


def plot_coefficients(result, *, fig=None):
    """One panel per level and orientation (level 1, the finest, on top), and the approximation last.

    Planes: each coefficient array as an image on a symmetric colour scale (``y`` up). Lines: the
    coefficients of each level as stems.

    Args:
        result: a ``Multiscale`` or the path of its file.
        fig: a ``Figure`` or ``SubFigure`` to draw in (default: a new figure).

    Returns:
        The figure.
    """
    ms = _as_multiscale(result)
    orientations = list(ms.details[0])
    rows, cols = ms.level + 1, len(orientations)
    if fig is None:
        fig = new_figure(figsize=(3.2 * cols + 0.8, 2.2 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for j, coefficients in enumerate(ms.details, start=1):
        for k, o in enumerate(orientations):
            name = ORIENTATION_NAMES[o] if ms.y is not None else "detail"
            _panel(fig, axes[j - 1, k], coefficients[o], f"{_level_name(j, ms.level)}: {name}")
    _panel(fig, axes[-1, 0], ms.approx, f"approximation (level {ms.level})")
    for ax in axes[-1, 1:]:
        ax.set_axis_off()
    m = ms.meta
    fig.suptitle(f"wavelet coefficients ({m['wavelet']}, mode {m['mode']}, detrend {m['detrend']}; level 1 is the "
                 "finest)", fontsize="medium")
    return fig


def plot_energy(result, *, ax=None, log: bool = False):
    """Stacked bars of each level's detail energy by orientation, and the approximation's, as fractions
    of the energy of the array decomposed; level 1 (the finest) on the left.

    Args:
        result: a ``Multiscale`` or the path of its file.
        ax: axes to draw on (default: a new figure).
        log: logarithmic energy axis.

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    ms = _as_multiscale(result)
    fig, ax = new_axes(ax)
    total = ms.energy_total if ms.energy_total > 0 else 1.0
    rows = ms.levels
    positions = np.arange(len(rows))
    bottom = np.zeros(len(rows))
    for o in ms.details[0]:
        share = np.array([r[f"energy_{o}"] for r in rows]) / total
        name = ORIENTATION_NAMES[o] if ms.y is not None else "detail"
        ax.bar(positions, share, bottom=bottom, color=COLORS[o], label=name)
        bottom += share
    ax.bar(len(rows), ms.energy_approx / total, color="grey", label="approximation")
    labels = [_level_name(r["level"], ms.level).replace("level ", "").replace(" (", "\n(") for r in rows]
    ax.set_xticks(np.arange(len(rows) + 1), labels + [f"approx.\n(level {ms.level})"])
    ax.set_xlabel("level (1 = finest)")
    ax.set_ylabel("fraction of the energy decomposed" + (" (log scale)" if log else ""))
    if log:
        log_axis(ax.yaxis)
    m = ms.meta
    ax.set_title(f"roughness {ms.roughness:.3g} ({m['wavelet']}, {m['mode']}, detrend {m['detrend']})",
                 fontsize="medium")
    ax.legend(loc="best", fontsize="small")
    return fig


def _panel(fig, ax, coefficients: np.ndarray, title: str) -> None:
    c = np.asarray(coefficients)
    if c.ndim == 2:
        bound = float(np.abs(c).max()) or 1.0
        image = ax.imshow(c, origin="lower", cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto",
                          interpolation="nearest")
        fig.colorbar(image, ax=ax, shrink=0.8)
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        ax.stem(np.arange(len(c)), c, basefmt="grey")
    ax.set_title(title, fontsize="small")


def _level_name(j: int, levels: int) -> str:
    tag = " (finest)" if j == 1 else " (coarsest)" if j == levels else ""
    return f"level {j}{tag}"


def _as_multiscale(result) -> Multiscale:
    if isinstance(result, (str, os.PathLike)):
        result = Multiscale.load(result)
    if not isinstance(result, Multiscale):
        raise ValueError(f"expected a Multiscale (or the path of its file), not a {type(result).__name__}")
    return result
