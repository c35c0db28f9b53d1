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

from losslens.plot._base import new_axes, new_figure
from losslens.plot.surfaces import LOG_FLOOR

RESIDUAL_CMAP = "Greys"  # point fill: white on the plane, black when all of the displacement is off it


def plot_embedding(embedding, *, ax=None):
    """Checkpoints of an ``Embedding`` as points coloured by step, one marker and line per run.

    The legend names the runs and gives the picture's trustworthiness (with its ``k``), so a
    t-SNE picture that invents neighbourhoods says so next to a PCA one that keeps them.

    Returns:
        The ``matplotlib.figure.Figure``.
    """
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
    """Several embeddings side by side (``plot_embedding`` each); returns the ``Figure``."""
    embeddings = list(embeddings)
    fig = new_figure(figsize=(6.0 * len(embeddings), 4.8))
    for i, emb in enumerate(embeddings):
        plot_embedding(emb, ax=fig.add_subplot(1, len(embeddings), i + 1))
    return fig


def plot_paths(paths, surface=None, *, ax=None, levels=30, log: bool = False):
    """Paths on the PCA plane over the filled contours of the loss there.

    Each run is a line (its colour in the legend) through its checkpoints' plane coordinates,
    starting at a circle and ending at a square. Each point is filled by its relative residual
    (white: on the plane; black: entirely off it), and points above the trust threshold are
    crossed in red, the threshold given in the legend: there the contour under the point is not
    the loss of the checkpoint.

    Args:
        paths: a ``TrajectoryPaths``.
        surface: the loss over the plane (``x``, ``y``, ``loss`` of shape ``(ny, nx)``), or ``None``
            for the paths alone.
        ax: axes to draw on (default: a new figure).
        levels: contour levels (as matplotlib's).
        log: draw :math:`\\log_{10}` of the loss.

    Returns:
        The ``matplotlib.figure.Figure``.

    Raises:
        ValueError: a surface whose loss is not ``(len(y), len(x))``.
    """
    from matplotlib.colors import Normalize

    fig, ax = new_axes(ax)
    if surface is not None:
        Z = _grid_values(surface, log)
        filled = ax.contourf(surface.x, surface.y, np.ma.masked_invalid(Z), levels=levels, cmap="viridis", alpha=0.9)
        fig.colorbar(filled, ax=ax, label=("log10 " if log else "") + "loss on the plane")
    rel = paths.rel_residual
    norm = Normalize(0.0, max(1.0, float(np.nanmax(rel))))
    dots = None
    for r, run in enumerate(paths.runs):
        index = paths.of_run(run)
        xy = paths.coords[index]
        colour = f"C{(r + 1) % 10}"
        ax.plot(xy[:, 0], xy[:, 1], color=colour, linewidth=1.5, label=run, zorder=2)
        dots = ax.scatter(xy[:, 0], xy[:, 1], c=rel[index], cmap=RESIDUAL_CMAP, norm=norm, s=22, edgecolors=colour,
                          linewidths=1.0, zorder=3)
        ax.plot(*xy[0], marker="o", markersize=10, markerfacecolor="none", markeredgecolor=colour,
                markeredgewidth=2, linestyle="none", zorder=4)
        ax.plot(*xy[-1], marker="s", markersize=10, markerfacecolor="none", markeredgecolor=colour,
                markeredgewidth=2, linestyle="none", zorder=4)
    untrusted = ~paths.trusted
    ax.plot([], [], marker="o", markerfacecolor="none", markeredgecolor="black", linestyle="none", label="start")
    ax.plot([], [], marker="s", markerfacecolor="none", markeredgecolor="black", linestyle="none", label="end")
    ax.plot(paths.coords[untrusted, 0], paths.coords[untrusted, 1], marker="x", color="red", markersize=6,
            markeredgewidth=1.2, linestyle="none", zorder=5, label=f"untrusted: rel. residual > {paths.threshold:g} ({int(untrusted.sum())})")
    fig.colorbar(dots, ax=ax, label="relative residual (off the plane)")
    ax.legend(loc="best", fontsize="small")
    ax.set_xlabel(_pc_label(paths, 0))
    ax.set_ylabel(_pc_label(paths, 1))
    ax.set_title("paths on the joint PCA plane" if len(paths.runs) > 1 else "path on its PCA plane", fontsize="medium")
    return fig


