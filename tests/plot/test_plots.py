"""Tests of losslens.plot: every function returns a figure, the picture's orientation is the data's,
titles carry the provenance, levels show the basin, files load by kind, write_html embeds plotly.js once."""

import numpy as np
import pytest
import torch
from matplotlib.contour import QuadContourSet
from matplotlib.figure import Figure

from losslens.curvature.hessian import Eigenpairs
from losslens.curvature.spectrum import Spectrum
from losslens.errors import LosslensError
from losslens.landscape.directions import Directions, between
from losslens.connectivity.barriers import DEFINITIONS, line_barriers
from losslens.landscape.surface import Surface
from losslens.plot import (
    plot_1d, plot_3d, plot_contour, plot_density, plot_eigenvalues, plotly_figure, render, write_html,
)
from losslens.results import load_result

X_MIN, Y_MIN = 0.5, -1.0  # where the test paraboloid has its minimum
META = {"loss": "cross_entropy", "metrics": ["accuracy"], "bn": "eval",
        "model": {"name": "mlp", "class": "torch.nn.Sequential"},
        "data": {"name": "digits", "split": "train", "n_samples": 100, "subset": None},
        "checkpoint": {"label": "adam/step_000220.safetensors", "step": 220, "epoch": 10.0},
        "directions_kind": "random"}


def paraboloid(x, y) -> Surface:
    """``L = (x - 0.5)^2 + 3 (y + 1)^2 + 0.1`` as a ``(ny, nx)`` surface."""
    X, Y = np.meshgrid(x, y)
    loss = (X - X_MIN) ** 2 + 3 * (Y - Y_MIN) ** 2 + 0.1
    dirs = Directions(torch.randn(2, 8, generator=torch.Generator().manual_seed(0)), "random",
                      {"normalization": "filter", "seed": 0})
    return Surface(x, y, {"train": {"loss": loss, "accuracy": np.exp(-loss)}}, dirs, dict(META))


@pytest.fixture
def plane():
    return paraboloid(np.linspace(-1, 2, 7), np.linspace(-2, 2, 5))  # nx=7 != ny=5


@pytest.fixture
def line():
    x = np.linspace(-1, 1, 9)
    dirs = Directions(torch.ones(1, 8), "random", {"normalization": "layer"})
    return Surface(x, None, {"train": {"loss": x**2 + 0.2, "accuracy": 1 - x**2 / 2}}, dirs, dict(META))


@pytest.fixture
def segment():
    """A line between two checkpoints with a barrier_max of 0.5 (the peak 2 at t = 1/2 above L(1) = 1.5)."""
    t = np.linspace(-0.5, 1.5, 21)
    loss = 1.0 + 0.5 * (t >= 1) + np.where((t > 0) & (t < 1), np.sin(np.pi * t), 0.0)
    dirs = between(torch.zeros(8), torch.ones(8), names=("runs/a.safetensors", "runs/b.safetensors"))
    return Surface(t, None, {"train": {"loss": loss, "accuracy": np.full(21, 0.5)}}, dirs, dict(META))


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


def test_titles_carry_checkpoint_step_split_and_directions(plane, line):
    title = plot_contour(plane).axes[0].get_title()
    assert "mlp at adam/step_000220.safetensors (step 220, epoch 10)" in title
    assert "digits train split (100 samples)" in title and "random directions" in title
    assert "train split" in plot_1d(line).axes[0].get_title()
    assert "adam/step_000220" in plotly_figure(plane).layout.title.text


def test_default_levels_are_log_spaced_for_positive_losses(plane):
    levels = contour_set(plot_contour(plane, filled=True)).levels
    ratios = levels[1:] / levels[:-1]
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-9)  # geometric: the basin gets as many levels as the walls
    assert levels[0] == pytest.approx(plane.loss.min()) and levels[-1] == pytest.approx(plane.loss.max())
    shifted = Surface.from_arrays(plane.x, plane.y, plane.loss - 1.0)  # negative values: quantiles
    q = contour_set(plot_contour(shifted, filled=True)).levels
    np.testing.assert_allclose(q, np.unique(np.quantile(shifted.loss, np.linspace(0, 1, 30))))
    lin = contour_set(plot_contour(plane, filled=True, levels="linear")).levels
    np.testing.assert_allclose(np.diff(lin), np.diff(lin)[0])
    ref = contour_set(plot_contour(plane, vmin=0.1, vmax=10, vlevel=0.5)).levels
    np.testing.assert_allclose(ref, np.arange(0.1, 10, 0.5))  # the reference tool's vmin/vmax/vlevel
    with pytest.raises(ValueError, match="unknown levels 'fancy'"):
        plot_contour(plane, levels="fancy")


