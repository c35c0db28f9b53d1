"""The trainer's callbacks: the core trainer calls them, and ``train_with_dynamics`` (``losslens.train``,
``losslens train``) records the run's dynamics through one."""

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

import losslens
from losslens.core.data import load_dataset, subset
from losslens.core.train import train
from losslens.trajectories.dynamics import Dynamics
from losslens.trajectories.training import train_with_dynamics


class Counting:
    """A callback that counts what the trainer calls."""

    def __init__(self):
        self.calls = []

    def begin(self, model, optimizer, *, train_set, loss, seed, out, steps_per_epoch):
        self.calls.append(("begin", len(train_set), loss, seed, steps_per_epoch))

    def step(self, model, loss):
        self.calls.append(("step", float(loss.detach())))

    def epoch(self, model, entry):
        self.calls.append(("epoch", entry["epoch"], entry["step"]))


def test_the_core_trainer_calls_its_callbacks_and_records_nothing_itself(tmp_path):
    data = subset(load_dataset("synthetic-classification", "train"), 40)
    counting = Counting()
    run = train(nn.Linear(20, 4), data, epochs=2, batch_size=16, out=tmp_path / "a", callbacks=[counting],
                progress=False)
    steps = [c for c in counting.calls if c[0] == "step"]
    assert counting.calls[0] == ("begin", 40, "cross_entropy", 0, 3) and len(steps) == 6
    assert [c for c in counting.calls if c[0] == "epoch"] == [("epoch", 1, 3), ("epoch", 2, 6)]
    assert counting.calls[4] == ("epoch", 1, 3) and counting.calls[-1] == ("epoch", 2, 6)
    assert sorted(p.name for p in run.out.iterdir()) == ["run.json"] + [p.name for p in run.checkpoints]
    options = {"epochs": 2, "batch_size": 16, "model_kwargs": {"hidden": [6]}, "progress": False}
    plain = train("mlp", data, out=tmp_path / "b", **options)
    recorded = train_with_dynamics("mlp", data, out=tmp_path / "c", sharpness_samples=16, **options)
    assert len(plain.checkpoints) == len(recorded.checkpoints) == 3
    for a, b in zip(plain.checkpoints, recorded.checkpoints):  # the recorder only reads: the same weights
        wa, wb = load_file(a), load_file(b)
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_the_trainer_records_the_dynamics(tmp_path):
    assert losslens.train is train_with_dynamics
    data = (subset(load_dataset("digits", "train"), 96), subset(load_dataset("digits", "test"), 32))
    run = train_with_dynamics("mlp", data, optimizer="sgd", lr=0.1, epochs=2, batch_size=32, out=tmp_path,
                              progress=False, dynamics_every_steps=2, sharpness_samples=48)
    dyn = Dynamics.load(tmp_path / "dynamics.h5")
    assert list(dyn.kind) == ["step", "epoch", "step", "step", "epoch"]  # steps 2, 4, 6 (3 steps per epoch)
    np.testing.assert_array_equal(dyn["step"][dyn["kind"] == "epoch"], [3, 6])
    assert (dyn["stability_threshold"] == 20.0).all() and np.isfinite(dyn["sharpness"]).all()
    history = run.history
    np.testing.assert_allclose(dyn["loss"][dyn["kind"] == "epoch"], [h["train_loss"] for h in history[1:]])
    assert (tmp_path / "dynamics.csv").read_text().splitlines()[0].startswith("kind,step,epoch,loss")
    again = train_with_dynamics("mlp", data, epochs=1, batch_size=48, out=tmp_path, overwrite=True, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dynamics.csv", "dynamics.h5", "run.json"] + [
        p.name for p in again.checkpoints]
    assert list(Dynamics.load(tmp_path / "dynamics.h5").kind) == ["step", "epoch"]
