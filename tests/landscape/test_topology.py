"""Sublevel-set persistence against surfaces whose topology is known by construction."""

import json
import math
from types import SimpleNamespace

import gudhi
import numpy as np
import pytest

from losslens.landscape._grid_values import fill_nonfinite
from losslens.landscape.diagram_distances import MATCHING_POINTS, bottleneck, essential_count_difference, wasserstein
from losslens.landscape.topology import THRESHOLD_FRACTION, Topology, topology
from losslens.landscape.topology_stability import TopologyStability, topology_stability

# a non-square grid with different ranges on each axis: nx = 41 along x, ny = 21 along y
X = np.linspace(0.0, 4.0, 41)
Y = np.linspace(0.0, 2.0, 21)
PLATEAU = 5.0
WELLS = [(1.0, 0.5, 3.0), (2.2, 1.0, 2.0), (3.0, 1.5, 1.0)]  # (centre x, centre y, depth), centres on grid points


def surface(Z, x=X, y=Y, meta=None):
    return SimpleNamespace(x=x, y=y, loss=Z, meta=meta or {})


def wells(depths=WELLS, radius=0.3):
    """A plateau with paraboloid wells of compact support: minima ``PLATEAU - depth`` at the centres,
    every basin merging at the plateau's value."""
    XX, YY = np.meshgrid(X, Y)  # (ny, nx)
    Z = np.full_like(XX, PLATEAU)
    for cx, cy, depth in depths:
        Z -= depth * np.maximum(0.0, 1.0 - ((XX - cx) ** 2 + (YY - cy) ** 2) / radius**2)
    return Z


def bowl():
    XX, YY = np.meshgrid(X, Y)
    return (XX - 1.5) ** 2 + 3 * (YY - 0.8) ** 2


def test_k_separated_wells_give_k_basins_with_their_minima_depths_and_saddles():
    result = topology(surface(wells()))
    basins = result.basins
    assert len(basins) == 3 and not result.summary()["single_basin"]
    for basin, (cx, cy, depth) in zip(basins, WELLS):  # deepest first
        assert (basin.x, basin.y) == pytest.approx((cx, cy), abs=1e-12)
        assert basin.value == pytest.approx(PLATEAU - depth, abs=1e-12)
        assert basin.depth == pytest.approx(depth, abs=1e-12)
        iy, ix = basin.index
        assert (X[ix], Y[iy]) == pytest.approx((cx, cy)) and result.values[iy, ix] == basin.value
    assert basins[0].saddle is None and math.isinf(basins[0].persistence)
    for basin, (_, _, depth) in zip(basins[1:], WELLS[1:]):
        assert basin.persistence == pytest.approx(depth, abs=1e-12)
        assert basin.saddle["value"] == pytest.approx(PLATEAU)
        iy, ix = basin.saddle["index"]
        assert result.values[iy, ix] == PLATEAU and (basin.saddle["x"], basin.saddle["y"]) == (X[ix], Y[iy])
    cells = topology(surface(wells()), construction="cells")
    assert [(b.x, b.y, b.value) for b in cells.basins] == [(b.x, b.y, b.value) for b in basins]


def test_column_major_pair_indices_are_mapped_to_row_and_column():
    Z = np.full((3, 5), 10.0)  # ny=3, nx=5: gudhi's column-major index of (iy=2, ix=3) is 11, row-major 13
    Z[0, 1], Z[2, 3], Z[1, 4] = 0.0, 2.0, 5.0
    result = topology(surface(Z, x=np.arange(5.0), y=np.arange(3.0) * 10), threshold=0.5)
    assert [(b.index, b.x, b.y, b.value) for b in result.basins] == [
        ((0, 1), 1.0, 0.0, 0.0), ((2, 3), 3.0, 20.0, 2.0), ((1, 4), 4.0, 10.0, 5.0)]
    np.testing.assert_array_equal(result.diagram_h0, [[0.0, np.inf], [2.0, 10.0], [5.0, 10.0]])


def test_a_ring_shaped_valley_gives_one_persistent_loop():
    XX, YY = np.meshgrid(X, Y)
    Z = (np.hypot(XX - 2.0, YY - 1.0) - 0.7) ** 2  # valley of radius 0.7 around a peak at (2, 1)
    result = topology(surface(Z))
    assert result.n_loops == 1 and result.summary()["single_basin"]
    birth, death = result.diagram_h1[0]
    assert death == pytest.approx(0.49) and birth < 0.01  # dies when the centre (2, 1) enters
    assert np.diff(result.diagram_h1[1:], axis=1).max(initial=0) <= result.threshold
    assert topology(surface(bowl())).n_loops == 0