def test_contour_lines_log_scale_and_metrics(plane):
    fig = plot_contour(plane, levels=5, log=True)
    cs = contour_set(fig)
    assert -1.5 <= cs.levels.min() and cs.levels.max() <= 2  # log10 of losses in [0.1, 29.35]
    assert fig.axes[1].get_ylabel() == "log10 cross_entropy loss"  # the colour bar
    plot_contour(plane, metric="accuracy", filled=True)
    with pytest.raises(ValueError, match="unknown metric 'banana'.*valid: loss, accuracy"):
        plot_contour(plane, metric="banana")


def test_log_scale_says_what_it_clipped(plane):
    zero = Surface.from_arrays(plane.x, plane.y, plane.loss - plane.loss.min(), meta=META)
    fig = plot_contour(zero, filled=True, log=True)
    assert np.isfinite(contour_set(fig).levels).all() and contour_set(fig).levels.min() >= -12 - 1e-9
    assert "1 values ≤ 0 clipped at 1e-12" in fig.axes[1].get_ylabel()


def test_partial_and_empty_surfaces(plane):
    done = np.ones(plane.shape, dtype=bool)
    done[3:] = False
    loss = np.where(done, plane.loss, np.nan)
    partial = Surface(plane.x, plane.y, {"train": {"loss": loss}}, plane.directions, dict(META), done)
    assert "partial grid: 21 of 35 points" in plot_contour(partial).axes[0].get_title()
    empty = Surface(plane.x, plane.y, {"train": {"loss": np.full(plane.shape, np.nan)}}, None, {}, done)
    with pytest.raises(ValueError, match="no finite value .* nothing to draw"):
        plot_contour(empty)
    with pytest.raises(ValueError, match="no finite value"):
        plotly_figure(empty)


def test_3d_surface_marks_the_origin(plane):
    fig = plot_3d(plane, log=True)
    ax = fig.axes[0]
    assert isinstance(fig, Figure) and ax.name == "3d"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["origin $w_0$"]
    assert all(len(axis.get_major_locator()()) <= 7 for axis in (ax.xaxis, ax.yaxis, ax.zaxis))
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


def test_one_row_or_column_planes_draw_as_lines(plane, tmp_path):
    row = Surface.from_arrays(plane.x, plane.y[2:3], plane.loss[2:3])
    column = Surface.from_arrays(plane.x[4:5], plane.y, plane.loss[:, 4:5])
    np.testing.assert_array_equal(plot_1d(row).axes[0].lines[0].get_xdata(), plane.x)
    np.testing.assert_array_equal(plot_1d(column).axes[0].lines[0].get_ydata(), plane.loss[:, 4])
    with pytest.raises(ValueError, match="at least 2 x 2"):
        plot_contour(row)
    assert [p.suffix for p in render(row, tmp_path, "row")] == [".png", ".html"]


def test_segment_marks_endpoints_and_barrier(segment):
    fig = plot_1d(segment)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    found = line_barriers(segment)
    assert f"barrier_max {found['barrier_max']:.4g}" in labels and found["barrier_max"] == pytest.approx(0.5)
    assert found["barrier_mean"] == pytest.approx(2.0 - 1.25)  # the peak above (L(0) + L(1)) / 2
    assert found["barrier"] == pytest.approx(np.sin(0.4 * np.pi) - 0.2)  # sin(pi t) - t / 2 is largest at t = .4
    peak = next(artist for artist in ax.lines if artist.get_label().startswith("barrier_max"))
    np.testing.assert_allclose(peak.get_xdata(), [0.5, 0.5])
    np.testing.assert_allclose(peak.get_ydata(), [1.5, 2.0])  # from max(L(0), L(1)) up to the peak
    verticals = [artist.get_xdata()[0] for artist in ax.lines if artist.get_linestyle() == ":"]
    assert verticals == [0.0, 1.0]
    assert "a.safetensors" in ax.get_xlabel()


def test_wrong_kinds_of_results_are_refused(plane, line):
    with pytest.raises(ValueError, match="at least 2 x 2 points"):
        plot_contour(line)
    with pytest.raises(ValueError, match="5 x 7 plane"):
        plot_1d(plane)
    with pytest.raises(ValueError, match="plot_density draws a Spectrum"):
        plot_density(plane)


