"""Matplotlib figures of loss lines and planes: 1D curves, contours, filled contours, 3D surfaces.

The pictures of Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets" (NeurIPS), and of
Goodfellow et al. 2015, "Qualitatively characterizing neural network optimization problems" (the
loss along the segment between two points, with the barrier of Frankle et al. 2020).

Computing never draws and drawing never computes: every function takes a result object
(``Surface``, ``Interpolation``) or the path of a file its ``save`` wrote, builds a new
``matplotlib.figure.Figure`` (no pyplot, no global state, any backend) unless given an ``ax``, and
returns the figure. Saving it is the caller's choice (``fig.savefig(path)``).

Orientation: ``surface.loss[i, j]`` is the loss at ``(x[i], y[j])``, so the coordinates are built with
``np.meshgrid(x, y, indexing="ij")``, which has the loss's own ``(nx, ny)`` shape. (The default
``indexing="xy"`` gives ``(ny, nx)`` and silently transposes the picture when ``nx == ny``, a mistake
of older tools.)

Log scale: with ``log=True`` the values drawn are :math:`\\log_{10} \\max(v, 10^{-12})`, or the
values clipped at :math:`10^{-12}` on a logarithmic axis for 1D curves. Losses of cross-entropy and MSE
are positive; the clip only keeps an exact zero (or a rounding error below it) drawable.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from losslens._io import open_h5
from losslens.errors import LosslensError
from losslens.landscape.interpolation import Interpolation
from losslens.landscape.surface import Surface

LOG_FLOOR = 1e-12  # values are clipped here before taking logs


def load_result(path: str | os.PathLike):
    """The result object a losslens HDF5 file holds, picked by the file's ``losslens_kind`` attribute.

    Kinds: ``surface`` (also the older loss-landscape tool's surface files, which have no header),
    ``interpolation``, ``spectrum`` and ``eigenpairs``.

    Raises:
        LosslensError: the file is missing, not HDF5, or holds a kind of result that is not drawn.
    """
    from losslens.landscape.hessian import Eigenpairs
    from losslens.landscape.spectrum import Spectrum

    loaders = {"surface": Surface.load, "interpolation": Interpolation.load, "spectrum": Spectrum.load,
               "eigenpairs": Eigenpairs.load}
    path = Path(path)
    with open_h5(path) as f:
        kind = f.attrs.get("losslens_kind", "surface")  # no header: maybe an older tool's surface
    if kind not in loaders:
        raise LosslensError(f"{path} holds a losslens {kind} result, which is not drawn; "
                            f"drawable kinds: {', '.join(loaders)}")
    return loaders[kind](path)


def plot_1d(result, *, ax=None, log: bool = False, metrics: bool = True):
    """The loss along a line, with the metrics (accuracy) on a twin right axis.

    For an ``Interpolation`` the endpoints ``t = 0`` and ``t = 1`` are marked and the barrier
    :math:`\\max_{t \\in [0,1]} L(t) - \\max(L(0), L(1))` is drawn as a vertical segment at its peak.

    Args:
        result: a 1D ``Surface``, an ``Interpolation``, or the path of a file holding one.
        ax: axes to draw on (default: a new figure).
        log: logarithmic loss axis (values clipped at ``LOG_FLOOR``).
        metrics: also draw the metrics, on a twin axis.

    Returns:
        The ``matplotlib.figure.Figure``.

    Raises:
        ValueError: a 2D surface, or another kind of result.
    """
    result = _load_as(result, (Surface, Interpolation), "plot_1d")
    if isinstance(result, Surface):
        if result.ndim != 1:
            raise ValueError(f"plot_1d draws a line, but this surface is 2D with shape {list(result.loss.shape)}: "
                             "use plot_contour or plot_3d")
        x, xlabel, meta = result.x, axis_label(result, 0), result.meta
    else:
        x, xlabel, meta = result.t, _path_label(result), {**result.meta.get("evaluator", {}), **result.meta}
    fig, ax = _new_axes(ax)
    loss = np.clip(result.loss, LOG_FLOOR, None) if log else result.loss
    handles = ax.plot(x, loss, color="C0", marker=".", label="loss")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(_value_label(meta, "loss", False) + (" (log scale)" if log else ""))
    if isinstance(result, Interpolation):
        handles += _mark_endpoints(ax, result, loss)
    if metrics and result.metrics:
        twin = ax.twinx()
        for k, (name, values) in enumerate(result.metrics.items()):
            handles += twin.plot(x, values, color=f"C{k + 1}", linestyle="--", label=name)
        twin.set_ylabel(", ".join(result.metrics))
    ax.legend(handles=handles, loc="best", fontsize="small")
    ax.set_title(title_of(meta))
    return fig


def plot_contour(surface, *, ax=None, filled: bool = False, levels=30, log: bool = False, metric: str = "loss"):
    """Contour lines (or filled contours) of a 2D surface, with a colour bar and the origin marked.

    Args:
        surface: a 2D ``Surface`` or the path of a file holding one.
        ax: axes to draw on (default: a new figure).
        filled: filled contours (``contourf``) instead of lines.
        levels: number of levels, or their values (as matplotlib's ``levels``).
        log: draw :math:`\\log_{10} \\max(v, 10^{-12})`.
        metric: ``"loss"`` or the name of one of the surface's metrics (``"accuracy"``).

    Returns:
        The ``matplotlib.figure.Figure``; the first axes' contour set has the loss's ``(nx, ny)``
        layout, ``x`` along the horizontal axis.

    Raises:
        ValueError: a 1D surface, or an unknown metric (the valid ones are listed).
    """
    surface = _surface_2d(surface, "plot_contour")
    Z, label = _values(surface, metric, log)
    X, Y = np.meshgrid(surface.x, surface.y, indexing="ij")  # (nx, ny), like loss[i, j] at (x[i], y[j])
    fig, ax = _new_axes(ax)
    draw = ax.contourf if filled else ax.contour
    contours = draw(X, Y, np.ma.masked_invalid(Z), levels=levels, cmap="viridis")
    fig.colorbar(contours, ax=ax, label=label)
    ax.plot(0.0, 0.0, marker="*", markersize=12, color="red", markeredgecolor="white", linestyle="none",
            label="origin $w_0$")
    ax.legend(loc="upper right", fontsize="small")
    ax.set_xlabel(axis_label(surface, 0))
    ax.set_ylabel(axis_label(surface, 1))
    ax.set_title(title_of(surface.meta))
    return fig


def plot_3d(surface, *, ax=None, log: bool = False):
    """The loss of a 2D surface as a 3D surface (matplotlib ``plot_surface``).

    Args:
        surface: a 2D ``Surface`` or the path of a file holding one.
        ax: 3D axes to draw on (``projection="3d"``; default: a new figure).
        log: draw :math:`\\log_{10} \\max(L, 10^{-12})`.

    Returns:
        The ``matplotlib.figure.Figure``.

    Raises:
        ValueError: a 1D surface, or ``ax`` that is not 3D.
    """
    surface = _surface_2d(surface, "plot_3d")
    Z, label = _values(surface, "loss", log)
    X, Y = np.meshgrid(surface.x, surface.y, indexing="ij")
    fig, ax = _new_axes(ax, projection="3d")
    surf = ax.plot_surface(X, Y, Z, cmap="viridis", linewidth=0, antialiased=True)
    fig.colorbar(surf, ax=ax, shrink=0.6, pad=0.1, label=label)
    ax.set_xlabel(axis_label(surface, 0), fontsize="small")
    ax.set_ylabel(axis_label(surface, 1), fontsize="small")
    ax.set_zlabel(label)
    ax.set_title(title_of(surface.meta))
    return fig


# -- labels, shared with the other plot modules ---------------------------------------------------


def axis_label(surface: Surface, i: int) -> str:
    """What direction ``i`` of a surface is, from its ``Directions`` (kind and recipe)."""
    d = surface.directions
    head = f"direction {i + 1}"
    if d is None:
        return head
    m = d.meta

    def listed(key: str, fmt: str) -> str:
        values = m.get(key) or []
        return fmt.format(values[i]) if i < len(values) else ""

    recipes = {
        "random": lambda: "random, " + ("not normalized" if m.get("normalization") == "none"
                                        else f"{m.get('normalization')}-normalized"),
        "hessian": lambda: "Hessian eigenvector" + listed("eigenvalues", ", λ = {:.4g}"),
        "pca": lambda: f"PCA component {i + 1}" + listed("explained_variance_ratio", ", {:.1%} of variance"),
        "between": lambda: " → ".join(Path(e).name for e in m["endpoints"]) if m.get("endpoints") else "between two points",
    }
    return f"{head}: {recipes[d.kind]() if d.kind in recipes else d.kind}"


def title_of(meta: dict) -> str:
    """A one-line title from a result's provenance: model, data set, split and samples."""
    data = meta.get("data")
    data = " ".join(str(data.get(k)) for k in ("name", "split") if data.get(k)) if isinstance(data, dict) else data
    parts = [str(meta["model"]) if meta.get("model") else "", f"on {data}" if data else ""]
    if meta.get("n_samples"):
        parts.append(f"({meta['n_samples']} samples)")
    return " ".join(p for p in parts if p)


def _value_label(meta: dict, metric: str, log: bool) -> str:
    name = f"{meta['loss']} loss" if metric == "loss" and meta.get("loss") else metric
    return f"log10 {name}" if log else name


def _path_label(result: Interpolation) -> str:
    ends = result.meta.get("endpoints")
    if ends:
        return f"t  (0: {Path(ends[0]).name}, 1: {Path(ends[1]).name})"
    return "t  (w = w_a + t d)"


# -- helpers ---------------------------------------------------------------------------------------


def _load_as(result, types: tuple[type, ...], caller: str):
    """``result`` itself, or the object its file holds, checked to be one of ``types``."""
    if isinstance(result, (str, os.PathLike)):
        result = load_result(result)
    if not isinstance(result, types):
        names = " or ".join(t.__name__ for t in types)
        raise ValueError(f"{caller} draws a {names} (or the path of its file), not a {type(result).__name__}")
    return result


def _surface_2d(surface, caller: str) -> Surface:
    surface = _load_as(surface, (Surface,), caller)
    if surface.ndim != 2:
        raise ValueError(f"{caller} draws a 2D surface, but this one is 1D with {len(surface.x)} points: use plot_1d")
    return surface


def _values(surface: Surface, metric: str, log: bool) -> tuple[np.ndarray, str]:
    """The array to draw (``(nx, ny)``) and its colour-bar label."""
    choices = ("loss", *surface.metrics)
    if metric not in choices:
        raise ValueError(f"unknown metric {metric!r} for this surface; valid: {', '.join(choices)}")
    values = surface.loss if metric == "loss" else surface.metrics[metric]
    if log:
        values = np.log10(np.clip(values, LOG_FLOOR, None))
    return np.asarray(values, dtype=np.float64), _value_label(surface.meta, metric, log)


def _new_axes(ax=None, *, projection: str | None = None):
    """``(figure, axes)``: those of ``ax``, or a new ``Figure`` with one axes."""
    if ax is not None:
        if projection == "3d" and getattr(ax, "name", None) != "3d":
            raise ValueError("ax must be 3D axes, made with projection='3d'")
        return ax.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 5.5) if projection == "3d" else (6.4, 4.8), layout="constrained")
    return fig, fig.add_subplot(projection=projection)


def _mark_endpoints(ax, result: Interpolation, drawn: np.ndarray) -> list:
    """Dotted lines at ``t = 0`` and ``t = 1``, and the barrier as a segment at its peak."""
    for t in (0.0, 1.0):
        ax.axvline(t, color="grey", linestyle=":", linewidth=1)
    t = result.t
    ends = [np.flatnonzero(t == v) for v in (0.0, 1.0)]
    if any(len(e) == 0 for e in ends):  # a hand-made grid without the endpoints has no barrier
        return []
    barrier = result.barrier
    inside = np.flatnonzero((t >= 0.0) & (t <= 1.0))
    if not np.isfinite(barrier):
        return []
    peak = inside[np.argmax(result.loss[inside])]
    base = max(drawn[ends[0][0]], drawn[ends[1][0]])
    return ax.plot([t[peak], t[peak]], [base, drawn[peak]], color="C3", linewidth=2, marker="_", markersize=12,
                   label=f"barrier {barrier:.4g}")
