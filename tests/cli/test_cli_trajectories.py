"""The trajectory commands in-process: trajectory, compare, dynamics; their files and exact column names."""

import csv
import sys

import pytest

from losslens.cli import _common
from losslens.cli.main import main
from losslens.trajectories.optimizer_comparison import OptimizerComparison
from losslens.trajectories.embeddings import Embedding
from losslens.trajectories.paths import TrajectoryPaths

FAST = ["--subset", "100", "--device", "cpu", "--no-progress", "--steps", "4"]
PATHS_HEADER = ["run", "step", "epoch", "pc1", "pc2", "residual", "rel_residual", "true_loss", "plane_loss", "checkpoint"]


def _csv(path):
    with open(path) as f:
        return list(csv.DictReader(f)), open(path).readline().strip().split(",")


def test_trajectory_without_arguments_trains_the_default_run_then_reuses_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(_common, "DEFAULT_EPOCHS", 3)
    out = tmp_path / "t"
    assert main(["trajectory", "--out", str(out), "--max-iter", "250"] + FAST) == 0
    stdout = capsys.readouterr().out
    assert "training the default model" in stdout and "trustworthiness: pca 1.000, tsne" in stdout
    names = ["paths.csv", "trajectory.h5", "trajectory_pca.h5", "trajectory_surface.h5", "embedding_pca.h5",
             "embedding_tsne.h5", "embeddings.csv", "projection_default-model.h5", "trajectory.png",
             "trajectory_embeddings.png", "trajectory.html"]
    for name in names:
        assert f"wrote {out / name}" in stdout and (out / name).stat().st_size > 0
    rows, header = _csv(out / "paths.csv")
    assert header == PATHS_HEADER and len(rows) == 4 and rows[0]["step"] == "0" and rows[-1]["rel_residual"] == "0.0"
    paths = TrajectoryPaths.load(out / "trajectory.h5")
    assert paths.meta["evaluator"]["data"]["n_samples"] == 100 and paths.meta["evaluator"]["data"]["split"] == "train"
    assert Embedding.load(out / "embedding_tsne.h5").method == "tsne"
    for name in ("trajectory.h5", "trajectory_pca.h5", "trajectory_surface.h5", "embedding_tsne.h5"):
        assert main(["plot", str(out / name), "--out", str(tmp_path / "p")]) == 0  # every file redrawn
    drawn = capsys.readouterr().out
    for name in ("trajectory.png", "trajectory_losses.png", "trajectory.html", "trajectory_pca_variance.png",
                 "trajectory_surface_contour.png", "embedding_tsne.png", "embedding_tsne.html"):
        assert f"wrote {tmp_path / 'p' / name}" in drawn
    assert main(["trajectory", "--out", str(out), "--max-iter", "250"] + FAST) == 0
    assert "using the default model" in capsys.readouterr().out
    assert main(["trajectory", "--max-iter", "10"]) == 2  # argparse: below 250
    assert "--max-iter: expected an integer >= 250" in capsys.readouterr().err


def test_compare_trains_optimizers_and_writes_the_table_paths_and_plane(tmp_path, capsys, monkeypatch):
    from losslens.core import optimizers

    monkeypatch.setitem(sys.modules, "pytorch_optimizer", None)  # the package missing: importing it fails
    monkeypatch.setattr(optimizers, "COMPARISON_DEFAULTS", ("sgd", "adam", "lion"))
    out = tmp_path / "c"
    args = ["compare", "--lr", "sgd=0.05", "--epochs", "2", "--model-arg", "hidden=[8]", "--out", str(out)] + FAST
    assert main(args) == 0
    captured = capsys.readouterr()
    stdout = captured.out
    assert (stdout + captured.err).count("lion skipped") == 1 and "lion skipped: it comes from pytorch-optimizer, " \
        "which is not installed (pip install pytorch-optimizer)" in captured.err
    lines = stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("optimizer "))
    assert lines[head].split() == ["optimizer", "final_train_loss", "final_test_loss", "final_train_acc",
                                   "final_test_acc", "path_length", "distance_from_init", "max_rel_residual",
                                   "n_untrusted", "epochs", "lr"]
    assert lines[head + 1].split()[0] == "sgd" and len(lines[head + 1]) == len(lines[head])  # aligned under the names
    assert lines[head + 3] == "runs (checkpoints and run.json):"
    assert [line.split() for line in lines[head + 4:head + 6]] == [[o, str(out / "runs" / o)] for o in ("sgd", "adam")]
    for name in ("comparison.csv", "paths.csv", "comparison.h5", "comparison_surface.h5", "comparison.png",
                 "comparison.html"):
        assert f"wrote {out / name}" in stdout and (out / name).stat().st_size > 0
    rows, header = _csv(out / "comparison.csv")
    assert header[:8] == ["optimizer", "final_train_loss", "final_test_loss", "final_train_acc", "final_test_acc",
                          "path_length", "distance_from_init", "max_rel_residual"]
    assert [r["optimizer"] for r in rows] == ["sgd", "adam"] and rows[0]["lr"] == "0.05" and rows[1]["lr"] == "0.003"
    rows, header = _csv(out / "paths.csv")
    assert header == PATHS_HEADER and len(rows) == 6  # 3 checkpoints per run, the initializations included
    assert [r["step"] for r in rows if r["run"] == "adam"] == ["0", "22", "44"]
    assert rows[0]["rel_residual"] == "0.0"  # the plane's origin: the common initialization
    assert OptimizerComparison.load(out / "comparison.h5").paths.runs == ["sgd", "adam"]
    assert main(["plot", str(out / "comparison.h5"), "--out", str(tmp_path / "p")]) == 0
    assert f"wrote {tmp_path / 'p' / 'comparison_final_losses.png'}" in capsys.readouterr().out
    assert main(args) == 0 and "training" not in capsys.readouterr().out  # finished runs are reused
    assert main(["compare", str(out / "runs" / "sgd"), "--epochs", "3", "--out", str(out)]) == 2
    assert "--epochs describe runs to train" in capsys.readouterr().err


