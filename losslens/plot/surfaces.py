"""Matplotlib figures of loss lines and planes: 1D curves, contours, filled contours, 3D surfaces.

The pictures of Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets" (NeurIPS), and of
Goodfellow et al. 2015 (the loss along the segment between two points, with its ``barrier_max``, the rise
above the higher endpoint; ``connectivity.barriers`` names the three barriers).

Every function takes a ``Surface`` (or the path of its file), builds a new
``matplotlib.figure.Figure`` (no pyplot, no global state, any backend) unless given an ``ax``, and
returns the figure; saving it is the caller's choice. A plane's ``loss`` is ``(ny, nx)`` with
``Z[iy, ix]`` at ``(x[ix], y[iy])``, which is what ``contour(x, y, Z)`` expects: nothing is transposed.

Colour levels (``levels``): as ``losslens.plot.levels`` says (``"auto"``, ``"log"``, ``"quantile"``,
``"linear"``, a number of levels, explicit values, or the reference tool's ``vmin``/``vmax``/``vlevel``).

Log scale (``log=True``): the values drawn are :math:`\\log_{10} \\max(v, 10^{-12})`; values at or
below 0 are clipped there, and the axis label says how many.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from losslens.landscape.surface import Surface
from losslens.plot._base import load_as, new_axes
from losslens.plot.levels import LOG_FLOOR, colour_bar, contour_levels, fraction_axis, log_axis



def plot_1d(result, *, ax=None, log: bool = False, metrics: bool = True):
    """The loss along a line, with the metrics (accuracy) on a twin right axis.

    A line between two points (directions of kind ``"between"``) has its endpoints ``t = 0`` and
    ``t = 1`` marked and ``barrier_max`` drawn as a vertical segment at its peak. A plane of one row or
    column (``1 x N``) is drawn as the line it is.

    Args:
        result: a ``Surface`` (1D, or 2D with one row or column), or the path of a file holding one.
        ax: axes to draw on (default: a new figure).
        log: logarithmic loss axis (values clipped at ``LOG_FLOOR``).
        metrics: also draw the metrics, on a twin axis.

    Returns:
        The ``matplotlib.figure.Figure``.

    Raises:
        ValueError: a plane of several rows and columns, or a surface with no finite value.
    """
    surface = _load(result, "plot_1d")
    x, xlabel, values = _as_line(surface)
    loss, note = _finite_values(surface, values["loss"], log)
    fig, ax = new_axes(ax)
    handles = ax.plot(x, np.clip(loss, LOG_FLOOR, None) if log else loss, color="C0", marker=".", label="loss")
    if log:
        log_axis(ax.yaxis)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(value_label(surface.meta, "loss", False) + (" (log scale)" if log else "") + note)
    if _is_between(surface):
        handles += _mark_endpoints(ax, surface, np.clip(loss, LOG_FLOOR, None) if log else loss)
    other = {n: v for n, v in values.items() if n != "loss"}
    if metrics and other:
        twin = ax.twinx()
        for k, (name, v) in enumerate(other.items()):
            handles += twin.plot(x, v, color=f"C{k + 1}", linestyle="--", label=name)
        twin.set_ylabel(", ".join(other))
        fraction_axis(twin.yaxis, np.concatenate([np.ravel(v) for v in other.values()]))
    ax.legend(handles=handles, loc="best", fontsize="small")
    ax.set_title(title_of(surface), fontsize="medium")
    return fig


def plot_contour(surface, *, ax=None, filled: bool = False, levels="auto", log: bool = False, metric: str = "loss",
                 vmin: float | None = None, vmax: float | None = None, vlevel: float | None = None):
    """Contour lines (or filled contours) of a 2D surface, with a colour bar and the origin marked.

    Args:
        surface: a 2D ``Surface`` or the path of a file holding one.
        ax: axes to draw on (default: a new figure).
        filled: filled contours (``contourf``) instead of lines.
        levels: ``"auto"``, ``"log"``, ``"quantile"``, ``"linear"``, a number of linear levels, or their
            values (see the module docstring).
        log: draw :math:`\\log_{10} \\max(v, 10^{-12})`.
        metric: ``"loss"`` or the name of one of the surface's metrics (``"accuracy"``).
        vmin, vmax, vlevel: the reference tool's levels ``np.arange(vmin, vmax, vlevel)`` (all three).

    Returns:
        The ``matplotlib.figure.Figure``.

    Raises:
        ValueError: a 1D surface (or one row), an unknown metric or level mode, or no finite value.
    """
    from matplotlib.colors import BoundaryNorm

    surface = _surface_2d(surface, "plot_contour")
    Z, label = _values(surface, metric, log)
    scheme = contour_levels(Z, levels, vmin, vmax, vlevel)
    bounds = scheme.values
    fig, ax = new_axes(ax)
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    finite = Z[np.isfinite(Z)]
    extend = "both" if filled and (finite.min() < bounds[0] or finite.max() > bounds[-1]) else "neither"
    norm = BoundaryNorm(bounds, cmap.N, extend=extend)
    draw = ax.contourf if filled else ax.contour
    contours = draw(surface.x, surface.y, np.ma.masked_invalid(Z), levels=bounds, cmap=cmap, norm=norm, extend=extend)
    colour_bar(fig, ax, contours, scheme, label)
    _mark_origin(ax, surface)
    ax.set_xlabel(axis_label(surface, 0))
    ax.set_ylabel(axis_label(surface, 1))
    ax.set_title(title_of(surface), fontsize="medium")
    return fig


def plot_3d(surface, *, ax=None, log: bool = False):
    """The loss of a 2D surface as a 3D surface (matplotlib ``plot_surface``), the origin marked.

    Args:
        surface: a 2D ``Surface`` or the path of a file holding one.
        ax: 3D axes to draw on (``projection="3d"``; default: a new figure).
        log: draw :math:`\\log_{10} \\max(L, 10^{-12})`.

    Returns:
        The ``matplotlib.figure.Figure``.

    Raises:
        ValueError: a 1D surface, ``ax`` that is not 3D, or no finite value.
    """
    from matplotlib.ticker import MaxNLocator

    surface = _surface_2d(surface, "plot_3d")
    Z, label = _values(surface, "loss", log)
    X, Y = np.meshgrid(surface.x, surface.y)  # (ny, nx), like Z
    fig, ax = new_axes(ax, projection="3d")
    ax.computed_zorder = False  # draw the origin's marker over the surface, not hidden in it
    surf = ax.plot_surface(X, Y, np.ma.masked_invalid(Z), cmap="viridis", linewidth=0, antialiased=True)
    fig.colorbar(surf, ax=ax, shrink=0.6, pad=0.12, label=label)
    origin = surface.origin_index
    if origin is not None and np.isfinite(Z[origin]):
        ax.scatter([0.0], [0.0], [Z[origin]], color="red", marker="*", s=160, edgecolors="white", depthshade=False,
                   zorder=10, label="origin $w_0$")
        ax.legend(loc="upper left", fontsize="small")
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
        axis.set_major_locator(MaxNLocator(5))
    ax.tick_params(labelsize="x-small", pad=1)
    ax.set_xlabel(_short_axis(surface, 0), fontsize="small", labelpad=6)
    ax.set_ylabel(_short_axis(surface, 1), fontsize="small", labelpad=6)
    ax.set_zlabel(label, fontsize="small", labelpad=6)
    ax.set_title(title_of(surface), fontsize="medium")
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
        "between": lambda: _endpoints_label(m),
    }
    return f"{head}: {recipes[d.kind]() if d.kind in recipes else d.kind}"


def title_of(surface_or_meta) -> str:
    """Two lines from a result's provenance: what was evaluated (model, checkpoint with its step and
    epoch), then on what (data, split, samples), along which directions, and how much of the grid."""
    surface = surface_or_meta if isinstance(surface_or_meta, Surface) else None
    meta = surface.meta if surface is not None else surface_or_meta
    model = meta.get("model")
    model = (model.get("name") or model.get("class", "").rpartition(".")[2]) if isinstance(model, dict) else model
    ckpt = meta.get("checkpoint")
    first = [str(model) if model else ""]
    ends = surface.directions.meta.get("endpoints") if surface is not None and _is_between(surface) else None
    if ends:
        first.append(f"from A = {Path(ends[0]).name} (t = 0) to B = {Path(ends[1]).name} (t = 1)")
    elif isinstance(ckpt, dict):
        when = ", ".join(f"{k} {ckpt[k]:g}" if isinstance(ckpt[k], float) else f"{k} {ckpt[k]}"
                         for k in ("step", "epoch") if ckpt.get(k) is not None)
        first.append(f"at {ckpt.get('label', ckpt.get('path', ''))}" + (f" ({when})" if when else ""))
    second = []
    data = meta.get("data")
    if isinstance(data, dict):
        split = data.get("split")
        what = " ".join(p for p in (data.get("name") or "", f"{split} split" if split else "") if p)
        n = data.get("n_samples") or meta.get("n_samples")
        count = f"{n} samples" + (", a seeded subset" if data.get("subset") else "") if n else ""
        second.append(f"{what} ({count})" if what and count else what or count)
    kind = meta.get("directions_kind") or (surface.directions.kind if surface is not None and surface.directions else None)
    if kind:
        second.append(f"{kind} directions")
    if meta.get("bn") not in (None, "eval"):
        second.append(f"BatchNorm {meta['bn']}")
    if surface is not None and not surface.complete:
        second.append(f"partial grid: {int(surface.done.sum())} of {surface.done.size} points")
    lines = [" ".join(p for p in first if p), ", ".join(p for p in second if p)]
    return "\n".join(line for line in lines if line)


def value_label(meta: dict, metric: str, log: bool) -> str:
    loss = meta.get("loss")
    name = ("the model's own loss" if loss == "model" else f"{loss} loss") if metric == "loss" and loss else metric
    return f"log10 {name}" if log else name


# -- helpers ---------------------------------------------------------------------------------------


def _load(result, caller: str) -> Surface:
    return load_as(result, (Surface,), caller)


def _surface_2d(surface, caller: str) -> Surface:
    surface = _load(surface, caller)
    if surface.ndim != 2 or min(surface.shape) < 2:
        raise ValueError(f"{caller} draws a plane of at least 2 x 2 points, but this surface has shape "
                         f"{list(surface.shape)}: use plot_1d")
    return surface


def _as_line(surface: Surface) -> tuple[np.ndarray, str, dict[str, np.ndarray]]:
    """``(coordinates, axis label, {name: values})`` of a line, or of a plane of one row or column."""
    values = surface.values[surface.split]
    if surface.ndim == 1:
        label = _path_label(surface) if _is_between(surface) else axis_label(surface, 0)
        return surface.x, label, values
    ny, nx = surface.shape
    if ny == 1:
        return surface.x, axis_label(surface, 0) + f"  (y = {surface.y[0]:.4g})", {n: v[0] for n, v in values.items()}
    if nx == 1:
        return surface.y, axis_label(surface, 1) + f"  (x = {surface.x[0]:.4g})", {n: v[:, 0] for n, v in values.items()}
    raise ValueError(f"plot_1d draws a line, but this surface is a {ny} x {nx} plane: use plot_contour or plot_3d")


def _finite_values(surface: Surface, values: np.ndarray, log: bool) -> tuple[np.ndarray, str]:
    """The values, checked to hold a finite one, and a note on what a log scale clipped."""
    finite = np.isfinite(values)
    if not finite.any():
        raise ValueError(f"the surface holds no finite value ({int(surface.done.sum())} points computed): "
                         "nothing to draw")
    if not log:
        return values, ""
    clipped = int((finite & (values <= LOG_FLOOR)).sum())
    return values, (f" ({clipped} values ≤ 0 clipped at {LOG_FLOOR:g})" if clipped else "")


def _values(surface: Surface, metric: str, log: bool) -> tuple[np.ndarray, str]:
    """The ``(ny, nx)`` array to draw and its colour-bar label."""
    choices = ("loss", *surface.metrics)
    if metric not in choices:
        raise ValueError(f"unknown metric {metric!r} for this surface; valid: {', '.join(choices)}")
    values = surface.loss if metric == "loss" else surface.metrics[metric]
    values, note = _finite_values(surface, np.asarray(values, dtype=np.float64), log)
    if log:
        values = np.log10(np.clip(values, LOG_FLOOR, None))
    return values, value_label(surface.meta, metric, log) + note


def _mark_origin(ax, surface: Surface) -> None:
    if surface.origin_index is not None:
        ax.plot(0.0, 0.0, marker="*", markersize=12, color="red", markeredgecolor="white", linestyle="none",
                label="origin $w_0$")
        ax.legend(loc="upper right", fontsize="small")


def _short_axis(surface: Surface, i: int) -> str:
    d = surface.directions
    return f"d{i + 1}" + (f" ({d.kind})" if d is not None else "")


def _is_between(surface: Surface) -> bool:
    return surface.ndim == 1 and surface.directions is not None and surface.directions.kind == "between"


def _endpoints_label(meta: dict) -> str:
    ends = meta.get("endpoints")
    return " → ".join(Path(e).name for e in ends) if ends else "between two points"


def _path_label(surface: Surface) -> str:
    ends = surface.directions.meta.get("endpoints")
    if ends:
        return f"t  (0: {Path(ends[0]).name}, 1: {Path(ends[1]).name})"
    return "t  (w = w_a + t (w_b - w_a))"


def _mark_endpoints(ax, surface: Surface, drawn: np.ndarray) -> list:
    """Dotted lines at ``t = 0`` and ``t = 1``, and ``barrier_max`` (the rise above the higher endpoint) as a
    segment at its peak."""
    from losslens.connectivity.barriers import line_barriers

    for t in (0.0, 1.0):
        ax.axvline(t, color="grey", linestyle=":", linewidth=1)
    t = surface.x
    ends = [np.flatnonzero(t == v) for v in (0.0, 1.0)]
    if any(len(e) == 0 for e in ends):  # a hand-made grid without the endpoints has no barrier
        return []
    value = line_barriers(surface)["barrier_max"]
    if not np.isfinite(value):
        return []
    inside = np.flatnonzero((t >= 0.0) & (t <= 1.0))
    peak = inside[np.argmax(surface.loss[inside])]
    base = max(drawn[ends[0][0]], drawn[ends[1][0]])
    return ax.plot([t[peak], t[peak]], [base, drawn[peak]], color="C3", linewidth=2, marker="_", markersize=12,
                   label=f"barrier_max {value:.4g}")
