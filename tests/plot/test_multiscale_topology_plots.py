"""Figures of multiscale and topology results: what is drawn is the result's data, where it belongs."""

import io
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

from losslens.landscape.wavelets import multiscale
from losslens.landscape.topology import topology
from losslens.plot.wavelets import plot_coefficients, plot_energy
from losslens.plot.topology import plot_barcode, plot_basins, plot_diagrams

X = np.linspace(0.0, 4.0, 41)  # nx = 41
Y = np.linspace(0.0, 2.0, 21)  # ny = 21


@pytest.fixture(scope="module")
def plane():
    XX, YY = np.meshgrid(X, Y)
    Z = np.full_like(XX, 5.0)
    for cx, cy, depth in [(1.0, 0.5, 3.0), (3.0, 1.5, 1.0)]:
        Z -= depth * np.maximum(0.0, 1.0 - ((XX - cx) ** 2 + (YY - cy) ** 2) / 0.09)
    Z += 0.3 * np.exp(-((XX - 2) ** 2 + (YY - 1) ** 2) / 0.02)  # a bump: some finite loops
    return SimpleNamespace(x=X, y=Y, loss=Z, meta={})


@pytest.fixture(scope="module")
def line():
    x = np.linspace(-2, 2, 64)
    return SimpleNamespace(x=x, y=None, loss=np.minimum((x + 1) ** 2, (x - 1) ** 2 + 0.3), meta={})


def png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=40)
    return buffer.getvalue()


def test_coefficient_panels_hold_each_level_and_orientation(plane, tmp_path):
    result = multiscale(plane)
    fig = plot_coefficients(result)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 3 * result.level + 1
    assert panels[0].get_title() == "level 1 (finest): H (along y)"
    assert panels[3 * result.level - 1].get_title() == f"level {result.level} (coarsest): D (diagonal)"
    np.testing.assert_array_equal(panels[1].images[0].get_array(), result.details[0]["v"])
    np.testing.assert_array_equal(panels[-1].images[0].get_array(), result.approx)
    assert "level 1 is the finest" in fig._suptitle.get_text()
    assert png(fig)[:4] == b"\x89PNG"
    assert len(plot_coefficients(result.save(tmp_path / "m.h5")).axes) == len(fig.axes)  # from a file


def test_energy_bars_are_fractions_of_the_total_with_level_one_first(plane):
    result = multiscale(plane)
    fig = plot_energy(result)
    ax = fig.axes[0]
    heights = np.array([p.get_height() for p in ax.patches])
    assert heights.sum() == pytest.approx(1.0, rel=1e-12)  # Parseval: the bars add up to the whole
    L = result.level
    np.testing.assert_allclose(heights[:L], [r["energy_h"] / result.energy_total for r in result.levels])
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[0] == "1\n(finest)" and labels[L - 1] == f"{L}\n(coarsest)" and labels[-1].startswith("approx.")
    assert f"{result.roughness:.3g}" in ax.get_title()


def test_line_multiscale_figures(line):
    result = multiscale(line)
    assert len([ax for ax in plot_coefficients(result).axes if ax.get_title()]) == result.level + 1
    assert len(plot_energy(result, log=True).axes[0].patches) == result.level + 1
    png(plot_coefficients(result))


def test_diagrams_show_h0_and_h1_apart_with_an_inf_line(plane):
    result = topology(plane)
    fig = plot_diagrams(result)
    h0, h1 = fig.axes
    assert h0.get_title().startswith("H0") and h1.get_title().startswith("H1")
    top = h0.get_yticks()[-1]
    assert h0.get_yticklabels()[-1].get_text() == "inf" and top > result.values.max()
    drawn0 = np.concatenate([c.get_offsets() for c in h0.collections if isinstance(c, PathCollection)])
    expected0 = np.where(np.isinf(result.diagram_h0), top, result.diagram_h0)
    assert sorted(map(tuple, drawn0)) == sorted(map(tuple, expected0))
    drawn1 = np.concatenate([c.get_offsets() for c in h1.collections if isinstance(c, PathCollection)])
    assert sorted(map(tuple, drawn1)) == sorted(map(tuple, result.diagram_h1)) and len(result.diagram_h1) > 0
    png(fig)


def test_barcode_draws_one_bar_per_class_longest_first(plane):
    result = topology(plane)
    fig = plot_barcode(result, max_bars=5)
    h0, h1 = fig.axes
    segments = h0.collections[0].get_segments()
    assert len(segments) == min(5, len(result.diagram_h0))
    assert segments[0][0][0] == result.diagram_h0[0, 0] and segments[0][1][0] == h0.get_xticks()[-1]  # to inf
    assert h0.get_xticklabels()[-1].get_text() == "inf"
    assert f"of {len(result.diagram_h0)}" in h0.get_title() or len(result.diagram_h0) <= 5
    png(fig)


def test_basins_are_marked_where_they_are(plane, tmp_path):
    result = topology(plane)
    fig = plot_basins(result)
    ax = fig.axes[0]
    minima = next(l for l in ax.lines if l.get_label() == "basin minima")
    np.testing.assert_allclose(np.c_[minima.get_xdata(), minima.get_ydata()], [[1.0, 0.5], [3.0, 1.5]])
    saddles = next(l for l in ax.lines if l.get_label() == "merge saddles")
    b = result.basins[1]
    assert (saddles.get_xdata()[0], saddles.get_ydata()[0]) == (b.saddle["x"], b.saddle["y"])
    assert ax.get_xlim() == (0.0, 4.0) and ax.get_ylim() == (0.0, 2.0)  # x across, y up: not transposed
    png(fig)
    assert len(plot_basins(str(result.save(tmp_path / "t.h5"))).axes) == len(fig.axes)


def test_line_topology_figures_and_given_axes(line):
    result = topology(line)
    fig = Figure()
    ax = fig.add_subplot()
    assert plot_basins(result, ax=ax) is fig
    minima = next(l for l in ax.lines if l.get_label() == "basin minima")
    assert minima.get_ydata()[0] == result.basins[0].value
    outer = Figure(layout="constrained")
    left, right = outer.subfigures(1, 2)
    plot_diagrams(result, fig=left)
    plot_barcode(result, fig=right)
    assert len(outer.axes) == 4
    png(outer)


def test_other_results_are_refused(plane):
    with pytest.raises(ValueError, match="expected a Multiscale"):
        plot_energy(topology(plane))
    with pytest.raises(ValueError, match="expected a Topology"):
        plot_diagrams(multiscale(plane))
