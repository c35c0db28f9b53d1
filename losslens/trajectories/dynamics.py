"""Training dynamics: loss, gradient norm, weight norm and movement, and sharpness against 2/lr.

Two ways to get them, giving the same ``Dynamics`` result (one row per record):

- ``DynamicsRecorder``, added to your own training loop. It only reads: it never changes the
  model, its ``.grad`` fields, its train/eval mode, the optimizer or any random number generator, so
  training with and without it gives bit-identical weights::

      recorder = DynamicsRecorder(model, optimizer=opt, every=10)      # before training: w_init
      for epoch in range(epochs):
          for x, y in loader:
              opt.zero_grad(); loss = loss_fn(model(x), y); loss.backward(); opt.step()
              recorder.step(model, loss)                               # after optimizer.step()
          recorder.epoch(model, epoch_loss)                            # optional, per epoch
      dynamics = recorder.result()

- ``dynamics_of_run``, which recomputes per-checkpoint values from a saved run (the full data set
  through the evaluator core).

Per record, with :math:`w` the weights after the step and :math:`w_0` those at the start:

- ``loss``: the loss passed in (a step record: the mini-batch loss at the weights *before* the
  step, which ``.grad`` belongs to); ``loss_improvement``: the previous record's loss minus this one;
- ``grad_norm``: :math:`\\lVert g \\rVert_2`, the global L2 norm of the current ``.grad`` fields
  (of that same loss);
- ``weight_norm``: :math:`\\lVert w \\rVert_2`; ``change_since_previous``:
  :math:`\\lVert w - w_{prev} \\rVert_2` (the previous record of the same kind, else :math:`w_0`);
  ``change_since_init``: :math:`\\lVert w - w_0 \\rVert_2`;
- ``lr`` and ``stability_threshold`` :math:`2/\\eta`; with a sharpness batch, ``sharpness``
  :math:`\\lambda_{max}(\\nabla^2 L)` on that batch (Lanczos through ``losslens.landscape.hessian``).
  Gradient descent with step :math:`\\eta` on a quadratic diverges once :math:`\\lambda_{max} > 2/\\eta`;
  Cohen et al. 2021 ("Gradient Descent on Neural Networks Typically Occurs at the Edge of
  Stability") found full-batch GD drives :math:`\\lambda_{max}` up to :math:`2/\\eta` and hovering
  there. For adaptive optimizers (Adam) the comparable quantity is the preconditioned sharpness,
  which is not computed here.

Step and epoch records are kept apart: each compares with the previous record of its own kind.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from losslens import _io
from losslens.core.params import ParameterSpace
from losslens.results import ResultDisplay, to_dataframe
from losslens.trajectories._table import write_csv

DYNAMICS_COLUMNS: tuple[str, ...] = (
    "kind", "step", "epoch", "loss", "loss_improvement", "grad_norm", "weight_norm", "change_since_previous",
    "change_since_init", "lr", "sharpness", "stability_threshold",
)
KINDS: tuple[str, ...] = ("step", "epoch", "checkpoint")
_NUMERIC = DYNAMICS_COLUMNS[1:]


@dataclass(frozen=True, eq=False, repr=False)
class Dynamics(ResultDisplay):
    """Training dynamics, one row per record.

    Attributes:
        kind: ``(R,)`` ``"step"``, ``"epoch"`` (recorder) or ``"checkpoint"`` (``dynamics_of_run``).
        values: ``{column: (R,) float64}`` for the numeric ``DYNAMICS_COLUMNS`` (NaN where not
            recorded: no sharpness asked, no previous loss, no learning rate known).
        meta: how they were recorded (``every``, sharpness batch size and seed, the run, the evaluator).
    """

    KIND: ClassVar[str] = "dynamics"

    kind: tuple[str, ...]
    values: dict[str, np.ndarray]
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        missing = [c for c in _NUMERIC if c not in self.values]
        if missing:
            raise ValueError(f"Dynamics.values lacks the columns {', '.join(missing)}")
        bad = [c for c in _NUMERIC if np.shape(self.values[c]) != (len(self.kind),)]
        if bad:
            raise ValueError(f"Dynamics columns {', '.join(bad)} do not have one value per record ({len(self.kind)})")

    def __len__(self) -> int:
        return len(self.kind)

    def __getitem__(self, column: str) -> np.ndarray:
        if column == "kind":
            return np.asarray(self.kind)
        if column not in self.values:
            raise KeyError(f"no column {column!r}; columns: {', '.join(DYNAMICS_COLUMNS)}")
        return self.values[column]

    def of_kind(self, kind: str) -> "Dynamics":
        """Only the records of one kind (``"step"``, ``"epoch"`` or ``"checkpoint"``)."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; valid: {', '.join(KINDS)}")
        keep = np.array([k == kind for k in self.kind], dtype=bool)
        return Dynamics(tuple(k for k in self.kind if k == kind), {c: v[keep] for c, v in self.values.items()},
                        self.meta)

    def rows(self) -> list[dict]:
        """One dict per record with the ``DYNAMICS_COLUMNS``."""
        return [{"kind": k, **{c: _scalar(self.values[c][i], c) for c in _NUMERIC}} for i, k in enumerate(self.kind)]

    def to_pandas(self):
        """``rows()`` as a ``pandas.DataFrame`` (pandas is needed)."""
        return to_dataframe(self.rows(), DYNAMICS_COLUMNS)

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write ``rows()`` as CSV with the header ``DYNAMICS_COLUMNS``; returns the path."""
        return write_csv(path, self.rows(), DYNAMICS_COLUMNS)

    def save(self, path: str | os.PathLike) -> Path:
        """Write to an HDF5 file (kind ``dynamics``); returns the path."""
        return _io.write_h5(path, self.KIND, dict(self.values), {"kind": list(self.kind), "meta": self.meta})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Dynamics":
        """Read a file written by ``save``.

        Raises:
            LosslensError: the file is missing or holds something else.
        """
        return _io.load(path, cls.KIND, cls._unpack)

    @classmethod
    def _unpack(cls, arrays: dict, meta: dict) -> "Dynamics":
        return cls(tuple(meta["kind"]), arrays, meta["meta"])


class DynamicsRecorder:
    """Records training dynamics from a training loop without changing the training.

    Args:
        model: the model being trained; its weights now are :math:`w_0`. Only read.
        every: record every this many ``step`` calls (``epoch`` calls always record).
        optimizer: read for the current learning rate (its first parameter group's ``lr``), so
            schedules are followed.
        lr: the learning rate, when no optimizer is given.
        sharpness_data: an evaluation batch ``(inputs, targets)`` (or anything ``Evaluator`` takes):
            the top Hessian eigenvalue of the loss on it is recorded. Costs one Lanczos run per record.
        loss_fn: the loss of the sharpness (``"cross_entropy"``, ``"mse"`` or ``f(output, target)``).
        sharpness_every: compute the sharpness at every this many records (default: every record).
        seed: seed of the Lanczos start vector.
        space: the parameters measured (default: ``ParameterSpace(model)``, the trainable ones).

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
        for name, value in (("every", every), ("sharpness_every", sharpness_every)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if sharpness_data is not None and loss_fn is None:
            raise ValueError("the sharpness needs the loss: give loss_fn ('cross_entropy', 'mse' or a callable)")
        if optimizer is not None and lr is not None:
            raise ValueError("give the optimizer (its lr is read at every record) or lr, not both")
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
                "source": dict(meta or {})}
        return Dynamics(tuple(r["kind"] for r in self._rows), values, info)

    # -- the record -------------------------------------------------------------------------------

    def _record(self, kind: str, model: nn.Module, loss) -> dict:
        w = self._weights(model)
        value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float("nan") if loss is None else float(loss)
        previous_w, previous_loss = self._previous.get(kind, (self._init, float("nan")))
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
            "stability_threshold": float("nan") if not lr else 2.0 / lr,
        }
        self._previous[kind] = (w, value)
        self._rows.append(row)
        return row

    def _weights(self, model: nn.Module) -> torch.Tensor:
        return self.space.flatten(model, dtype=torch.float64).detach().cpu()

    def _sharpness(self, model: nn.Module) -> float:
        """Top Hessian eigenvalue on the sharpness batch, on the evaluator's private copy of the model."""
        from losslens.core.evaluator import Evaluator
        from losslens.landscape.hessian import HessianOperator, eigenpairs

        p = next(iter(model.parameters()))
        with torch.random.fork_rng(devices=[p.device] if p.device.type == "cuda" else []):
            ev = Evaluator(model, self.loss_fn, self.sharpness_data, device=p.device, dtype=p.dtype, metrics=())
            return float(eigenpairs(HessianOperator(ev), k=1, seed=self.seed).values[0])


