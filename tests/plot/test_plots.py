"""Tests of losslens.plot: every function returns a figure, the picture's orientation is the data's,
files load by kind, and write_html embeds plotly.js once."""

import numpy as np
import pytest
import torch
from matplotlib.contour import QuadContourSet
from matplotlib.figure import Figure

from losslens.errors import LosslensError
from losslens.landscape.directions import Directions
from losslens.landscape.hessian import Eigenpairs
from losslens.landscape.interpolation import Interpolation
from losslens.landscape.spectrum import Spectrum
from losslens.landscape.surface import Surface
from losslens.plot import (
    load_result,
    plot_1d,
    plot_3d,
    plot_contour,
    plot_density,
    plot_eigenvalues,
    plotly_figure,
    write_html,
)

X_MIN, Y_MIN = 0.5, -1.0  # where the test paraboloid has its minimum
META = {"loss": "cross_entropy", "metrics": ["accuracy"], "model": "mlp", "data": {"name": "digits", "split": "test"},
        "n_samples": 100}


def paraboloid(x, y) -> Surface:
    """A 2D surface ``L = (x - 0.5)^2 + 3 (y + 1)^2 + 0.1``, with ``loss[i, j]`` at ``(x[i], y[j])``."""
    X, Y = np.meshgrid(x, y, indexing="ij")
    loss = (X - X_MIN) ** 2 + 3 * (Y - Y_MIN) ** 2 + 0.1
    dirs = Directions(torch.randn(2, 8, generator=torch.Generator().manual_seed(0)), "random",
                      {"normalization": "filter", "seed": 0})
    return Surface(np.asarray(x, float), np.asarray(y, float), loss, {"accuracy": np.exp(-loss)}, dirs, dict(META))


@pytest.fixture
def plane():
    return paraboloid(np.linspace(-1, 2, 7), np.linspace(-2, 2, 5))  # nx=7 != ny=5


@pytest.fixture
def line():
    x = np.linspace(-1, 1, 9)
    dirs = Directions(torch.ones(1, 8), "random", {"normalization": "layer"})
    return Surface(x, None, x**2 + 0.2, {"accuracy": 1 - x**2 / 2}, dirs, dict(META))


@pytest.fixture
def interpolation():
    t = np.linspace(-0.5, 1.5, 21)
    loss = 1.0 + 0.5 * (t >= 1) + np.where((t > 0) & (t < 1), np.sin(np.pi * t), 0.0)  # barrier 2 - 1.5
    return Interpolation(t, loss, {"accuracy": np.full(21, 0.5)},
                         {"endpoints": ["a.safetensors", "b.safetensors"], "evaluator": {"loss": "mse"}})


def contour_set(fig: Figure) -> QuadContourSet:
    return next(c for c in fig.axes[0].collections if isinstance(c, QuadContourSet))


@pytest.mark.parametrize("x, y", [(np.linspace(-1, 2, 7), np.linspace(-2, 2, 5)),
                                  (np.linspace(-1, 1.5, 6), np.linspace(-2, 3, 6))])
def test_contour_minimum_lands_at_its_coordinates(x, y):
    surface = paraboloid(x, y)
    fig = plot_contour(surface, filled=True, levels=8)
    assert isinstance(fig, Figure)
    lowest = contour_set(fig).get_paths()[0]  # the band of the lowest level
    assert lowest.contains_point((X_MIN, Y_MIN))
    assert not lowest.contains_point((Y_MIN, X_MIN))  # where a transposed picture would put it
    labels = (fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel())
    assert labels == ("direction 1: random, filter-normalized", "direction 2: random, filter-normalized")


def test_contour_lines_log_scale_and_metrics(plane):
    fig = plot_contour(plane, levels=5, log=True)
    cs = contour_set(fig)
    assert -1.5 <= cs.levels.min() and cs.levels.max() <= 2  # log10 of losses in [0.1, 29.35]
    assert fig.axes[1].get_ylabel() == "log10 cross_entropy loss"  # the colour bar
    plot_contour(plane, metric="accuracy", filled=True)
    with pytest.raises(ValueError, match="unknown metric 'banana'.*valid: loss, accuracy"):
        plot_contour(plane, metric="banana")


def test_log_scale_clips_a_zero_loss(plane):
    zero = Surface(plane.x, plane.y, plane.loss - plane.loss.min(), {}, plane.directions, plane.meta)
    cs = contour_set(plot_contour(zero, filled=True, log=True))
    assert np.isfinite(cs.levels).all() and cs.levels.min() >= -12 - 1e-9


def test_3d_surface(plane):
    fig = plot_3d(plane, log=True)
    assert isinstance(fig, Figure) and fig.axes[0].name == "3d"
    with pytest.raises(ValueError, match="3D axes"):
        plot_3d(plane, ax=Figure().add_subplot())


def test_plots_draw_on_a_given_ax(plane):
    fig = Figure()
    ax1, ax2 = fig.subplots(1, 2)
    assert plot_contour(plane, ax=ax1) is fig and plot_contour(plane, ax=ax2, filled=True) is fig


def test_1d_surface_with_accuracy_on_a_twin_axis(line):
    fig = plot_1d(line)
    loss_ax, twin = fig.axes
    np.testing.assert_array_equal(loss_ax.lines[0].get_ydata(), line.loss)
    np.testing.assert_array_equal(twin.lines[0].get_ydata(), line.metrics["accuracy"])
    assert twin.get_ylabel() == "accuracy"
    assert len(plot_1d(line, metrics=False).axes) == 1
    assert plot_1d(line, log=True).axes[0].get_yscale() == "log"