def test_plots_and_registry_from_saved_files(tmp_path, plane, line, segment):
    plane.save(tmp_path / "plane.h5")
    line.save(tmp_path / "line.h5")
    segment.save(tmp_path / "segment.h5")
    assert isinstance(plot_contour(str(tmp_path / "plane.h5")), Figure)
    assert isinstance(plot_3d(tmp_path / "plane.h5"), Figure)
    assert isinstance(plot_1d(tmp_path / "line.h5"), Figure)
    loaded = load_result(tmp_path / "segment.h5")
    assert isinstance(loaded, Surface) and loaded.directions.kind == "between"
    np.testing.assert_array_equal(load_result(tmp_path / "plane.h5").loss, plane.loss)
    Directions(torch.ones(1, 3), "random").save(tmp_path / "dirs.h5")
    assert isinstance(load_result(tmp_path / "dirs.h5"), Directions)
    assert [p.name for p in render(load_result(tmp_path / "dirs.h5"), tmp_path, "dirs")] == ["dirs_directions.png"]
    with pytest.raises(ValueError, match="cannot draw a LosslensFigure: not a losslens result"):
        render(plot_1d(line), tmp_path, "figure")
    with pytest.raises(LosslensError, match="no such file"):
        plot_contour(tmp_path / "missing.h5")


def test_render_writes_each_picture(tmp_path, plane, segment):
    names = [p.name for p in render(plane, tmp_path, "surface")]
    assert names == ["surface_contour.png", "surface_3d.png", "surface.html"]
    assert [p.name for p in render(segment, tmp_path, "interpolation")] == ["interpolation.png", "interpolation.html"]
    assert all((tmp_path / n).stat().st_size > 1000 for n in names)
    assert "adam/step_000220.safetensors" in (tmp_path / "surface.html").read_text()  # provenance on the page


def test_plotly_plane_keeps_the_surface_layout(plane):
    fig = plotly_figure(plane)
    surface, contour = fig.data[0], fig.data[1]
    assert surface.type == "surface" and contour.type == "contour"
    z = np.asarray(surface.z)
    assert z.shape == (len(plane.y), len(plane.x))  # plotly's rows run along y, as the surface's
    np.testing.assert_array_equal(z, plane.loss)
    np.testing.assert_array_equal(np.asarray(contour.customdata), plane.loss)  # hover shows the loss
    assert np.argmin(np.asarray(contour.z)) == np.argmin(z)  # its colour: the level number, in the same layout
    assert np.argmin(z) == np.ravel_multi_index((list(plane.y).index(Y_MIN), list(plane.x).index(X_MIN)), z.shape)
    assert fig.layout.xaxis.automargin and fig.layout.margin.t >= 100  # two-line titles and axis titles fit


def test_plotly_lines(line, segment):
    fig = plotly_figure(line, log=True)
    assert [d.name for d in fig.data] == ["loss", "accuracy"]
    assert fig.layout.yaxis.type == "log"
    assert f"barrier_max 0.5 = {DEFINITIONS['barrier_max']}" in plotly_figure(segment).layout.title.text


def test_write_html_embeds_plotly_js_once_and_fills_the_window(tmp_path, plane, segment):
    one = write_html(plotly_figure(plane), tmp_path / "one.html")
    two = write_html([plotly_figure(plane), plotly_figure(segment)], tmp_path / "sub" / "two.html",
                     title="two <figures>", provenance={"model": "<mlp>"})
    page = two.read_text()
    assert page.count("plotly.js v") == 1 and one.read_text().count("plotly.js v") == 1
    assert page.count("Plotly.newPlot(") == 2 and page.count("height:90vh") == 2
    assert "<title>two &lt;figures&gt;</title>" in page and "&lt;mlp&gt;" in page
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
                       {"backend": "losslens", "residual_norms": [0.25, 0.5]} | META)
    fig = plot_eigenvalues(pairs)
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == [5.0, 2.0]
    from matplotlib.container import ErrorbarContainer

    bars = next(c for c in ax.containers if isinstance(c, ErrorbarContainer))  # the residuals, as error bars
    segments = bars.lines[2][0].get_segments()
    np.testing.assert_allclose([s[1, 1] - s[0, 1] for s in segments], [0.5, 1.0])
    assert "adam/step_000220" in ax.get_title()