def test_dynamics_of_a_run(tmp_path, capsys):
    from losslens.core.data import load_dataset, subset
    from losslens.core.train import train

    data = (subset(load_dataset("digits", "train"), 128), subset(load_dataset("digits", "test"), 64))
    train("mlp", data, epochs=2, lr=1e-2, out=tmp_path / "run", model_kwargs={"hidden": [8]}, progress=False)
    out = tmp_path / "d"
    assert main(["dynamics", str(tmp_path / "run"), "--out", str(out), "--subset", "100", "--device", "cpu"]) == 0
    stdout = capsys.readouterr().out
    for name in ("dynamics.csv", "dynamics.h5", "dynamics.png"):
        assert f"wrote {out / name}" in stdout
    rows, header = _csv(out / "dynamics.csv")
    assert header == ["kind", "step", "epoch", "loss", "loss_improvement", "grad_norm", "weight_norm",
                      "change_since_previous", "change_since_init", "lr", "sharpness", "stability_threshold"]
    assert [r["step"] for r in rows] == ["0", "2", "4"] and all(r["sharpness"] for r in rows)
    # Adam (the default optimizer) at lr 1e-2: its limit (2 + 2 beta1)/((1 - beta1) lr) = 3800, not 2/lr = 200
    assert rows[0]["loss_improvement"] == "" and float(rows[0]["stability_threshold"]) == pytest.approx(3800.0)
    assert "sharpness" in stdout and "edge of stability (2+2β1)/((1-β1)lr), β1=0.9 = 3800" in stdout
    assert main(["dynamics", str(tmp_path / "run"), "--no-sharpness", "--out", str(tmp_path / "n"), "--subset", "100",
                 "--device", "cpu"]) == 0
    assert all(r["sharpness"] == "" for r in _csv(tmp_path / "n" / "dynamics.csv")[0])


def test_a_stale_plane_file_is_replaced_not_resumed(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(_common, "DEFAULT_EPOCHS", 2)
    out = tmp_path / "t"
    assert main(["trajectory", "--out", str(out), "--max-iter", "250"] + FAST) == 0
    assert main(["trajectory", "--out", str(out), "--max-iter", "250", "--margin", "0.5"] + FAST) == 0
    assert f"replacing {out / 'trajectory_surface.h5'}" in capsys.readouterr().out
    assert main(["trajectory", "--out", str(out), "--margin", "-1"] + FAST) == 2  # a bad option keeps the file
    err = capsys.readouterr().err
    assert "margin must be a finite number >= 0 (got " in err and (out / "trajectory_surface.h5").is_file()



def test_compare_writes_the_barriers_between_the_final_checkpoints(tmp_path, capsys):
    from losslens.connectivity.barrier_matrix import BarrierMatrix
    from losslens.core.data import load_dataset, subset
    from losslens.core.train import train

    data = (subset(load_dataset("digits", "train"), 128), subset(load_dataset("digits", "test"), 64))
    runs = [train("mlp", data, epochs=1, lr=1e-2, seed=seed, out=tmp_path / f"seed{seed}", model_kwargs={"hidden": [8]},
                  progress=False).out for seed in (0, 1)]
    out = tmp_path / "c"
    assert main(["compare", *map(str, runs), "--out", str(out)] + FAST) == 0
    stdout = capsys.readouterr().out
    assert "line barriers between the final checkpoints (max_t L(w(t)) - ((1-t) L(A) + t L(B))" in stdout
    for name in ("comparison.csv", "barriers.csv", "barriers.h5", "barriers.png"):
        assert f"wrote {out / name}" in stdout and (out / name).stat().st_size > 0
    rows, header = _csv(out / "barriers.csv")
    assert header == ["alignment", "barrier", "run", "seed0", "seed1"]
    assert [(r["alignment"], r["run"], r["seed0"]) for r in rows] == [
        ("none", "seed0", "0.0"), ("none", "seed1", rows[0]["seed1"]), ("weights", "seed0", "0.0"),
        ("weights", "seed1", rows[2]["seed1"])]
    matrix = BarrierMatrix.load(out / "barriers.h5")
    assert float(rows[2]["seed1"]) == matrix.aligned[0, 1] and float(rows[0]["seed1"]) == matrix.raw[0, 1]