def test_vertex_and_cell_constructions_differ_on_a_checkerboard_diagonal():
    Z = np.ones((4, 5))
    Z[1, 1] = Z[2, 2] = 0.0  # two minima touching only at a corner
    vertices = topology(surface(Z, x=np.arange(5.0), y=np.arange(4.0)), threshold=0.5)
    cells = topology(surface(Z, x=np.arange(5.0), y=np.arange(4.0)), construction="cells", threshold=0.5)
    np.testing.assert_array_equal(vertices.diagram_h0, [[0.0, np.inf], [0.0, 1.0]])  # 4-connectivity: apart
    np.testing.assert_array_equal(cells.diagram_h0, [[0.0, np.inf]])  # 8-connectivity: joined at once
    assert len(vertices.basins) == 2 and len(cells.basins) == 1


def test_a_bowl_has_one_basin_and_says_so():
    result = topology(surface(bowl()))
    assert len(result.diagram_h0) == 1 and result.summary()["single_basin"]
    doc = result.to_json()
    assert doc["n_basins"] == 1 and doc["single_basin"]
    assert doc["basins"][0]["saddle"] is None and doc["basins"][0]["persistence"] is None
    assert doc["basins"][0]["depth"] == pytest.approx(bowl().max() - bowl().min())


@pytest.mark.parametrize("cells", [
    [(10, 20)], [(10, 20), (10, 21), (11, 20), (11, 21), (12, 20), (12, 21)], [(0, 7)], [(20, 40)], [(0, 0), (0, 1)],
])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("construction", ["vertices", "cells"])
def test_a_nonfinite_point_never_creates_a_class(cells, bad, construction):
    for base in (bowl(), wells()):
        clean = topology(surface(base), construction=construction)
        Z = base.copy()
        for iy, ix in cells:
            Z[iy, ix] = bad
        result = topology(surface(Z), construction=construction)
        np.testing.assert_allclose(result.diagram_h0, clean.diagram_h0)
        np.testing.assert_allclose(result.diagram_h1, clean.diagram_h1)
        key = "nan" if np.isnan(bad) else "inf"
        assert result.meta["nonfinite"][key] == len(cells)
        assert any(w.startswith(f"{len(cells)} non-finite value") for w in result.meta["warnings"])


def test_gudhi_alone_gets_nonfinite_points_wrong():
    """Why the fill: gudhi keeps an inf point out forever (a loop that never dies), and filling it with a
    value above everything (the max plus the range) makes a loop that does die, but was never there."""
    Z = bowl()
    Z[10, 20] = np.inf
    raw = gudhi.CubicalComplex(vertices=Z)
    raw.compute_persistence()
    assert any(dim == 1 and math.isinf(death) for dim, (_, death) in raw.persistence())
    high = bowl()
    high[10, 20] = 2 * high.max() - high.min()
    naive = gudhi.CubicalComplex(vertices=high)
    naive.compute_persistence()
    assert len(naive.persistence_intervals_in_dimension(1)) == 1
    filled = fill_nonfinite(Z)
    assert filled[10, 20] == max(Z[9, 20], Z[11, 20], Z[10, 19], Z[10, 21])


def test_fill_goes_inward_through_a_cluster():
    Z = np.arange(25.0).reshape(5, 5)
    Z[1:4, 1:4] = np.nan  # the ring first, each from its finite 4-neighbours; then the centre from the ring
    expected = np.arange(25.0).reshape(5, 5)
    expected[1:4, 1:4] = [[5, 2, 9], [10, 22, 14], [21, 22, 23]]
    np.testing.assert_array_equal(fill_nonfinite(Z), expected)
    np.testing.assert_array_equal(fill_nonfinite(np.array([np.inf, 1.0, np.nan, np.nan, 3.0])), [1, 1, 1, 3, 3])
    with pytest.raises(ValueError, match="no finite value"):
        fill_nonfinite(np.full((2, 2), np.nan))


def test_bottleneck_to_itself_is_zero_and_to_a_shifted_copy_is_the_shift():
    a = topology(surface(wells()))
    for s in (0.25, 1.7):
        shifted = topology(surface(wells() + s), threshold=a.threshold)
        np.testing.assert_allclose(shifted.diagram_h0, a.diagram_h0 + s)
        assert bottleneck(a, a) == pytest.approx(0.0, abs=1e-300)  # gudhi's default error: the smallest double
        assert bottleneck(a, shifted) == pytest.approx(s, rel=1e-12)
        assert bottleneck(a.diagram_h0, a.diagram_h0 + s) == pytest.approx(s, rel=1e-12)  # arrays too
    assert wasserstein(a, a) == 0.0


