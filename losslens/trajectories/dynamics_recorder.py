"""``DynamicsRecorder``: the training dynamics recorded in your own training loop (see ``dynamics.py`` for
what each record holds). It only reads: it never changes the model, its ``.grad`` fields, its train/eval
mode, the optimizer or any random number generator, so training with and without it gives bit-identical
weights."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from losslens.checks import check_int, check_number, check_seed
from losslens.core.params import ParameterSpace
from losslens.trajectories.dynamics import _NUMERIC, Dynamics
from losslens.trajectories.edge_of_stability import (
    SHARPNESS_BOUND, StabilityLimit, adam_preconditioner, sharpness_of, stability_limit,
)


class DynamicsRecorder:
    """Records training dynamics from a training loop without changing the training.

    Raises:
        ValueError: ``every`` or ``sharpness_every`` not positive, ``sharpness_data`` without
            ``loss_fn``, both ``optimizer`` and ``lr``.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        every: int = 1,
        optimizer: torch.optim.Optimizer | None = None,
        lr: float | None = None,
        sharpness_data=None,
        loss_fn=None,
        sharpness_every: int = 1,
        seed: int = 0,
        space: ParameterSpace | None = None,
    ):
        """Record the dynamics of a training loop (call ``step`` and ``epoch`` from it).

        Args:
            model: the model being trained; its weights now are :math:`w_0`. Only read.
            every: record every this many ``step`` calls (``epoch`` calls always record).
            optimizer: read for the current learning rate and options (its first parameter group's), so
                schedules are followed, and for the stability limit (``stability_limit``).
            lr: the learning rate of plain gradient descent, when no optimizer is given.
            sharpness_data: an evaluation batch ``(inputs, targets)`` (or anything ``Evaluator`` takes):
                the top eigenvalue of the loss's Hessian on it is recorded (for Adam and AdamW of
                :math:`P^{-1}H`, preconditioned by the optimizer's second moments). Costs one bounded
                Lanczos run per record (``sharpness_of``).
            loss_fn: the loss of the sharpness (``"cross_entropy"``, ``"mse"`` or ``f(output, target)``).
            sharpness_every: compute the sharpness at every this many records (default: every record).
            seed: seed of the Lanczos start vector.
            space: the parameters measured (default: ``ParameterSpace(model)``, the trainable ones).
        """
        every = check_int("every", every, minimum=1)
        sharpness_every = check_int("sharpness_every", sharpness_every, minimum=1)
        if sharpness_data is not None and loss_fn is None:
            raise ValueError("the sharpness needs the loss: give loss_fn ('cross_entropy', 'mse' or a callable)")
        if optimizer is not None and lr is not None:
            raise ValueError("give the optimizer (its lr is read at every record) or lr, not both")
        check_number("lr", lr, positive=True, none=True)
        seed = check_seed(seed)
        self.space = space if space is not None else ParameterSpace(model)
        self.every, self.sharpness_every, self.seed = every, sharpness_every, seed
        self.optimizer, self.lr = optimizer, lr
        self.sharpness_data, self.loss_fn = sharpness_data, loss_fn
        self.n_steps = self.n_epochs = 0
        self._init = self._weights(model)
        self._previous: dict[str, tuple[torch.Tensor, float]] = {}
        self._rows: list[dict] = []

    def step(self, model: nn.Module, loss=None) -> dict | None:
        """Count one optimizer step; every ``every`` steps, record (call it after ``optimizer.step()``).

        Args:
            model: the model, after the step.
            loss: the step's loss (a tensor or a number), at the weights before the step.

        Returns:
            The record, or ``None`` when this step is not recorded.
        """
        self.n_steps += 1
        if self.n_steps % self.every:
            return None
        return self._record("step", model, loss)

    def epoch(self, model: nn.Module, loss=None) -> dict:
        """Count one epoch and record (call it at the end of the epoch).

        Args:
            model: the model at the end of the epoch.
            loss: a loss to record for the epoch (the mean of its mini-batch losses, a validation
                loss, ...), or ``None``.
        """
        self.n_epochs += 1
        return self._record("epoch", model, loss)

    def result(self, meta: dict | None = None) -> Dynamics:
        """The records so far as ``Dynamics``; ``meta`` (the caller's provenance) is kept under ``source``."""
        values = {c: np.array([r[c] for r in self._rows], dtype=np.float64) for c in _NUMERIC}
        info = {"recorder": {"every": self.every, "sharpness_every": self.sharpness_every, "seed": self.seed,
                             "sharpness_samples": None if self.sharpness_data is None else _n_samples(self.sharpness_data),
                             "n_params": self.space.size},
                "stability": self._limit().as_dict() | {"sharpness": self._sharpness_kind()},
                "sharpness_note": SHARPNESS_BOUND if self.sharpness_data is not None else
                "no sharpness batch given to the recorder (sharpness_data)",
                "source": dict(meta or {})}
        return Dynamics(tuple(r["kind"] for r in self._rows), values, info)

    # -- the record -------------------------------------------------------------------------------

    def _record(self, kind: str, model: nn.Module, loss) -> dict:
        w = self._weights(model)
        value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float("nan") if loss is None else float(loss)
        previous_w, previous_loss = self._previous.get(kind, (self._init, float("nan")))
        limit = self._limit()
        lr = float(self.optimizer.param_groups[0]["lr"]) if self.optimizer is not None else self.lr
        sharp = float("nan")
        if self.sharpness_data is not None and (len(self._rows) % self.sharpness_every == 0):
            sharp = self._sharpness(model)
        row = {
            "kind": kind,
            "step": self.n_steps,
            "epoch": self.n_epochs,
            "loss": value,
            "loss_improvement": previous_loss - value,
            "grad_norm": _grad_norm(model, self.space),
            "weight_norm": float(w.norm()),
            "change_since_previous": float((w - previous_w).norm()),
            "change_since_init": float((w - self._init).norm()),
            "lr": float("nan") if lr is None else lr,
            "sharpness": sharp,
            "stability_threshold": limit.value,
        }
        self._previous[kind] = (w, value)
        self._rows.append(row)
        return row

    def _weights(self, model: nn.Module) -> torch.Tensor:
        return self.space.flatten(model, dtype=torch.float64).detach().cpu()

    def _limit(self) -> StabilityLimit:
        if self.optimizer is None:
            return stability_limit(None, self.lr)
        return stability_limit(type(self.optimizer).__name__, float(self.optimizer.param_groups[0]["lr"]),
                               self.optimizer.param_groups[0])

    def _sharpness_kind(self) -> str:
        """What ``sharpness`` is: ``"preconditioned"`` (Adam, AdamW), ``"hessian"``, or ``"none"``."""
        if self.sharpness_data is None:
            return "none"
        return "preconditioned" if self._limit().of == "preconditioned" else "hessian"

    def _sharpness(self, model: nn.Module) -> float:
        """Top eigenvalue of the Hessian on the sharpness batch (of :math:`P^{-1}H` for Adam once it has
        second moments), on the evaluator's private copy of the model."""
        from losslens.core.evaluator import Evaluator
        from losslens.core.plan import Plan
        from losslens.curvature.operator import HessianOperator

        p = next(iter(model.parameters()))
        preconditioner = None
        if self._sharpness_kind() == "preconditioned":
            preconditioner = adam_preconditioner(self.optimizer, self.space, model)
            if preconditioner is None:  # before Adam's first step: no second moments yet
                return float("nan")
        with torch.random.fork_rng(devices=[p.device] if p.device.type == "cuda" else []):
            ev = Evaluator(model, self.loss_fn, self.sharpness_data, metrics=(),
                           plan=Plan(device=p.device, dtype=p.dtype))
            return sharpness_of(HessianOperator(ev), preconditioner, seed=self.seed)[0]


def _grad_norm(model: nn.Module, space: ParameterSpace) -> float:
    """Global L2 norm of the ``.grad`` of the space's parameters (NaN when none has one)."""
    params = dict(model.named_parameters())
    grads = [params[n].grad for n in space.names if n in params and params[n].grad is not None]
    if not grads:
        return float("nan")
    return math.sqrt(sum(float(g.detach().double().pow(2).sum()) for g in grads))


def _n_samples(data) -> int | None:
    try:
        from losslens.core.data import as_tensors

        return len(as_tensors(data)[0])
    except Exception:  # noqa: BLE001 - only for the provenance
        return None
