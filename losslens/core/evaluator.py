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

The jobs are split over private modules: ``_plan`` (the execution plan: device, batch size, vmap,
layout, threads, compile), ``_data`` (the evaluation set on the device), ``_runner`` (vmap or one
point after another, compiled or not, with fallbacks), ``_first_layer`` (the affine fast path of
lines and planes), ``batchnorm`` (BatchNorm modes), ``derivatives`` (gradient, Hessian-vector
products), ``_checks`` (inputs and targets) and ``provenance`` (what is evaluated). This module
holds the loss loop over chunks of points and data batches.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call

from losslens.core import _batches as bt
from losslens.core import batchnorm as bnm
from losslens.core import _checks, derivatives
from losslens.core import _first_layer as fl
from losslens.core._data import EvalData
from losslens.core.losses import Function, make_objective, read_output, resolve_loss, resolve_metric
from losslens.core._plan import (
    ExecutionPlan, batch_size_for, check_option, choose_threads, chunk_size, compile_is_worth_it, forward_flops,
    resolve_device, wants_channels_last,
)
from losslens.core._runner import Runner
from losslens.core._tuning import activation_bytes_per_sample, keep_freed_memory, resolve_budget
from losslens.core.params import ParameterSpace
from losslens.core.provenance import checkpoint_info, fingerprint, model_identity

__all__ = ["Evaluator", "EvalResult", "resolve_device"]

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


