"""``losslens fit`` and ``losslens replay`` in-process: defaults, files written, flags, surface files."""

import csv
import json
import sys

import numpy as np
import pytest

from losslens.cli import _common
from losslens.cli import fit as fit_cmd
from losslens.cli.main import main
from losslens.cli.replay import parse_lr, parse_options
from losslens.core.optimizers import is_available
from losslens.errors import ConfigError
from losslens.landscape.fit import SurfaceFit
from losslens.landscape.surface import Surface
from losslens.trajectories.replay_result import Replay

X = np.linspace(-2.0, 2.5, 25)
Y = np.linspace(-1.5, 2.0, 19)


def bowl(x, y):
    return 3.0 - 2.5 * np.exp(-((x - 0.4) ** 2 / (2 * 0.8**2) + (y + 0.3) ** 2 / (2 * 0.5**2)))


@pytest.fixture(scope="module")
def surface_file(tmp_path_factory):
    """A Gaussian bowl in the reference tool's layout: train_loss (ny, nx)."""
    Xg, Yg = np.meshgrid(X, Y)
    return write_surface(tmp_path_factory.mktemp("s") / "surface.h5", X, Y, bowl(Xg, Yg))


def test_replay_with_no_arguments_descends_the_quadratic(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["replay", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    for name in ("paths.csv", "summary.csv", "replay.h5", "replay_paths.png", "replay_convergence.png", "replay.html"):
        assert (out / name).stat().st_size > 0 and f"wrote {out / name}" in stdout
    with open(out / "paths.csv") as f:
        assert next(csv.reader(f)) == ["optimizer", "step", "x", "y", "loss", "grad_norm", "lr"]
    r = Replay.load(out / "replay.h5")
    expected = ["sgd", "momentum", "adam"] + (["lion"] if is_available("lion") else [])
    assert list(r.labels) == expected and r.meta["objective"]["options"] == {"kappa": 10.0}
    assert r.meta["steps"] == 200 and all(o["lr"] == 0.05 for o in r.meta["optimizers"])
    with open(out / "summary.csv") as f:
        assert [row["optimizer"] for row in csv.DictReader(f)] == expected
    assert "lambda_max at the start 10" in stdout


def test_replay_says_once_that_lion_is_left_out_without_pytorch_optimizer(monkeypatch):
    from losslens.cli.replay import _optimizers

    monkeypatch.setitem(sys.modules, "pytorch_optimizer", None)  # the package missing: importing it fails
    with pytest.warns(UserWarning) as said:
        assert _optimizers(None) == ["sgd", "momentum", "adam"]
    assert [str(w.message) for w in said] == [
        "lion skipped: it comes from pytorch-optimizer, which is not installed (pip install pytorch-optimizer)"]


def test_replay_flags_reach_the_api(tmp_path):
    out = tmp_path / "f"
    assert main(["replay", "--function", "quadratic", "--condition", "4", "--optimizers", "sgd,adam,book-momentum",
                 "--lr", "0.02,adam=0.1", "--option", "adam.betas=[0.8,0.9]", "--updates", "7", "--start", "1", "-1",
                 "--schedule", "step", "--step-size", "3", "--gamma", "0.5", "--clip", "5", "--noise", "0.01",
                 "--seed", "3", "--out", str(out)]) == 0
    r = Replay.load(out / "replay.h5")
    assert r.meta["objective"]["options"] == {"kappa": 4.0} and r.meta["start"] == [1.0, -1.0]
    assert [o["lr"] for o in r.meta["optimizers"]] == [0.02, 0.1, 0.02]
    assert r.meta["optimizers"][1]["options"]["betas"] == [0.8, 0.9]
    assert r.meta["schedule"] == {"name": "step", "warmup": 0, "step_size": 3, "gamma": 0.5}
    assert (r.meta["clip"], r.meta["noise"], r.meta["seed"]) == (5.0, 0.01, 3)
    assert r.path("sgd")["lr"].tolist() == pytest.approx([0.02] * 3 + [0.01] * 3 + [0.005] * 2)


def test_lr_and_option_parsing():
    names = ["sgd", "adam", "lion"]
    assert parse_lr("0.1", names) == {"sgd": 0.1, "adam": 0.1, "lion": 0.1}
    assert parse_lr("sgd=0.1,adam=0.01", names) == {"sgd": 0.1, "adam": 0.01, "lion": 0.05}
    assert parse_lr("0.2, adam=0.01", names) == {"sgd": 0.2, "adam": 0.01, "lion": 0.2}
    for bad, message in (("rmsprop=0.1", "not among the optimizers"), ("-1", "positive number"),
                         ("0.1,0.2", "more than one rate"), ("sgd=fast", "positive number")):
        with pytest.raises(ConfigError, match=message):
            parse_lr(bad, names)
    assert parse_options(["adam.betas=[0.9,0.99]", "sgd.nesterov=true"], names) == {
        "adam": {"betas": [0.9, 0.99]}, "sgd": {"nesterov": True}}
    with pytest.raises(ConfigError, match="NAME.KEY=VALUE"):
        parse_options(["betas=1"], names)


@pytest.mark.parametrize("argv, message", [
    (["--function", "rosenbrock", "--condition", "4"], "--condition is the quadratic's"),
    (["--fit", "gaussian"], "--fit fits the surface FILE"),
    (["--optimizers", "sgd,sgd"], "lists sgd twice"),
    (["--optimizers", "lbfgs"], "LBFGS"),
    (["--lr", "rmsprop=0.1"], "not among the optimizers"),
    (["--schedule", "step"], "step_size"),
])
def test_bad_replay_flags_give_one_error_line(tmp_path, capsys, argv, message):
    assert main(["replay", "--out", str(tmp_path)] + argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("losslens: error:") and message in err and err.count("\n") == 1


def test_fit_a_reference_file_then_replay_on_the_fit_the_grid_and_a_fit_of_it(tmp_path, capsys, surface_file):
    out = tmp_path / "fit"
    assert main(["fit", str(surface_file), "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    for name in ("fit.json", "fit.h5", "fit_3d.png", "fit_residuals.png"):
        assert (out / name).stat().st_size > 0 and f"wrote {out / name}" in stdout
    info = json.loads((out / "fit.json").read_text())
    p = info["parameters"]
    assert [p["x0"], p["y0"], p["s1"], p["s2"]] == pytest.approx([0.4, -0.3, 0.8, 0.5], abs=1e-6)  # not transposed
    assert info["r2"] == pytest.approx(1.0, abs=1e-9) and info["fitted_curvature"][0] == pytest.approx(2.5 / 0.25)
    assert info["meta"]["source"]["legacy"] == "loss-landscape" and info["meta"]["source"]["data"]["split"] == "train"

    assert main(["replay", str(out / "fit.h5"), "--optimizers", "sgd", "--updates", "5", "--out", str(tmp_path / "a")]) == 0
    assert Replay.load(tmp_path / "a" / "replay.h5").meta["objective"]["kind"] == "fit"
    assert "final_fitted_loss" in (tmp_path / "a" / "summary.csv").read_text().splitlines()[0]
    assert "final fitted loss" in capsys.readouterr().out  # the fit's value, not the model's loss
    assert main(["replay", str(surface_file), "--optimizers", "adam", "--updates", "5", "--out", str(tmp_path / "b")]) == 0
    grid = Replay.load(tmp_path / "b" / "replay.h5")
    assert grid.meta["objective"]["kind"] == "grid" and grid.meta["start"] == pytest.approx([-0.875, 1.125])
    assert main(["replay", str(surface_file), "--fit", "quadratic", "--optimizers", "sgd", "--updates", "5",
                 "--out", str(tmp_path / "c")]) == 0
    assert Replay.load(tmp_path / "c" / "replay.h5").meta["objective"]["model"] == "quadratic"
    assert main(["replay", str(out / "fit.h5"), "--fit", "gaussian", "--out", str(tmp_path / "d")]) == 2
    assert "already a fit" in capsys.readouterr().err


def test_fit_flags(tmp_path, capsys, surface_file):
    assert main(["fit", str(surface_file), "--fit-model", "mixture", "--components", "2", "--offset", "max",
                 "--out", str(tmp_path)]) == 0
    fit = SurfaceFit.load(tmp_path / "fit.h5")
    assert fit.model == "mixture" and fit.names[1] == "A_1" and len(fit.names) == 11
    assert fit.parameters["offset"] == pytest.approx(Surface.load(surface_file).loss.max())
    for argv, message in ((["--fit-model", "gaussian", "--components", "2"], "--components applies to --fit-model mixture"),
                          (["--fit-model", "quadratic", "--offset", "max"], "--offset applies to the Gaussian"),
                          (["--offset", "top"], "--offset must be free, max or a number")):
        assert main(["fit", str(surface_file), "--out", str(tmp_path)] + argv) == 2
        assert message in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "fit.h5"), "--out", str(tmp_path)]) == 2
    assert "holds a losslens fit result, not a surface" in capsys.readouterr().err


def test_fit_prints_and_saves_a_degenerate_fit_and_refuses_too_few_points(tmp_path, capsys, surface_file):
    g = np.linspace(-1.0, 1.0, 9)
    flat = 1.0 + 0.01 * np.random.default_rng(1).standard_normal((9, 9))  # no well to fit
    assert main(["fit", str(write_surface(tmp_path / "flat.h5", g, g, flat)), "--out", str(tmp_path / "f")]) == 0
    assert "degenerate fit: " in capsys.readouterr().out
    info = json.loads((tmp_path / "f" / "fit.json").read_text())
    assert info["degenerate"] is True and info["warnings"] == list(SurfaceFit.load(tmp_path / "f" / "fit.h5").warnings)
    tiny = write_surface(tmp_path / "tiny.h5", [0.0, 1.0], [0.0, 1.0], np.ones((2, 2)))
    assert main(["fit", str(tiny), "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert "6 free parameters" in err and "4 finite points" in err and len(err.strip().splitlines()) == 1
    assert main(["fit", str(surface_file), "--fit-model", "mixture", "--components", "100",
                 "--out", str(tmp_path / "t")]) == 2
    assert "of 100 components has 501 free parameters" in capsys.readouterr().err


def test_fit_with_no_argument_fits_the_default_models_hessian_plane(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(_common, "DEFAULT_EPOCHS", 1)
    monkeypatch.setattr(fit_cmd, "DEFAULT_STEPS", 7)
    out = tmp_path / "d"
    assert main(["fit", "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    assert "training the default model" in stdout and "Hessian plane, 7 x 7 points" in stdout
    info = json.loads((out / "fit.json").read_text())
    eig = info["surface_eigenvalues"]
    assert len(eig) == 2 and eig[0] >= eig[1] > 0 and info["meta"]["source"]["directions_kind"] == "hessian"
    assert info["n_points"] == 49 and (out / "hessian_plane.h5").is_file() and (out / "fit_3d.png").is_file()


def write_surface(path, x, y, loss):
    """A surface file in the reference tool's layout (``loss`` ``(ny, nx)``, or ``(nx,)`` with ``y=None``)."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f["xcoordinates"] = np.asarray(x, dtype=np.float64)
        if y is not None:
            f["ycoordinates"] = np.asarray(y, dtype=np.float64)
        f["train_loss"] = np.asarray(loss, dtype=np.float64)
    return path
