"""Training the bend of a curve between two minima (Garipov et al. 2018; timgaripov/dnn-mode-connectivity).

The bend :math:`\\theta` of a Bezier curve or polychain (``curves.py``), initialised at the midpoint
:math:`(A + B) / 2`, is trained to minimise the loss expected along the curve,

.. math::  \\ell(\\theta) = E_{t \\sim U(0, 1)} \\, L(w(t)), \\qquad w(t) = c_A(t) A + c_\\theta(t) \\theta + c_B(t) B,

by stochastic gradient steps over ``t``: each step draws ``batch`` values :math:`t_i` from a seeded generator,
gets every :math:`L(w(t_i))` and :math:`\\nabla L(w(t_i))` from ONE ``Evaluator.values_and_gradients`` call, and
by the chain rule

.. math::  \\nabla_\\theta \\ell \\approx \\frac{1}{n} \\sum_i c_\\theta(t_i) \\, \\nabla L(w(t_i)),

which a ``torch.optim`` optimizer (SGD with momentum, or Adam) applies. Gradients need the evaluator's
``bn="eval"`` or ``"batch"`` (train-mode BatchNorm, as Garipov et al. train curves); the path is then
evaluated with ``bn="recalibrate"`` (``connect.py``).

With ``checkpoint=PATH`` the state (``theta``, the optimizer's state, the step, the generator's state and the
losses so far) is written every ``save_every`` steps through ``_io.atomic`` as a safetensors file (tensors only,
nothing unpickled when it is read): a killed run started again resumes where it stopped and ends at the same bend as an
uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from losslens import _io
from losslens.checks import check_choice, check_int, check_number, check_seed
from losslens.errors import CheckpointError, ConfigError

OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")


@dataclasses.dataclass(frozen=True)
class BendTraining:
    """How the bend is trained: ``steps`` optimizer steps of ``batch`` values of ``t`` each, ``optimizer``
    (``"sgd"`` with ``momentum``, or ``"adam"``) at learning rate ``lr``, ``t`` drawn from a generator seeded
    with ``seed``; the checkpoint written every ``save_every`` steps."""

    steps: int = 200
    lr: float = 0.05
    optimizer: str = "sgd"
    momentum: float = 0.9
    batch: int = 8
    seed: int = 0
    save_every: int = 10

    def __post_init__(self):
        check_int("steps", self.steps, minimum=1)
        check_number("lr", self.lr, positive=True)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_number("momentum", self.momentum, minimum=0, maximum=1)
        check_int("batch", self.batch, minimum=1)
        check_seed(self.seed)
        check_int("save_every", self.save_every, minimum=1)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def optimizer_for(self, theta: torch.Tensor) -> torch.optim.Optimizer:
        if self.optimizer == "sgd":
            return torch.optim.SGD([theta], lr=self.lr, momentum=self.momentum)
        return torch.optim.Adam([theta], lr=self.lr)


def bend_gradient(evaluator, curve, t) -> tuple[torch.Tensor, torch.Tensor]:
    """``(losses (n,), gradient (P,))``: :math:`L(w(t_i))` and :math:`\\frac{1}{n} \\sum_i c_\\theta(t_i)
    \\nabla L(w(t_i))`, from one ``values_and_gradients`` call at the points of the curve."""
    c = curve.coefficients(t)
    losses, grads = evaluator.values_and_gradients(curve.points(t))
    weights = c[:, 1].to(grads.dtype).to(grads.device)
    return losses, (weights[:, None] * grads).mean(dim=0)


def train_bend(evaluator, curve, *, options: BendTraining = BendTraining(), checkpoint=None,
               progress: bool = False):
    """The curve with its bend trained (module docstring), and the mean loss of each step's ``t``'s.

    Args:
        evaluator: the ``Evaluator`` giving every loss and gradient (``bn`` ``"eval"`` or ``"batch"``).
        curve: a ``Bezier`` or ``Polychain`` (its bend is the starting point).
        options: a ``BendTraining``.
        checkpoint: a file the state is written to and resumed from (``None``: nothing written).
        progress: show a progress bar over the steps.

    Returns:
        ``(curve, losses)``: the curve through the trained bend, and ``(steps,)`` float64 losses.

    Raises:
        ConfigError: a line (nothing to train), or a checkpoint of another curve or other options.
    """
    if not curve.bounded:
        raise ConfigError(f"a {curve.name} has no bend to train: train a bezier or polychain")
    theta = curve.bend.detach().clone().requires_grad_(True)
    optimizer = options.optimizer_for(theta)
    generator = torch.Generator().manual_seed(options.seed)
    losses, start = [], 0
    key = _key(curve, options)
    if checkpoint is not None and Path(checkpoint).is_file():
        start, losses = _resume(Path(checkpoint), key, theta, optimizer, generator)
    with tqdm(range(start, options.steps), desc=f"train {curve.name} bend", unit="step", disable=not progress) as bar:
        for step in bar:
            t = torch.rand(options.batch, generator=generator, dtype=torch.float64)
            values, grad = bend_gradient(evaluator, curve.with_bend(theta.detach()), t)
            theta.grad = grad.to(theta.dtype)
            optimizer.step()
            losses.append(float(values.mean()))
            bar.set_postfix(loss=f"{losses[-1]:.4g}")
            done = step + 1
            if checkpoint is not None and (done % options.save_every == 0 or done == options.steps):
                _save(Path(checkpoint), key, theta, optimizer, generator, done, losses)
    return curve.with_bend(theta.detach().clone()), np.asarray(losses, dtype=np.float64)


def _key(curve, options: BendTraining) -> str:
    """What a checkpoint must match to be resumed: the curve's kind, its endpoints and start, the options."""
    h = hashlib.sha256(json.dumps({"curve": curve.name, **options.as_dict()}, sort_keys=True).encode())
    for w in (curve.w_a, curve.w_b, curve.bend):
        h.update(w.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _save(path: Path, key: str, theta, optimizer, generator, step: int, losses: list) -> None:
    """The state as a safetensors file: tensors, with the key and the step in its metadata."""
    state = optimizer.state_dict()["state"].get(0, {})
    tensors = {"theta": theta.detach().cpu().contiguous(), "generator": generator.get_state(),
               "losses": torch.tensor(losses, dtype=torch.float64)}
    tensors |= {f"optimizer.{k}": torch.as_tensor(v).cpu().contiguous() for k, v in state.items()}
    with _io.atomic(path) as tmp:
        save_file(tensors, str(tmp), metadata={"key": key, "step": str(step)})


def _resume(path: Path, key: str, theta, optimizer, generator) -> tuple[int, list]:
    """Load the state of ``path`` into ``theta``, ``optimizer`` and ``generator``; ``(step, losses)``."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        found, step = meta["key"], int(meta["step"])
    except Exception as err:  # a damaged or foreign file: one line naming it
        raise CheckpointError(f"{path}: not a bend-training checkpoint of losslens ({err})") from None
    if found != key:
        raise ConfigError(f"{path} holds the training of another curve, other endpoints or other options: "
                          "remove it or give another checkpoint file")
    with torch.no_grad():
        theta.copy_(tensors["theta"])
    state = {k.removeprefix("optimizer."): v for k, v in tensors.items() if k.startswith("optimizer.")}
    optimizer.load_state_dict({"state": {0: state} if state else {},
                               "param_groups": optimizer.state_dict()["param_groups"]})
    generator.set_state(tensors["generator"])
    return step, tensors["losses"].tolist()
