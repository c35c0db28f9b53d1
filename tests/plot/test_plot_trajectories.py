"""Tests of losslens/plot/trajectories.py: figures from result objects, the surface's (ny, nx) orientation,
the trust flags and scores shown."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from losslens.plot.trajectories import (
    plot_dynamics, plot_embedding, plot_embeddings, plot_path_losses, plot_trajectory_paths, plotly_embedding,
    plotly_paths,
)
from losslens.trajectories.dynamics import DYNAMICS_COLUMNS, Dynamics
from losslens.trajectories.embeddings import Embedding
from losslens.trajectories.paths import TrajectoryPaths
from losslens.trajectories.series import Checkpoint


def _checkpoints():
    return tuple(Checkpoint(run, i, 10 * i, float(i), Path(f"{run}/step_{10 * i}.safetensors"))
                 for run in ("sgd", "adam") for i in range(4))


@pytest.fixture
def paths():
    g = np.random.default_rng(0)
    coords = g.normal(size=(8, 2))
    distance = np.linalg.norm(coords, axis=1) + 0.5
    residual = distance * np.array([0, 0.05, 0.2, 0.5, 0, 0.01, 0.02, 0.3])  # rel. residuals; 3 above 0.1
    return TrajectoryPaths(_checkpoints(), coords, residual, distance, np.ones(8), np.arange(8.0), g.random(8) + 1,
                           g.random(8) + 1, meta={"threshold": 0.1, "pca": {"explained_variance_ratio": [0.8, 0.15]}})


@pytest.fixture
def surface():
    """loss[iy, ix] = x[ix] on a non-square grid: filled contour bands must be vertical strips."""
    x, y = np.linspace(-3, 3, 7), np.linspace(-2, 2, 4)
    return SimpleNamespace(x=x, y=y, loss=np.broadcast_to(x, (4, 7)).copy(), meta={})


def test_paths_over_the_contour_keep_the_surface_orientation(paths, surface):
    fig = plot_trajectory_paths(paths, surface, levels=[-3, -1, 1, 3])
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    filled = ax.collections[0]
    for low, high, polygons in zip(filled.levels, filled.levels[1:], filled.allsegs):
        xs = np.concatenate([p[:, 0] for p in polygons])
        assert xs.min() >= low - 1e-9 and xs.max() <= high + 1e-9  # loss = x: bands of x, not of y
    labels = ax.get_legend_handles_labels()[1]
    assert {"sgd", "adam", "start", "end"} <= set(labels)
    assert "open: rel. residual > 0.1 (3 of 8)" in labels
    open_points = np.concatenate([line.get_xdata() for line in ax.lines if line.get_gid() == "untrusted"])
    np.testing.assert_array_equal(np.sort(open_points), np.sort(paths.coords[~paths.trusted, 0]))
    with pytest.raises(ValueError, match=r"\(ny, nx\) = \(4, 7\).*found \(7, 4\)"):
        plot_trajectory_paths(paths, SimpleNamespace(x=surface.x, y=surface.y, loss=surface.loss.T, meta={}))
    assert isinstance(plot_trajectory_paths(paths), Figure)  # without a surface


def test_path_losses_and_plotly_paths(paths, surface):
    fig = plot_path_losses(paths)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert labels[:2] == ["sgd", "adam"] and "plane loss (at its projection)" in labels
    figure = plotly_paths(paths, surface)
    assert figure.data[0].type == "contour" and np.asarray(figure.data[0].z).shape == (4, 7)
    assert [t.name for t in figure.data[1:3]] == ["sgd", "adam"]
    assert "rel. residual 0.200 (untrusted)" in figure.data[1].text[2]
    assert len(figure.data[3].x) == 3


def test_embedding_scatter_shows_runs_and_trustworthiness():
    emb = Embedding(np.random.default_rng(1).normal(size=(8, 2)), "tsne", _checkpoints(), 0.56, {"n_neighbors": 3})
    fig = plot_embedding(emb)
    legend = fig.axes[0].get_legend()
    assert legend.get_title().get_text() == "trustworthiness 0.56 (k=3)"
    assert [t.get_text() for t in legend.get_texts()] == ["sgd", "adam"]
    assert "t-SNE" in fig.axes[0].get_title()
    both = plot_embeddings([emb, Embedding(emb.coords, "pca", emb.checkpoints, 1.0, {"n_neighbors": 3})])
    assert len([a for a in both.axes if a.get_label() != "<colorbar>"]) == 2
    figure = plotly_embedding(emb)
    assert "trustworthiness 0.56" in figure.layout.title.text and len(figure.data) == 2


def test_dynamics_panel_never_draws_the_limit_alone():
    n = 5
    values = {c: np.linspace(1, 2, n) for c in DYNAMICS_COLUMNS[1:]}
    values["sharpness"] = np.full(n, np.nan)
    meta = {"sharpness_note": "left out (sharpness=False, --no-sharpness)",
            "stability": {"value": 38.0, "formula": "2(1+β)/lr, momentum β=0.9", "of": "hessian", "note": ""}}
    fig = plot_dynamics(Dynamics(("step",) * n, values, meta))
    assert len(fig.axes) == 6 and fig.axes[5].get_lines() == []  # no lone flat line of the limit
    (text,) = [t.get_text().replace("\n", " ") for t in fig.axes[5].texts]
    assert text == "λmax not computed: left out (sharpness=False, --no-sharpness)"
    values["sharpness"] = np.linspace(3, 4, n)
    values["stability_threshold"] = np.full(n, 38.0)
    ax = plot_dynamics(Dynamics(("step",) * n, values, meta)).axes[5]
    limit = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(ax.get_lines()) == 2 and list(limit[0].get_ydata()) == [38.0] * n
    assert "edge of stability 2(1+β)/lr, momentum β=0.9" in limit[0].get_label()


def _bbox(artist, fig):
    return artist.get_window_extent(fig.canvas.get_renderer())


def test_paths_legend_is_outside_the_plot_and_the_colour_bar_and_every_run_looks_different(paths, surface):
    """Two runs on exactly the same path (adam under adamw) both show: colour, line style and marker differ."""
    same = TrajectoryPaths(paths.checkpoints[:4] + tuple(Checkpoint("adamw", c.index, c.step, c.epoch, c.path)
                                                        for c in paths.checkpoints[:4]),
                           np.vstack([paths.coords[:4]] * 2), np.concatenate([paths.residual[:4]] * 2),
                           np.concatenate([paths.distance[:4]] * 2), np.ones(8), np.arange(8.0), np.ones(8), np.ones(8),
                           meta=paths.meta)
    fig = plot_trajectory_paths(same, surface)
    FigureCanvasAgg(fig).draw()
    ax, bar = fig.axes[0], fig.axes[1]
    legend = _bbox(ax.get_legend(), fig)
    assert not legend.overlaps(_bbox(bar.yaxis.label, fig))
    assert not legend.overlaps(_bbox(ax.patch, fig))  # not over the paths either
    runs = {line.get_label(): line for line in ax.lines if line.get_label() in ("sgd", "adamw")}
    styles = [(line.get_color(), line.get_linestyle(), line.get_marker()) for line in runs.values()]
    assert len(styles) == 2 and all(a != b for a, b in zip(*styles))
    assert bar.get_ylabel() == "loss on the plane"


@pytest.mark.parametrize("name", ["plot_trajectory_paths", "plot_path_losses", "plot_dynamics", "plot_embedding",
                                  "plotly_paths", "plotly_embedding"])
def test_trajectory_plots_name_what_they_draw(name):
    import losslens.plot

    with pytest.raises(ValueError, match=f"{name} draws a .* not a NoneType"):
        getattr(losslens.plot, name)(None)
