"""Figures of trajectories: embeddings, paths on the PCA plane, true vs plane loss, training dynamics.

Like the other plot modules: result objects in (``Embedding``, ``TrajectoryPaths``, ``Dynamics``, a
surface), a new matplotlib ``Figure`` (no pyplot) or the given ``ax``'s out; the plotly versions
return ``plotly.graph_objects.Figure`` objects for ``losslens.plot.write_html``.

Surfaces are read by duck typing: ``x`` ``(nx,)``, ``y`` ``(ny,)``, ``loss`` ``(ny, nx)`` with
``loss[iy, ix]`` the loss at ``(x[ix], y[iy])`` (``np.meshgrid(x, y)``'s layout, so
``contourf(x, y, loss)`` is right), and ``meta``.
"""

from __future__ import annotations

import numpy as np
from matplotlib.colors import BoundaryNorm

from losslens.plot._base import load_as, new_axes, new_figure
from losslens.plot.interactive import plotly_contour
from losslens.plot.levels import LOG_FLOOR, colour_bar, contour_levels, log_axis
from losslens.trajectories.dynamics import Dynamics
from losslens.trajectories.embeddings import Embedding
from losslens.trajectories.paths import TrajectoryPaths



def plot_embedding(embedding, *, ax=None):
    """Checkpoints of an ``Embedding`` as points coloured by step, one marker and line per run.

    The legend names the runs and gives the picture's trustworthiness (with its ``k``), so a
    t-SNE picture that invents neighbourhoods says so next to a PCA one that keeps them.

    Args:
        embedding: an ``Embedding`` of the runs' checkpoints.
        ax: the matplotlib axes to draw on; ``None`` draws a new figure.

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    embedding = load_as(embedding, (Embedding,), "plot_embedding")
    fig, ax = new_axes(ax)
    colour, what = _progress(embedding.checkpoints)
    norm = _norm(colour)
    points = None
    for r, run in enumerate(embedding.runs):
        index = [i for i, c in enumerate(embedding.checkpoints) if c.run == run]
        xy = embedding.coords[index]
        ax.plot(xy[:, 0], xy[:, 1], color="0.6", linewidth=0.8, zorder=1)
        points = ax.scatter(xy[:, 0], xy[:, 1], c=colour[index], cmap="viridis", norm=norm, marker=_MARKERS[r % 8],
                            edgecolors="black", linewidths=0.4, label=run, zorder=2)
    fig.colorbar(points, ax=ax, label=what)
    k = embedding.meta.get("n_neighbors")
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles, labels, title=f"trustworthiness {embedding.trustworthiness:.2f} (k={k})",
              fontsize="small", title_fontsize="small", loc="best")
    ax.set_title(f"{_METHOD_NAMES.get(embedding.method, embedding.method)} of {len(embedding.checkpoints)} checkpoints",
                 fontsize="medium")
    ax.set_xlabel(f"{embedding.method} 1")
    ax.set_ylabel(f"{embedding.method} 2")
    return fig


def plot_embeddings(embeddings):
    """Several embeddings side by side (``plot_embedding`` each); returns the ``Figure``.

    Args:
        embeddings: the ``Embedding`` results, one panel each, left to right.
    """
    embeddings = list(embeddings)
    fig = new_figure(figsize=(6.0 * len(embeddings), 4.8))
    for i, emb in enumerate(embeddings):
        plot_embedding(emb, ax=fig.add_subplot(1, len(embeddings), i + 1))
    return fig


def plot_trajectory_paths(paths, surface=None, *, ax=None, levels="auto", log: bool = False):
    """Paths on the PCA plane over the filled contours of the loss there.

    Each run has its own colour, line style and marker (so paths that overlap still show), starts at a
    circle and ends at a square. A checkpoint whose relative residual exceeds the trust threshold is
    an open marker, and the legend (below the axes) says how many there are: there the contour under
    the point is not the loss of the checkpoint.

    Args:
        paths: a ``TrajectoryPaths``.
        surface: the loss over the plane (``x``, ``y``, ``loss`` of shape ``(ny, nx)``), or ``None``
            for the paths alone.
        ax: axes to draw on (default: a new figure).
        levels: contour levels, as ``plot_contour``'s (``"auto"``: log-spaced for a positive loss).
        log: draw :math:`\\log_{10}` of the loss.

    Returns:
        The ``matplotlib.figure.Figure``.

    Raises:
        ValueError: a surface whose loss is not ``(len(y), len(x))``.
    """
    paths = load_as(paths, (TrajectoryPaths,), "plot_trajectory_paths")
    fig, ax = new_axes(ax)
    if surface is not None:
        Z = _grid_values(surface, log)
        scheme = contour_levels(Z, levels)
        filled = ax.contourf(surface.x, surface.y, np.ma.masked_invalid(Z), levels=scheme.values, cmap="viridis",
                             norm=BoundaryNorm(scheme.values, 256, extend="neither"), alpha=0.9)
        colour_bar(fig, ax, filled, scheme, ("log10 " if log else "") + "loss on the plane")
    trusted = paths.trusted
    for r, run in enumerate(paths.runs):
        index = paths.of_run(run)
        xy = paths.coords[index]
        style = run_style(r)
        on_top = 3 + 0.1 * _LINESTYLES.index(style["linestyle"])  # solid lines below: broken ones show over them
        ax.plot(xy[:, 0], xy[:, 1], **style, markersize=5, markevery=list(np.flatnonzero(trusted[index])), label=run,
                zorder=on_top)
        off = ~trusted[index]
        ax.plot(xy[off, 0], xy[off, 1], linestyle="none", marker=style["marker"], markersize=4, markerfacecolor="none",
                markeredgecolor=style["color"], markeredgewidth=0.8, zorder=on_top, gid="untrusted")
        for end, marker in ((0, "o"), (-1, "s")):
            ax.plot(*xy[end], marker=marker, markersize=10, markerfacecolor="none", markeredgecolor=style["color"],
                    markeredgewidth=2, linestyle="none", zorder=4)
    ax.plot([], [], marker="o", markerfacecolor="none", markeredgecolor="black", linestyle="none", label="start")
    ax.plot([], [], marker="s", markerfacecolor="none", markeredgecolor="black", linestyle="none", label="end")
    ax.plot([], [], marker="o", markersize=4, markerfacecolor="none", markeredgecolor="black", linestyle="none",
            label=f"open: rel. residual > {paths.threshold:g} ({int((~trusted).sum())} of {len(trusted)})")
    outside_legend(ax, len(paths.runs) + 3)
    ax.set_xlabel(_pc_label(paths, 0))
    ax.set_ylabel(_pc_label(paths, 1))
    ax.set_title("paths on the joint PCA plane" if len(paths.runs) > 1 else "path on its PCA plane", fontsize="medium")
    return fig


def plot_path_losses(paths, *, ax=None, log: bool = False):
    """True loss at each checkpoint (solid) and plane loss at its projection (dashed), a colour and
    marker per run, along training; untrusted checkpoints are open markers. Where the two curves part,
    the contour plot misreports the path's loss.

    Args:
        paths: the ``TrajectoryPaths`` of the runs.
        ax: the matplotlib axes to draw on; ``None`` draws a new figure.
        log: draw the loss on a logarithmic scale.

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    paths = load_as(paths, (TrajectoryPaths,), "plot_path_losses")
    fig, ax = new_axes(ax)
    x_all, what = _progress(paths.checkpoints)
    bad = ~paths.trusted
    for r, run in enumerate(paths.runs):
        index = paths.of_run(run)
        style = {**run_style(r), "linestyle": "-"}
        ax.plot(x_all[index], paths.true_loss[index], **style, markersize=5,
                markevery=list(np.flatnonzero(~bad[index])), label=run)
        off = index[bad[index]]
        ax.plot(x_all[off], paths.true_loss[off], linestyle="none", marker=style["marker"], markersize=4,
                markerfacecolor="none", markeredgecolor=style["color"], markeredgewidth=0.8, gid="untrusted")
        ax.plot(x_all[index], paths.plane_loss[index], color=style["color"], linestyle="--", linewidth=1)
    ax.plot([], [], color="black", label="true loss (at the checkpoint)")
    ax.plot([], [], color="black", linestyle="--", label="plane loss (at its projection)")
    ax.plot([], [], marker="o", markersize=4, markerfacecolor="none", markeredgecolor="black", linestyle="none",
            label=f"open: rel. residual > {paths.threshold:g}")
    if log:
        log_axis(ax.yaxis)
    ax.set_xlabel(what)
    ax.set_ylabel("loss" + (" (log scale)" if log else ""))
    ax.set_title("loss at the checkpoints vs at their projections on the plane", fontsize="medium")
    outside_legend(ax, len(paths.runs) + 3)
    return fig