class Evaluator:
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

    Build one with the arguments of ``__init__`` or from a checkpoint file with ``from_checkpoint``.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: str | Function,
        data,
        *,
        device: str | torch.device = "auto",
        dtype: torch.dtype = torch.float32,
        bn: str = "eval",
        metrics: tuple[str | Function, ...] | None = None,
        memory_budget: int | str = "auto",
        include_buffers: bool = False,
        batch_size: int | None = None,
        calibration_data=None,
        calibration_size: int | None = None,
        vectorize: bool | str = "auto",
        compile: bool | str = "auto",
        threads: int | str = "auto",
        split: str | None = None,
        checkpoint: str | Path | None = None,
        model_name: str | None = None,
        model_kwargs: dict | None = None,
        target_key: str = "labels",
        output_key: str | None = None,
        units: str = "auto",
    ):
        """Prepare the evaluation of ``model`` with ``loss_fn`` on ``data``.

        Args:
            model: the network (any ``nn.Module``, Hugging Face models included). Only read: the
                evaluator works on its own copy.
            loss_fn: ``"cross_entropy"``, ``"mse"``, ``"causal_lm"``, ``"masked_lm"``,
                ``"token_classification"``, ``"model"`` (the loss the model returns), or
                a callable ``f(output, target)`` returning the mean over the batch's units (``units``).
            data: the evaluation set: ``TensorData`` or ``BatchData`` (which know their name and split),
                a pair ``(inputs, targets)``, a ``Dataset`` or a ``DataLoader`` yielding ``(inputs, target)``
                (inputs a tensor, a tuple/list or a dict of tensors) or dicts holding the target under
                ``target_key``.
            device: ``"auto"`` (CUDA when available), or any torch device.
            dtype: floating dtype of parameters and inputs (float32 by default; float64 for reference work).
            bn: BatchNorm mode: ``"eval"`` (the running statistics), ``"batch"`` (each batch's own
                statistics) or ``"recalibrate"`` (running statistics re-estimated at every point on
                ``calibration_data``).
            metrics: names (``"accuracy"``) or callables ``f(output, target) -> mean over the batch``;
                ``None``: accuracy for integer class targets, none otherwise.
            memory_budget: bytes for one chunk of points, or ``"auto"``.
            include_buffers: put BatchNorm running statistics in the parameter vector.
            batch_size: samples per forward; by default sized to the cache on CPU and to the budget
                on CUDA (128 with ``bn="batch"``, where batch statistics depend on it).
            calibration_data: data for ``bn="recalibrate"`` (default: the evaluation set).
            calibration_size: samples of it used (the first ones; default 2048).
            vectorize: ``"auto"`` (vmap on CUDA, sequential on CPU), ``True`` or ``False``.
            compile: ``torch.compile`` the per-point function: ``True``, ``False``, or ``"auto"`` (when the
                work announced with ``expect`` is expected to take over a minute).
            threads: intra-op threads during the evaluator's calls: ``"auto"`` (measured: one unless
                more are clearly faster) or a number.
            split: the split of data given as plain tensors (``TensorData`` knows its own).
            checkpoint: the file the model's weights came from, recorded with its hash and metadata.
            model_name: how the model was built, a built-in name or an import string; recorded beside
                the architecture hash the evaluator computes itself.
            model_kwargs: the options it was built with, recorded with ``model_name``.
            target_key: the key of the target in dict batches (``"labels"``); another key with batches of
                (input, target) pairs is a ``ValueError`` (it would be ignored).
            output_key: the entry of a dict or ``ModelOutput`` holding the logits (default ``"logits"``).
            units: what a batch's mean averages over: ``"auto"`` (the loss's own rule), ``"samples"``,
                ``"targets"`` (target entries not -100 nor padding) or ``"shifted_targets"`` (a causal LM's
                targets, shifted by one token).

        Raises:
            ConfigError/ValueError: an invalid option, a model that is not an ``nn.Module``, inputs the
                model cannot take, targets that do not fit the loss or the outputs (one line each).
        """
        _checks.check_model(model)
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ValueError(f"dtype must be a floating torch dtype, got {dtype}")
        check_option("vectorize", vectorize, ("auto", True, False))
        check_option("compile", compile, ("auto", True, False))
        _checks.check_batch_size(batch_size)
        self.bn = bnm.check_mode(bn)
        if self.bn != "recalibrate" and (calibration_data is not None or calibration_size is not None):
            raise ValueError("calibration_data and calibration_size apply only to bn='recalibrate'")
        if calibration_size is not None and (_checks.integer(calibration_size) is None or calibration_size < 2):
            raise ValueError(f"calibration_size must be an integer of at least 2 (BatchNorm statistics need 2 "
                             f"samples), got {calibration_size!r}")
        if self.bn == "recalibrate" and include_buffers:
            raise ValueError("bn='recalibrate' re-estimates the buffers, so include_buffers must be False")
        device = resolve_device(device)
        self.dtype = dtype
        self.space = ParameterSpace(model, include_buffers=include_buffers)
        self._model_identity = model_identity(model, model_name, model_kwargs)
        self._checkpoint = None if checkpoint is None else checkpoint_info(checkpoint)

        uses = [id(p) for _, p in model.named_parameters(remove_duplicate=False)]
        self._tied = len(uses) != len(set(uses))
        self._module = copy.deepcopy(model).to(device=device, dtype=dtype)
        self._module.requires_grad_(False)
        bnm.configure(self._module, self.bn)
        self._fixed = self.space.fixed_state(self._module)
        self.w0 = self.space.flatten(self._module, dtype=dtype).to(device)
        mixed = sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters() if p.is_floating_point()})
        if len(mixed) > 1:
            warnings.warn(f"losslens: the model's parameters mix {', '.join(mixed)}; the evaluator runs all of them in "
                          f"{str(dtype).removeprefix('torch.')} (dtype=), so a forward that casts between them may fail",
                          stacklevel=2)
        bad = _checks.nonfinite_tensors(dict(model.state_dict()))
        if bad:
            warnings.warn(f"losslens: the model's weights are not all finite: {', '.join(bad)}", stacklevel=2)

        self.data = EvalData(data, device=device, dtype=dtype, split=split, target_key=target_key)
        probe_inputs, probe_target = self.data.probe()
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

        self.n_samples = self.data.n
        self.budget = resolve_budget(memory_budget, device)
        if device.type == "cpu":
            keep_freed_memory()
        self.activation_bytes = activation_bytes_per_sample(
            self._module, lambda: self._forward_no_grad(probe_inputs, probe_target), bt.length(probe_inputs))
        channels_last = isinstance(self.data.x, torch.Tensor) and wants_channels_last(self._module, self.data.x, device)
        if channels_last:
            self._module.to(memory_format=torch.channels_last)
            self.data.to_layout(True)
        if not self.data.as_tensors and batch_size is not None:
            raise ValueError("batch_size applies to data held as tensors; batches from a DataLoader are used as they "
                             "come (set the loader's batch_size)")
        batch = self.data.loader_batch_size or 1 if not self.data.as_tensors else \
            batch_size_for(batch_size, self.n_samples, self.bn, device, self.budget, self.activation_bytes)
        if self.bn == "batch" and self.data.as_tensors and self.n_samples > 1 and 1 in (batch, self.n_samples % batch):
            raise ValueError(f"bn='batch' normalizes with each batch's own statistics, which need at least 2 samples: "
                             f"batch_size={batch} over {self.n_samples} samples leaves a batch of 1; choose another "
                             "batch_size")
        first_batch = next(self.data.batches(batch))
        probe_forward = lambda: self._forward_no_grad(*first_batch)  # noqa: E731
        n_threads, _ = choose_threads(threads, device, probe_forward)
        self.runner = Runner(
            ExecutionPlan(
                device=str(device), dtype=str(dtype).removeprefix("torch."), batch_size=batch,
                vectorize=device.type == "cuda" if vectorize == "auto" else vectorize,
                channels_last=channels_last, threads=n_threads, compile=compile is True,
                compile_rule={True: "on", False: "off"}.get(compile, "auto"),
            ),
            self._layout,
            probe_forward if threads == "auto" else None,
        )
        self.device = device
        self._expected = 0
        self._flops: tuple[float, float] | None = None  # per sample: whole forward, first layer

        self.calibration_size = None
        if self.bn == "recalibrate":
            source = self.data if calibration_data is None else \
                EvalData(calibration_data, device=device, dtype=dtype, target_key=target_key)
            self._calibration = [self._layout(inputs) for inputs in
                                 source.first_inputs(calibration_size or _CALIBRATION_SIZE, batch)]
            self.calibration_size = sum(bt.length(inputs) for inputs in self._calibration)
        plain = isinstance(probe_inputs, torch.Tensor) and probe_inputs.is_floating_point() and self.data.as_tensors
        first = (fl.find_first_layer(self._module, self.space, self._fixed, probe_inputs)
                 if self.bn != "recalibrate" and plain and not self._objective.uses_model_loss else None)
        self._shortcut = None if first is None else fl.Shortcut(
            self._module, first, self.space, self._fixed, device, keep_bytes=self.budget // 4, n_samples=self.n_samples)

    # -- construction from a checkpoint ---------------------------------------------------------

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        model: str | nn.Module | None = None,
        data="digits",
        *,
        split: str = "train",
        subset: int | None = None,
        seed: int = 0,
        loss_fn: str | Function | None = None,
        model_kwargs: dict | None = None,
        unsafe_pickle: bool = False,
        **options,
    ) -> "Evaluator":
        """An evaluator of checkpoint ``path``, recording the checkpoint, model and data it evaluates.

        Args:
            path: the checkpoint file (any format ``load_checkpoint`` reads).
            model: a built-in model name or import string (built for the data's shape), a module of
                the checkpoint's architecture (a copy receives the weights), or ``None``: the built-in
                model the checkpoint's metadata names (an import string there is refused).
            data: a data set name or import string, or a ``TensorData``.
            split: the split of a named data set (``"train"``: the loss that training minimized).
            subset: a seeded random subset of this many samples (``seed``), or all.
            loss_fn: by default cross-entropy for classification, MSE for regression.
            model_kwargs: options of a built-in model (default: those in the metadata).
            unsafe_pickle: see ``load_checkpoint``.
            options: the other arguments of ``Evaluator``.
        """
        from losslens.core.checkpoints import load_checkpoint, load_model
        from losslens.core.data import TensorData, load_dataset
        from losslens.core.data import subset as take_subset
        from losslens.core.models import MODEL_NAMES
        from losslens.core.provenance import CheckpointMeta, trusted_name

        if isinstance(data, str):
            data = take_subset(load_dataset(data, split, seed=seed), subset, seed=seed)
        elif subset is not None:
            data = take_subset(data, subset, seed=seed)
        if isinstance(model, nn.Module):
            net, name, kwargs = copy.deepcopy(model), None, {}
            net.load_state_dict(load_checkpoint(path, net, unsafe_pickle=unsafe_pickle))
        else:
            stored = CheckpointMeta.read(path)
            name = model or trusted_name(stored.model, MODEL_NAMES, what="model", flag="model=") or "mlp"
            kwargs = model_kwargs if model_kwargs is not None else (stored.model_kwargs if name == stored.model else {})
            shape = (data.input_shape, data.num_outputs) if isinstance(data, TensorData) else ((), 0)
            net = load_model(path, name, input_shape=shape[0], num_classes=shape[1], unsafe_pickle=unsafe_pickle,
                             **kwargs)
        if loss_fn is None:
            loss_fn = resolve_loss(None, data) if isinstance(data, TensorData) else "model"
        return cls(net, loss_fn, data, checkpoint=path, model_name=name, model_kwargs=kwargs, **options)

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
        return self._run(len(W), lambda sl: self.space.unflatten(W[sl]), None)

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
            return self._run(len(coeffs), lambda sl: self.space.unflatten(w0 + coeffs[sl] @ D), None)
        cut.use_family(w0, D)
        w0_rest, D_rest = w0[cut.rest_index], D[:, cut.rest_index]
        ones = torch.ones(len(coeffs), 1, dtype=self.dtype, device=self.device)
        return self._run(len(coeffs), lambda sl: self.space.unflatten(w0_rest + coeffs[sl] @ D_rest, cut.rest),
                         torch.cat([ones, coeffs], dim=1))

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

    # -- the loss loop ----------------------------------------------------------------------------

    def batch_loss(self, w: torch.Tensor, inputs, target: torch.Tensor) -> torch.Tensor:
        """The loss's mean over the units of the batch ``(inputs, target)`` at the point ``w`` (differentiable)."""
        out = self._call(self._module, (self.space.unflatten(w), self._fixed), inputs, target)
        return self._objective.loss(out, target, inputs)

    def batch_weight(self, inputs, target: torch.Tensor) -> float:
        """The batch's share of the whole set's units: its weight in the mean over the set."""
        return float(self._objective.count(target, inputs)) / self.n_units

    def weighted_batches(self, batch_size: int):
        """The data's ``(inputs, target)`` batches of ``batch_size`` that hold units: a batch with none
        (every label -100) weighs nothing, and a model's own loss is NaN there (a mean over nothing)."""
        for inputs, target in self.data.batches(batch_size):
            if self._objective.count(target, inputs) > 0:
                yield inputs, target

    def _run(self, K: int, params_of: Callable[[slice], dict], coeffs1: torch.Tensor | None) -> EvalResult:
        """Loss and metric means at ``K`` points, chunk by chunk; ``coeffs1`` (``(K, 1 + m)``, a
        leading 1 per row) selects the first-layer fast path. On CUDA an out-of-memory error halves
        the chunk and goes on."""
        chunk = self._chunk_size(coeffs1 is not None)
        sums, start = [], 0
        with self.runner.threads():
            self._decide_compile(K, coeffs1 is not None)
            while start < K:
                sl = slice(start, min(K, start + chunk))
                tic = time.perf_counter()
                try:
                    sums.append(self._chunk_sums(params_of(sl), sl, coeffs1).double().cpu())
                except torch.cuda.OutOfMemoryError:
                    if chunk == 1:
                        raise
                    chunk //= 2
                    torch.cuda.empty_cache()
                    continue
                self.runner.observe(time.perf_counter() - tic, sl.stop - sl.start,
                                    "first-layer" if coeffs1 is not None else "direct")
                start = sl.stop
        means = torch.cat(sums) / self.n_units
        metrics = {n: means[:, 1 + i] for i, n in enumerate(self.metric_names)}
        return EvalResult(means[:, 0], metrics, self.n_samples, self.bn, "first-layer" if coeffs1 is not None else "direct")

    def _chunk_sums(self, params: dict, sl: slice, coeffs1: torch.Tensor | None) -> torch.Tensor:
        """``(k, 1 + M)``: per point, sums over batches of the batch's units times its loss and metric means."""
        k = sl.stop - sl.start
        buffers = self._recalibrated(params, k) if self.bn == "recalibrate" else {}
        sums = torch.zeros(k, 1 + len(self._metrics), dtype=self.dtype, device=self.device)
        for i, (inputs, target) in enumerate(self.data.batches(self.plan.batch_size)):
            units = self._objective.count(target, inputs).to(self.dtype)
            if units == 0:  # weighs nothing (and a model's own loss is NaN there: a mean over nothing)
                continue
            if coeffs1 is None:
                means = self.runner.map(self._point_means, (params, buffers, inputs, target), (0, 0, None, None))
            else:
                basis = self._shortcut.basis(i, inputs)
                means = self.runner.map(self._affine_point_means, (params, coeffs1[sl], basis, inputs, target),
                                        (0, 0, None, None, None))
            sums += means * units
        return sums

    def _point_means(self, params: dict, buffers: dict, inputs, target: torch.Tensor) -> torch.Tensor:
        """The loss and metric means of one point on one batch."""
        fixed = {n: t for n, t in self._fixed.items() if n not in buffers}
        return self._means(self._call(self._module, (params, buffers, fixed), inputs, target), target, inputs)

    def _affine_point_means(self, params: dict, c: torch.Tensor, basis: torch.Tensor, x, y) -> torch.Tensor:
        """As ``_point_means``, the first layer's output being ``c @ basis = basis_0 + sum_i c_i basis_i``."""
        # Elementwise multiply-adds: on CPU twice as fast as the equivalent GEMV (c @ basis), and
        # compiled, fused with the activation that follows.
        z = basis[0]
        for i in range(1, len(basis)):
            z = torch.addcmul(z, basis[i], c[i])  # out of place: vmap has no batching rule for addcmul_
        out = self._call(self._shortcut.tail, (params, {fl.join(self._shortcut.name, "value"): z}, self._fixed), x, y)
        return self._means(out, y, x)

    def _call(self, module: nn.Module, tensors: tuple[dict, ...], inputs, target: torch.Tensor | None):
        """``functional_call`` on the batch's inputs (the target as a keyword when the model computes the
        loss); tying shared weights (a costly step per call) only for models that have them."""
        args, kwargs = bt.call_args(inputs)
        if self._objective.uses_model_loss and target is not None:
            kwargs[self._target_key] = target
        return functional_call(module, tensors, args, kwargs, tie_weights=self._tied)

    def _forward_no_grad(self, inputs, target: torch.Tensor | None = None):
        args, kwargs = bt.call_args(inputs)
        if self._objective.uses_model_loss and target is not None:
            kwargs[self._target_key] = target
        with torch.no_grad():
            return self._module(*args, **kwargs)

    def _means(self, out, target: torch.Tensor, inputs) -> torch.Tensor:
        values = [self._objective.loss(out, target, inputs)]
        for metric in self._metrics:
            if metric is None:
                values.append(self._objective.accuracy(out, target, inputs))
            else:
                values.append(metric(read_output(out, self._objective.output_key), target))
        return torch.stack([v.to(self.dtype) for v in values])

    def _count_units(self, n_classes: int | None) -> float:
        """The units of the whole set (one pass over the targets, each checked against the classes)."""
        total = 0.0
        for inputs, target in self.data.batches(self.data.n):
            if n_classes is not None:
                _checks.check_label_range(target, n_classes)
            total += float(self._objective.count(target, inputs))
        if total == 0:
            raise ValueError(f"the evaluation set has no unit to average over ({self._objective.units}: every label "
                             "is ignored)")
        return total

    def _recalibrated(self, params: dict, k: int) -> dict[str, torch.Tensor]:
        stats_names = set(bnm.running_stat_names(self._module))
        fixed = {n: t for n, t in self._fixed.items() if n not in stats_names}

        def forward(p, s, inputs):
            self._call(self._module, (p, s, fixed), inputs, None)
            return bt.leaves(inputs)[0].new_zeros((), dtype=self.dtype)

        batches = [bt.tree_map(lambda t: t.to(self.device), inputs) for inputs in self._calibration]
        return bnm.recalibrated_stats(self._module, params, k, batches, forward, self.runner)

    # -- sizes and decisions ----------------------------------------------------------------------

    def _decide_compile(self, K: int, affine: bool) -> None:
        """``compile="auto"``: compile once the expected work (``expect``, or this call) is worth it."""
        if self.plan.compile_rule != "auto" or self.plan.compile:
            return
        if self._flops is None:
            inputs, target = self.data.probe()
            n = bt.length(inputs)
            whole = forward_flops(self._module, lambda: self._forward_no_grad(inputs, target)) / n
            first = 0.0
            if self._shortcut is not None:
                layer = self._shortcut.name
                u = fl.layer_input(self._module, layer, self.space, self._fixed, self.w0, inputs)
                first = forward_flops(self._module, lambda: self._module.get_submodule(layer)(u)) / n
            self._flops = (whole, first)
        per_sample = self._flops[0] - (self._flops[1] if affine else 0.0)
        if compile_is_worth_it(max(K, self._expected), per_sample * self.n_samples, self.device):
            self.runner.plan = self.plan.changed(compile=True)

    def _chunk_size(self, affine: bool) -> int:
        return chunk_size(self.budget, self.space.size * self.dtype.itemsize, self.plan.batch_size,
                          self.activation_bytes, vectorized=self.plan.vectorize, affine=affine)

    def _layout(self, tree):
        """4-D tensors (images, convolution weights) in channels_last memory format when the plan says so."""
        if not self.runner.plan.channels_last:
            return tree
        return bt.tree_map(lambda t: t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t, tree)

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
