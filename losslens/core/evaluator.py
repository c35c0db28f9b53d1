"""The evaluator core: loss and metrics of a model at many points of weight space at once.

Every loss value losslens reports comes from ``Evaluator``. A point is a flat parameter vector ``w``
(see ``ParameterSpace``); ``evaluate(W)`` takes ``K`` of them as a ``(K, P)`` tensor and returns, for
each, the mean over the whole evaluation set

.. math::  L(w) = \\frac{1}{N} \\sum_{b} n_b \\, \\bar\\ell_b(w)

where ``\\bar\\ell_b`` is the loss function's mean over the ``n_b`` units of batch ``b`` (samples, or
target tokens that are not ignored: see ``losses.py``) and ``N`` the units of the whole set (a
weighted mean, not a mean of batch means). Batches may have any structure (``_batches.py``): a tensor,
several inputs, dicts in the Hugging Face style; outputs too (a tensor, a tuple, a ``ModelOutput``). The model runs as ``functional_call(model, params, x)`` on a
private copy, so the caller's model (parameters, mode, ``.grad``) is never touched.

The jobs are split over modules: ``plan`` (how it runs: the ``Plan`` asked and the execution plan
decided, device, batch size, vmap, layout, threads, compile, memory), ``recipe`` (what it evaluates,
by name, and from which checkpoint), ``_data`` (the evaluation set on the device), ``_runner`` (vmap or one
point after another, compiled or not, with fallbacks), ``_first_layer`` (the affine fast path of
lines and planes), ``batchnorm`` (BatchNorm modes), ``derivatives`` (gradient, Hessian-vector
products), ``_checks`` (inputs and targets), ``provenance`` (what is evaluated) and ``_loop`` (the loss
loop over chunks of points and data batches). This module builds the evaluator and holds its calls.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from losslens.checks import integer
from losslens.core import _batches as bt
from losslens.core import batchnorm as bnm
from losslens.core import _checks, derivatives
from losslens.core import _first_layer as fl
from losslens.core._data import EvalData
from losslens.core.losses import Function, make_objective, resolve_metric
from losslens.core._loop import LossLoop
from losslens.core._runner import Runner
from losslens.core.params import ParameterSpace
from losslens.core.plan import ExecutionPlan, Plan, decide, resolve_device
from losslens.core.provenance import checkpoint_info, fingerprint, model_identity

__all__ = ["Evaluator", "EvalResult"]

_CALIBRATION_SIZE = 2048


@dataclass(frozen=True)
class EvalResult:
    """Per-point results of an evaluation.

    Attributes:
        loss: ``(K,)`` float64, mean loss over the evaluation set at each point (NaN/inf kept).
        metrics: ``{name: (K,)}`` float64 means of each metric (NaN where the outputs are not finite).
        n_samples: size of the evaluation set.
        bn: BatchNorm mode used (``eval``, ``batch`` or ``recalibrate``).
        path: how the points were evaluated: ``"first-layer"`` (the affine fast path of
            ``evaluate_affine``) or ``"direct"``.
    """

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    n_samples: int = 0
    bn: str = "eval"
    path: str = "direct"

    def __len__(self) -> int:
        return len(self.loss)

    @property
    def n_nonfinite(self) -> int:
        """Number of points whose loss is NaN or infinite."""
        return int((~torch.isfinite(self.loss)).sum())

    @staticmethod
    def cat(results: list["EvalResult"]) -> "EvalResult":
        """Concatenate results of consecutive point sets."""
        first = results[0]
        return EvalResult(
            torch.cat([r.loss for r in results]),
            {k: torch.cat([r.metrics[k] for r in results]) for k in first.metrics},
            first.n_samples,
            first.bn,
            first.path,
        )


class Evaluator(LossLoop):
    """Evaluates a model's loss and metrics at batches of flat parameter vectors.

    A point is a flat parameter vector ``w`` (``space``: which tensors, in which order). For each of
    ``K`` points at once (``evaluate(W)``, ``W`` of shape ``(K, P)``) it returns the mean over the whole
    evaluation set, weighted by the units of each batch,

    .. math::  L(w) = \\frac{1}{N} \\sum_b n_b \\, \\bar\\ell_b(w), \\qquad N = \\sum_b n_b,

    where :math:`\\bar\\ell_b` is the loss's mean over the :math:`n_b` units (samples, or target
    tokens not ignored) of batch :math:`b`, and the metrics likewise. It also gives
    :math:`\\nabla L(w)` (``gradient``), :math:`H(w) v` (``hvp``), the loss on lines and planes
    :math:`w_0 + \\sum_i c_i d_i` (``evaluate_affine``) and the model at a point (``module_at``). The
    model runs on a private copy: the caller's model (parameters, train/eval mode, ``.grad``) is never
    changed. ``w0`` is the model's own point and ``meta()`` records model, data and checkpoint.

    Build one with the arguments of ``__init__``: what is evaluated, ``plan=`` (how it runs) and ``recipe=``
    (where it came from); or from a checkpoint file by its recipe:
    ``Recipe.from_checkpoint(path, split="test").evaluator(path, device="cpu")``.
    """

    def __init__(self, model: nn.Module, loss_fn: str | Function, data, *, bn: str = "eval",
                 metrics: tuple[str | Function, ...] | None = None, units: str = "auto", target_key: str = "labels",
                 output_key: str | None = None, include_buffers: bool = False, calibration_data=None,
                 calibration_size: int | None = None, plan: Plan | Mapping | None = None, recipe=None,
                 checkpoint: str | Path | None = None):
        """Prepare the evaluation of ``model`` with ``loss_fn`` on ``data``: what is evaluated, how it runs
        (``plan``) and where it came from (``recipe``, ``checkpoint``).

        Args:
            model: any ``nn.Module`` (Hugging Face models included); only read: the evaluator works on a copy.
            loss_fn: ``"cross_entropy"``, ``"mse"``, ``"causal_lm"``, ``"masked_lm"``, ``"token_classification"``,
                ``"model"`` (the loss the model returns), or ``f(output, target)``: the mean over the batch's units.
            data: ``TensorData``/``BatchData`` (which know their name and split), a pair ``(inputs, targets)``, or
                a ``Dataset``/``DataLoader`` of ``(inputs, target)`` or of dicts holding the target (``target_key``).
            bn: BatchNorm mode: ``"eval"`` (running statistics), ``"batch"`` (each batch's own) or
                ``"recalibrate"`` (running statistics re-estimated at every point on ``calibration_data``).
            metrics: names (``"accuracy"``) or callables ``f(output, target)``; ``None``: accuracy for integer
                class targets, none otherwise.
            units: what a batch's mean averages over: ``"auto"`` (the loss's rule), ``"samples"``, ``"targets"``
                (not -100 nor padding) or ``"shifted_targets"`` (a causal LM's, shifted by one token).
            target_key: the target's key in dict batches (``"labels"``; another is refused with pairs).
            output_key: the entry of a dict or ``ModelOutput`` holding the logits (default ``"logits"``).
            include_buffers: put BatchNorm running statistics in the parameter vector.
            calibration_data, calibration_size: the data of ``bn="recalibrate"`` (default: the evaluation
                set) and how many of its first samples are used (default 2048).
            plan: how it runs: a ``Plan`` (device, dtype, batch_size, memory_budget, threads, compile, vectorize)
                or a dict of its fields; ``None``: all ``"auto"``, decided by ``core/plan.py``.
            recipe: the ``Recipe`` that named the model and data (``Recipe.evaluator`` passes it): the model's
                name and options, recorded beside its architecture hash; the split of plain tensors.
            checkpoint: the file the weights came from, recorded with its hash and metadata.

        Raises:
            ConfigError/ValueError: an invalid option or model, inputs the model cannot take, targets that
                do not fit the loss or the outputs (one line each).
        """
        plan = Plan.of(plan)
        _checks.check_model(model)
        self.bn = bnm.check_mode(bn)
        _check_calibration(self.bn, calibration_data, calibration_size, include_buffers)
        self.device, self.dtype = resolve_device(plan.device), plan.dtype
        self.recipe = recipe
        self._copy_model(model, include_buffers, checkpoint)
        split = recipe.split if recipe else None
        self.data = EvalData(data, device=self.device, dtype=self.dtype, split=split, target_key=target_key)
        probe = self.data.probe()
        self._set_objective(model, loss_fn, metrics, units, target_key, output_key, probe)
        self.n_samples = self.data.n
        decided, self.budget, self.activation_bytes, probe_forward = decide(
            plan, self._module, self.data, self.bn, self.device, self._forward_no_grad)
        self.runner = Runner(decided, self._layout, probe_forward if plan.threads == "auto" else None)
        self._expected = 0
        self._flops: tuple[float, float] | None = None  # per sample: whole forward, first layer
        self._set_calibration(calibration_data, calibration_size)
        self._shortcut = self._find_shortcut(probe[0])

    def _copy_model(self, model: nn.Module, include_buffers: bool, checkpoint) -> None:
        """The private copy of ``model`` on the device, its parameter space and its point ``w0``; what it is
        (its identity, with the recipe's name and options) and the checkpoint it came from."""
        recipe = self.recipe
        self._model_identity = model_identity(model, *((recipe.model, recipe.model_kwargs) if recipe else ()))
        self._checkpoint = None if checkpoint is None else checkpoint_info(checkpoint)
        self.space = ParameterSpace(model, include_buffers=include_buffers)
        uses = [id(p) for _, p in model.named_parameters(remove_duplicate=False)]
        self._tied = len(uses) != len(set(uses))
        self._module = copy.deepcopy(model).to(device=self.device, dtype=self.dtype)
        self._module.requires_grad_(False)
        bnm.configure(self._module, self.bn)
        self._fixed = self.space.fixed_state(self._module)
        self.w0 = self.space.flatten(self._module, dtype=self.dtype).to(self.device)
        mixed = sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters() if p.is_floating_point()})
        if len(mixed) > 1:
            warnings.warn(f"losslens: the model's parameters mix {', '.join(mixed)}; the evaluator runs all of them in "
                          f"{str(self.dtype).removeprefix('torch.')} (dtype=), so a forward that casts between them "
                          "may fail", stacklevel=3)
        bad = _checks.nonfinite_tensors(dict(model.state_dict()))
        if bad:
            warnings.warn(f"losslens: the model's weights are not all finite: {', '.join(bad)}", stacklevel=3)

    def _set_objective(self, model, loss_fn, metrics, units, target_key, output_key, probe) -> None:
        """The loss and metrics, checked on a probe batch, and the units of the whole set."""
        probe_inputs, probe_target = probe
        self._objective = make_objective(loss_fn, probe_target, units=units, output_key=output_key, model=model)
        if self._objective.uses_model_loss and not isinstance(probe_inputs, Mapping):
            raise ValueError(f"loss_fn='model' needs dict batches: the target is passed to the model as the keyword "
                             f"{target_key!r}, as Hugging Face models take their labels")
        if target_key != "labels" and not isinstance(probe_inputs, Mapping):
            raise ValueError(f"target_key={target_key!r} names the target in dict batches; these batches are "
                             "(input, target) pairs, whose target is the second element")
        self._target_key = target_key
        self.loss_name = self._objective.name
        if metrics is None:
            metrics = () if probe_target.is_floating_point() else ("accuracy",)
        named = [resolve_metric(m) for m in metrics]
        self.metric_names = tuple(n for n, _ in named)
        self._metrics = tuple(f for _, f in named)
        out = _checks.probe_output(lambda inputs: self._forward_no_grad(inputs, probe_target), probe_inputs)
        n_classes = _checks.check_targets(self._objective, self.metric_names, out, probe_target)
        self.n_units = self._count_units(n_classes)

    def _set_calibration(self, calibration_data, calibration_size: int | None) -> None:
        """The batches that re-estimate the BatchNorm statistics at every point (``bn="recalibrate"``)."""
        self.calibration_size = None
        if self.bn != "recalibrate":
            return
        source = self.data if calibration_data is None else \
            EvalData(calibration_data, device=self.device, dtype=self.dtype, target_key=self._target_key)
        self._calibration = [self._layout(inputs) for inputs in
                             source.first_inputs(calibration_size or _CALIBRATION_SIZE, self.plan.batch_size)]
        self.calibration_size = sum(bt.length(inputs) for inputs in self._calibration)

    def _find_shortcut(self, probe_inputs):
        """The first-layer fast path of ``evaluate_affine`` (``_first_layer.py``), where the model admits one."""
        plain = isinstance(probe_inputs, torch.Tensor) and probe_inputs.is_floating_point() and self.data.as_tensors
        if self.bn == "recalibrate" or not plain or self._objective.uses_model_loss:
            return None
        first = fl.find_first_layer(self._module, self.space, self._fixed, probe_inputs)
        return None if first is None else fl.Shortcut(self._module, first, self.space, self._fixed, self.device,
                                                      keep_bytes=self.budget // 4, n_samples=self.n_samples)

    # -- public calls ---------------------------------------------------------------------------

    @property
    def plan(self) -> ExecutionPlan:
        """The execution plan (a fallback replaces it by one that records why)."""
        return self.runner.plan

    def expect(self, n_points: int) -> None:
        """Announce that about ``n_points`` evaluations follow, in calls of any size (a surface in
        chunks), so that ``compile="auto"`` decides once for the whole work."""
        self._expected = int(n_points)

    def evaluate(self, W: torch.Tensor) -> EvalResult:
        """Loss and metrics at each row of ``W`` (shape ``(K, P)``, or ``(P,)`` for one point)."""
        W = self._points(W)
        return self._result(self._run(len(W), lambda sl: self.space.unflatten(W[sl]), None), "direct")

    def evaluate_affine(self, w0: torch.Tensor, D: torch.Tensor, coeffs: torch.Tensor) -> EvalResult:
        """Loss and metrics at the points ``w0 + coeffs @ D`` of an affine family (lines, planes).

        Args:
            w0: ``(P,)`` origin. D: ``(m, P)`` directions. coeffs: ``(K, m)`` coordinates, ``K >= 1``.

        Gives the same numbers as ``evaluate(w0 + coeffs @ D)`` (to float rounding), faster when the
        model's first layer admits the precomputed combination (see ``_first_layer.py``); the
        result's ``path`` says which way ran.
        """
        w0 = self._points(w0, "w0")[0]
        D = self._points(D, "D")
        coeffs = torch.as_tensor(coeffs, dtype=self.dtype, device=self.device)
        if coeffs.dim() == 1:
            coeffs = coeffs[:, None]
        if coeffs.dim() != 2 or coeffs.shape[1] != len(D) or len(coeffs) == 0:
            raise ValueError(f"coeffs must have shape (K, {len(D)}) with K >= 1 for {len(D)} directions, "
                             f"found {list(coeffs.shape)}")
        cut = self._shortcut
        if cut is None or not cut.pays_off(len(D)):
            return self._result(self._run(len(coeffs), lambda sl: self.space.unflatten(w0 + coeffs[sl] @ D), None),
                                "direct")
        cut.use_family(w0, D)
        w0_rest, D_rest = w0[cut.rest_index], D[:, cut.rest_index]
        ones = torch.ones(len(coeffs), 1, dtype=self.dtype, device=self.device)
        means = self._run(len(coeffs), lambda sl: self.space.unflatten(w0_rest + coeffs[sl] @ D_rest, cut.rest),
                          torch.cat([ones, coeffs], dim=1))
        return self._result(means, "first-layer")

    def gradient(self, w: torch.Tensor) -> torch.Tensor:
        """``(P,)`` gradient of the mean loss over the evaluation set at ``w``."""
        with self.runner.threads():
            return derivatives.gradient(self, self._points(w, "w")[0])

    def values_and_gradients(self, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean loss ``(K,)`` and its gradient ``(K, P)`` at each row of ``W``, in one pass over the
        data (the points vmapped when the plan vmaps, else one after another); float64 losses."""
        W = self._points(W)
        with self.runner.threads():
            losses, grads = derivatives.values_and_gradients(self, W)
        return losses.double(), grads

    def hvp(self, w: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        """Hessian-vector products ``H(w) v`` of the mean loss, for ``V`` of shape ``(P,)`` or ``(k, P)``,
        recomputed forward-over-reverse at every call (``HessianOperator`` keeps a gradient graph
        instead when it multiplies many vectors at one point)."""
        single = torch.as_tensor(V).dim() == 1
        with self.runner.threads():
            out = derivatives.hvp(self, self._points(w, "w")[0], self._points(V, "V"))
        return out[0] if single else out

    def module_at(self, w: torch.Tensor) -> nn.Module:
        """A new copy of the model holding the parameters ``w``, in eval mode, for external tools
        (PyHessian) that need a module. The caller's model is not involved."""
        module = copy.deepcopy(self._module).to(memory_format=torch.contiguous_format)
        state = dict(module.named_parameters()) | dict(module.named_buffers())
        with torch.no_grad():
            for name, t in self.space.unflatten(self._points(w, "w")[0]).items():
                state[name].copy_(t)
                state[name].requires_grad_(isinstance(state[name], nn.Parameter))
        bnm.configure(module, "eval")
        return module

    def meta(self) -> dict:
        """What the numbers depend on and how they were computed: loss, metrics, BatchNorm mode,
        the model (name, options, class, architecture hash), the data (name, split, size, subset,
        content hash), the checkpoint (path, hash, metadata) and the execution plan."""
        return {
            "loss": self.loss_name,
            "metrics": list(self.metric_names),
            "units": self._objective.units,
            "n_units": self.n_units,
            "output_key": self._objective.output_key,
            "target_key": self._target_key,
            "bn": self.bn,
            "n_samples": self.n_samples,
            "n_params": self.space.size,
            "include_buffers": self.space.include_buffers,
            "calibration_size": self.calibration_size,
            "model": dict(self._model_identity),
            "data": dict(self.data.description),
            "checkpoint": None if self._checkpoint is None else dict(self._checkpoint),
            "plan": self.plan.as_dict(),
        }

    def identity(self) -> dict:
        """The settings the values depend on: equal identities give equal numbers at equal points
        (to float rounding). A resumed grid must match the identity it was started with."""
        out = {k: v for k, v in self.meta().items() if k in ("loss", "metrics", "units", "output_key", "target_key", "bn",
                                                                "n_params", "include_buffers", "calibration_size",
                                                                "model", "data")}
        out["dtype"] = self.plan.dtype
        if self.bn in ("batch", "recalibrate"):  # batch statistics depend on the batches
            out["batch_size"] = self.plan.batch_size
        return out

    def fingerprint(self) -> dict:
        """What an analysis of this evaluator depends on (its request's input, ``core.reuse``): its
        ``identity()`` and a content hash of its weights ``w0``."""
        return {"identity": self.identity(), "w0": fingerprint([self.w0])}

    def _result(self, means: torch.Tensor, path: str) -> EvalResult:
        """The ``EvalResult`` of ``(K, 1 + M)`` loss and metric means."""
        metrics = {n: means[:, 1 + i] for i, n in enumerate(self.metric_names)}
        return EvalResult(means[:, 0], metrics, self.n_samples, self.bn, path)

    def _points(self, W, what: str = "W") -> torch.Tensor:
        """``W`` as a ``(K, P)`` tensor of the evaluator's dtype and device, or a ValueError naming ``what``."""
        try:
            W = torch.as_tensor(W)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"{what}: expected a tensor of points of shape (K, {self.space.size}), "
                             f"got {type(W).__name__}") from None
        if W.dtype == torch.bool or W.is_complex():
            raise ValueError(f"{what}: expected real-valued points, found dtype {str(W.dtype).removeprefix('torch.')}")
        W = W[None] if W.dim() == 1 else W
        if W.dim() != 2 or W.shape[1] != self.space.size or len(W) == 0:
            raise ValueError(f"{what}: expected points of shape (K, {self.space.size}) with K >= 1, "
                             f"found {list(W.shape)}")
        return W.to(device=self.device, dtype=self.dtype)


def _check_calibration(bn: str, calibration_data, calibration_size, include_buffers: bool) -> None:
    """The calibration options apply to ``bn="recalibrate"`` only, which keeps the buffers out of the vector."""
    if bn != "recalibrate" and (calibration_data is not None or calibration_size is not None):
        raise ValueError("calibration_data and calibration_size apply only to bn='recalibrate'")
    if calibration_size is not None and (integer(calibration_size) is None or calibration_size < 2):
        raise ValueError(f"calibration_size must be an integer of at least 2 (BatchNorm statistics need 2 "
                         f"samples), got {calibration_size!r}")
    if bn == "recalibrate" and include_buffers:
        raise ValueError("bn='recalibrate' re-estimates the buffers, so include_buffers must be False")