def run_style(r: int) -> dict:
    """The line of run number ``r``: a colour, a line style and a marker of its own (10 colours, 4 line
    styles, 8 markers: no two of the first 40 runs look alike)."""
    return {"color": f"C{r % 10}", "linestyle": _LINESTYLES[r % len(_LINESTYLES)], "marker": _MARKERS[r % 8],
            "linewidth": 1.6}


def outside_legend(ax, entries: int) -> None:
    """The legend below the axes, in up to 4 columns: it covers neither the plot nor a colour bar."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncols=min(4, max(1, (entries + 2) // 3)),
              fontsize="small", frameon=False)


def plot_dynamics(dynamics):
    """A panel of training dynamics against the step: loss, loss improvement, gradient norm, weight
    norm, parameter change (since the previous record and since init), and the sharpness
    :math:`\\lambda_{max}` against the optimizer's edge of stability (``stability_limit``; its formula
    in the legend). The limit is drawn only beside a recorded sharpness, never alone; without one the
    panel says why (``meta["sharpness_note"]``), and a note on what the sharpness is (Adam's limit
    bounds the preconditioned one) is written in it. Each kind of record (step, epoch, checkpoint)
    is its own line.

    Args:
        dynamics: the ``Dynamics`` of a run (``dynamics_of_run``, or recorded during training).

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    dynamics = load_as(dynamics, (Dynamics,), "plot_dynamics")
    fig = new_figure(figsize=(13, 7))
    axes = fig.subplots(2, 3)
    panels = [
        (axes[0, 0], ("loss",), "loss"),
        (axes[0, 1], ("loss_improvement",), "loss improvement (previous - current)"),
        (axes[0, 2], ("grad_norm",), "gradient norm ‖g‖"),
        (axes[1, 0], ("weight_norm",), "weight norm ‖w‖"),
        (axes[1, 1], ("change_since_previous", "change_since_init"), "parameter change"),
        (axes[1, 2], ("sharpness", "stability_threshold"), "sharpness λmax vs edge of stability"),
    ]
    for ax, columns, title in panels:
        drawn = _dynamics_lines(ax, dynamics, columns)
        if columns[0] == "sharpness":
            title = _sharpness_panel(ax, dynamics, columns, title, drawn)
        elif not drawn:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes, color="0.5")
        if drawn and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="x-small", loc="best")
        if columns == ("loss",) and drawn and np.nanmin(dynamics["loss"]) > 0:
            log_axis(ax.yaxis)
        ax.set_title(title, fontsize="medium" if "\n" not in title else "small")
        ax.set_xlabel("step")
    return fig


