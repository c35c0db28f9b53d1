"""Training dynamics: loss, gradient norm, weight norm and movement, and sharpness against the edge of
stability of the optimizer.

Two ways to get them, giving the same ``Dynamics`` result (one row per record):

- ``DynamicsRecorder`` (``dynamics_recorder.py``), added to your own training loop. It only reads: it never changes the
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
- ``lr`` and ``stability_threshold``, the optimizer's edge of stability (``stability_limit``); with
  a sharpness batch, ``sharpness`` :math:`\\lambda_{max}` on that batch (Lanczos, bounded: see
  ``sharpness_of``; both in ``edge_of_stability.py``, with the papers). The recorder, which sees Adam's
  second moments, records the preconditioned sharpness :math:`\\lambda_{max}(P^{-1}H)` for Adam and AdamW
  (``meta["stability"]`` says which).

Step and epoch records are kept apart: each compares with the previous record of its own kind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from losslens.checks import check_choice, check_seed
from losslens.results import Group, Result, attr, stored, to_dataframe
from losslens.trajectories.edge_of_stability import SHARPNESS_BOUND, SHARPNESS_BUDGET, sharpness_of, stability_limit
from losslens.trajectories.table import write_csv

DYNAMICS_COLUMNS: tuple[str, ...] = (
    "kind", "step", "epoch", "loss", "loss_improvement", "grad_norm", "weight_norm", "change_since_previous",
    "change_since_init", "lr", "sharpness", "stability_threshold",
)
KINDS: tuple[str, ...] = ("step", "epoch", "checkpoint")
_NUMERIC = DYNAMICS_COLUMNS[1:]


@dataclass(frozen=True, eq=False, repr=False)
class Dynamics(Result):
    """Training dynamics, one row per record.

    Attributes:
        kind: ``(R,)`` ``"step"``, ``"epoch"`` (recorder) or ``"checkpoint"`` (``dynamics_of_run``).
        values: ``{column: (R,) float64}`` for the numeric ``DYNAMICS_COLUMNS`` (NaN where not
            recorded: no sharpness asked, no previous loss, no learning rate known).
        meta: how they were recorded (``every``, sharpness batch size and seed, the run, the evaluator).
    """

    KIND: ClassVar[str] = "dynamics"

    kind: tuple[str, ...] = attr(tuple)
    values: dict[str, np.ndarray] = stored(Group(top=True))
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
        check_choice("kind", kind, KINDS)
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


def dynamics_of_run(
    run_dir: str | os.PathLike,
    evaluator=None,
    *,
    split: str = "train",
    sharpness: bool | None = None,
    seed: int = 0,
    meta: dict | None = None,
) -> Dynamics:
    """Per-checkpoint dynamics of a saved run, through the evaluator core.

    For each checkpoint (in the order of its steps): ``loss`` the mean loss over the evaluation set,
    ``grad_norm`` the norm of ``Evaluator.gradient`` (the full-batch gradient), ``weight_norm``,
    ``change_since_previous`` (from the previous checkpoint), ``change_since_init`` (from the first),
    ``loss_improvement``, the learning rate and the optimizer's edge of stability (``stability_limit``,
    from the optimizer, learning rate and options in the checkpoint's metadata), and ``sharpness``,
    the top Hessian eigenvalue :math:`\\lambda_{max}(H)` over the evaluation set (``sharpness_of``: at
    most ``MAX_SHARPNESS_MATVECS`` Hessian-vector products per checkpoint).

    Checkpoints hold weights, not Adam's second moments, so for Adam the sharpness is the plain one
    while its limit is that of the preconditioned one: ``meta["stability"]["note"]`` says so (the
    recorder of a training run, ``train(..., sharpness_samples=...)``, records the preconditioned one).

    Args:
        run_dir: a directory written by ``losslens train``.
        evaluator: the ``Evaluator`` (default: the run's model on its data set's ``split``, with the
            run's loss).
        split: the split of the default evaluator, ``"train"`` or ``"test"``.
        sharpness: compute the sharpness (``True``), not (``False``), or by default (``None``) when a
            Hessian-vector product costs at most ``SHARPNESS_BUDGET`` parameters x samples;
            ``meta["sharpness_note"]`` says why it was left out.
        seed: seed of the Lanczos start vector.
        meta: the caller's provenance (model, data), kept under ``meta["source"]``.

    Raises:
        ConfigError: not a run directory, or a run whose model or data cannot be rebuilt by name
            (then pass the evaluator).
    """
    from losslens.core.provenance import CheckpointMeta
    from losslens.trajectories.series import CheckpointSeries, run_evaluator, run_series

    seed = check_seed(seed)
    if evaluator is None:
        evaluator = run_evaluator(CheckpointSeries.from_run(run_dir), split)
    series = run_series(run_dir, evaluator)
    info = series.metadata
    stored = CheckpointMeta.read(series[-1].path)
    optimizer = stored.optimizer or info.get("optimizer")
    lr = stored.lr if stored.lr is not None else float(info.get("lr") or "nan")
    limit = stability_limit(optimizer, lr, stored.optimizer_kwargs or info.get("optimizer_kwargs"))
    sharpness, sharpness_note = _sharpness_choice(sharpness, evaluator, limit.of)
    rows, products = _checkpoint_rows(series, evaluator, lr, limit.value, sharpness, seed)
    values = {k: np.array([np.nan if r[k] is None else r[k] for r in rows], dtype=np.float64) for k in _NUMERIC}
    meta = {"run": str(run_dir), "optimizer": optimizer, "evaluator": evaluator.meta(),
            "sharpness": sharpness, "sharpness_note": sharpness_note, "sharpness_products": products,
            "stability": limit.as_dict() | {"sharpness": "hessian" if sharpness else "none"},
            "seed": seed, "source": dict(meta or {})}
    return Dynamics(("checkpoint",) * len(rows), values, meta)


def _checkpoint_rows(series, evaluator, lr: float, threshold: float, sharpness: bool,
                     seed: int) -> tuple[list[dict], list[int]]:
    """One row of ``_NUMERIC`` values per checkpoint of ``series`` (loss, gradient norm, weight changes, the
    sharpness when asked), and the Hessian-vector products each sharpness cost."""
    from losslens.curvature.operator import HessianOperator

    rows, init, previous, products = [], None, None, []
    for i, c in enumerate(series):
        w = series.vector(i, torch.float64)
        init = w if init is None else init
        point = w.to(device=evaluator.device, dtype=evaluator.dtype)
        loss = float(evaluator.evaluate(point[None]).loss[0])
        sharp = float("nan")
        if sharpness:
            sharp, n = sharpness_of(HessianOperator(evaluator, point), seed=seed)
            products.append(n)
        rows.append({
            "step": c.step, "epoch": c.epoch, "loss": loss,
            "loss_improvement": float("nan") if previous is None else rows[-1]["loss"] - loss,
            "grad_norm": float(evaluator.gradient(point).double().norm()),
            "weight_norm": float(w.norm()),
            "change_since_previous": 0.0 if previous is None else float((w - previous).norm()),
            "change_since_init": float((w - init).norm()),
            "lr": lr, "sharpness": sharp, "stability_threshold": threshold,
        })
        previous = w
    return rows, products


def _sharpness_choice(sharpness: bool | None, evaluator, limit_of: str) -> tuple[bool, str]:
    """Whether to compute the sharpness, and a note on how (or why not); ``limit_of`` is what the stability
    limit bounds (``"preconditioned"`` for Adam: checkpoints give only the plain sharpness)."""
    if sharpness is False:
        return False, "left out (sharpness=False, --no-sharpness)"
    work = evaluator.space.size * evaluator.n_samples
    if sharpness is None and work > SHARPNESS_BUDGET:
        return False, (f"left out by default: {evaluator.space.size:,} parameters x {evaluator.n_samples:,} "
                       f"samples per Hessian-vector product exceeds the budget {SHARPNESS_BUDGET:.0e}; ask for it "
                       "(--sharpness) or evaluate on a subset")
    if limit_of == "preconditioned":
        return True, SHARPNESS_BOUND + ("; λmax(H), not the preconditioned λmax(P⁻¹H) that the limit bounds: "
                                        "checkpoints hold no Adam second moments")
    return True, SHARPNESS_BOUND


def _scalar(value, column: str):
    if column in ("step", "epoch") and np.isfinite(value) and float(value).is_integer():
        return int(value)
    return float(value)
