"""The landscape commands in-process: surface (its resumption, splits, provenance), interpolate, hessian,
plot, and every kind of bad input as one line."""

import json
import math
import os

import h5py
import numpy as np
import pytest

from losslens.cli import _common
from losslens.cli.main import main
from losslens.connectivity.barriers import DEFINITIONS
from losslens.core.checkpoints import save_checkpoint
from losslens.core.evaluator import Evaluator
from losslens.core.models import build_model
from losslens.core.provenance import CheckpointMeta
from losslens.curvature.hessian import Eigenpairs
from losslens.curvature.spectrum import Spectrum
from losslens.curvature.trace_estimation import TraceEstimate
from losslens.landscape.surface import Surface

FAST = ["--subset", "100", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Three small MLP checkpoints for digits (different seeds), with the metadata losslens train writes."""
    root = tmp_path_factory.mktemp("ckpt")
    meta = CheckpointMeta(model="mlp", model_kwargs={"hidden": [16]}, data="digits", step=3, epoch=1.0).to_metadata()
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
    argv = ["surface", checkpoints[0], "--steps", "5", "--ysteps", "4", "--out", str(out)] + FAST
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    for name in ("surface.h5", "surface_contour.png", "surface_3d.png", "surface.html"):
        assert (out / name).stat().st_size > 0 and f"wrote {out / name}" in stdout
    assert "on digits train split (100 samples, a seeded subset of 1347" in stdout
    surface = Surface.load(out / "surface.h5")
    assert surface.loss.shape == (4, 5) and surface.complete and count_points[0] == 20
    assert surface.meta["model"]["name"] == "mlp" and surface.meta["model"]["kwargs"] == {"hidden": [16]}
    assert surface.meta["data"]["subset"] == {"of": 1347, "seed": 0} and surface.split == "train"
    assert surface.meta["checkpoint"]["label"].endswith("/mlp0.safetensors") and surface.meta["checkpoint"]["step"] == 3
    assert surface.directions.kind == "random" and surface.directions.meta["normalization"] == "filter"
    with h5py.File(out / "surface.h5", "r") as f:
        assert f["train_loss"].shape == (4, 5)  # the reference tool's default key and layout

    assert main(argv) == 0
    assert f"nothing to compute: {out / 'surface.h5'} already holds all 20 points" in capsys.readouterr().out
    assert count_points[0] == 20  # nothing was evaluated again

    with h5py.File(out / "surface.h5", "r+") as f:  # as if interrupted during the last row
        f["done"][3] = False
    assert main(argv) == 0
    assert "(resumed: 15 of 20 points were already computed)" in capsys.readouterr().out
    assert count_points[0] == 25
    np.testing.assert_allclose(Surface.load(out / "surface.h5").loss, surface.loss, rtol=1e-6)


def test_surface_of_both_splits_and_a_range_without_the_origin(tmp_path, capsys, checkpoints):
    out = tmp_path / "both"
    assert main(["surface", checkpoints[0], "--split", "both", "--steps", "3", "--range", "0.5", "1",
                 "--out", str(out)] + FAST) == 0
    stdout = capsys.readouterr().out
    assert "the grid does not hold the origin w0" in stdout and "loss at the origin" not in stdout
    with h5py.File(out / "surface.h5", "r") as f:
        assert {"train_loss", "train_acc", "test_loss", "test_acc"} <= set(f)
    assert "train split" in stdout and "test split" in stdout


def test_surface_refuses_a_grid_of_another_model(tmp_path, capsys, checkpoints):
    out = tmp_path / "arch"
    meta = CheckpointMeta(model="resnet", data="digits").to_metadata()
    skip = save_checkpoint(build_model("resnet", input_shape=(1, 8, 8), seed=0), tmp_path / "r.safetensors", metadata=meta)
    base = ["surface", str(skip), "--steps", "3", "--out", str(out)] + FAST
    assert main(base) == 0
    with h5py.File(out / "surface.h5", "r+") as f:
        f["done"][2] = False  # interrupted
    capsys.readouterr()
    assert main(base + ["--model", "resnet-noskip"]) == 2  # identical parameter shapes, another network
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.architecture differs" in err and "model.name differs" in err


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


def test_negative_ranges_in_e_notation(tmp_path, capsys, checkpoints):
    out = tmp_path / "e"
    assert main(["surface", checkpoints[0], "--range", "-1e-3", "1e-3", "--yrange", "-.5", "-1E-2", "--steps", "3",
                 "--out", str(out)] + FAST) == 0
    surface = Surface.load(out / "surface.h5")
    np.testing.assert_allclose(surface.x, [-1e-3, 0.0, 1e-3])
    np.testing.assert_allclose(surface.y, [-0.5, -0.255, -0.01])


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
    line = Surface.load(out / "interpolation.h5")
    assert [p.rsplit("/", 1)[-1] for p in line.directions.meta["endpoints"]] == ["step_000000.safetensors",
                                                                                  "step_000022.safetensors"]


def test_interpolate_prints_the_barrier(tmp_path, capsys, checkpoints):
    out = tmp_path / "i"
    assert main(["interpolate", checkpoints[0], checkpoints[1], "--steps", "5", "--extrapolate", "0.25",
                 "--out", str(out)] + FAST) == 0
    stdout = capsys.readouterr().out
    line = Surface.load(out / "interpolation.h5")
    np.testing.assert_allclose(line.x, [-0.25, 0.0, 0.125, 0.5, 0.875, 1.0, 1.25])
    inside = (line.x >= 0) & (line.x <= 1)
    loss, t, error = line.loss[inside], line.x[inside], 1 - line.metrics["accuracy"][inside]
    by_hand = {"barrier_max": max(loss) - max(loss[0], loss[-1]), "barrier_mean": max(loss) - (loss[0] + loss[-1]) / 2,
               "barrier": max(loss - ((1 - t) * loss[0] + t * loss[-1]))}
    for name, definition in DEFINITIONS.items():  # one line each, named with its definition
        assert f"\n{name} {by_hand[name]:.6g} ({definition})\n" in stdout
    assert f"error (1 - accuracy) barrier {max(error - ((1 - t) * error[0] + t * error[-1])):.6g}, " in stdout
    assert f"loss {loss[0]:.6g} at A = {checkpoints[0]}, {loss[-1]:.6g} at B = {checkpoints[1]}, " in stdout
    assert line.meta["model"]["name"] == "mlp" and line.directions.meta["endpoints"] == checkpoints[:2]
    for name in ("interpolation.h5", "interpolation.png", "interpolation.html"):
        assert f"wrote {out / name}" in stdout


def test_hessian_writes_result_files_and_summary(tmp_path, capsys, checkpoints):
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
    assert info["evaluator"]["data"]["split"] == "train"
    pairs, tr = Eigenpairs.load(out / "eigenpairs.h5"), TraceEstimate.load(out / "trace.h5")
    assert pairs.values.tolist() == values and tr.value == info["trace"]["value"]
    spectrum = Spectrum.load(out / "spectrum.h5")
    assert spectrum.nodes.shape == (2, 12) and info["density"]["lambda_max"] == spectrum.lambda_max
    for name in ("hessian.json", "eigenpairs.h5", "trace.h5", "spectrum.h5", "hessian_eigenvalues.png",
                 "hessian_density.png"):
        assert f"wrote {out / name}" in stdout
    assert f"trace {info['trace']['value']:.6g} ± " in stdout


def test_hessian_warns_of_a_density_from_one_lanczos_step(tmp_path, capsys, checkpoints):
    out = tmp_path / "h"
    assert main(["hessian", checkpoints[0], "--top-k", "1", "--trace-samples", "4", "--density",
                 "--density-vectors", "1", "--lanczos-steps", "1", "--out", str(out)] + FAST) == 0
    stdout = capsys.readouterr().out
    assert "warning: only 1 Lanczos step per start vector" in stdout and "found by Lanczos" in stdout
    info = json.loads((out / "hessian.json").read_text())
    assert len(info["density"]["warnings"]) == 2 and info["density"]["lambda_max"] < info["lambda_max"]


def test_hessian_says_when_the_trace_is_not_resolved(tmp_path, capsys, checkpoints, monkeypatch):
    from losslens.curvature import trace_estimation

    monkeypatch.setattr(trace_estimation, "trace", lambda *a, **k: TraceEstimate(12.23, 16.0, 12, "hutch++", {}))
    out = tmp_path / "h"
    assert main(["hessian", checkpoints[0], "--trace-samples", "12", "--out", str(out)] + FAST) == 0
    assert "trace 12.23 ± 16 (hutch++, 12 Hessian-vector products): not resolved" in capsys.readouterr().out
    assert json.loads((out / "hessian.json").read_text())["trace"]["resolved"] is False


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


def test_plot_reads_the_reference_tools_files(tmp_path, capsys):
    path = tmp_path / "ref.h5"
    x, y = np.linspace(-1, 1, 5), np.linspace(-1, 1, 5)
    X, Y = np.meshgrid(x, y)
    with h5py.File(path, "w") as f:
        f["xcoordinates"], f["ycoordinates"], f["train_loss"] = x, y, 1 + X**2 + 2 * Y**2
    assert main(["plot", str(path)]) == 0
    assert f"wrote {tmp_path / 'ref_contour.png'}" in capsys.readouterr().out


def test_metadata_never_makes_losslens_import_code(tmp_path, capsys, monkeypatch):
    (tmp_path / "payload.py").write_text("import pathlib\npathlib.Path('PWNED').write_text('x')\n"
                                         "def model():\n    raise SystemExit('imported')\n")
    meta = CheckpointMeta(model="payload:model", data="payload:model").to_metadata()
    ckpt = save_checkpoint(build_model("mlp", input_shape=(1, 8, 8), seed=0), tmp_path / "gift.safetensors",
                           metadata=meta)
    monkeypatch.chdir(tmp_path)
    assert main(["surface", str(ckpt), "--steps", "3", "--out", str(tmp_path / "o")] + FAST) == 2
    err = capsys.readouterr().err
    assert "never imports code named by a file" in err and "--model payload:model" in err
    assert not (tmp_path / "PWNED").exists()


def test_sigterm_stops_cleanly_and_the_rerun_resumes(tmp_path, checkpoints, monkeypatch):
    """A real process, stopped by SIGTERM (what SLURM sends) in the middle of a grid."""
    import signal
    import subprocess
    import sys
    import time

    monkeypatch.setenv("HDF5_USE_FILE_LOCKING", "FALSE")  # peek at the file while the other process writes it
    out = tmp_path / "t"
    argv = [sys.executable, "-m", "losslens", "surface", checkpoints[0], "--steps", "101", "--out", str(out),
            "--subset", "all", "--device", "cpu", "--threads", "1"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ | {"PYTHONUNBUFFERED": "1"})
    path = out / "surface.h5"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # wait until some points are on disk
        try:
            if Surface.load(path).meta["n_done"] > 0:
                break
        except Exception:  # noqa: BLE001 - not there yet
            pass
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the grid finished before the signal arrived")
    assert proc.returncode == 143 and "terminated (SIGTERM)" in err and "Traceback" not in err
    partial = Surface.load(path)
    assert 0 < partial.meta["n_done"] < 101 * 101
    done = subprocess.run(argv + ["--no-progress"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"resumed: {partial.meta['n_done']} of 10201 points" in done.stdout
    assert Surface.load(path).complete


@pytest.fixture
def corrupt(tmp_path):
    path = tmp_path / "corrupt.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    return str(path)


@pytest.mark.parametrize(
    "argv, flag, value",
    [
        (["surface", "--range", "-1", "inf"], "--range", "inf"),
        (["surface", "--yrange", "nan", "1"], "--yrange", "nan"),
        (["replay", "--start", "0", "nan"], "--start", "nan"),
        (["replay", "--noise", "inf"], "--noise", "inf"),
        (["interpolate", "--extrapolate", "1e400"], "--extrapolate", "1e400"),
        (["train", "--lr", "nan"], "--lr", "nan"),
        (["trajectory", "--perplexity", "inf"], "--perplexity", "inf"),
        (["topology", "s.h5", "--min-persistence", "nan"], "--min-persistence", "nan"),
        (["report", "--replay-lr=-inf"], "--replay-lr", "-inf"),
        (["surface", "--seed", str(2**70)], "--seed", str(2**70)),
        (["train", "--seed", "-1"], "--seed", "-1"),
        (["hessian", "--seed", "4294967296"], "--seed", "4294967296"),
    ],
)
def test_non_finite_numbers_and_seeds_out_of_range_are_usage_errors(capsys, argv, flag, value):
    assert main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    expected = "an integer from 0 to 4294967295" if flag == "--seed" else "a finite number"
    assert len(lines) == 1 and f"argument {flag}: expected {expected}, got '{value}'" in lines[0]


def test_a_learning_rate_of_infinity_is_refused(capsys):
    assert main(["compare", "--lr", "sgd=Infinity"]) == 2
    assert "--lr sgd=inf: the learning rate must be a finite number" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["surface", "CKPT", "--dirs", "banana"], "argument --dirs: invalid choice: 'banana'"),
        (["surface", "CKPT", "--steps", "0"], "argument --steps: expected an integer >= 2, got '0'"),
        (["surface", "CKPT", "--norm", "l2"], "argument --norm: invalid choice: 'l2'"),
        (["surface", "CKPT", "--split", "val"], "argument --split: invalid choice: 'val'"),
        (["surface", "CKPT", "--subset", "0"], "argument --subset: expected an integer >= 1, got '0'"),
        (["hessian", "CKPT", "--backend", "arpack"], "argument --backend: invalid choice: 'arpack'"),
        (["hessian", "CKPT", "--split", "both"], "argument --split: invalid choice: 'both'"),
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
        (["surface", "FIFO"], "not a regular file"),
        (["hessian", "CORRUPT"], "corrupt.safetensors"),
        (["interpolate", "CKPT", "MISSING"], "missing.safetensors"),
        (["interpolate", "CKPT"], "interpolate takes two checkpoints A B"),
        (["interpolate", "CKPT", "CKPT"], "the same point"),
        (["interpolate", "CKPT", "CKPT2", "--extrapolate", "1e30"], "extrapolate must be a number from 0 to 10"),
        (["interpolate", "CKPT", "CKPT2", "--steps", "2", "--extrapolate", "0"], "no point strictly between t=0 and t=1"),
        (["surface", "CKPT", "--checkpoints", "CKPT"], "--checkpoints applies only to --dirs pca, not to --dirs random"),
        (["surface", "CKPT", "--dirs", "hessian", "--norm", "layer"], "--norm applies only to --dirs random"),
        (["surface", "CKPT", "--1d", "--ysteps", "3"], "a --1d line has none"),
        (["surface", "CKPT", "--range", "1", "1"], "--range must be two finite numbers A < B, got 1 1"),
        (["surface", "CKPT", "--range", "1", "-1"], "--range must be two finite numbers A < B"),
        (["surface", "CKPT", "--model", "cnn"], "does not fit the model"),
        (["plot", "MISSING"], "missing.safetensors: no such file"),
        (["plot", "CORRUPT"], "not an HDF5 file"),
        (["plot", "DAMAGED"], "damaged.h5: damaged surface file: dataset xcoordinates is missing"),
        (["plot", "EIGEN", "--log"], "a log scale applies to loss surfaces"),
    ],
)
def test_bad_input_gives_one_line(tmp_path, capsys, checkpoints, corrupt, argv, message):
    os.mkfifo(tmp_path / "fifo.safetensors")
    damaged = tmp_path / "damaged.h5"
    with h5py.File(damaged, "w") as f:
        f.attrs["losslens_kind"], f.attrs["losslens_format"], f.attrs["meta"] = "surface", 2, "{}"
    import torch

    eigen = Eigenpairs(torch.ones(1), torch.ones(1, 2), "largest", 0.0, 1, {"residual_norms": [0.0]})
    names = {"CKPT": checkpoints[0], "CKPT2": checkpoints[1], "MISSING": str(tmp_path / "missing.safetensors"), "CORRUPT": corrupt,
             "FIFO": str(tmp_path / "fifo.safetensors"), "DAMAGED": str(damaged),
             "EIGEN": str(eigen.save(tmp_path / "eigen.h5"))}
    argv = [names.get(a, a) for a in argv] + ["--out", str(tmp_path / "o")] * (argv[0] != "plot") + \
        (FAST if argv[0] != "plot" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("losslens: error: ") and message in err
    assert "Traceback" not in err
