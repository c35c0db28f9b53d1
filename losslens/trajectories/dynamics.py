"""Training dynamics: loss, gradient norm, weight norm and movement, and sharpness against the edge of
stability of the optimizer.

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
- ``lr`` and ``stability_threshold``, the optimizer's edge of stability (``stability_limit``); with
  a sharpness batch, ``sharpness`` :math:`\\lambda_{max}` on that batch (Lanczos, bounded: see
  ``sharpness_of``). Cohen et al. 2021 ("Gradient Descent on Neural Networks Typically Occurs at the
  Edge of Stability") found full-batch GD drives :math:`\\lambda_{max}(H)` up to its limit
  :math:`2/\\eta` and hovering there; Cohen et al. 2022 ("Adaptive Gradient Methods at the Edge of
  Stability") found the same for Adam's preconditioned sharpness :math:`\\lambda_{max}(P^{-1}H)`
  against :math:`(2 + 2\\beta_1)/((1 - \\beta_1)\\eta)`. The recorder, which sees Adam's second
  moments, records the preconditioned sharpness for Adam and AdamW (``meta["stability"]`` says which).

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
from losslens.checks import check_choice, check_int, check_number, check_seed
from losslens.core.params import ParameterSpace
from losslens.results import ResultDisplay, to_dataframe
from losslens.trajectories.table import write_csv

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


# -- the edge of stability --------------------------------------------------------------------------------

SHARPNESS_NCV = 12  # Lanczos vectors per ARPACK restart
SHARPNESS_RESTARTS = 10
SHARPNESS_TOL = 1e-3  # relative accuracy of the top Ritz value
MAX_SHARPNESS_MATVECS = SHARPNESS_NCV + SHARPNESS_RESTARTS * (SHARPNESS_NCV - 1) + 1
SHARPNESS_BOUND = f"Lanczos top-1, at most {MAX_SHARPNESS_MATVECS} Hessian-vector products per record"
SHARPNESS_BUDGET = 5e10  # parameters x samples per Hessian-vector product of a default (automatic) sharpness


@dataclass(frozen=True)
class StabilityLimit:
    """An optimizer's edge of stability: on a quadratic of curvature :math:`\\lambda`, its update
    diverges once :math:`\\lambda` exceeds ``value``.

    Attributes:
        value: the limit (NaN when none is known). formula: how it follows from the learning rate.
        of: ``"hessian"`` (:math:`\\lambda_{max}(H)`), ``"preconditioned"`` (:math:`\\lambda_{max}(P^{-1}H)`,
            Adam) or ``""`` (no limit).
        note: why there is no limit, or what it assumes.
    """

    value: float
    formula: str
    of: str
    note: str = ""

    def as_dict(self) -> dict:
        return {"value": self.value, "formula": self.formula, "of": self.of, "note": self.note}


def stability_limit(optimizer: str | None, lr: float | None, options: dict | None = None) -> StabilityLimit:
    """The edge of stability of ``optimizer`` (a class name: ``SGD``, ``Adam``, ...) at learning rate ``lr``.

    On :math:`L = \\lambda w^2/2`, each update is a linear recurrence whose characteristic roots must
    lie in the unit disc (Jury's conditions on :math:`z^2 - Tz + D`: :math:`|D| < 1`, :math:`|T| < 1 + D`):

    - gradient descent :math:`w \\leftarrow w - \\eta g`: :math:`\\lambda < 2/\\eta`;
    - heavy-ball momentum (PyTorch's ``SGD(momentum=β, dampening=τ)``, :math:`v \\leftarrow \\beta v + (1-\\tau) g`,
      :math:`w \\leftarrow w - \\eta v`): :math:`T = 1 + \\beta - \\eta(1-\\tau)\\lambda`, :math:`D = \\beta`, so
      :math:`\\lambda < 2(1 + \\beta)/((1 - \\tau)\\eta)` (:math:`2(1+\\beta)/\\eta` without dampening);
    - Nesterov (``nesterov=True``: :math:`w \\leftarrow w - \\eta(g + \\beta v)`): :math:`T = 1 + \\beta -
      \\eta\\lambda(1 + \\beta)`, :math:`D = \\beta(1 - \\eta\\lambda)`, so
      :math:`\\lambda < (2 + 2\\beta)/((1 + 2\\beta)\\eta)`;
    - Adam and AdamW with :math:`\\beta_1`: with the preconditioner frozen, Adam is heavy ball with
      dampening :math:`\\beta_1` on :math:`P^{-1}H`, :math:`P = (1 - \\beta_1^{t+1})\\,\\mathrm{diag}(\\sqrt{\\hat v_t}
      + \\epsilon)`, so :math:`\\lambda_{max}(P^{-1}H) < (2 + 2\\beta_1)/((1 - \\beta_1)\\eta)` (Cohen et al. 2022,
      "Adaptive Gradient Methods at the Edge of Stability": 38/η at β1 = 0.9); AdamW's decoupled weight
      decay is left out (it adds :math:`\\eta\\cdot` decay, small, to the curvature).

    Other optimizers (RMSprop, Adagrad, Lion, LBFGS, ...) get no limit (NaN, ``note`` says so): their
    preconditioner or sign update has no threshold in these terms that losslens could check.
    ``options`` are the optimizer's (a parameter group, or the recorded ``optimizer_kwargs``); those
    missing take the class's defaults. ``optimizer=None`` means plain gradient descent.
    """
    if not lr or not math.isfinite(lr) or lr <= 0:
        return StabilityLimit(float("nan"), "", "", "no learning rate known")
    options = {**_defaults(optimizer), **(options or {})}
    name = (optimizer or "sgd").lower()
    if name == "sgd":
        beta, tau = float(options.get("momentum") or 0.0), float(options.get("dampening") or 0.0)
        if beta == 0:
            return StabilityLimit(2 / lr, "2/lr", "hessian",
                                  "" if optimizer else "no optimizer given: plain gradient descent assumed")
        if options.get("nesterov"):
            return StabilityLimit((2 + 2 * beta) / ((1 + 2 * beta) * lr), f"(2+2β)/((1+2β)lr), Nesterov β={beta:g}",
                                  "hessian")
        if tau:
            return StabilityLimit(2 * (1 + beta) / ((1 - tau) * lr), f"2(1+β)/((1-τ)lr), β={beta:g}, τ={tau:g}",
                                  "hessian")
        return StabilityLimit(2 * (1 + beta) / lr, f"2(1+β)/lr, momentum β={beta:g}", "hessian")
    if name in ("adam", "adamw"):
        beta1 = float(options["betas"][0])
        return StabilityLimit((2 + 2 * beta1) / ((1 - beta1) * lr), f"(2+2β1)/((1-β1)lr), β1={beta1:g}",
                              "preconditioned", "of the preconditioned sharpness λmax(P⁻¹H) (Cohen et al. 2022)")
    return StabilityLimit(float("nan"), "", "", f"no known edge-of-stability limit for {optimizer}")


def _defaults(optimizer: str | None) -> dict:
    """The default options of an optimizer class (``{}`` for an unknown one)."""
    import inspect

    from losslens.core.optimizers import resolve_optimizer
    from losslens.errors import ConfigError

    if not optimizer:
        return {}
    try:
        cls, _ = resolve_optimizer(optimizer)
    except ConfigError:
        return {}
    return {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty}


def adam_preconditioner(optimizer: torch.optim.Optimizer, space: ParameterSpace,
                        model: nn.Module) -> torch.Tensor | None:
    """``(P,)`` diagonal of Adam's preconditioner
    :math:`P = (1 - \\beta_1^{t+1})(\\sqrt{v_t/(1 - \\beta_2^t)} + \\epsilon)`
    for the next update (``step`` t done), in the space's order; ``None`` before the first step or for
    another optimizer (one parameter group's betas and eps apply to all)."""
    if type(optimizer).__name__.lower() not in ("adam", "adamw"):
        return None
    group = optimizer.param_groups[0]
    (beta1, beta2), eps = group["betas"], group["eps"]
    params = dict(model.named_parameters())
    parts = []
    second = "max_exp_avg_sq" if group.get("amsgrad") else "exp_avg_sq"  # what AMSGrad divides by
    for name in space.names:
        state = optimizer.state.get(params[name], {})
        if second not in state:
            return None
        t = float(state["step"])
        v_hat = state[second].detach().double().reshape(-1) / (1 - beta2 ** t)
        parts.append((1 - beta1 ** (t + 1)) * (v_hat.sqrt() + eps))
    return torch.cat(parts).cpu()


def sharpness_of(H, preconditioner: torch.Tensor | None = None, *, seed: int = 0) -> tuple[float, int]:
    """``(λmax, Hessian-vector products)``: the top eigenvalue of the Hessian operator ``H``, or of
    :math:`P^{-1}H` (computed as the symmetric :math:`P^{-1/2} H P^{-1/2}`, same eigenvalues) for a
    diagonal ``preconditioner``, at a bounded cost: ARPACK's Lanczos (``eigsh``, top 1, start vector from
    ``seed``) with ``SHARPNESS_NCV`` vectors, at most ``SHARPNESS_RESTARTS`` restarts and relative
    accuracy ``SHARPNESS_TOL``, so at most ``MAX_SHARPNESS_MATVECS`` products; NaN if it has not
    converged by then."""
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh
    from threadpoolctl import threadpool_limits

    P = H.shape[0]
    if P < 2:
        return float("nan"), 0
    plain = H.to_scipy()
    scale = None if preconditioner is None else preconditioner.double().rsqrt().numpy()
    op = plain if scale is None else LinearOperator(
        plain.shape, matvec=lambda x: scale * (plain @ (scale * x.reshape(-1))), dtype=np.float64)
    start = H.n_matvec
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            values = eigsh(op, k=1, which="LA", v0=np.random.default_rng(seed).standard_normal(P),
                           ncv=min(P, SHARPNESS_NCV), maxiter=SHARPNESS_RESTARTS, tol=SHARPNESS_TOL,
                           return_eigenvectors=False)
    except ArpackNoConvergence:
        return float("nan"), H.n_matvec - start
    return float(values[0]), H.n_matvec - start


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
