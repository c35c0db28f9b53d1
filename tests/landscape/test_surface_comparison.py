"""Comparing surfaces: the table agrees with each analysis, the distances with closed forms; reading files."""

import json
from types import SimpleNamespace

import warnings

import h5py
import numpy as np
import pytest

from losslens.errors import LosslensError
from losslens.landscape.surface_comparison import SurfaceComparison, compare_surfaces, sharpness_of
from losslens.landscape.surface import Surface
from losslens.landscape.wavelets import multiscale
from losslens.landscape.diagram_distances import bottleneck
from losslens.landscape.topology import topology

X = np.linspace(-1.0, 1.0, 33)  # nx = 33
Y = np.linspace(-0.5, 1.5, 24)  # ny = 24


def landscape(seed=0, shift=0.0):
    XX, YY = np.meshgrid(X, Y)
    rng = np.random.default_rng(seed)
    bumps = 0.3 * np.sin(5 * XX) * np.cos(4 * YY) + 0.01 * rng.normal(size=XX.shape)
    return XX**2 + 2 * (YY - 0.5) ** 2 + bumps + shift


def surface(Z, x=X, y=Y, meta=None):
    return SimpleNamespace(x=x, y=y, loss=Z, meta=meta or {})


def test_rows_agree_with_each_analysis_and_distances_with_the_shift():
    a, b = landscape(), landscape(shift=0.3)
    result = compare_surfaces([surface(a, meta={"hessian": {"lambda_max": 12.5}}), surface(b)], names=["A", "B"])
    row_a, row_b = result.rows
    assert row_a["name"] == "A" and row_a["shape"] == [24, 33]
    assert row_a["n_basins"] == len(topology(surface(a)).basins) and row_a["n_loops"] == topology(surface(a)).n_loops
    assert row_a["roughness"] == multiscale(surface(a)).roughness
    assert (row_a["min"], row_a["max"], row_a["range"]) == (a.min(), a.max(), np.ptp(a))
    assert row_a["sharpness"] == 12.5 and row_b["sharpness"] is None
    assert row_b["min"] == pytest.approx(a.min() + 0.3)
    (pair,) = result.distances
    assert (pair["a"], pair["b"]) == ("A", "B")
    assert pair["bottleneck_h0"] == pytest.approx(0.3, rel=1e-9)  # the essential class moves by the shift
    assert pair["max_abs_difference"] == pytest.approx(0.3) and pair["rms_difference"] == pytest.approx(0.3)
    assert pair["bottleneck_h1"] == pytest.approx(bottleneck(topology(surface(a)), topology(surface(b)), 1))
    assert result.summary() == {"n_surfaces": 2, "farthest_pair": ["A", "B"],
                                "max_bottleneck_h0": pair["bottleneck_h0"]}


def test_diagram_distances_need_no_common_grid_but_value_distances_do():
    coarse = surface(landscape()[::2, ::2], x=X[::2], y=Y[::2])
    result = compare_surfaces([surface(landscape()), coarse, surface(landscape(seed=1))])
    assert [(d["a"], d["b"]) for d in result.distances] == [("0", "1"), ("0", "2"), ("1", "2")]
    assert result.distances[0]["max_abs_difference"] is None and result.distances[0]["bottleneck_h0"] >= 0
    assert result.distances[1]["max_abs_difference"] == pytest.approx(np.abs(landscape() - landscape(seed=1)).max())
    # the stability theorem bounds the diagram distance by the largest difference of values
    assert result.distances[1]["bottleneck_h0"] <= result.distances[1]["max_abs_difference"] + 1e-12


def test_nonfinite_values_give_no_roughness_and_a_warning():
    Z = landscape()
    Z[3, 4] = np.nan
    result = compare_surfaces([surface(Z), surface(landscape())], names=["holey", "full"])
    assert result.rows[0]["roughness"] is None and result.rows[1]["roughness"] is not None
    assert any(w.startswith("holey: no roughness") and "1 NaN" in w for w in result.meta["warnings"])
    assert result.rows[0]["min"] == np.nanmin(Z)
    assert result.distances[0]["max_abs_difference"] == 0.0  # over the points finite in both


def test_table_text_json_and_save(tmp_path):
    result = compare_surfaces([surface(landscape()), surface(landscape(seed=2))], names=["resnet", "noskip"])
    text = result.format_table()
    assert text.splitlines()[0].split() == ["name", "shape", "min", "max", "range", "n_basins", "threshold",
                                            "n_loops", "roughness", "sharpness"]
    assert "resnet" in text and "noskip" in text and "24x33" in text and "bottleneck_h0" in text
    doc = json.loads(json.dumps(result.to_json(), allow_nan=False))
    assert [r["name"] for r in doc["surfaces"]] == ["resnet", "noskip"] and len(doc["distances"]) == 1
    back = SurfaceComparison.load(result.save(tmp_path / "c.h5"))
    assert back.rows == result.rows and back.distances == result.distances and back.names == ("resnet", "noskip")


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="at least 2 surfaces, found 1"):
        compare_surfaces([surface(landscape())])
    with pytest.raises(ValueError, match="1 names for 2 surfaces"):
        compare_surfaces([surface(landscape()), surface(landscape())], names=["a"])


