"""Figures of the results that are a few numbers rather than a grid or a path: a set of directions, a
trace estimate, the topology's spread over seeds, a comparison of surfaces, a trajectory's principal
components, a comparison of optimizers, a permutation alignment, the barriers between runs.

Like the other plot modules: a result (or the path of its file) in, a new figure out.
"""

from __future__ import annotations

import numpy as np

from losslens.plot._base import load_as, new_figure


def plot_directions(directions):
    """The norm :math:`\\lVert d_i \\rVert` of each direction (bars) and the cosines
    :math:`\\langle d_i, d_j \\rangle / (\\lVert d_i \\rVert \\lVert d_j \\rVert)` between them (a matrix):
    directions meant to be orthogonal show zeros off the diagonal.

    Args:
        directions: a ``Directions`` (or the path of its file).

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    from losslens.landscape.directions import Directions

    d = load_as(directions, (Directions,), "plot_directions")
    norms = d.vectors.double().norm(dim=1).numpy()
    names = [f"d{i + 1}" for i in range(len(d))]
    fig = new_figure(figsize=(10, 4.2))
    left, right = fig.subplots(1, 2)
    left.bar(names, norms, color="C0")
    left.set(title=f"norms of the {d.kind} directions", ylabel="‖d‖")
    _matrix(fig, right, d.cosine().numpy(), names, "cosine", vmin=-1, vmax=1)
    right.set_title("cosines between the directions")
    return fig


def plot_trace(trace):
    """A trace estimate: the running mean of its Hutchinson samples with :math:`\\pm` one standard error
    :math:`s_k / \\sqrt{k}` (shifted by the exact part of Hutch++, so that it ends at the estimate), or the
    estimate with its error bar when the samples are not recorded.

    Args:
        trace: a ``TraceEstimate`` (or the path of its file).

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    from losslens.curvature.trace_estimation import TraceEstimate

    t = load_as(trace, (TraceEstimate,), "plot_trace")
    samples = np.asarray(t.meta.get("samples", ()), dtype=np.float64)
    fig = new_figure(figsize=(6.8, 4.2))
    ax = fig.add_subplot()
    if len(samples) > 1:
        k = np.arange(1, len(samples) + 1)
        mean = np.cumsum(samples) / k + (t.value - samples.mean())
        std = np.array([samples[:n].std(ddof=1) if n > 1 else np.nan for n in k])
        ax.plot(k, mean, color="C0", label="running estimate")
        ax.fill_between(k, mean - std / np.sqrt(k), mean + std / np.sqrt(k), color="C0", alpha=0.25,
                        label="± one standard error")
        ax.set_xlabel("Hutchinson samples")
        ax.legend(fontsize="small")
    else:
        ax.errorbar([0], [t.value], yerr=[t.stderr if np.isfinite(t.stderr) else 0.0], fmt="o", capsize=6)
        ax.set_xticks([])
    ax.axhline(t.value, color="0.4", linestyle=":")
    ax.set(ylabel="tr H", title=f"trace {t.value:.4g} ± {t.stderr:.2g} ({t.method}, {t.n_matvec} products)")
    return fig


def plot_stability(stability):
    """The topology's headline figures of each surface (one panel per figure, the mean dashed) and the
    bottleneck distances between their :math:`H_0` diagrams.

    Args:
        stability: a ``TopologyStability`` (or the path of its file).

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    from losslens.landscape.topology_stability import TopologyStability

    s = load_as(stability, (TopologyStability,), "plot_stability")
    names = list(s.names)
    fig = new_figure(figsize=(14, 6))
    grid = fig.add_gridspec(2, (len(s.figures) + 1) // 2 + 1)
    for i, (figure, values) in enumerate(s.figures.items()):
        ax = fig.add_subplot(grid[i % 2, i // 2])
        ax.bar(names, values, color=f"C{i}")
        ax.axhline(np.nanmean(values), color="0.3", linestyle="--")
        ax.set_title(figure.replace("_", " "), fontsize="medium")
        ax.tick_params(axis="x", labelrotation=45, labelsize="small")
    ax = fig.add_subplot(grid[:, -1])
    _matrix(fig, ax, s.bottleneck_h0, names, "bottleneck H0")
    ax.set_title("H0 bottleneck distances")
    return fig


def plot_surface_metrics(comparison):
    """The table of a ``SurfaceComparison`` as bars: one panel per figure (range, basins, loops,
    roughness, sharpness ...), one bar per surface; a figure none of them has is left out.

    Args:
        comparison: a ``SurfaceComparison`` (or the path of its file).

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    from losslens.landscape.surface_comparison import TABLE_COLUMNS, SurfaceComparison

    c = load_as(comparison, (SurfaceComparison,), "plot_surface_metrics")
    names = list(c.names)
    columns = [col for col in TABLE_COLUMNS if col not in ("name", "shape")
               and any(isinstance(r.get(col), (int, float)) for r in c.rows)]
    fig = new_figure(figsize=(3.2 * max(len(columns), 1) + 1, 4))
    for i, column in enumerate(columns):
        ax = fig.add_subplot(1, len(columns), i + 1)
        ax.bar(names, [np.nan if r.get(column) is None else r[column] for r in c.rows], color=f"C{i}")
        ax.set_title(column.replace("_", " "), fontsize="medium")
        ax.tick_params(axis="x", labelrotation=45, labelsize="small")
    return fig