def _dynamics_lines(ax, dynamics, columns: tuple[str, ...]) -> bool:
    """One line per column and kind of record on ``ax``; whether any was drawn (the edge of stability
    only beside a recorded sharpness)."""
    kinds = list(dict.fromkeys(dynamics.kind))
    formula = dynamics.meta.get("stability", {}).get("formula") or ""
    drawn = False
    for kind in kinds:
        part = dynamics.of_kind(kind)
        for j, column in enumerate(columns):
            values = part[column]
            if not np.isfinite(values).any() or (column == "stability_threshold"
                                                 and not np.isfinite(part["sharpness"]).any()):
                continue
            style = "--" if column == "stability_threshold" else "-"
            label = f"{column} ({kind})" if len(columns) > 1 or len(kinds) > 1 else None
            if column == "stability_threshold":
                label = f"edge of stability {formula} ({kind})"
            ax.plot(part["step"], values, linestyle=style, marker="." if len(values) < 60 else None,
                    color=f"C{kinds.index(kind) * len(columns) + j}", label=label)
            drawn = True
    return drawn


def _sharpness_panel(ax, dynamics, columns: tuple[str, ...], title: str, drawn: bool) -> str:
    """The sharpness panel's note (in place of the lines when none was drawn) and log axis; its title."""
    import textwrap

    note = textwrap.fill(_sharpness_note(dynamics, drawn), 60, break_on_hyphens=False)
    if not drawn:
        ax.text(0.5, 0.5, note, ha="center", va="center", transform=ax.transAxes, fontsize="small", color="0.35")
        ax.set_xticks([]), ax.set_yticks([])
        return title
    shown = np.concatenate([dynamics[c][np.isfinite(dynamics[c])] for c in columns])
    if shown.min() > 0 and shown.max() > 100 * shown.min():  # a limit far above λmax
        log_axis(ax.yaxis)
    return f"{title}\n{note}" if note else title


