"""The loss loop of ``Evaluator``: chunks of points, batches of data, one point's loss and metric means.

``LossLoop`` is the evaluator's half that runs: ``_run`` sums, over the data's batches, each batch's
units times its loss and metric means at every point of a chunk (vmapped or one after another by the
``Runner``), and divides by the units of the whole set,

.. math::  L(w) = \\frac{1}{N} \\sum_b n_b \\, \\bar\\ell_b(w).

The first-layer fast path (``_first_layer.py``) and BatchNorm recalibration (``batchnorm.py``) plug in
here; ``compile="auto"`` is decided here, when the work is known. The attributes it reads (the private
module copy, the objective, the plan) are set by ``Evaluator.__init__``.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call

from losslens.core import _batches as bt
from losslens.core import _checks
from losslens.core import _first_layer as fl
from losslens.core import batchnorm as bnm
from losslens.core.losses import read_output
from losslens.core.plan import chunk_size, compile_is_worth_it, forward_flops


class LossLoop:
    """The loss loop and the per-batch calls of ``Evaluator`` (a base class holding no state of its own)."""

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

    def _run(self, K: int, params_of: Callable[[slice], dict], coeffs1: torch.Tensor | None) -> torch.Tensor:
        """``(K, 1 + M)`` float64 loss and metric means at ``K`` points, chunk by chunk; ``coeffs1``
        (``(K, 1 + m)``, a leading 1 per row) selects the first-layer fast path. On CUDA an out-of-memory
        error halves the chunk and goes on."""
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
        return torch.cat(sums) / self.n_units

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
