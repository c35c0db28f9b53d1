"""Figures of fits and replays: every optimizer drawn and labelled (no hard-coded labels), the stability
flag visible, the residual map in the data's orientation, the animation's frames."""

from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from losslens.landscape.fit import fit_surface
from losslens.plot.fit import plot_fit, plot_residuals
from losslens.plot.interactive import write_html
from losslens.plot.replay import animate_paths, legend_entries, plot_convergence, plot_replay_paths
from losslens.trajectories.replay import OptimizerSpec, replay

X = np.linspace(-2.0, 2.5, 23)
Y = np.linspace(-1.5, 2.0, 17)


@pytest.fixture(scope="module")
def four():
    """Four optimizers on the quadratic, one above the stability limit (lr 0.25 > 2/10)."""
    return replay("quadratic", ["sgd", "momentum", "adam", OptimizerSpec("rmsprop", 0.25, label="fourth")],
                  lr=0.05, steps=30)


def test_paths_draw_every_optimizer_with_its_label(four):
    fig = plot_replay_paths(four)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    for label in four.labels:
        assert sum(t.startswith(label) for t in texts) == 1, (label, texts)
    assert "fourth (lr 0.25), lr > 2/λmax at the start and minimum" in texts
    drawn = {line.get_label(): line for line in ax.lines}
    for label, entry in zip(four.labels, legend_entries(four)):
        np.testing.assert_array_equal(drawn[entry].get_xdata(), four.path(label)["x"])
    assert "2/λmax = 0.2 at the start" in ax.get_title()


def test_more_optimizers_than_colours_still_all_show():
    names = ["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad", "nadam", "radam", "adamax", "asgd"]
    r = replay("quadratic", names, lr=0.01, steps=3)
    assert len(plot_replay_paths(r).axes[0].get_legend().get_texts()) == len(names) + 2  # and start, minimum
    assert len(plot_convergence(r).axes[0].get_legend().get_texts()) == len(names)


def test_convergence_curves_are_log_when_positive(four):
    ax = plot_convergence(four).axes[0]
    assert ax.get_yscale() == "log" and len(ax.lines) == 4
    np.testing.assert_array_equal(ax.lines[2].get_ydata(), four.path("adam")["loss"])
    negative = replay("gaussian-mixture", ["sgd"], lr=0.1, steps=5)  # losses below zero
    assert plot_convergence(negative).axes[0].get_yscale() == "linear"


def test_diverged_path_does_not_break_the_pictures():
    r = replay("quadratic", [OptimizerSpec("sgd", 1e3, label="wild"), "adam"], lr=0.05, steps=150)
    assert r.status[0] == "diverged"
    fig = plot_convergence(r)
    fig.canvas.draw()  # renders: no overflow from the diverged losses
    assert "wild (lr 1000), diverged at step" in fig.axes[0].get_legend().get_texts()[0].get_text()
    plot_replay_paths(r).canvas.draw()


def test_animation_has_a_frame_per_step_and_a_play_button(four, tmp_path):
    fig = animate_paths(four)
    assert len(fig.frames) == 31 and fig.frames[-1].name == "30"
    assert fig.layout.updatemenus[0].buttons[0].label == "play"
    names = [t.name for t in fig.data]
    for entry in legend_entries(four):
        assert entry in names
    np.testing.assert_array_equal(fig.frames[-1].data[0].x, [four.path(label)["x"][-1] for label in four.labels])
    np.testing.assert_array_equal(fig.frames[3].data[0].y, [four.path(label)["y"][3] for label in four.labels])
    assert len(animate_paths(replay("quadratic", ["sgd"], lr=0.05, steps=500), max_frames=50).frames) == 50
    path = write_html(fig, tmp_path / "replay.html")
    assert path.read_text().count("Plotly.newPlot") == 1


def test_fit_figures_in_the_data_orientation():
    Xg, Yg = np.meshgrid(X, Y)
    loss = 2 - np.exp(-((Xg - 0.7) ** 2 / 0.5 + (Yg + 0.4) ** 2 / 0.3)) + 0.01 * np.sin(7 * Xg)
    loss[0, 0] = np.nan
    fit = fit_surface(SimpleNamespace(x=X, y=Y, loss=loss, meta={}), "gaussian")
    assert isinstance(plot_fit(fit), Figure)
    fig = plot_residuals(fit)
    mesh = fig.axes[0].collections[0]
    np.testing.assert_allclose(np.ma.filled(mesh.get_array(), np.nan).reshape(len(Y), len(X)), fit.residuals)
    assert "1 points excluded" in fig.axes[0].get_title() and "R²" in fig.axes[0].get_title()


def test_fit_figures_of_a_line():
    x = np.linspace(-1, 1, 21)
    fit = fit_surface(SimpleNamespace(x=x, y=None, loss=1 + x**2, meta={}), "quadratic")
    ax = plot_fit(fit).axes[0]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), 1 + x**2, atol=1e-10)
    assert isinstance(plot_residuals(fit), Figure)
    with pytest.raises(ValueError, match="draws a SurfaceFit"):
        plot_fit("fit.h5")


def test_replay_axes_are_named_after_the_plane_and_the_page_has_a_loss_scale():
    g = np.random.default_rng(0)
    Xg, Yg = np.meshgrid(X, Y)
    data = 3.0 - 2.0 * np.exp(-((Xg - 0.3) ** 2 / 1.2 + (Yg - 0.2) ** 2 / 0.8)) + 1e-3 * g.normal(size=Xg.shape)
    surface = SimpleNamespace(x=X, y=Y, loss=data, meta={"directions_kind": "hessian"})
    r = replay(fit_surface(surface, "gaussian"), ["sgd", "adam"], lr=0.05, steps=10)
    ax = plot_replay_paths(r).axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("direction 1 (α, hessian)", "direction 2 (β, hessian)")
    page = animate_paths(r)
    assert (page.layout.xaxis.title.text, page.layout.yaxis.title.text) == (ax.get_xlabel(), ax.get_ylabel())
    scales = [t for t in page.data if t.marker is not None and t.marker.showscale]
    assert len(scales) == 1 and scales[0].marker.colorbar.title.text == "fitted loss"  # a fit's values
    lo, hi = scales[0].marker.cmin, scales[0].marker.cmax
    assert lo == pytest.approx(data.min(), abs=0.2) and hi == pytest.approx(data.max(), abs=0.2)
    function = plot_replay_paths(replay("rosenbrock", ["adam"], lr=0.01, steps=3)).axes[0]
    assert (function.get_xlabel(), function.get_ylabel()) == ("x", "y")  # a test function's own variables


def test_the_minimum_is_drawn_large_and_on_top(four):
    ax = plot_replay_paths(four).axes[0]
    star = next(line for line in ax.lines if line.get_label() == "minimum")
    assert star.get_markersize() >= 16 and star.get_markeredgecolor() == "black"
    assert star.get_zorder() > max(line.get_zorder() for line in ax.lines if line is not star)


def test_log_axes_label_readable_ticks_only():
    r = replay("quadratic", ["sgd"], lr=0.01, steps=40)  # the loss spans a few decades
    fig = plot_convergence(r)
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    major = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert len(major) >= 2
    values = [float(t) for t in major]
    mantissas = {round(v / 10 ** np.floor(np.log10(v) + 1e-9), 6) for v in values}
    assert mantissas <= {1.0, 2.0, 5.0}, major
    assert not [t.get_text() for t in ax.get_yticklabels(minor=True) if t.get_text()]