def _sharpness_note(dynamics, drawn: bool) -> str:
    """What the sharpness panel must say: why λmax is missing, or what it is and what bounds it."""
    meta, stability = dynamics.meta, dynamics.meta.get("stability", {})
    if not drawn:
        why = meta.get("sharpness_note") or "no sharpness batch given to the recorder"
        return f"λmax not computed: {why}"
    parts = [meta.get("sharpness_note", "")]
    if stability.get("of") == "preconditioned":
        parts.append("λmax of P⁻¹H, preconditioned by Adam's second moments"
                     if stability.get("sharpness") == "preconditioned" else "")
    if not stability.get("formula"):
        parts.append(f"no limit drawn: {stability.get('note') or 'no learning rate known'}")
    return "; ".join(p for p in parts if p)


# -- plotly -----------------------------------------------------------------------------------------


def plotly_paths(paths, surface=None, *, log: bool = False):
    """Interactive version of ``plot_trajectory_paths``: contours of the plane and each run's path, every point
    with its run, step, epoch, relative residual, true and plane loss on hover; untrusted points
    circled in white.

    Args:
        paths: the ``TrajectoryPaths`` of the runs.
        surface: the loss over their plane (``plane_surface``), drawn as contours; ``None``: the paths alone.
        log: draw the loss on a logarithmic scale.

    Returns:
        A ``plotly.graph_objects.Figure``.
    """
    paths = load_as(paths, (TrajectoryPaths,), "plotly_paths")
    import plotly.graph_objects as go

    fig = go.Figure()
    if surface is not None:
        Z = _grid_values(surface, log)
        Z = np.where(np.isfinite(Z), Z, np.nan)
        fig.add_trace(plotly_contour(surface.x, surface.y, Z, contour_levels(Z), ("log10 " if log else "") + "loss"))
    rel = paths.rel_residual
    for r, run in enumerate(paths.runs):
        index = paths.of_run(run)
        text = [_hover(paths, i, rel[i]) for i in index]
        fig.add_trace(go.Scatter(x=paths.coords[index, 0], y=paths.coords[index, 1], mode="lines+markers", name=run,
                                 text=text, hoverinfo="text",
                                 marker={"size": [12 if i in (index[0], index[-1]) else 7 for i in index],
                                         "symbol": ["circle-open" if i == index[0] else "square-open" if i == index[-1]
                                                    else "circle" for i in index]}))
    bad = np.flatnonzero(~paths.trusted)
    fig.add_trace(go.Scatter(x=paths.coords[bad, 0], y=paths.coords[bad, 1], mode="markers", hoverinfo="skip",
                             name=f"untrusted: rel. residual > {paths.threshold:g}",
                             marker={"symbol": "circle-open", "color": "white", "size": 11, "line": {"width": 1}}))
    fig.update_layout(title={"text": "paths on the PCA plane (hover: residuals and losses)"},
                      xaxis_title=_pc_label(paths, 0), yaxis_title=_pc_label(paths, 1))
    return fig