def test_png_and_html_of_a_plane_draw_the_same_log_levels_with_readable_ticks(plane):
    fig = plot_contour(plane, filled=True)
    levels = contour_set(fig).levels
    bar = fig.axes[1]
    assert bar.get_ylabel() == "cross_entropy loss (log scale)"
    fig.canvas.draw()
    assert [t.get_text() for t in bar.get_yticklabels()] == ["0.1", "0.2", "0.5", "1", "2", "5", "10", "20"]
    assert [t.get_text() for t in bar.get_yticklabels(minor=True)] == []
    contour = plotly_figure(plane).data[1]
    assert contour.contours.start == 0 and contour.contours.end == len(levels) - 1 and contour.contours.size == 1
    # plotly draws the level number: its boundaries at 0, 1, 2, ... are exactly matplotlib's levels
    index = np.asarray(contour.z)
    np.testing.assert_allclose(np.interp(index, np.arange(len(levels)), levels), plane.loss, rtol=1e-12)
    assert contour.colorbar.title.text == "cross_entropy loss (log scale)"
    assert list(contour.colorbar.ticktext) == ["0.1", "0.2", "0.5", "1", "2", "5", "10", "20"]
    np.testing.assert_allclose(np.interp(contour.colorbar.tickvals, np.arange(len(levels)), levels),
                               [0.1, 0.2, 0.5, 1, 2, 5, 10, 20], rtol=1e-9)
    # the basin shows: a quarter of the plane's points below the median loss gets a quarter of the colours
    low = index[plane.loss <= np.quantile(plane.loss, 0.25)]
    assert low.max() > 0.2 * (len(levels) - 1)


def test_one_function_gives_both_renderers_their_levels(plane, monkeypatch):
    from losslens.plot import interactive, surfaces

    calls = []
    original = surfaces.contour_levels

    def spy(Z, *args, **kwargs):
        calls.append(np.array(Z))
        return original(Z, *args, **kwargs)

    monkeypatch.setattr(surfaces, "contour_levels", spy)
    monkeypatch.setattr(interactive, "contour_levels", spy)
    plot_contour(plane, filled=True)
    plotly_figure(plane)
    assert len(calls) == 2
    np.testing.assert_array_equal(calls[0], calls[1])


def test_linear_levels_have_readable_ticks(plane):
    shifted = Surface.from_arrays(plane.x, plane.y, plane.loss - 1.0)
    fig = plot_contour(shifted, filled=True, levels="linear")
    bar = fig.axes[1]
    assert "log" not in bar.get_ylabel()
    fig.canvas.draw()
    assert [t.get_text() for t in bar.get_yticklabels()] == ["0", "5", "10", "15", "20", "25"]


def test_interpolation_names_both_checkpoints_and_ticks_accuracy_at_readable_values(segment):
    line = Surface(segment.x, None, {"train": {"loss": segment.loss, "accuracy": np.linspace(0.069, 0.455, 21)}},
                   segment.directions, dict(META))
    fig = plot_1d(line)
    fig.canvas.draw()
    title = fig.axes[0].get_title()
    assert "A = a.safetensors (t = 0)" in title and "B = b.safetensors (t = 1)" in title
    twin = fig.axes[1]
    assert [t.get_text() for t in twin.get_yticklabels()
            if line.metrics["accuracy"].min() <= t.get_position()[1] <= 0.455] == ["10%", "20%", "30%", "40%"]
    page = plotly_figure(line)
    assert "A = a.safetensors" in page.layout.title.text and "B = b.safetensors" in page.layout.title.text
    assert list(page.layout.yaxis2.ticktext) == ["10%", "20%", "30%", "40%"]
    np.testing.assert_allclose(page.layout.yaxis2.tickvals, [0.1, 0.2, 0.3, 0.4])


def test_readable_ticks():
    from losslens.plot.levels import readable_ticks

    np.testing.assert_allclose(readable_ticks(0.08, 2.2, True), [0.1, 0.2, 0.5, 1, 2])
    np.testing.assert_allclose(readable_ticks(0.3, 0.9, True), [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    np.testing.assert_allclose(readable_ticks(1e-12, 1.0, True), 10.0 ** np.arange(-12, 1, 2))  # every 2nd power
    np.testing.assert_allclose(readable_ticks(0.069, 0.455, False), [0.1, 0.2, 0.3, 0.4])


@pytest.mark.parametrize("levels, message", [(0, "at least 2, got 0"), (-3, "at least 2, got -3"),
                                             ([1.0, 0.5], "strictly increasing"), ([0.1, np.nan], "finite")])
def test_levels_that_draw_nothing_meant_are_refused(plane, levels, message):
    with pytest.raises(ValueError, match=message):
        plot_contour(plane, levels=levels)
