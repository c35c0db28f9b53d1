"""The landscape commands in-process: surface (and its resumption), interpolate, hessian, plot, bad input."""

import json
import math

import h5py
import numpy as np
import pytest

from losslens.cli import _common
from losslens.cli.main import main
from losslens.core.checkpoints import save_checkpoint
from losslens.core.evaluator import Evaluator
from losslens.core.models import build_model
from losslens.landscape.interpolation import Interpolation
from losslens.landscape.spectrum import Spectrum
from losslens.landscape.surface import Surface

FAST = ["--subset", "100", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Three small MLP checkpoints for digits (different seeds), with the metadata losslens train writes."""
    root = tmp_path_factory.mktemp("ckpt")
    meta = {"model": "mlp", "model_kwargs": json.dumps({"hidden": [16]}), "data": "digits"}
    return [str(save_checkpoint(build_model("mlp", input_shape=(1, 8, 8), num_classes=10, seed=s, hidden=[16]),
                                root / f"mlp{s}.safetensors", metadata=meta)) for s in range(3)]


@pytest.fixture
def count_points(monkeypatch):
    """Counts the grid points the evaluator computes (rows of coefficients given to evaluate_affine)."""
    counted = [0]
    original = Evaluator.evaluate_affine

    def counting(self, w0, D, coeffs):
        counted[0] += len(coeffs)
        return original(self, w0, D, coeffs)

    monkeypatch.setattr(Evaluator, "evaluate_affine", counting)
    return counted


def test_surface_writes_files_and_resumes(tmp_path, capsys, checkpoints, count_points):
    out = tmp_path / "s"
    assert main(["surface", checkpoints[0], "--steps", "5", "--ysteps", "4", "--out", str(out)] + FAST) == 0
    stdout = capsys.readouterr().out
    for name in ("surface.h5", "surface_contour.png", "surface_3d.png", "surface.html"):
        assert (out / name).stat().st_size > 0 and f"wrote {out / name}" in stdout
    surface = Surface.load(out / "surface.h5")
    assert surface.loss.shape == (5, 4) and surface.complete and count_points[0] == 20
    assert surface.meta["model"] == "mlp" and surface.meta["data"]["subset"] == 100
    assert surface.directions.kind == "random" and surface.directions.meta["normalization"] == "filter"

    assert main(["surface", checkpoints[0], "--steps", "5", "--ysteps", "4", "--out", str(out)] + FAST) == 0
    assert f"nothing to compute: {out / 'surface.h5'} already holds all 20 points" in capsys.readouterr().out
    assert count_points[0] == 20  # nothing was evaluated again

    with h5py.File(out / "surface.h5", "r+") as f:  # as if interrupted during the last row
        f["done"][4] = False
    assert main(["surface", checkpoints[0], "--steps", "5", "--ysteps", "4", "--out", str(out)] + FAST) == 0
    assert "(resumed: 16 of 20 points were already computed)" in capsys.readouterr().out
    assert count_points[0] == 24
    np.testing.assert_allclose(Surface.load(out / "surface.h5").loss, surface.loss, rtol=1e-6)


def test_surface_1d_along_pca_of_a_trajectory(tmp_path, capsys, checkpoints):
    out = tmp_path / "p"
    assert main(["surface", checkpoints[2], "--1d", "--dirs", "pca", "--checkpoints", *checkpoints, "--steps", "4",
                 "--range", "-0.5", "0.5", "--out", str(out)] + FAST) == 0
    stdout = capsys.readouterr().out
    for name in ("surface.h5", "surface_1d.png", "surface.html"):
        assert f"wrote {out / name}" in stdout
    surface = Surface.load(out / "surface.h5")
    assert surface.ndim == 1 and surface.directions.kind == "pca"
    np.testing.assert_allclose(surface.x, np.linspace(-0.5, 0.5, 4))


def test_default_model_is_trained_once_then_reused(tmp_path, capsys, monkeypatch, count_points):
    monkeypatch.setattr(_common, "DEFAULT_EPOCHS", 1)
    out = tmp_path / "d"
    assert main(["surface", "--steps", "3", "--out", str(out)] + FAST) == 0
    stdout = capsys.readouterr().out
    assert f"training the default model, mlp on digits for 1 epochs, into {out / 'default-model'}" in stdout
    assert (out / "default-model" / "run.json").is_file() and (out / "surface_contour.png").is_file()
    assert main(["interpolate", "--steps", "3", "--out", str(out)] + FAST) == 0
    stdout = capsys.readouterr().out
    assert "using the default model" in stdout and "training" not in stdout
    interp = Interpolation.load(out / "interpolation.h5")
    assert [p.rsplit("/", 1)[-1] for p in interp.meta["endpoints"]] == ["step_000000.safetensors",
                                                                         "step_000022.safetensors"]


def test_interpolate_prints_the_barrier(tmp_path, capsys, checkpoints):
    out = tmp_path / "i"
    assert main(["interpolate", checkpoints[0], checkpoints[1], "--steps", "5", "--extrapolate", "0.25",
                 "--out", str(out)] + FAST) == 0
    stdout = capsys.readouterr().out
    interp = Interpolation.load(out / "interpolation.h5")
    np.testing.assert_allclose(interp.t, [-0.25, 0.0, 0.125, 0.5, 0.875, 1.0, 1.25])
    assert f"barrier {interp.barrier:.6g} " in stdout
    assert interp.meta["model"] == "mlp" and interp.meta["endpoints"] == checkpoints[:2]
    for name in ("interpolation.h5", "interpolation.png", "interpolation.html"):
        assert f"wrote {out / name}" in stdout


def test_hessian_writes_eigenvalues_trace_and_density(tmp_path, capsys, checkpoints):
    out = tmp_path / "h"
    assert main(["hessian", checkpoints[0], "--top-k", "2", "--trace-samples", "12", "--density",
                 "--density-vectors", "2", "--lanczos-steps", "12", "--out", str(out)] + FAST) == 0
    stdout = capsys.readouterr().out
    info = json.loads((out / "hessian.json").read_text())
    values = info["eigenvalues"]
    assert len(values) == 2 and all(math.isfinite(v) for v in values) and values[0] >= values[1]
    assert info["lambda_max"] == values[0] and max(info["residual_norms"]) < 1e-3 * abs(values[0])
    assert math.isfinite(info["trace"]["value"]) and info["trace"]["stderr"] > 0
    assert info["trace"]["n_matvec"] == 12 and info["evaluator"]["n_samples"] == 100
    spectrum = Spectrum.load(out / "spectrum.h5")
    assert spectrum.nodes.shape == (2, 12) and info["density"]["lambda_max"] == spectrum.lambda_max
    for name in ("hessian.json", "spectrum.h5", "hessian_eigenvalues.png", "hessian_density.png"):
        assert f"wrote {out / name}" in stdout
    assert f"trace {info['trace']['value']:.6g} ± " in stdout


def test_plot_redraws_saved_results(tmp_path, capsys, checkpoints):
    src = tmp_path / "src"
    assert main(["surface", checkpoints[0], "--steps", "3", "--out", str(src)] + FAST) == 0
    capsys.readouterr()
    out = tmp_path / "redrawn"
    assert main(["plot", str(src / "surface.h5"), "--log", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    for name in ("surface_contour.png", "surface_3d.png", "surface.html"):
        assert f"wrote {out / name}" in stdout and (out / name).stat().st_size > 0
    assert main(["plot", str(src / "surface.h5")]) == 0  # next to the file by default
    assert f"wrote {src / 'surface_3d.png'}" in capsys.readouterr().out


@pytest.fixture
def corrupt(tmp_path):
    path = tmp_path / "corrupt.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    return str(path)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["surface", "CKPT", "--dirs", "banana"], "argument --dirs: invalid choice: 'banana'"),
        (["surface", "CKPT", "--steps", "0"], "argument --steps: expected an integer >= 2, got '0'"),
        (["surface", "CKPT", "--norm", "l2"], "argument --norm: invalid choice: 'l2'"),
        (["hessian", "CKPT", "--backend", "arpack"], "argument --backend: invalid choice: 'arpack'"),
        (["interpolate", "CKPT", "--steps", "1"], "argument --steps: expected an integer >= 2, got '1'"),
    ],
)
def test_bad_flags_give_one_error_line(capsys, checkpoints, argv, message):
    argv = [checkpoints[0] if a == "CKPT" else a for a in argv]
    assert main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"losslens {argv[0]}: error: ") and message in lines[0]
    assert lines[0].endswith(f"(see: losslens {argv[0]} --help)")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["surface", "MISSING"], "missing.safetensors"),
        (["surface", "CORRUPT"], "corrupt.safetensors"),
        (["hessian", "CORRUPT"], "corrupt.safetensors"),
        (["interpolate", "CKPT", "MISSING"], "missing.safetensors"),
        (["interpolate", "CKPT"], "interpolate takes two checkpoints A B"),
        (["surface", "CKPT", "--checkpoints", "CKPT"], "--checkpoints applies only to --dirs pca, not to --dirs random"),
        (["surface", "CKPT", "--dirs", "hessian", "--norm", "layer"], "--norm applies only to --dirs random"),
        (["surface", "CKPT", "--1d", "--ysteps", "3"], "a --1d line has none"),
        (["plot", "MISSING"], "missing.safetensors: no such file"),
        (["plot", "CORRUPT"], "not an HDF5 file"),
    ],
)
def test_bad_input_gives_one_line(tmp_path, capsys, checkpoints, corrupt, argv, message):
    names = {"CKPT": checkpoints[0], "MISSING": str(tmp_path / "missing.safetensors"), "CORRUPT": corrupt}
    argv = [names.get(a, a) for a in argv] + ["--out", str(tmp_path / "o")] * (argv[0] != "plot") + \
        (FAST if argv[0] != "plot" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("losslens: error: ") and message in err
    assert "Traceback" not in err
