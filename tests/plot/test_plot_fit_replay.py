"""Figures of fits and replays: every optimizer drawn and labelled (no hard-coded labels), the stability
flag visible, the residual map in the data's orientation, the animation's frames."""

from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.figure import Figure

from losslens.landscape.fit import fit_surface
from losslens.plot.fit import plot_fit, plot_residuals
from losslens.plot.interactive import write_html
from losslens.plot.replay import animate_paths, legend_entries, plot_convergence, plot_paths
from losslens.trajectories.replay import OptimizerSpec, replay

X = np.linspace(-2.0, 2.5, 23)
Y = np.linspace(-1.5, 2.0, 17)


@pytest.fixture(scope="module")
def four():
    """Four optimizers on the quadratic, one above the stability limit (lr 0.25 > 2/10)."""
    return replay("quadratic", ["sgd", "momentum", "adam", OptimizerSpec("rmsprop", 0.25, label="fourth")],
                  lr=0.05, steps=30)


def test_paths_draw_every_optimizer_with_its_label(four):
    fig = plot_paths(four)
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
    assert len(plot_paths(r).axes[0].get_legend().get_texts()) == len(names) + 2  # and start, minimum
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
    plot_paths(r).canvas.draw()


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