def test_sharpness_hook():
    assert sharpness_of({"hessian": {"lambda_max": 3}}) == 3.0
    assert sharpness_of({}) is None and sharpness_of({"hessian": "x"}) is None


# -- reading the older loss-landscape tool's files ------------------------------------------------


def write_reference_file(path, x, y, Z, *, stored_shape=None, split="train"):
    """The reference tool's layout: no losslens header, values in the flat order of np.meshgrid(x, y)."""
    with h5py.File(path, "w") as f:
        f["xcoordinates"] = x
        if y is not None:
            f["ycoordinates"] = y
        f[f"{split}_loss"] = Z.reshape(stored_shape or Z.shape)
    return path


@pytest.mark.parametrize("stored_shape", [None, (33, 24)])  # (ny, nx), or the tool's own (nx, ny) allocation
def test_reference_files_are_read_as_loss_iy_ix(tmp_path, stored_shape):
    Z = np.add.outer(100 * np.arange(24.0), np.arange(33.0))  # Z[iy, ix] = 100 iy + ix
    Z[5, 7] = -1.0  # the tool's mark for a point not computed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the (nx, ny) allocation is read with a warning
        s = Surface.load(write_reference_file(tmp_path / "s.h5", X, Y, Z, stored_shape=stored_shape))
    assert s.loss.shape == (24, 33) and s.loss[2, 3] == 203.0 and np.isnan(s.loss[5, 7])
    np.testing.assert_array_equal(s.x, X)
    np.testing.assert_array_equal(s.y, Y)
    assert s.meta["legacy"] == "loss-landscape" and s.split == "train"


def test_reference_line_files_and_paths_as_input(tmp_path):
    values = (X - 0.2) ** 2
    line = Surface.load(write_reference_file(tmp_path / "l.h5", X, None, values, split="test"))
    assert line.y is None and line.split == "test"
    np.testing.assert_array_equal(line.loss, values)
    a = write_reference_file(tmp_path / "a.h5", X, Y, landscape())
    b = write_reference_file(tmp_path / "b.h5", X, Y, landscape(seed=3))
    result = compare_surfaces([a, b])
    assert result.names == ("a", "b")


def test_bad_files_are_named(tmp_path):
    with pytest.raises(LosslensError, match="no such file"):
        Surface.load(tmp_path / "missing.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["something"] = np.zeros(3)
    with pytest.raises(LosslensError, match="not a surface file"):
        Surface.load(tmp_path / "other.h5")
    write_reference_file(tmp_path / "short.h5", X, Y, np.zeros(10))
    with pytest.raises(LosslensError, match=r"train_loss holds 10 values, but the coordinates make a 33 x 24 grid"):
        Surface.load(tmp_path / "short.h5")


def test_diagrams_beyond_the_exact_matching_get_no_wasserstein_and_a_warning(monkeypatch):
    from losslens.landscape import diagram_distances

    a, b = topology(surface(landscape())), topology(surface(landscape(seed=1)))
    limit = len(a.diagram_h0) + len(b.diagram_h0) - 3  # two essential classes and one finite point too many
    monkeypatch.setattr(diagram_distances, "MATCHING_POINTS", limit)
    result = compare_surfaces([surface(landscape()), surface(landscape(seed=1))], names=["A", "B"])
    (pair,) = result.distances
    assert pair["wasserstein_h0"] is None and pair["bottleneck_h0"] == pytest.approx(bottleneck(a, b))
    assert any(w.startswith(f"A vs B: no wasserstein_h0: the exact Wasserstein matching is limited to {limit}")
               for w in result.meta["warnings"])
    assert "-" in result.format_table().splitlines()[-1].split()  # an empty cell, not a made-up number


def test_every_row_has_its_own_name(tmp_path):
    (tmp_path / "r1").mkdir(), (tmp_path / "r2").mkdir()
    a = write_reference_file(tmp_path / "r1" / "surface.h5", X, Y, landscape())
    b = write_reference_file(tmp_path / "r2" / "surface.h5", X, Y, landscape(seed=3))
    assert compare_surfaces([a, b]).names == (str(a), str(b))
    with pytest.raises(ValueError, match="names must be distinct"):
        compare_surfaces([surface(landscape()), surface(landscape(seed=3))], names=["a", "a"])