def plotly_embedding(embedding):
    """Interactive version of ``plot_embedding``: points coloured by step, a trace per run, the
    checkpoint on hover, the trustworthiness in the title.

    Args:
        embedding: an ``Embedding`` of the runs' checkpoints.

    Returns:
        A ``plotly.graph_objects.Figure``.
    """
    embedding = load_as(embedding, (Embedding,), "plotly_embedding")
    import plotly.graph_objects as go

    colour, what = _progress(embedding.checkpoints)
    fig = go.Figure()
    for r, run in enumerate(embedding.runs):
        index = [i for i, c in enumerate(embedding.checkpoints) if c.run == run]
        text = [f"{run}<br>step {c.step}, epoch {c.epoch}<br>{c.path.name}"
                for c in (embedding.checkpoints[i] for i in index)]
        fig.add_trace(go.Scatter(x=embedding.coords[index, 0], y=embedding.coords[index, 1], mode="lines+markers",
                                 name=run, text=text, hoverinfo="text", line={"color": "lightgrey", "width": 1},
                                 marker={"color": colour[index], "colorscale": "Viridis", "cmin": float(colour.min()),
                                         "cmax": float(colour.max()), "symbol": r % 8, "size": 9,
                                         "colorbar": {"title": {"text": what}} if r == 0 else None}))
    name = _METHOD_NAMES.get(embedding.method, embedding.method)
    k = embedding.meta.get("n_neighbors")
    fig.update_layout(title={"text": f"{name}: trustworthiness {embedding.trustworthiness:.2f} (k={k})"})
    return fig


# -- helpers ----------------------------------------------------------------------------------------

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_LINESTYLES = ("-", "--", "-.", ":")
_METHOD_NAMES = {"pca": "PCA", "tsne": "t-SNE", "phate": "PHATE"}


def _grid_values(surface, log: bool) -> np.ndarray:
    """The surface's loss, checked to be ``(ny, nx)``."""
    Z = np.asarray(surface.loss, dtype=np.float64)
    expected = (len(surface.y), len(surface.x))
    if Z.shape != expected:
        raise ValueError(f"the surface's loss must have shape (ny, nx) = {expected} (loss[iy, ix] at (x[ix], y[iy])), "
                         f"found {Z.shape}")
    return np.log10(np.clip(Z, LOG_FLOOR, None)) if log else Z


def _progress(checkpoints) -> tuple[np.ndarray, str]:
    """The step of each checkpoint when all are known, else the epoch, else the position in its run."""
    for what in ("step", "epoch"):
        values = [getattr(c, what) for c in checkpoints]
        if all(v is not None for v in values):
            return np.asarray(values, dtype=np.float64), what
    return np.asarray([c.index for c in checkpoints], dtype=np.float64), "checkpoint number"


def _norm(values: np.ndarray):
    from matplotlib.colors import Normalize

    lo, hi = float(values.min()), float(values.max())
    return Normalize(lo, hi if hi > lo else lo + 1)


def _pc_label(paths, i: int) -> str:
    ratio = paths.meta.get("pca", {}).get("explained_variance_ratio", [])
    share = f", {ratio[i]:.1%} of variance" if i < len(ratio) else ""
    return f"PC{i + 1} (weight-space units{share})"


def _hover(paths, i: int, rel: float) -> str:
    c = paths.checkpoints[i]
    flag = "" if rel <= paths.threshold else " (untrusted)"
    return (f"{c.run}: step {c.step}, epoch {c.epoch}<br>rel. residual {rel:.3f}{flag}<br>"
            f"true loss {paths.true_loss[i]:.4g}, plane loss {paths.plane_loss[i]:.4g}<br>{c.path.name}")
