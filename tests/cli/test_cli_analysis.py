"""The analysis commands in-process: multiscale, topology, compare-surfaces, on the reference tool's files."""

import csv
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from losslens.cli.main import main

X = np.linspace(0.0, 4.0, 41)  # nx = 41
Y = np.linspace(0.0, 2.0, 21)  # ny = 21
WELLS = [(1.0, 0.5, 3.0), (3.0, 1.5, 1.0)]


def wells(shift=0.0):
    XX, YY = np.meshgrid(X, Y)
    Z = np.full_like(XX, 5.0 + shift)
    for cx, cy, depth in WELLS:
        Z -= depth * np.maximum(0.0, 1.0 - ((XX - cx) ** 2 + (YY - cy) ** 2) / 0.09)
    return Z


def write_surface(path, Z, x=X, y=Y):
    """The reference tool's layout: xcoordinates (nx,), ycoordinates (ny,), train_loss (ny, nx) = Z[iy, ix]."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f["xcoordinates"] = x
        if y is not None:
            f["ycoordinates"] = y
        f["train_loss"] = Z
    return path


def one_line_error(capsys, *argv, contains=""):
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("losslens") and contains in err
    return err


def test_multiscale_writes_json_and_pictures_next_to_the_surface(tmp_path, capsys):
    path = write_surface(tmp_path / "run" / "surface.h5", wells())
    assert main(["multiscale", str(path)]) == 0
    stdout = capsys.readouterr().out
    out = tmp_path / "run"
    for name in ("multiscale.json", "multiscale.h5", "multiscale_coefficients.png", "multiscale_energy.png"):
        assert (out / name).stat().st_size > 0 and f"wrote {out / name}" in stdout
    doc = json.loads((out / "multiscale.json").read_text())
    assert [r["level"] for r in doc["levels"]] == [1, 2] and doc["level_numbering"].startswith("level 1 is the finest")
    total = doc["energy_approx"] + sum(r["energy_h"] + r["energy_v"] + r["energy_d"] for r in doc["levels"])
    assert total == pytest.approx(doc["energy_total"], rel=1e-12)
    assert doc["surface_shape"] == [21, 41] and doc["decomposed_shape"] == [24, 44]
    assert doc["wavelet"] == "haar" and doc["detrend"] == "quadratic" and 0 < doc["roughness"] <= 1
    assert doc["source"]["legacy"] == "loss-landscape"


def test_multiscale_options(tmp_path, capsys):
    path = write_surface(tmp_path / "surface.h5", wells())
    out = tmp_path / "book"
    assert main(["multiscale", str(path), "--preset", "book", "--out", str(out)]) == 0
    doc = json.loads((out / "multiscale.json").read_text())
    assert (doc["wavelet"], doc["level"], doc["mode"], doc["detrend"]) == ("haar", 2, "symmetric", "none")
    assert any("do not add up" in w for w in doc["warnings"]) and "do not add up" in capsys.readouterr().err
    assert main(["multiscale", str(path), "--wavelet", "db2", "--level", "1", "--detrend", "none", "--out",
                 str(out)]) == 0
    doc = json.loads((out / "multiscale.json").read_text())
    assert (doc["wavelet"], doc["level"], doc["detrend"]) == ("db2", 1, "none")


def test_multiscale_refuses_nonfinite_points_unless_told(tmp_path, capsys):
    Z = wells()
    Z[3, 4] = np.nan
    path = write_surface(tmp_path / "surface.h5", Z)
    one_line_error(capsys, "multiscale", str(path), contains="1 non-finite value (1 NaN, 0 inf) of 861")
    assert main(["multiscale", str(path), "--fill-nonfinite"]) == 0
    assert json.loads((tmp_path / "multiscale.json").read_text())["nonfinite"] == {"nan": 1, "inf": 0}


def test_topology_writes_basins_in_the_surface_coordinates(tmp_path, capsys):
    path = write_surface(tmp_path / "surface.h5", wells())
    assert main(["topology", str(path)]) == 0
    stdout = capsys.readouterr().out
    for name in ("topology.json", "topology.h5", "topology_diagrams.png", "topology_barcode.png",
                 "topology_basins.png"):
        assert (tmp_path / name).stat().st_size > 0 and f"wrote {tmp_path / name}" in stdout
    assert "2 basins and 0 loops" in stdout
    doc = json.loads((tmp_path / "topology.json").read_text())
    assert doc["n_basins"] == 2 and doc["threshold"] == pytest.approx(0.03)
    (first, second) = doc["basins"]
    assert (first["x"], first["y"], first["value"]) == (1.0, 0.5, 2.0)
    assert first["persistence"] is None and first["saddle"] is None
    assert (second["x"], second["y"]) == pytest.approx((3.0, 1.5)) and second["persistence"] == pytest.approx(1.0)
    assert second["saddle"]["value"] == pytest.approx(5.0)
    assert doc["diagram_h0"][0] == [2.0, None] and doc["diagram_h1"] == []


def test_topology_prints_the_first_basins_of_a_noisy_surface_and_writes_all(tmp_path, capsys):
    Z = np.random.default_rng(0).random((21, 41))  # hundreds of basins
    path = write_surface(tmp_path / "noise.h5", Z)
    assert main(["topology", str(path), "--min-persistence", "0"]) == 0
    stdout = capsys.readouterr().out
    n = json.loads((tmp_path / "topology.json").read_text())["n_basins"]
    assert n > 40 and stdout.count("  basin ") == 20
    assert f"... and {n - 20} more basins: every one is in {tmp_path / 'topology.json'}" in stdout


def test_topology_options(tmp_path, capsys):
    Z = wells()
    Z[0, 0] = np.inf
    path = write_surface(tmp_path / "surface.h5", Z)
    assert main(["topology", str(path), "--min-persistence", "2", "--construction", "cells", "--normalize",
                 "--out", str(tmp_path / "o")]) == 0
    captured = capsys.readouterr()
    assert "one basin" in captured.out and "1 non-finite value (0 NaN, 1 inf)" in captured.err
    doc = json.loads((tmp_path / "o" / "topology.json").read_text())
    assert doc["construction"] == "cells" and doc["threshold"] == 2.0 and doc["units"].startswith("normalized")
    assert doc["n_basins"] == 1 and doc["nonfinite"] == {"nan": 0, "inf": 1}


def test_line_surfaces(tmp_path):
    path = write_surface(tmp_path / "line.h5", wells()[5], y=None)
    assert main(["topology", str(path)]) == 0 and main(["multiscale", str(path)]) == 0
    doc = json.loads((tmp_path / "multiscale.json").read_text())
    assert doc["levels"][0]["energy_h"] is None and doc["levels"][0]["energy_d"] > 0
    assert json.loads((tmp_path / "topology.json").read_text())["basins"][0]["y"] is None


def test_compare_surfaces_prints_and_writes_tables(tmp_path, capsys):
    a = write_surface(tmp_path / "resnet" / "surface.h5", wells())
    b = write_surface(tmp_path / "noskip" / "surface.h5", wells(shift=0.5))
    assert main(["compare-surfaces", str(a), str(b)]) == 0
    stdout = capsys.readouterr().out
    assert "resnet/surface" in stdout and "noskip/surface" in stdout and "bottleneck_h0" in stdout
    for name in ("compare_surfaces.csv", "distances.csv", "compare_surfaces.json"):
        assert f"wrote {tmp_path / name}" in stdout  # the folder holding both files
    with open(tmp_path / "compare_surfaces.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == ["resnet/surface", "noskip/surface"]
    assert rows[0]["shape"] == "21x41" and rows[0]["n_basins"] == "2" and rows[0]["sharpness"] == ""
    with open(tmp_path / "distances.csv") as f:
        (pair,) = list(csv.DictReader(f))
    assert float(pair["bottleneck_h0"]) == pytest.approx(0.5)
    assert float(pair["max_abs_difference"]) == pytest.approx(0.5)
    doc = json.loads((tmp_path / "compare_surfaces.json").read_text())
    assert doc["summary"]["farthest_pair"] == ["resnet/surface", "noskip/surface"]
    out = tmp_path / "cmp"
    assert main(["compare-surfaces", str(a), str(b), "--names", "A", "B", "--out", str(out)]) == 0
    assert "A" in (out / "compare_surfaces.csv").read_text()


def test_bad_flags_and_files_give_one_line_and_status_2(tmp_path, capsys):
    path = write_surface(tmp_path / "surface.h5", wells())
    one_line_error(capsys, "multiscale", str(path), "--wavelet", "nope",
                   contains="wavelet must be a discrete wavelet of pywt.wavelist(kind='discrete'), e.g. haar")
    one_line_error(capsys, "multiscale", str(path), "--mode", "wrap", contains="mode must be one of zero, constant")
    one_line_error(capsys, "multiscale", str(path), "--level", "0", contains="--level")
    one_line_error(capsys, "multiscale", str(path), "--level", "9", contains="valid levels are 1..4")
    one_line_error(capsys, "multiscale", str(path), "--preset", "paper", contains="--preset")
    one_line_error(capsys, "topology", str(path), "--min-persistence", "-1", contains="threshold must be")
    one_line_error(capsys, "topology", str(path), "--construction", "pixels", contains="--construction")
    one_line_error(capsys, "topology", str(tmp_path / "missing.h5"), contains="no such file")
    (tmp_path / "text.h5").write_text("not hdf5")
    one_line_error(capsys, "multiscale", str(tmp_path / "text.h5"), contains="not an HDF5 file")
    one_line_error(capsys, "compare-surfaces", str(path), contains="at least 2 surface files")
    one_line_error(capsys, "compare-surfaces", str(path), str(path), "--names", "a", contains="1 names for 2 files")


def test_repeated_coordinates_are_refused_by_every_analysis(tmp_path, capsys):
    y = Y.copy()
    y[7] = y[6]  # two rows of the grid at one place
    path = write_surface(tmp_path / "dup.h5", wells(), y=y)
    good = write_surface(tmp_path / "good.h5", wells())
    for argv in (["multiscale", path], ["topology", path], ["plot", path], ["compare-surfaces", good, path]):
        one_line_error(capsys, *map(str, argv),
                       contains=f"{path}: y coordinates must be strictly increasing: {float(y[6])!r} is repeated "
                                "(y[6] = y[7])")


def test_compare_surfaces_returns_when_the_basin_counts_differ(tmp_path):
    """One well against three: gudhi's hera Wasserstein never returned on such diagrams."""
    from losslens.landscape.surface import Surface

    XX, YY = np.meshgrid(X, Y)
    def plateau(wells):  # noqa: E306 - minima 5 - depth at the centres (grid points), merging at 5
        return 5.0 - sum(d * np.maximum(0.0, 1.0 - ((XX - cx) ** 2 + (YY - cy) ** 2) / 0.09) for cx, cy, d in wells)
    a = Surface.from_arrays(X, Y, plateau([(1.0, 0.5, 3.0)])).save(tmp_path / "one.h5")
    three = plateau([(1.0, 0.5, 3.0), (2.2, 1.0, 2.0), (3.0, 1.5, 1.0)])
    b = Surface.from_arrays(X, Y, three).save(tmp_path / "three.h5")
    done = subprocess.run([sys.executable, "-m", "losslens", "compare-surfaces", str(a), str(b), "--out",
                           str(tmp_path / "o")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    (pair,) = json.loads((tmp_path / "o" / "compare_surfaces.json").read_text())["distances"]
    # H0: [[2, inf]] against [[2, inf], [3, 5], [4, 5]]: the essential classes match (gap 0), the two finite
    # points go to the diagonal at (5 - 3) / 2 = 1 and (5 - 4) / 2 = 0.5 (sup norm)
    assert pair["bottleneck_h0"] == pytest.approx(1.0) and pair["wasserstein_h0"] == pytest.approx(1.5)
    assert pair["essential_count_difference_h0"] == 0 and pair["essential_count_difference_h1"] == 0
    assert pair["bottleneck_h1"] == 0 and pair["wasserstein_h1"] == 0
    with open(tmp_path / "o" / "distances.csv") as f:
        assert next(csv.DictReader(f))["essential_count_difference_h0"] == "0"