def plot_path_losses(paths, *, ax=None, log: bool = False):
    """True loss at each checkpoint (solid) and plane loss at its projection (dashed), a colour per run,
    along training; untrusted checkpoints crossed in red. Where the two curves part, the contour plot
    misreports the path's loss.

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    fig, ax = new_axes(ax)
    x_all, what = _progress(paths.checkpoints)
    for r, run in enumerate(paths.runs):
        index = paths.of_run(run)
        colour = f"C{(r + 1) % 10}"
        ax.plot(x_all[index], paths.true_loss[index], color=colour, marker=".", label=run)
        ax.plot(x_all[index], paths.plane_loss[index], color=colour, linestyle="--")
    bad = ~paths.trusted
    ax.plot([], [], color="black", label="true loss (at the checkpoint)")
    ax.plot([], [], color="black", linestyle="--", label="plane loss (at its projection)")
    ax.plot(x_all[bad], paths.true_loss[bad], marker="x", color="red", markersize=6, linestyle="none",
            label=f"untrusted (rel. residual > {paths.threshold:g})")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(what)
    ax.set_ylabel("loss" + (" (log scale)" if log else ""))
    ax.set_title("loss at the checkpoints vs at their projections on the plane", fontsize="medium")
    ax.legend(loc="best", fontsize="x-small")
    return fig


def plot_dynamics(dynamics):
    """A panel of training dynamics against the step: loss, loss improvement, gradient norm, weight
    norm, parameter change (since the previous record and since init), and the sharpness against
    the stability threshold :math:`2/\\eta` (when recorded). Each kind of record (step, epoch,
    checkpoint) is its own line.

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    fig = new_figure(figsize=(13, 7))
    axes = fig.subplots(2, 3)
    kinds = list(dict.fromkeys(dynamics.kind))
    panels = [
        (axes[0, 0], ("loss",), "loss"),
        (axes[0, 1], ("loss_improvement",), "loss improvement (previous - current)"),
        (axes[0, 2], ("grad_norm",), "gradient norm ‖g‖"),
        (axes[1, 0], ("weight_norm",), "weight norm ‖w‖"),
        (axes[1, 1], ("change_since_previous", "change_since_init"), "parameter change"),
        (axes[1, 2], ("sharpness", "stability_threshold"), "sharpness λmax vs 2/lr"),
    ]
    for ax, columns, title in panels:
        drawn = False
        for kind in kinds:
            part = dynamics.of_kind(kind)
            for j, column in enumerate(columns):
                values = part[column]
                if not np.isfinite(values).any():
                    continue
                style = "--" if column == "stability_threshold" else "-"
                label = f"{column} ({kind})" if len(columns) > 1 or len(kinds) > 1 else None
                ax.plot(part["step"], values, linestyle=style, marker="." if len(values) < 60 else None,
                        color=f"C{kinds.index(kind) * len(columns) + j}", label=label)
                drawn = True
        if not drawn:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes, color="0.5")
        elif ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="x-small", loc="best")
        if columns == ("loss",) and drawn and np.nanmin(dynamics["loss"]) > 0:
            ax.set_yscale("log")
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("step")
    return fig


# -- plotly -----------------------------------------------------------------------------------------


def plotly_paths(paths, surface=None, *, log: bool = False):
    """Interactive version of ``plot_paths``: contours of the plane and each run's path, every point
    with its run, step, epoch, relative residual, true and plane loss on hover; untrusted points
    crossed in red.

    Returns:
        A ``plotly.graph_objects.Figure``.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    if surface is not None:
        Z = _grid_values(surface, log)
        fig.add_trace(go.Contour(x=surface.x, y=surface.y, z=np.where(np.isfinite(Z), Z, np.nan), colorscale="Viridis",
                                 ncontours=30, name="loss", colorbar={"title": {"text": ("log10 " if log else "") + "loss"}}))
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
                             marker={"symbol": "x", "color": "red", "size": 10}))
    fig.update_layout(title={"text": "paths on the PCA plane (hover: residuals and losses)"},
                      xaxis_title=_pc_label(paths, 0), yaxis_title=_pc_label(paths, 1))
    return fig


def plotly_embedding(embedding):
    """Interactive version of ``plot_embedding``: points coloured by step, a trace per run, the
    checkpoint on hover, the trustworthiness in the title.

    Returns:
        A ``plotly.graph_objects.Figure``.
    """
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