def test_wasserstein_against_a_hand_computed_matching():
    d1 = np.array([[0.0, 1.0], [0.0, np.inf]])
    d2 = np.array([[0.0, 1.2], [0.5, np.inf]])
    # match finite to finite (0.2) and essential to essential (0.5); to the diagonal would cost 0.5 + 0.6
    assert wasserstein(d1, d2) == pytest.approx(0.7, rel=1e-5)
    assert wasserstein(d1, d2, order=2) == pytest.approx(math.sqrt(0.2**2 + 0.5**2), rel=1e-5)
    assert bottleneck(d1, d2) == pytest.approx(0.5)
    # different numbers of classes that never die: the extra one is counted apart, the distance stays finite
    assert bottleneck(d1, d2[:1]) == pytest.approx(0.2) and wasserstein(d1, d2[:1]) == pytest.approx(0.2)
    assert essential_count_difference(d1, d2[:1]) == 1 and essential_count_difference(d1, d2) == 0
    with pytest.raises(ValueError, match=r"order must be a number >= 1 \(got 0.5\)"):
        wasserstein(d1, d2, order=0.5)


def test_analyses_of_any_surface_object_refuse_repeated_coordinates():
    from losslens.landscape.wavelets import multiscale

    x = X.copy()
    x[3] = x[4]
    for analyse in (topology, multiscale):
        with pytest.raises(ValueError, match=rf"^{analyse.__name__}: x coordinates must be strictly increasing: "
                                             rf"{float(x[3])!r} is repeated \(x\[3\] = x\[4\]\)"):
            analyse(surface(wells(), x=x))


def test_distances_return_where_hera_never_does():
    """gudhi.hera.wasserstein_distance([[0, inf]], [[1, inf], [2, 3], [4, 5]]) loops forever."""
    a, b = np.array([[0.0, np.inf]]), np.array([[1.0, np.inf], [2.0, 3.0], [4.0, 5.0]])
    # essentials 0 <-> 1 (gap 1); both finite points to the diagonal at (d - b) / 2 = 0.5 each (L-inf ground norm)
    assert wasserstein(a, b) == pytest.approx(1.0 + 0.5 + 0.5)
    assert wasserstein(a, b, order=2) == pytest.approx(math.sqrt(1 + 0.25 + 0.25))
    assert wasserstein(a, b, internal_p=2) == pytest.approx(1.0 + 2 * 0.5 * math.sqrt(2))
    assert bottleneck(a, b) == pytest.approx(1.0)
    assert essential_count_difference(a, b) == 0
    # unequal counts of essentials: the optimal partial matching, not the first in order (10 <-> 10, 0 left over)
    c, d = np.array([[10.0, np.inf]]), np.array([[0.0, np.inf], [10.5, np.inf], [1.0, 2.0]])
    assert wasserstein(c, d) == pytest.approx(0.5 + 0.5) and bottleneck(c, d) == pytest.approx(0.5)
    assert essential_count_difference(c, d) == 1
    assert wasserstein(np.zeros((0, 2)), d[:2]) == 0.0 and bottleneck(np.zeros((0, 2)), d[:2]) == 0.0


def test_distances_agree_with_gudhi_where_gudhi_returns():
    """Random diagrams, only finite points or one essential class on each side with as many finite points."""
    import gudhi.hera

    rng = np.random.default_rng(0)
    for trial in range(12):
        n, m = rng.integers(0, 25, size=2)
        if trial % 3 == 2:
            n = m
        a, b = (np.sort(rng.random((k, 2)), axis=1) * 3 for k in (n, m))
        if trial % 3 == 2:  # equal counts of essentials
            a, b = np.vstack([a, [[rng.random(), np.inf]]]), np.vstack([b, [[rng.random(), np.inf]]])
        for order, p in ((1.0, math.inf), (2.0, math.inf), (1.0, 2.0), (3.0, 1.0)):
            expected = gudhi.hera.wasserstein_distance(a, b, order=order, internal_p=p, delta=1e-9)
            assert wasserstein(a, b, order=order, internal_p=p) == pytest.approx(expected, rel=1e-7, abs=1e-12)
        assert bottleneck(a, b) == pytest.approx(gudhi.bottleneck_distance(a, b), rel=1e-12, abs=1e-12)


def test_wasserstein_is_bounded_in_size():
    half = MATCHING_POINTS // 2 + 1
    a = np.column_stack([np.zeros(half), np.linspace(1, 2, half)])
    with pytest.raises(ValueError, match=f"limited to {MATCHING_POINTS} finite points.*found {half} \\+ {half}"):
        wasserstein(a, a)


def test_bottleneck_is_stable_under_perturbation():
    rng = np.random.default_rng(0)
    base = wells()
    for scale in (0.01, 0.1, 0.5):
        noise = scale * rng.uniform(-1, 1, size=base.shape)
        for dim in (0, 1):
            d = bottleneck(topology(surface(base)), topology(surface(base + noise)), dim)
            assert d <= np.abs(noise).max() + 1e-12  # Cohen-Steiner, Edelsbrunner, Harer 2007


