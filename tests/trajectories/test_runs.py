"""Tests of reading a run directory (``run.json``): no code named by the file is imported, no file
but a regular one inside the run is read, and checkpoints are ordered by their own steps."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from losslens.core.data import load_dataset, subset
from losslens.core.train import TrainRun, train
from losslens.errors import ConfigError
from losslens.trajectories.optimizer_comparison import compare_runs
from losslens.trajectories.dynamics import dynamics_of_run
from losslens.trajectories.series import CheckpointSeries, model_of_run, run_evaluator


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny SGD run: checkpoints at steps 0, 2, 4."""
    data = (subset(load_dataset("digits", "train"), 128), subset(load_dataset("digits", "test"), 32))
    out = tmp_path_factory.mktemp("runs") / "sgd"
    train("mlp", data, optimizer="sgd", lr=0.1, epochs=2, seed=0, out=out, model_kwargs={"hidden": [6]},
          progress=False)
    return out


@pytest.fixture
def run(trained, tmp_path):
    """A fresh copy of the run, whose run.json a test may edit."""
    return shutil.copytree(trained, tmp_path / "run")


def _edit(run, change):
    path = run / "run.json"
    info = json.loads(path.read_text())
    change(info)
    path.write_text(json.dumps(info))


# -- run.json never makes Python import code ------------------------------------------------------------


def test_python_entry_points_refuse_import_strings_from_run_json(run, tmp_path, monkeypatch):
    sentinel = tmp_path / "imported"
    (tmp_path / "payload_i14.py").write_text(textwrap.dedent(f"""
        open({str(sentinel)!r}, "w").write("imported")
        def model(**kwargs):
            raise SystemExit("called")
        def data(split):
            raise SystemExit("called")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    other = shutil.copytree(run, tmp_path / "other")
    for directory in (run, other):
        _edit(directory, lambda info: info.update(model="payload_i14:model", data="payload_i14:data"))
    info = TrainRun.load(run).metadata
    calls = {
        "CheckpointSeries.from_run": lambda: CheckpointSeries.from_run(run),
        "CheckpointSeries.open": lambda: CheckpointSeries.open(run),
        "model_of_run": lambda: model_of_run(info, run),
        "dynamics_of_run": lambda: dynamics_of_run(run),
        "compare_runs": lambda: compare_runs([run, other], progress=False),
    }
    for name, call in calls.items():
        with pytest.raises(ConfigError, match="payload_i14:model.*never imports code"):
            call()
    # with the model passed, the data set named by run.json is still refused
    series = CheckpointSeries.from_run(run, _mlp())
    with pytest.raises(ConfigError, match="payload_i14:data.*never imports code"):
        run_evaluator(series)
    _edit(run, lambda info: info.update(model="mlp"))  # a built-in model, a foreign data set
    with pytest.raises(ConfigError, match="payload_i14:data"):
        dynamics_of_run(run)
    assert not sentinel.exists() and "payload_i14" not in sys.modules


def _mlp():
    from losslens.core.models import build_model

    return build_model("mlp", input_shape=(64,), num_classes=10, hidden=[6])


# -- only regular files inside the run are read ---------------------------------------------------------


def test_a_fifo_in_run_json_stops_the_report_at_once(run):
    os.mkfifo(run / "pipe.safetensors")
    _edit(run, lambda info: info["checkpoints"].append({"file": "pipe.safetensors", "epoch": 3.0, "step": 6}))
    done = subprocess.run([sys.executable, "-m", "losslens", "report", str(run), "--out", str(run.parent / "r")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "checkpoint entry 3" in done.stderr and "pipe.safetensors is not a regular file" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("name, message", [
    ("zero.safetensors", "zero.safetensors is not a regular file"),  # a link to /dev/zero
    ("/dev/zero", "lies outside the run directory"),
    ("../sgd/step_000000.safetensors", "lies outside the run directory"),
    ("gone.safetensors", "gone.safetensors: no such file"),
])
def test_devices_and_foreign_files_in_run_json_are_refused_before_any_read(run, name, message):
    os.symlink("/dev/zero", run / "zero.safetensors")
    _edit(run, lambda info: info["checkpoints"].append({"file": name, "epoch": 3.0, "step": 6}))
    with pytest.raises(ConfigError, match=f"run.json: checkpoint entry 3.*{message}"):
        TrainRun.load(run)


# -- checkpoints in the order of their own steps ---------------------------------------------------------


def test_a_reversed_run_json_keeps_training_order(run):
    _edit(run, lambda info: (info["checkpoints"].reverse(), info["history"].reverse()))
    loaded = TrainRun.load(run)
    assert [p.name for p in loaded.checkpoints][-1] == "step_000004.safetensors"
    assert [h["epoch"] for h in loaded.history] == [0, 1, 2]
    series = CheckpointSeries.from_run(run)
    assert [(c.step, c.epoch) for c in series] == [(0, 0.0), (2, 1.0), (4, 2.0)]
    dynamics = dynamics_of_run(run, sharpness=False)
    assert list(dynamics["step"]) == [0, 2, 4] and dynamics["change_since_init"][0] == 0.0


def test_steps_come_from_the_checkpoints_and_must_agree(run):
    def swap(info):
        first, last = info["checkpoints"][0], info["checkpoints"][-1]
        first["step"], last["step"] = last["step"], first["step"]
    _edit(run, swap)
    with pytest.raises(ConfigError, match=r"entry 0: run.json says step 4 but .*step_000000.safetensors's own "
                                          r"metadata says step 0"):
        TrainRun.load(run)


def test_two_checkpoints_of_one_step_are_refused(run):
    shutil.copy(run / "step_000002.safetensors", run / "copy.safetensors")
    _edit(run, lambda info: info["checkpoints"].append({"file": "copy.safetensors", "epoch": 1.0, "step": 2}))
    with pytest.raises(ConfigError, match="copy.safetensors and step_000002.safetensors are both checkpoints of "
                                          "step 2|step_000002.safetensors and copy.safetensors are both"):
        TrainRun.load(run)


@pytest.mark.parametrize("change, message", [
    (lambda info: info["checkpoints"][1].pop("step"), r"checkpoint entry 1 \(step_000002.safetensors\): 'step' must"),
    (lambda info: info["checkpoints"][1].update(step="2"), r"entry 1 .*'step' must be a non-negative integer"),
    (lambda info: info["checkpoints"][1].pop("file"), "checkpoint entry 1 .* has no 'file' name"),
    (lambda info: info.update(checkpoints=[]), "lists no checkpoints"),
    (lambda info: info.update(checkpoints="step_000000.safetensors"), "lists no checkpoints"),
    (lambda info: info.pop("history"), "not the run.json of a training run"),
])
def test_malformed_run_json_is_one_error_naming_it(run, change, message):
    _edit(run, change)
    for call in (lambda: TrainRun.load(run), lambda: CheckpointSeries.from_run(run)):
        with pytest.raises(ConfigError, match=f"run.json.*{message}"):
            call()