def dynamics_of_run(
    run_dir: str | os.PathLike,
    evaluator=None,
    *,
    split: str = "train",
    sharpness: bool = False,
    seed: int = 0,
    meta: dict | None = None,
) -> Dynamics:
    """Per-checkpoint dynamics of a saved run, through the evaluator core.

    For each checkpoint (in training order): ``loss`` the mean loss over the evaluation set,
    ``grad_norm`` the norm of ``Evaluator.gradient`` (the full-batch gradient), ``weight_norm``,
    ``change_since_previous`` (from the previous checkpoint), ``change_since_init`` (from the first),
    ``loss_improvement``, the run's ``lr`` and :math:`2/\\eta`, and with ``sharpness=True`` the top
    Hessian eigenvalue (Lanczos).

    Args:
        run_dir: a directory written by ``losslens train``.
        evaluator: the ``Evaluator`` (default: the run's model on its data set's ``split``, with the
            run's loss).
        split: the split of the default evaluator, ``"train"`` or ``"test"``.
        sharpness: also compute the top Hessian eigenvalue at every checkpoint.
        seed: seed of the Lanczos start vector.
        meta: the caller's provenance (model, data), kept under ``meta["source"]``.

    Raises:
        ConfigError: not a run directory, or a run whose model or data cannot be rebuilt by name
            (then pass the evaluator).
    """
    from losslens.trajectories.series import CheckpointSeries, run_evaluator, run_series

    if evaluator is None:
        evaluator = run_evaluator(CheckpointSeries.from_run(run_dir), split)
    series = run_series(run_dir, evaluator)
    info = series.metadata
    lr = float(info.get("lr") or "nan")
    rows, init, previous = [], None, None
    for i, c in enumerate(series):
        w = series.vector(i, torch.float64)
        init = w if init is None else init
        point = w.to(device=evaluator.device, dtype=evaluator.dtype)
        loss = float(evaluator.evaluate(point[None]).loss[0])
        sharp = float("nan")
        if sharpness:
            from losslens.landscape.hessian import HessianOperator, eigenpairs

            sharp = float(eigenpairs(HessianOperator(evaluator, point), k=1, seed=seed).values[0])
        rows.append({
            "step": c.step, "epoch": c.epoch, "loss": loss,
            "loss_improvement": float("nan") if previous is None else rows[-1]["loss"] - loss,
            "grad_norm": float(evaluator.gradient(point).double().norm()),
            "weight_norm": float(w.norm()),
            "change_since_previous": 0.0 if previous is None else float((w - previous).norm()),
            "change_since_init": float((w - init).norm()),
            "lr": lr, "sharpness": sharp, "stability_threshold": 2.0 / lr if lr else float("nan"),
        })
        previous = w
    values = {k: np.array([np.nan if r[k] is None else r[k] for r in rows], dtype=np.float64) for k in _NUMERIC}
    meta = {"run": str(run_dir), "optimizer": info.get("optimizer"), "evaluator": evaluator.meta(),
            "sharpness": sharpness, "seed": seed, "source": dict(meta or {})}
    return Dynamics(("checkpoint",) * len(rows), values, meta)


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


def _scalar(value, column: str):
    if column in ("step", "epoch") and np.isfinite(value) and float(value).is_integer():
        return int(value)
    return float(value)