def plotly_distances(comparison, column: str = "bottleneck_h0"):
    """The symmetric matrix of one distance of a ``SurfaceComparison`` between its surfaces, as a heatmap.

    Args:
        comparison: a ``SurfaceComparison`` (or the path of its file).
        column: the distance drawn, one of its ``DISTANCE_COLUMNS`` (default: the H0 bottleneck distance).

    Returns:
        A ``plotly.graph_objects.Figure``.
    """
    import plotly.graph_objects as go

    from losslens.landscape.surface_comparison import SurfaceComparison

    comparison = load_as(comparison, (SurfaceComparison,), "plotly_distances")
    names = list(comparison.names)
    D = np.zeros((len(names), len(names)))
    for d in comparison.distances:
        i, j = names.index(d["a"]), names.index(d["b"])
        D[i, j] = D[j, i] = np.nan if d[column] is None else d[column]
    text = [[f"{v:.3g}" for v in row] for row in D]
    fig = go.Figure(go.Heatmap(z=D, x=names, y=names, colorscale="Viridis", text=text, texttemplate="%{text}",
                               colorbar={"title": {"text": column}}))
    what = column.replace("_", " ")
    fig.update_layout(title={"text": f"{what} distance between the planes' persistence diagrams"},
                      yaxis={"autorange": "reversed"})
    return fig


def plot_explained_variance(pca):
    """The share of the checkpoints' variance on each principal component (bars) and its running sum
    (line): how much of the trajectory a plane of the first two components shows.

    Args:
        pca: a ``TrajectoryPCA`` (or the path of its file).

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    from losslens.trajectories.pca import TrajectoryPCA

    p = load_as(pca, (TrajectoryPCA,), "plot_explained_variance")
    ratio = np.asarray(p.explained_variance_ratio, dtype=np.float64)
    k = np.arange(1, len(ratio) + 1)
    fig = new_figure(figsize=(6.8, 4.2))
    ax = fig.add_subplot()
    ax.bar(k, ratio, color="C0", label="per component")
    ax.plot(k, np.cumsum(ratio), color="C1", marker="o", label="cumulative")
    ax.set(xlabel="principal component", ylabel="share of the variance", xticks=k, ylim=(0, 1.05),
           title=f"trajectory PCA of {len(p.checkpoints)} checkpoints")
    ax.legend(fontsize="small")
    return fig


def plot_final_losses(comparison):
    """The final train and test loss of each optimizer of an ``OptimizerComparison`` (grouped bars).

    Args:
        comparison: an ``OptimizerComparison`` (or the path of its file).

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    from losslens.trajectories.optimizer_comparison import OptimizerComparison

    c = load_as(comparison, (OptimizerComparison,), "plot_final_losses")
    names = [row["optimizer"] for row in c.table]
    at = np.arange(len(names))
    fig = new_figure(figsize=(max(6.8, 0.9 * len(names) + 2), 4.2))
    ax = fig.add_subplot()
    for i, column in enumerate(("final_train_loss", "final_test_loss")):
        values = [np.nan if row.get(column) is None else row[column] for row in c.table]
        ax.bar(at + (i - 0.5) * 0.4, values, width=0.4, label=column.replace("_", " "))
    ax.set_xticks(at, names, rotation=30)
    ax.set(ylabel="loss", title="final losses of the optimizers")
    ax.legend(fontsize="small")
    return fig


def plot_alignment(alignment):
    """The matching's objective per iteration of a permutation ``Alignment`` (weight matching: before the
    first sweep, then after each; activation matching: its one value), titled with the output change.

    Args:
        alignment: an ``Alignment`` (or the path of its file).

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    from losslens.connectivity.alignment import Alignment

    a = load_as(alignment, (Alignment,), "plot_alignment")
    fig = new_figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot(np.arange(len(a.objective)), a.objective, "o-", color="C0")
    change = "" if a.output_change is None else f"; B's outputs changed by {a.output_change:.2g}"
    ax.set(xlabel="iteration", ylabel="objective", title=f"{a.method} matching{change}")
    return fig


def plot_barrier_matrix(matrix):
    """Heat maps of the line barriers between every pair of runs: raw, and after weight matching when computed.

    Args:
        matrix: a ``BarrierMatrix`` (or the path of its file).

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    from losslens.connectivity.barrier_matrix import BarrierMatrix

    m = load_as(matrix, (BarrierMatrix,), "plot_barrier_matrix")
    shown = m.matrices()
    values = np.stack(list(shown.values()))
    low, top = float(np.nanmin(values)), float(np.nanmax(values))
    fig = new_figure(figsize=(5.5 * len(shown), 4.6))
    for ax, (how, matrix_) in zip(np.atleast_1d(fig.subplots(1, len(shown))), shown.items()):
        _matrix(fig, ax, matrix_, list(m.labels), m.barrier, vmin=min(low, 0.0), vmax=max(top, 1e-12))
        ax.set_title("line" if how == "none" else "line after weight matching")
    return fig


def _matrix(fig, ax, values: np.ndarray, names: list[str], label: str, **limits) -> None:
    """A square matrix on ``ax``, each cell written in it, with a colour bar titled ``label``."""
    image = ax.imshow(values, cmap="viridis", **limits)
    ax.set_xticks(range(len(names)), names, rotation=45)
    ax.set_yticks(range(len(names)), names)
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize="small",
                color="k" if image.norm(v) > 0.5 else "w")  # dark on the light end of viridis
    fig.colorbar(image, ax=ax, label=label)
