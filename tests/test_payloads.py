"""Every entry that reads a checkpoint or a run refuses a name of code in its metadata, and imports nothing.

A checkpoint's safetensors metadata (``CheckpointMeta``) and a run's ``run.json`` name the model, the data
set, the loss (run.json) and the optimizer they came from. A downloaded file could name an import string
there (``payload_i15:model``); losslens must refuse it with one line naming it (``trusted_name``), never
import the module. Each test is one entry point x one field: the payload module, put on ``sys.path`` (and
``PYTHONPATH`` for the one subprocess), creates a sentinel file when imported; the test asserts the refusal,
that the file does not exist and that the module is not in ``sys.modules``.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from safetensors.torch import load_file

from losslens.cli.main import main
from losslens.core.checkpoints import load_metadata, save_checkpoint
from losslens.core.data import load_dataset, subset
from losslens.core.provenance import CheckpointMeta
from losslens.core.train import TrainRun, train
from losslens.errors import LosslensError

PAYLOAD = "payload_i15"
CLI = ["--subset", "32", "--device", "cpu", "--threads", "1", "--no-progress"]
REPORT = ["--sections", "interpolation", "--interpolation-steps", "3"]
# The fields of a checkpoint's metadata (``CheckpointMeta``) and of run.json (``TrainRun``) that name code.
# model, data and loss name what an entry builds: a payload there is refused. model_class and optimizer are
# only recorded (an optimizer's name picks a stability limit from a table): a payload there is ignored.
CHECKPOINT_FIELDS = ("model", "data", "model_class", "optimizer")
RUN_FIELDS = ("model", "data", "loss", "model_class", "optimizer")
RECORDED_ONLY = {"model_class", "optimizer"}
# Entries that take a field from elsewhere (their flags, options or arguments), so a payload in it is never read.
TAKEN_ELSEWHERE = {
    ("Recipe.from_checkpoint", "data"),  # the data set is an argument
    ("model_of_run", "data"), ("model_of_run", "loss"),  # builds the model only
    # the CLI and the report take the loss from --loss (default: the data set's task), not from run.json
    ("cli trajectory", "loss"), ("cli compare", "loss"), ("cli dynamics", "loss"), ("cli report", "loss"),
    ("build_report", "loss"),
}


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A tiny SGD run of the digits MLP: checkpoints at steps 0, 2, 4."""
    data = (subset(load_dataset("digits", "train"), 64), subset(load_dataset("digits", "test"), 32))
    out = tmp_path_factory.mktemp("payload-runs") / "sgd"
    train("mlp", data, optimizer="sgd", lr=0.1, epochs=2, batch_size=32, seed=0, out=out,
          model_kwargs={"hidden": [6]}, progress=False)
    return out


@pytest.fixture
def payload(tmp_path, monkeypatch):
    """The payload module on ``sys.path`` and ``PYTHONPATH``; yields the sentinel its import creates."""
    sentinel = tmp_path / "imported"
    folder = tmp_path / "payload"
    folder.mkdir()
    (folder / f"{PAYLOAD}.py").write_text(textwrap.dedent(f"""
        open({str(sentinel)!r}, "w").write("imported")
        def model(**kwargs):
            raise SystemExit("payload called")
        data = loss = model
    """))
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.chdir(tmp_path)
    yield sentinel
    imported = sys.modules.pop(PAYLOAD, None)  # popped first, so that one failure does not spread to other tests
    assert not sentinel.exists() and imported is None, "a name read from a file was imported"


def _payload_fields(field):
    """``field`` naming the payload; a payload model comes without options (a factory named by an import string
    takes none, and ``build_model`` refuses options before importing: they would hide a missing check)."""
    return {field: f"{PAYLOAD}:{field}"} | ({"model_kwargs": {}} if field == "model" else {})


def poison_checkpoint(path, field):
    """Rewrite ``path``'s metadata (with the project's own writer) so that ``field`` names the payload."""
    meta = dataclasses.replace(CheckpointMeta.from_metadata(load_metadata(path)), **_payload_fields(field))
    save_checkpoint(load_file(str(path)), path, metadata=meta.to_metadata())


def poison_run(run, field):
    """Name the payload in ``field`` of ``run.json`` and, where their metadata has the field, of every checkpoint."""
    path = run / "run.json"
    info = json.loads(path.read_text())
    info.update(_payload_fields(field))
    path.write_text(json.dumps(info))
    if field in CHECKPOINT_FIELDS:
        for checkpoint in TrainRun.load(run).checkpoints:
            poison_checkpoint(checkpoint, field)


@pytest.fixture
def run(trained, tmp_path):
    return shutil.copytree(trained, tmp_path / "run")


@pytest.fixture
def checkpoint(trained, tmp_path):
    """A copy of the run's last checkpoint (``first.safetensors`` beside it: the first, for ``interpolate``)."""
    shutil.copy(TrainRun.load(trained).checkpoints[0], tmp_path / "first.safetensors")
    return shutil.copy(TrainRun.load(trained).checkpoints[-1], tmp_path / "final.safetensors")


# -- the entries ------------------------------------------------------------------------------------------


def _cli(*argv):
    return lambda tmp: main([*argv, "--out", str(tmp / "out")])