def test_threshold_default_given_and_checked():
    Z = wells([(1.0, 0.5, 3.0), (3.0, 1.5, 0.02)])  # a 0.02-deep dent is below 1% of the range (0.03)
    default = topology(surface(Z))
    assert default.threshold == pytest.approx(THRESHOLD_FRACTION * 3.0) and len(default.basins) == 1
    assert "0.01 x value range" in default.meta["threshold_rule"]
    assert len(topology(surface(Z), threshold=0.01).basins) == 2
    assert len(topology(surface(Z), threshold=0.0).basins) == 2
    for bad in (-1.0, math.nan, math.inf, "0.1"):
        with pytest.raises(ValueError, match="threshold must be a finite number >= 0"):
            topology(surface(Z), threshold=bad)
    with pytest.raises(ValueError, match=r"construction must be one of vertices, cells \(got 'pixels'\)"):
        topology(surface(Z), construction="pixels")


def test_normalize_rescales_everything_and_units_must_agree():
    raw = topology(surface(wells()))
    normalized = topology(surface(wells()), normalize=True)
    low, span = PLATEAU - 3.0, 3.0
    np.testing.assert_allclose(normalized.diagram_h0, (raw.diagram_h0 - low) / span)
    assert normalized.values.min() == 0.0 and normalized.values.max() == 1.0
    assert normalized.threshold == pytest.approx(THRESHOLD_FRACTION)
    assert [b.index for b in normalized.basins] == [b.index for b in raw.basins]
    assert normalized.meta["normalization"] == {"min": low, "range": span}
    with pytest.raises(ValueError, match="different units"):
        bottleneck(raw, normalized)


def test_a_line_has_basins_and_no_loops():
    x = np.linspace(-2, 2, 81)
    values = np.minimum((x + 1) ** 2, (x - 1) ** 2 + 0.3)  # two minima, merging at x = 0.15
    result = topology(SimpleNamespace(x=x, y=None, loss=values, meta={}))
    assert len(result.diagram_h1) == 0 and len(result.basins) == 2
    first, second = result.basins
    assert (first.x, first.y, first.value) == (-1.0, None, 0.0)
    assert second.x == pytest.approx(1.0) and second.value == pytest.approx(0.3)
    assert second.saddle["value"] == pytest.approx(values.max(where=np.abs(x) < 0.5, initial=0.0))


def test_transposed_surface_is_refused():
    with pytest.raises(ValueError, match=r"expected \[21, 41\] \(ny, nx\)"):
        topology(surface(wells().T))


def test_save_load_and_json(tmp_path):
    Z = wells()
    Z[0, 0] = np.nan
    result = topology(surface(Z, meta={"model": "toy"}))
    back = Topology.load(result.save(tmp_path / "t.h5"))
    assert back.basins == result.basins and back.meta == result.meta and back.threshold == result.threshold
    np.testing.assert_array_equal(back.diagram_h1, result.diagram_h1)
    doc = json.loads(json.dumps(result.to_json(), allow_nan=False))
    assert doc["n_basins"] == 3 and doc["threshold"] == result.threshold
    assert [set(b) >= {"x", "y", "value", "persistence", "saddle"} for b in doc["basins"]] == [True] * 3
    assert doc["diagram_h0"][0] == [2.0, None] and all(d is not None for _, d in doc["diagram_h0"][1:])
    assert doc["nonfinite"] == {"nan": 1, "inf": 0} and doc["source"] == {"model": "toy"}
    assert doc["basins"][1]["saddle"]["value"] == pytest.approx(PLATEAU)


def test_stability_over_seeds_reports_the_spread(tmp_path):
    shifts = [0.0, 0.1, 0.4]  # the same landscape at three heights: same basins, minima moving with the shift
    result = topology_stability([surface(wells() + c) for c in shifts], names=["s0", "s1", "s2"])
    summary = result.summary()
    assert summary["n_basins"] == {"mean": 3.0, "std": 0.0, "min": 3.0, "max": 3.0}
    assert summary["minimum"]["mean"] == pytest.approx(2.0 + np.mean(shifts))
    assert summary["minimum"]["std"] == pytest.approx(np.std(shifts, ddof=1))
    expected = [abs(a - b) for i, a in enumerate(shifts) for b in shifts[i + 1:]]
    np.testing.assert_allclose(np.sort(result.bottleneck_h0[np.triu_indices(3, 1)]), np.sort(expected), rtol=1e-12)
    assert summary["bottleneck_h0"]["max"] == pytest.approx(0.4)
    assert result.meta["threshold"] == pytest.approx(0.03) and "mean value range" in result.meta["threshold_rule"]
    back = TopologyStability.load(result.save(tmp_path / "s.h5"))
    assert back.summary() == summary and back.names == ("s0", "s1", "s2")
    with pytest.raises(ValueError, match="at least 2 surfaces"):
        topology_stability([surface(wells())])
