"""Tests of losslens/trajectories/optimizer_comparison.py: the table by hand, reuse of runs, errors, torchrun."""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from losslens.core.data import load_dataset, subset
from losslens.core.train import train
from losslens.errors import ConfigError
from losslens.trajectories.optimizer_comparison import (
    COMPARISON_COLUMNS, OptimizerComparison, compare_runs, train_optimizers,
)
from losslens.trajectories.series import CheckpointSeries

WORKER = Path(__file__).with_name("_compare_worker.py")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    data = (subset(load_dataset("digits", "train"), 256), subset(load_dataset("digits", "test"), 64))
    return [train("mlp", data, optimizer=opt, lr=lr, epochs=3, seed=0, out=out / opt, model_kwargs={"hidden": [8]},
                  progress=False) for opt, lr in (("sgd", 0.1), ("adam", 3e-3))]


def test_table_by_hand_and_one_plane_for_all_runs(tmp_path, two_runs):
    comparison, surface = compare_runs([r.out for r in two_runs], steps=(6, 5), progress=False,
                                       surface_path=tmp_path / "plane.h5")
    assert [row["optimizer"] for row in comparison.table] == ["sgd", "adam"]
    assert comparison.paths.runs == ["sgd", "adam"] and len(comparison.paths) == 8
    assert surface.loss.shape == (5, 6) and (tmp_path / "plane.h5").is_file()
    for run, row in zip(two_runs, comparison.table):
        series = CheckpointSeries.from_run(run.out)
        W = torch.stack(list(series.vectors(torch.float64)))
        assert row["path_length"] == pytest.approx(float((W[1:] - W[:-1]).norm(dim=1).sum()), rel=1e-12)
        assert row["distance_from_init"] == pytest.approx(float((W[-1] - W[0]).norm()), rel=1e-12)
        last = run.history[-1]
        assert (row["final_train_loss"], row["final_test_loss"], row["final_test_acc"]) == (
            last["train_loss"], last["test_loss"], last["test_accuracy"])
        rel = comparison.paths.rel_residual[comparison.paths.of_run(row["optimizer"])]
        assert row["max_rel_residual"] == rel.max() and row["n_untrusted"] == int((rel > 0.1).sum())
        assert (row["epochs"], row["n_checkpoints"]) == (3, 4)
    lines = comparison.to_csv(tmp_path / "comparison.csv").read_text().splitlines()
    assert lines[0].split(",") == list(COMPARISON_COLUMNS) and len(lines) == 3
    back = OptimizerComparison.load(comparison.save(tmp_path / "comparison.h5"))
    assert back.table == comparison.table and back.meta == comparison.meta
    np.testing.assert_array_equal(back.paths.coords, comparison.paths.coords)


def test_runs_are_reused_and_bad_requests_refused(tmp_path, monkeypatch):
    training = importlib.import_module("losslens.trajectories.training")
    calls = []
    original = training.train_with_dynamics
    monkeypatch.setattr(training, "train_with_dynamics",
                        lambda *a, **k: calls.append(k["optimizer"]) or original(*a, **k))
    options = {"out": tmp_path, "epochs": 1, "model_kwargs": {"hidden": [4]}, "progress": False, "device": "cpu"}
    runs, notes = train_optimizers(["sgd", "adagrad"], lrs={"adagrad": 0.05}, **options)
    assert [r.name for r in runs] == ["sgd", "adagrad"] and calls == ["sgd", "adagrad"] and notes == []
    train_optimizers(["sgd", "adagrad"], lrs={"adagrad": 0.05}, **options)
    assert calls == ["sgd", "adagrad"]  # finished runs of the same recipe: nothing trained again
    train_optimizers(["sgd", "adagrad"], lrs={"adagrad": 0.01}, **options)
    assert calls == ["sgd", "adagrad", "adagrad"]  # another learning rate: trained again
    with pytest.raises(ConfigError, match="unknown optimizer 'adamm'"):
        train_optimizers(["adamm"], **options)
    with pytest.raises(ConfigError, match="learning rates given for adam, which are not compared"):
        train_optimizers(["sgd"], lrs={"adam": 1e-3}, **options)
    with pytest.raises(ConfigError, match="no default learning rate for optimizer 'adadelta'.*--lr adadelta=VALUE"):
        train_optimizers(["adadelta"], **options)
    with pytest.raises(ConfigError, match="at least two runs"):
        compare_runs([runs[0]])


def test_defaults_skip_lion_without_pytorch_optimizer(tmp_path, monkeypatch):
    optimizers = importlib.import_module("losslens.core.optimizers")
    monkeypatch.setattr(optimizers, "COMPARISON_DEFAULTS", ("sgd", "lion"))
    monkeypatch.setattr(optimizers, "is_available", lambda name: name != "lion")
    with pytest.warns(UserWarning, match="lion skipped"):
        runs, notes = train_optimizers(out=tmp_path, epochs=1, model_kwargs={"hidden": [4]}, progress=False)
    assert [r.name for r in runs] == ["sgd"] and notes[0].startswith("lion skipped")


@pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                    reason="torch.distributed with the gloo backend is not available in this torch build")
def test_two_processes_give_the_comparison_of_one(tmp_path):
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}  # this checkout's losslens in the workers
    env.pop("WORLD_SIZE", None)
    single, shared = tmp_path / "single", tmp_path / "shared"
    for cmd in ([sys.executable, str(WORKER), str(single)],
                [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", str(WORKER),
                 str(shared)]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # rank r trained optimizers r, r + 2, ...
    assert json.loads((shared / "trained0.json").read_text()) == ["sgd", "momentum"]
    assert json.loads((shared / "trained1.json").read_text()) == ["adam"]
    assert json.loads((single / "trained0.json").read_text()) == ["sgd", "adam", "momentum"]
    for name in ("sgd", "adam", "momentum"):
        for a, b in zip(sorted((single / "runs" / name).glob("*.safetensors")),
                        sorted((shared / "runs" / name).glob("*.safetensors"))):
            assert a.name == b.name and a.read_bytes() == b.read_bytes()
    one, two = OptimizerComparison.load(single / "comparison.h5"), OptimizerComparison.load(shared / "comparison.h5")
    for a, b in zip(one.table, two.table):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], float):
                assert a[key] == pytest.approx(b[key], rel=1e-12, abs=1e-12), key
            elif key != "run":
                assert a[key] == b[key], key
    np.testing.assert_allclose(two.paths.coords, one.paths.coords, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(two.paths.plane_loss, one.paths.plane_loss, rtol=1e-9)
    np.testing.assert_allclose(np.load(shared / "surface.npy"), np.load(single / "surface.npy"), rtol=1e-6)


def test_runs_of_a_module_are_read_with_the_given_evaluators_architecture(tmp_path):
    """A run trained from a module has no model name in run.json: compare_runs and dynamics_of_run read
    it with the evaluator's architecture, and a run of another architecture is refused naming its file."""
    from losslens.core.recipe import Recipe
    from losslens.trajectories.dynamics import dynamics_of_run

    data = (subset(load_dataset("digits", "train"), 128), subset(load_dataset("digits", "test"), 32))
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 6), torch.nn.Tanh(), torch.nn.Linear(6, 10))
    runs = [train(net, data, optimizer=opt, lr=lr, epochs=2, seed=0, out=tmp_path / opt, progress=False)
            for opt, lr in (("sgd", 0.1), ("adam", 3e-3))]
    with pytest.raises(ConfigError, match="pass the model"):
        CheckpointSeries.from_run(runs[0].out)
    ev = Recipe().evaluator(runs[0].checkpoints[-1], model=net, data=data[0], metrics=())
    comparison, _ = compare_runs([r.out for r in runs], ev, steps=(4, 3), progress=False)
    assert [row["n_checkpoints"] for row in comparison.table] == [3, 3]
    dynamics = dynamics_of_run(runs[1].out, ev)
    trained = [h["train_loss"] for h in runs[1].history]
    np.testing.assert_allclose(dynamics["loss"], trained, rtol=1e-5)

    wide = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 9), torch.nn.Tanh(), torch.nn.Linear(9, 10))
    other = train(wide, data, epochs=1, seed=0, out=tmp_path / "wide", progress=False)
    with pytest.raises(Exception, match="wide") as err:
        compare_runs([runs[0].out, other.out], ev, steps=(4, 3), progress=False)
    assert "shape" in str(err.value)


def test_runs_in_folders_of_one_name_are_told_apart_by_their_paths(tmp_path, two_runs):
    import shutil

    runs = [shutil.copytree(r.out, tmp_path / side / "run") for side, r in zip("ab", two_runs)]
    comparison, _ = compare_runs(runs, steps=(4, 3), progress=False)
    assert comparison.paths.runs == [str(r.resolve()) for r in runs]
    with pytest.raises(ConfigError, match="the runs must be different folders"):
        compare_runs([runs[0], runs[0]], steps=(4, 3), progress=False)


def test_barriers_between_the_final_checkpoints(tmp_path, two_runs, monkeypatch):
    """``run_barriers`` (losslens/trajectories/run_barriers.py): the line between the runs' last checkpoints,
    before and after weight matching, and ``barriers.csv``'s layout; without a derivable permutation, the raw
    matrix alone, saying why."""
    from losslens.connectivity.barrier_matrix import line_barrier
    from losslens.trajectories import run_barriers as module
    from losslens.trajectories.series import run_evaluator

    runs = [r.out for r in two_runs]
    ev = run_evaluator(CheckpointSeries.from_run(runs[0]))
    matrix = module.run_barriers(runs, ev)
    finals = [CheckpointSeries.from_run(r).vector(-1, ev.w0.dtype) for r in runs]
    assert matrix.labels == ("sgd", "adam") and np.all(np.diag(matrix.raw) == 0) and np.all(np.diag(matrix.aligned) == 0)
    assert matrix.raw[0, 1] == matrix.raw[1, 0] == pytest.approx(line_barrier(ev, *finals), rel=1e-9, abs=1e-12)
    lines = module.write_barriers_csv(matrix, tmp_path / "barriers.csv").read_text().splitlines()
    assert lines[0] == "alignment,barrier,run,sgd,adam"
    assert [line.split(",")[:3] for line in lines[1:]] == [["none", "barrier", "sgd"], ["none", "barrier", "adam"],
                                                          ["weights", "barrier", "sgd"], ["weights", "barrier", "adam"]]
    assert [float(v) for v in lines[1].split(",")[3:]] == [0.0, matrix.raw[0, 1]]
    assert [float(v) for v in lines[3].split(",")[3:]] == [0.0, matrix.aligned[0, 1]]

    def underivable(model):
        raise ConfigError("module 'attn' (MultiheadAttention) may mix hidden units")

    monkeypatch.setattr(module, "permutation_spec", underivable)
    raw_only = module.run_barriers(runs, ev)
    assert raw_only.aligned is None and "MultiheadAttention" in raw_only.meta["note"]
    np.testing.assert_array_equal(raw_only.raw, matrix.raw)
    assert len(module.write_barriers_csv(raw_only, tmp_path / "raw.csv").read_text().splitlines()) == 3
