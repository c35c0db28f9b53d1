"""Training runs with their dynamics recorded: ``losslens.train`` and ``losslens train``.

The trainer is in the core (``losslens.core.train.train``) and takes callbacks; recording the
dynamics needs the Hessian (the sharpness), which lives above the core, so the callback that records
them is here: ``RecordDynamics`` drives a ``DynamicsRecorder`` from the trainer and writes
``dynamics.h5`` and ``dynamics.csv`` into the run directory after every epoch.
``train_with_dynamics`` is the trainer with that callback, the one the package face and the CLI use.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from losslens.checks import check_int
from losslens.core.data import TensorData, subset
from losslens.core.train import DYNAMICS_FILE, TrainRun
from losslens.core.train import train as core_train
from losslens.trajectories.dynamics_recorder import DynamicsRecorder

DYNAMICS_CSV = "dynamics.csv"


class RecordDynamics:
    """The trainer's callback (``losslens.core.train.TrainCallback``) that records the run's dynamics
    (``DynamicsRecorder``) into ``dynamics.h5`` and ``dynamics.csv`` after every epoch."""

    def __init__(self, every_steps: int | None = None, sharpness_samples: int | None = None):
        """Record mini-batch loss, gradient norm, weight norm, movement and learning rate.

        Args:
            every_steps: record every this many steps (default: at the last step of each epoch); every
                epoch is recorded too.
            sharpness_samples: also record the top Hessian eigenvalue (for Adam and AdamW of the Hessian
                preconditioned by the optimizer's second moments) on a seeded subset of this many training
                samples, against the optimizer's edge of stability.

        Raises:
            ConfigError: a count that is not positive.
        """
        check_int("dynamics_every_steps", every_steps, minimum=1, none=True)
        check_int("sharpness_samples", sharpness_samples, minimum=1, none=True)
        self.every_steps, self.sharpness_samples = every_steps, sharpness_samples
        self.recorder: DynamicsRecorder | None = None
        self.out: Path | None = None

    def begin(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, train_set: TensorData, loss: str,
              seed: int, out: Path, steps_per_epoch: int) -> None:
        """Start the recorder at the initial weights (the sharpness batch drawn with the run's seed)."""
        sharp = None if self.sharpness_samples is None else subset(train_set, self.sharpness_samples, seed=seed)
        self.recorder = DynamicsRecorder(model, every=self.every_steps or steps_per_epoch, optimizer=optimizer,
                                         sharpness_data=sharp, loss_fn=loss if sharp is not None else None, seed=seed)
        self.out = out

    def step(self, model: nn.Module, loss: torch.Tensor) -> None:
        """Count the step (recorded every ``every_steps``)."""
        self.recorder.step(model, loss)

    def epoch(self, model: nn.Module, entry: dict) -> None:
        """Record the epoch (with its mean training loss) and write the dynamics so far."""
        self.recorder.epoch(model, entry["train_loss"])
        dynamics = self.recorder.result(meta={"run": str(self.out)})
        dynamics.save(self.out / DYNAMICS_FILE)
        dynamics.to_csv(self.out / DYNAMICS_CSV)


def train_with_dynamics(model, data="digits", *, dynamics_every_steps: int | None = None,
                        sharpness_samples: int | None = None, callbacks=(), **options) -> TrainRun:
    """``losslens.core.train.train`` with the dynamics recorded (``RecordDynamics``) into the run's
    ``dynamics.h5`` and ``dynamics.csv``; ``losslens.train`` is this function.

    Args:
        model: a built-in model name or import string, or a module (deep-copied, never changed).
        data: a data set name or import string, one ``TensorData`` or a ``(train, test)`` pair of them.
        dynamics_every_steps: record the dynamics every this many steps (by default at the last step of
            each epoch); every epoch is recorded too.
        sharpness_samples: also record the top Hessian eigenvalue (preconditioned for Adam and AdamW)
            on a seeded subset of this many training samples, against the optimizer's edge of stability.
        callbacks: further callbacks of the trainer (``losslens.core.train.TrainCallback``).
        options: the trainer's options (``out``, required; ``optimizer``, ``lr``, ``epochs``,
            ``batch_size``, ``seed``, ``save_every_steps``, ``optimizer_kwargs``, ``loss``,
            ``weight_decay``, ``model_kwargs``, ``device``, ``overwrite``, ``progress``), each described in
            ``help(losslens.core.train.train)``.

    Returns:
        The ``TrainRun``.

    Raises:
        ConfigError: those of ``train``, or a count that is not positive.
    """
    recorder = RecordDynamics(dynamics_every_steps, sharpness_samples)
    return core_train(model, data, callbacks=(recorder, *callbacks), **options)