def _evaluator(path, tmp):
    from losslens.core.recipe import Recipe

    return Recipe.from_checkpoint(str(path), data="digits", split="test", subset=16).evaluator(str(path))


def _report(inputs, tmp):
    from losslens.report import ReportOptions, build_report

    options = ReportOptions(subset=16, device="cpu", threads=1, interpolation_steps=3)
    return build_report(inputs, tmp / "report", sections=("interpolation",), options=options, progress=False)


CHECKPOINT_ENTRIES = {
    "cli evaluate": lambda c, tmp: main(["evaluate", str(c), *CLI[:-1], "--split", "test"]),
    "cli surface": lambda c, tmp: _cli("surface", str(c), "--steps", "3", *CLI)(tmp),
    "cli interpolate": lambda c, tmp: _cli("interpolate", str(tmp / "first.safetensors"), str(c), "--steps", "3",
                                           *CLI)(tmp),
    "cli hessian": lambda c, tmp: _cli("hessian", str(c), "--top-k", "1", "--trace-samples", "4", *CLI)(tmp),
    "cli curvature-map": lambda c, tmp: _cli("curvature-map", str(c), "--steps", "3", *CLI)(tmp),
    "cli replay --true-loss": lambda c, tmp: _cli("replay", "--true-loss", str(c), "--steps", "4", "--updates", "2",
                                                  *CLI)(tmp),
    "cli report": lambda c, tmp: _cli("report", str(c), *REPORT, *CLI)(tmp),
    "Recipe.from_checkpoint": _evaluator,
    "build_report": lambda c, tmp: _report(str(c), tmp),
}


def _python(name):
    def call(run, tmp):
        from losslens.trajectories.optimizer_comparison import compare_runs
        from losslens.trajectories.dynamics import dynamics_of_run
        from losslens.trajectories.series import CheckpointSeries, model_of_run, run_evaluator

        other = shutil.copytree(run, tmp / "other") if name == "compare_runs" else None
        return {
            "CheckpointSeries.from_run": lambda: run_evaluator(CheckpointSeries.from_run(run)),
            "CheckpointSeries.open": lambda: run_evaluator(CheckpointSeries.open(run)),
            "model_of_run": lambda: model_of_run(TrainRun.load(run).metadata, run),
            "dynamics_of_run": lambda: dynamics_of_run(run, sharpness=False),
            "compare_runs": lambda: compare_runs([run, other], progress=False),
        }[name]()
    return call


RUN_ENTRIES = {
    "cli trajectory": lambda r, tmp: _cli("trajectory", str(r), "--steps", "3", "--perplexity", "1", *CLI)(tmp),
    "cli compare": lambda r, tmp: _cli("compare", str(r), str(shutil.copytree(r, tmp / "other")), "--steps", "3",
                                       *CLI)(tmp),
    "cli dynamics": lambda r, tmp: _cli("dynamics", str(r), "--no-sharpness", *CLI)(tmp),
    "cli report": lambda r, tmp: _cli("report", str(r), *REPORT, *CLI)(tmp),
    "build_report": lambda r, tmp: _report(str(r), tmp),
    **{name: _python(name) for name in ("CheckpointSeries.from_run", "CheckpointSeries.open", "model_of_run",
                                        "dynamics_of_run", "compare_runs")},
}


def _refused(call, entry, field, capsys):
    """Run ``call``; assert it refused the payload in ``field`` with one clear line (exit 2 from the CLI), or,
    where the entry does not read the field, that it ran (the fixture ``payload`` checks nothing was imported)."""
    if field in RECORDED_ONLY or (entry, field) in TAKEN_ELSEWHERE:
        result = call()
        assert not isinstance(result, int) or result == 0, capsys.readouterr().err
        return
    try:
        status = call()
    except LosslensError as e:
        message = str(e)
    else:
        assert status == 2, f"exit {status}: the payload in {field!r} was not refused"
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        message = err
    assert f"{PAYLOAD}:{field}" in message, message


@pytest.mark.parametrize("field", CHECKPOINT_FIELDS)
@pytest.mark.parametrize("entry", CHECKPOINT_ENTRIES)
def test_checkpoint_metadata_payload_is_refused(entry, field, checkpoint, payload, tmp_path, capsys):
    for path in (checkpoint, tmp_path / "first.safetensors"):
        poison_checkpoint(path, field)
    _refused(lambda: CHECKPOINT_ENTRIES[entry](checkpoint, tmp_path), entry, field, capsys)


@pytest.mark.parametrize("field", RUN_FIELDS)
@pytest.mark.parametrize("entry", RUN_ENTRIES)
def test_run_payload_is_refused(entry, field, run, payload, tmp_path, capsys):
    poison_run(run, field)
    _refused(lambda: RUN_ENTRIES[entry](run, tmp_path), entry, field, capsys)


def test_the_installed_command_does_not_import_a_payload_on_pythonpath(checkpoint, payload, tmp_path):
    """The ``losslens`` script of this environment, run with the payload's folder on ``PYTHONPATH``."""
    poison_checkpoint(checkpoint, "model")
    script = Path(sys.executable).with_name("losslens")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "losslens"]
    done = subprocess.run([*command, "evaluate", str(checkpoint), *CLI[:-1]],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert f"{PAYLOAD}:model" in done.stderr and "never imports code" in done.stderr
    assert "Traceback" not in done.stderr
