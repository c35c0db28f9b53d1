"""``losslens replay --true-loss``: the default checkpoint, the files, the grid behind the paths (resumed on a
rerun), a checkpoint file with random directions, and the flags that only the true loss takes."""

import csv

import numpy as np
import pytest

from losslens.cli import _common
from losslens.cli.main import main
from losslens.landscape.surface import Surface
from losslens.trajectories.replay_result import Replay


@pytest.fixture(scope="module")
def default_out(tmp_path_factory):
    """``losslens replay --true-loss`` on the default model (trained for one epoch), 5 x 5 grid, 3 steps."""
    out = tmp_path_factory.mktemp("true")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_common, "DEFAULT_EPOCHS", 1)
        assert main(["replay", "--true-loss", "--steps", "5", "--updates", "3", "--optimizers", "sgd,adam",
                     "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    return out


def test_true_loss_of_the_default_model(default_out):
    for name in ("true_plane.h5", "paths.csv", "summary.csv", "replay.h5", "replay_paths.png",
                 "replay_convergence.png", "replay.html"):
        assert (default_out / name).stat().st_size > 0
    surface = Surface.load(default_out / "true_plane.h5")
    assert surface.directions.kind == "hessian" and surface.x.tolist() == [-2.0, -1.0, 0.0, 1.0, 2.0]
    np.testing.assert_allclose(surface.directions.vectors.double().norm(dim=1).numpy(), 1.0, rtol=1e-6)  # unit
    assert "default-model" in surface.meta["checkpoint"]["path"]
    r = Replay.load(default_out / "replay.h5")
    assert r.meta["objective"]["kind"] == "true-loss" and r.meta["start"] == [-1.0, 1.0]  # the book's start
    assert r.meta["objective"]["directions"]["eigenvalues"] == surface.directions.meta["eigenvalues"]
    with open(default_out / "paths.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["optimizer", "step", "x", "y", "loss", "grad_norm", "lr"]
    first = {row["optimizer"]: float(row["loss"]) for row in rows if row["step"] == "0"}
    # the start (-1, 1) is the grid point x[1], y[3]: the replay's loss there is the surface's (float32 rounding)
    assert first["sgd"] == first["adam"] == pytest.approx(surface.loss[3, 1], rel=1e-6)
    assert len(rows) == 8 and all(np.isfinite(float(row["grad_norm"])) for row in rows)
    lam = r.meta["lambda_max"]["minimum"]  # at the lowest grid point, the origin: the top Hessian eigenvalue
    assert r.meta["minimum"] == [0.0, 0.0] and lam == pytest.approx(surface.directions.meta["eigenvalues"][0], rel=1e-3)


def test_a_rerun_resumes_the_grid_and_keeps_its_directions(default_out, capsys, monkeypatch):
    monkeypatch.setattr(_common, "DEFAULT_EPOCHS", 1)  # the same default run, found finished
    before = Surface.load(default_out / "true_plane.h5")
    assert main(["replay", "--true-loss", "--steps", "5", "--updates", "2", "--optimizers", "sgd", "--out",
                 str(default_out), "--device", "cpu", "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    assert "using the default model" in stdout and "nothing to compute" in stdout and "already holds all 25" in stdout
    after = Surface.load(default_out / "true_plane.h5")
    assert np.array_equal(after.directions.vectors.numpy(), before.directions.vectors.numpy())
    assert main(["replay", "--true-loss", "--steps", "6", "--out", str(default_out), "--device", "cpu"]) == 2
    assert "holds a different grid" in capsys.readouterr().err


def test_a_checkpoint_file_and_random_directions(default_out, tmp_path, capsys):
    checkpoint = sorted((default_out / "default-model").glob("*.safetensors"))[-1]
    out = tmp_path / "random"
    assert main(["replay", "--true-loss", str(checkpoint), "--dirs", "random", "--steps", "4", "--updates", "2",
                 "--optimizers", "sgd", "--seed", "3", "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    surface = Surface.load(out / "true_plane.h5")
    assert surface.directions.kind == "random" and surface.directions.meta["seed"] == 3
    assert surface.x[0] == -1.0 and surface.x[-1] == 1.0  # random directions: Li et al.'s [-1, 1]
    assert surface.meta["checkpoint"]["path"].endswith(checkpoint.name)
    assert Replay.load(out / "replay.h5").meta["start"] == [-0.5, 0.5]
    request = surface.directions.meta["request"]  # the call that made the directions: a rerun reuses them for it
    assert (request["kind"], request["seed"], request["analysis"]) == ("random", 3, "losslens.cli.replay._plane_directions")
    again = ["replay", "--true-loss", str(checkpoint), "--dirs", "random", "--steps", "4", "--updates", "2",
             "--optimizers", "sgd", "--out", str(out), "--device", "cpu", "--no-progress"]
    assert main(again + ["--seed", "3"]) == 0 and capsys.readouterr().out.count("nothing to compute") == 1
    assert main(again + ["--seed", "4"]) == 2  # other directions: the grid is refused, naming them
    assert "holds a different grid (argument directions: direction vectors differ" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--dirs", "random"], "--dirs applies to --true-loss only"),
    (["--steps", "9", "--data", "digits"], "--steps, --data apply to --true-loss only"),
    (["--true-loss", "--function", "beale"], "not --function and --true-loss"),
    (["--true-loss", "--condition", "3"], "--condition is the quadratic's"),
    (["--true-loss", "--range", "1", "-1"], "--range must be two finite numbers A < B"),
    (["--true-loss", "--bn", "recalibrate"], "needs --bn eval or --bn batch"),
])
def test_true_loss_flags_are_checked(tmp_path, capsys, argv, message):
    assert main(["replay", "--out", str(tmp_path)] + argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