def test_interpolation_marks_endpoints_and_barrier(interpolation):
    fig = plot_1d(interpolation)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"barrier {interpolation.barrier:.4g}" in labels and interpolation.barrier == pytest.approx(0.5)
    barrier = next(l for l in ax.lines if l.get_label().startswith("barrier"))
    np.testing.assert_allclose(barrier.get_xdata(), [0.5, 0.5])
    np.testing.assert_allclose(barrier.get_ydata(), [1.5, 2.0])  # from max(L(0), L(1)) up to the peak
    verticals = [l.get_xdata()[0] for l in ax.lines if l.get_linestyle() == ":"]
    assert verticals == [0.0, 1.0]
    assert "a.safetensors" in ax.get_xlabel()


def test_wrong_kinds_of_results_are_refused(plane, line):
    with pytest.raises(ValueError, match="2D surface, but this one is 1D"):
        plot_contour(line)
    with pytest.raises(ValueError, match="this surface is 2D"):
        plot_1d(plane)
    with pytest.raises(ValueError, match="plot_density draws a Spectrum"):
        plot_density(plane)


def test_plots_from_saved_files(tmp_path, plane, line, interpolation):
    plane.save(tmp_path / "plane.h5")
    line.save(tmp_path / "line.h5")
    interpolation.save(tmp_path / "interp.h5")
    assert isinstance(plot_contour(str(tmp_path / "plane.h5")), Figure)
    assert isinstance(plot_3d(tmp_path / "plane.h5"), Figure)
    assert isinstance(plot_1d(tmp_path / "line.h5"), Figure)
    assert isinstance(plot_1d(tmp_path / "interp.h5"), Figure)
    assert isinstance(load_result(tmp_path / "interp.h5"), Interpolation)
    loaded = load_result(tmp_path / "plane.h5")
    np.testing.assert_array_equal(loaded.loss, plane.loss)
    Directions(torch.ones(1, 3), "random").save(tmp_path / "dirs.h5")
    with pytest.raises(LosslensError, match="directions result, which is not drawn"):
        load_result(tmp_path / "dirs.h5")
    with pytest.raises(LosslensError, match="no such file"):
        plot_contour(tmp_path / "missing.h5")


def test_plotly_plane_is_transposed_for_plotly(plane):
    fig = plotly_figure(plane)
    surface, contour = fig.data[0], fig.data[1]
    assert surface.type == "surface" and contour.type == "contour"
    z = np.asarray(surface.z)
    assert z.shape == (len(plane.y), len(plane.x))  # plotly's rows run along y
    np.testing.assert_array_equal(z, plane.loss.T)
    np.testing.assert_array_equal(np.asarray(contour.z), plane.loss.T)
    assert np.argmin(z) == np.ravel_multi_index((list(plane.y).index(Y_MIN), list(plane.x).index(X_MIN)), z.shape)


def test_plotly_lines(line, interpolation):
    fig = plotly_figure(line, log=True)
    assert [d.name for d in fig.data] == ["loss", "accuracy"]
    assert fig.layout.yaxis.type == "log"
    fig = plotly_figure(interpolation)
    assert "barrier 0.5" in fig.layout.title.text


def test_write_html_embeds_plotly_js_once(tmp_path, plane, interpolation):
    one = write_html(plotly_figure(plane), tmp_path / "one.html")
    two = write_html([plotly_figure(plane), plotly_figure(interpolation)], tmp_path / "sub" / "two.html",
                     title="two <figures>")
    page = two.read_text()
    assert page.count("plotly.js v") == 1 and one.read_text().count("plotly.js v") == 1
    assert page.count("Plotly.newPlot(") == 2
    assert "<title>two &lt;figures&gt;</title>" in page
    assert two.stat().st_size < 2 * one.stat().st_size
    with pytest.raises(ValueError, match="at least one figure"):
        write_html([], tmp_path / "none.html")


def test_density_and_eigenvalue_plots(tmp_path):
    grid = np.linspace(-1, 11, 200)
    nodes, weights = np.array([[0.0, 1.0, 10.0]]), np.array([[0.8, 0.15, 0.05]])
    density = sum(w * np.exp(-0.5 * ((grid - n) / 0.2) ** 2) / (0.2 * np.sqrt(2 * np.pi))
                  for n, w in zip(nodes[0], weights[0]))
    spectrum = Spectrum(grid, density, nodes, weights, 0.2, {"n_vectors": 1, "n_lanczos": 3, "n_params": 3})
    fig = plot_density(spectrum)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and ax.lines[0].get_ydata().min() > 0
    assert ax.lines[1].get_xdata()[0] == 10.0  # lambda_max
    assert plot_density(spectrum, log=False).axes[0].get_yscale() == "linear"
    spectrum.save(tmp_path / "spectrum.h5")
    assert isinstance(plot_density(tmp_path / "spectrum.h5"), Figure)

    pairs = Eigenpairs(torch.tensor([5.0, 2.0]), torch.eye(2, 4, dtype=torch.float64), "largest", 1e-6, 10,
                       {"backend": "lanczos", "residual_norms": [1e-7, 2e-7]})
    fig = plot_eigenvalues(pairs)
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == [5.0, 2.0]
