"""The evaluator core: loss and metrics of a model at many points of weight space at once.

Every loss value losslens reports comes from ``Evaluator``. A point is a flat parameter vector ``w``
(see ``ParameterSpace``); ``evaluate(W)`` takes ``K`` of them as a ``(K, P)`` tensor and returns, for
each, the mean over the whole evaluation set

.. math::  L(w) = \\frac{1}{N} \\sum_{b} n_b \\, \\bar\\ell_b(w)

where ``\\bar\\ell_b`` is the loss function's mean over batch ``b`` of ``n_b`` samples (a sample-weighted
mean, not a mean of batch means). The model runs as ``functional_call(model, params, x)`` on a
private copy, so the caller's model (parameters, mode, ``.grad``) is never touched.

How the K points run (measured, see ``bench/evaluator.py``):

- on CUDA, ``torch.vmap`` over chunks of points sized to a memory budget (small models are
  launch-bound point by point); an out-of-memory error halves the chunk and goes on;
- on CPU a forward is already compute-bound, so points of a chunk run one after the other over large
  sample batches, where vmap only adds overhead;
- a model vmap cannot batch (data-dependent control flow, ``.item()``) falls back to the sequential
  path, with one warning;
- ``evaluate_affine`` (lines and planes) replaces the first layer by a combination of ``1 + m``
  outputs precomputed once per data batch (``_first_layer.py``).
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch import nn
from torch.func import functional_call, grad, jvp

from losslens.core import _batchnorm as bnm
from losslens.core import _first_layer as fl
from losslens.core._objectives import LOSSES, METRICS, Objective, resolve
from losslens.core._tuning import activation_bytes_per_sample, channels_last_is_faster, keep_freed_memory, resolve_budget
from losslens.core.data import as_tensors
from losslens.core.params import ParameterSpace
from losslens.errors import ConfigError

_MAX_CHUNK = 4096
_PROBE_POINTS = 8
_CPU_BATCH_BYTES = 16 << 20
_COMPILE_WORTH_S = 60.0
ChunkCallback = Callable[[int, "EvalResult"], None]


@dataclass(frozen=True)
class EvalResult:
    """Per-point results of an evaluation.

    Attributes:
        loss: ``(K,)`` float64, mean loss over the evaluation set at each point (NaN/inf kept).
        metrics: ``{name: (K,)}`` float64 means of each metric.
        n_samples: size of the evaluation set.
        bn: BatchNorm mode used (``eval``, ``batch`` or ``recalibrate``).
    """

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    n_samples: int = 0
    bn: str = "eval"

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
        )


class Evaluator:
    """Evaluates a model's loss and metrics at batches of flat parameter vectors.

    Args:
        model: the network. Only read: the evaluator works on its own copy.
        loss_fn: ``"cross_entropy"``, ``"mse"`` or ``f(output, target) -> mean over the batch``.
        data: the evaluation set: a pair of tensors, a ``Dataset``, a ``DataLoader`` or ``TensorData``.
        device: ``"auto"`` (CUDA when available), or any torch device.
        dtype: floating dtype of parameters and inputs (float32 by default; float64 for reference work).
        bn: BatchNorm mode, ``"eval"``, ``"batch"`` or ``"recalibrate"`` (see ``_batchnorm.py``).
        metrics: names (``"accuracy"``) or callables ``f(output, target) -> mean over the batch``;
            ``None``: accuracy for integer class targets, none otherwise.
        memory_budget: bytes for one chunk of points, or ``"auto"``.
        include_buffers: put BatchNorm running statistics in the parameter vector.
        batch_size: samples per forward; by default sized to the cache on CPU and to the budget
            on CUDA (128 with ``bn="batch"``, where batch statistics depend on it).
        calibration_data: data for ``bn="recalibrate"`` (default: the evaluation set).
        calibration_size: samples of it used (the first ones; default 2048).
        vectorize: ``"auto"`` (vmap on CUDA, sequential on CPU), ``True`` or ``False``.
        compile: ``torch.compile`` the per-point function: ``True``, ``False``, or ``"auto"``
            (compile a call's remaining points when they are expected to take over 60 s).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: str | Objective,
        data,
        *,
        device: str | torch.device = "auto",
        dtype: torch.dtype = torch.float32,
        bn: str = "eval",
        metrics: tuple[str | Objective, ...] | None = None,
        memory_budget: int | str = "auto",
        include_buffers: bool = False,
        batch_size: int | None = None,
        calibration_data=None,
        calibration_size: int | None = None,
        vectorize: bool | str = "auto",
        compile: bool | str = "auto",
    ):
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating dtype, got {dtype}")
        for name, value in (("vectorize", vectorize), ("compile", compile)):
            if value not in ("auto", True, False):
                raise ValueError(f"{name} must be 'auto', True or False, got {value!r}")
        self.device = resolve_device(device)
        self.dtype = dtype
        self.bn = bnm.check_mode(bn)
        self.loss_name, self._loss = resolve(loss_fn, LOSSES, "loss")
        self.space = ParameterSpace(model, include_buffers=include_buffers)

        uses = [id(p) for _, p in model.named_parameters(remove_duplicate=False)]
        self._tied = len(uses) != len(set(uses))
        self._module = copy.deepcopy(model).to(device=self.device, dtype=dtype)
        self._module.requires_grad_(False)
        bnm.configure(self._module, self.bn)
        self._fixed = self.space.fixed_state(self._module)
        self.w0 = self.space.flatten(self._module, dtype=dtype).to(self.device)

        x, y = as_tensors(data)
        if metrics is None:
            metrics = () if y.is_floating_point() else ("accuracy",)
        named = [resolve(m, METRICS, "metric") for m in metrics]
        self.metric_names = tuple(n for n, _ in named)
        self._metrics = tuple(f for _, f in named)
        self._channels_last = False
        self._x, self._y = self._prepare(x), self._prepare(y)
        self.n_samples = len(self._x)
        self.budget = resolve_budget(memory_budget, self.device)
        if self.device.type == "cpu":
            keep_freed_memory()
        self._act_bytes = activation_bytes_per_sample(self._module, self._x[:2].to(self.device))
        self.batch_size = self._batch_size(batch_size)
        conv = any(isinstance(m, nn.Conv2d) for m in self._module.modules())
        if self.device.type == "cpu" and self._x.dim() == 4 and conv:
            self._channels_last = channels_last_is_faster(self._module, self._x[: self.batch_size])
            self._x = self._layout(self._x)
        self.vectorize = self.device.type == "cuda" if vectorize == "auto" else vectorize

        self._stats_names: list[str] = []
        if self.bn != "recalibrate" and (calibration_data is not None or calibration_size is not None):
            raise ValueError("calibration_data and calibration_size apply only to bn='recalibrate'")
        self.calibration_size = None
        if self.bn == "recalibrate":
            self._stats_names = bnm.running_stat_names(self._module)
            if include_buffers:
                raise ValueError("bn='recalibrate' re-estimates the buffers, so include_buffers must be False")
            cx, _ = as_tensors(calibration_data) if calibration_data is not None else (x, y)
            self._calib_x = self._prepare(cx[: calibration_size or 2048])
            self.calibration_size = len(self._calib_x)
        first_input = self._x[:2].to(self.device)
        self._first = (
            fl.find_first_layer(self._module, self.space, self._fixed, first_input)
            if self.bn != "recalibrate" and first_input.is_floating_point()
            else None
        )
        self._tail: nn.Module | None = None  # the copy whose first layer is precomputed
        self._bases = None  # (w0, D, {batch index: first-layer outputs}) of the last affine family
        self.compile = compile
        self._compiled = compile is True
        self._compiled_fns: dict = {}
        self._planned, self._decided = 0, False
        self._graphs = None  # (w, per-batch gradient graphs) for repeated Hessian-vector products

    # -- public calls ---------------------------------------------------------------------------

    def evaluate(self, W: torch.Tensor, *, on_chunk: ChunkCallback | None = None) -> EvalResult:
        """Loss and metrics at each row of ``W`` (shape ``(K, P)``, or ``(P,)`` for one point).

        ``on_chunk(start, result)`` is called after each chunk of points with the chunk's results
        (points ``start .. start + len(result)``), e.g. to write partial results or show progress.
        """
        W = self._points(W)
        return self._run(len(W), lambda sl: self.space.unflatten(W[sl]), None, on_chunk)

    def evaluate_affine(
        self, w0: torch.Tensor, D: torch.Tensor, coeffs: torch.Tensor, *, on_chunk: ChunkCallback | None = None
    ) -> EvalResult:
        """Loss and metrics at the points ``w0 + coeffs @ D`` of an affine family (lines, planes).

        Args:
            w0: ``(P,)`` origin. D: ``(m, P)`` directions. coeffs: ``(K, m)`` coordinates.
            on_chunk: as in ``evaluate``.

        Gives the same numbers as ``evaluate(w0 + coeffs @ D)`` (to float rounding), faster when the
        model's first layer admits the precomputed combination (see ``_first_layer.py``).
        """
        w0 = self._points(w0)[0]
        D = self._points(D)
        coeffs = torch.as_tensor(coeffs, dtype=self.dtype, device=self.device)
        if coeffs.dim() == 1:
            coeffs = coeffs[:, None]
        if coeffs.dim() != 2 or coeffs.shape[1] != len(D):
            raise ValueError(f"coeffs must have shape (K, {len(D)}) for {len(D)} directions, found {list(coeffs.shape)}")
        if self._first is None or not fl.pays_off(self._module.get_submodule(self._first), len(D)):
            return self._run(len(coeffs), lambda sl: self.space.unflatten(w0 + coeffs[sl] @ D), None, on_chunk)
        if self._tail is None:
            self._tail = fl.tail(self._module, self._first)
        rest = [n for n in self.space.names if fl.owner(n) != self._first]
        idx = self.space.index(rest).to(self.device)
        w0_rest, D_rest = w0[idx], D[:, idx]
        ones = torch.ones(len(coeffs), 1, dtype=self.dtype, device=self.device)
        same_family = self._bases is not None and torch.equal(self._bases[0], w0) and torch.equal(self._bases[1], D)
        if not same_family:  # the first layer's outputs per batch, kept while calls stay on this line/plane
            self._bases = (w0.clone(), D.clone(), {})
        return self._run(
            len(coeffs),
            lambda sl: self.space.unflatten(w0_rest + coeffs[sl] @ D_rest, rest),
            (w0, D, torch.cat([ones, coeffs], dim=1), self._bases[2]),
            on_chunk,
        )

    def plan(self, n_points: int) -> None:
        """Announce that about ``n_points`` evaluations follow, in calls of any size (a surface in
        chunks). With ``compile="auto"``, the first call then measures the rate and compiles if
        those points are expected to take over 60 s."""
        self._planned, self._decided = int(n_points), False

    def gradient(self, w: torch.Tensor) -> torch.Tensor:
        """``(P,)`` gradient of the mean loss over the evaluation set at ``w``."""
        w = self._points(w)[0]
        g = torch.zeros_like(w)
        for x, y in self._batches(self._grad_batch_size(1)):
            g += grad(self._batch_loss)(w, x, y) * (len(y) / self.n_samples)
        return g

    def hvp(self, w: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        """Hessian-vector products ``H(w) v`` of the mean loss, for ``V`` of shape ``(P,)`` or ``(k, P)``.

        The gradient's graph over the evaluation set is built once per point and kept while the
        same ``w`` comes back (Lanczos asks tens of products at one point); each product is then one
        double-backward pass, :math:`Hv = \\nabla_w (\\nabla L(w) \\cdot v)`, batched over the vectors.
        When that graph would not fit the memory budget, each call recomputes forward-over-reverse
        ``jvp(grad(L), (w,), (v,))`` batch by batch.
        """
        w = self._points(w)[0]
        single = V.dim() == 1
        V = self._points(V)
        graphs = self._gradient_graphs(w)
        if graphs is not None:
            out = sum(torch.autograd.grad(g, leaf, V, retain_graph=True, is_grads_batched=True)[0] for leaf, g in graphs)
        else:
            out = torch.zeros_like(V)

            def one(v, x, y):
                return jvp(lambda w_: grad(self._batch_loss)(w_, x, y), (w,), (v,))[1]

            for x, y in self._batches(self._grad_batch_size(len(V))):
                out += self._map(one, (V, x, y), (0, None, None), vectorize=True) * (len(y) / self.n_samples)
        return out[0] if single else out

    def _gradient_graphs(self, w: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        """Per batch, ``(leaf, gradient with its graph)`` at ``w``, cached for one point; ``None`` if too big."""
        if self._graphs is not None and torch.equal(self._graphs[0], w):
            return self._graphs[1]
        self._graphs = None
        if 8 * self._act_bytes * self.n_samples > self.budget:
            return None
        graphs = []
        with torch.enable_grad():
            for x, y in self._batches(self._grad_batch_size(1)):
                leaf = w.detach().clone().requires_grad_()
                loss = self._batch_loss(leaf, x, y) * (len(y) / self.n_samples)
                graphs.append((leaf, torch.autograd.grad(loss, leaf, create_graph=True)[0]))
        self._graphs = (w.clone(), graphs)
        return graphs

    def module_at(self, w: torch.Tensor) -> nn.Module:
        """A new copy of the model holding the parameters ``w``, in eval mode, for external tools
        (PyHessian) that need a module. The caller's model is not involved."""
        module = copy.deepcopy(self._module)
        state = dict(module.named_parameters()) | dict(module.named_buffers())
        with torch.no_grad():
            for name, t in self.space.unflatten(self._points(w)[0]).items():
                state[name].copy_(t)
                state[name].requires_grad_(isinstance(state[name], nn.Parameter))
        bnm.configure(module, "eval")
        return module

    @property
    def data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The evaluation set as ``(inputs, targets)``."""
        return self._x, self._y

    def meta(self) -> dict:
        """What the numbers depend on, for the provenance of results."""
        return {
            "loss": self.loss_name,
            "metrics": list(self.metric_names),
            "bn": self.bn,
            "n_samples": self.n_samples,
            "batch_size": self.batch_size,
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": str(self.device),
            "n_params": self.space.size,
            "include_buffers": self.space.include_buffers,
            "calibration_size": self.calibration_size,
        }

    # -- the engine -------------------------------------------------------------------------------

    def _run(self, K: int, params_of: Callable[[slice], dict], affine, on_chunk) -> EvalResult:
        """Sums of ``n_b * mean`` over all batches for each point, chunk by chunk, then the means.

        With ``compile="auto"``, a first small chunk measures the rate; the rest (of this call, or of
        the points announced by ``plan``) is compiled when it is expected to take longer than
        ``_COMPILE_WORTH_S`` (a cold compile costs 5-15 s and gains nothing on some models).
        """
        self._graphs = None  # the Hessian work at a point is over: give its memory to the chunks
        results = []
        chunk = self._chunk_size(affine)
        planned = max(K, self._planned)
        probe = self.compile == "auto" and not self._compiled and not self._decided and planned > _PROBE_POINTS
        start = 0
        while start < K:
            sl = slice(start, min(K, start + (min(chunk, _PROBE_POINTS) if probe else chunk)))
            tic = time.perf_counter()
            try:
                sums = self._chunk_sums(params_of(sl), sl, affine).double().cpu()
            except torch.cuda.OutOfMemoryError:
                if chunk == 1:
                    raise
                chunk //= 2
                torch.cuda.empty_cache()
                continue
            if probe:
                probe, self._decided = False, self._planned > 0
                per_point = (time.perf_counter() - tic) / (sl.stop - sl.start)
                self._compiled = per_point * (planned - sl.stop) > _COMPILE_WORTH_S
            results.append(self._result(sums))
            if on_chunk is not None:
                on_chunk(start, results[-1])
            start = sl.stop
        return EvalResult.cat(results)

    def _result(self, sums: torch.Tensor) -> EvalResult:
        means = sums / self.n_samples
        metrics = {n: means[:, 1 + i] for i, n in enumerate(self.metric_names)}
        return EvalResult(means[:, 0], metrics, self.n_samples, self.bn)

    def _chunk_sums(self, params: dict, sl: slice, affine) -> torch.Tensor:
        k = sl.stop - sl.start
        buffers = self._recalibrated(params, k) if self._stats_names else {}
        sums = torch.zeros(k, 1 + len(self._metrics), dtype=self.dtype, device=self.device)
        if affine is None:
            for x, y in self._batches(self.batch_size):
                sums += self._map(self._point_sums, (params, buffers, x, y), (0, 0, None, None))
            return sums
        w0, D, coeffs1, bases = affine
        for i, (x, y) in enumerate(self._batches(self.batch_size)):
            basis = bases.get(i)
            if basis is None:
                basis = fl.layer_basis(self._module, self._first, self.space, self._fixed, w0, D, x)
                if basis.numel() * basis.element_size() * self.n_samples <= len(x) * self.budget // 4:
                    bases[i] = basis  # kept for the next chunks when all batches' bases fit a quarter of the budget
            sums += self._map(self._affine_point_sums, (params, coeffs1[sl], basis, x, y), (0, 0, None, None, None))
        return sums

    def _point_sums(self, params: dict, buffers: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``n_b`` times the loss and metric means of one point on one batch."""
        fixed = {n: t for n, t in self._fixed.items() if n not in buffers}
        return self._sums(self._call(self._module, (params, buffers, fixed), x), y)

    def _affine_point_sums(self, params: dict, c: torch.Tensor, basis: torch.Tensor, x, y) -> torch.Tensor:
        """As ``_point_sums``, the first layer's output being ``c @ basis = basis_0 + sum_i c_i basis_i``."""
        # Elementwise multiply-adds: on CPU twice as fast as the equivalent GEMV (c @ basis), and
        # compiled, fused with the activation that follows.
        z = basis[0]
        for i in range(1, len(basis)):
            z = torch.addcmul(z, basis[i], c[i])  # out of place: vmap has no batching rule for addcmul_
        out = self._call(self._tail, (params, {f"{self._first}.value": z}, self._fixed), x)
        return self._sums(out, y)

    def _call(self, module: nn.Module, tensors: tuple[dict, ...], x: torch.Tensor) -> torch.Tensor:
        """``functional_call``; tying shared weights (a costly step per call) only for models that have them."""
        return functional_call(module, tensors, (x,), tie_weights=self._tied)

    def _sums(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        values = [self._loss(out, y)] + [m(out, y) for m in self._metrics]
        return torch.stack([v.to(self.dtype) for v in values]) * len(y)

    def _map(self, f: Callable, args: tuple, in_dims: tuple, vectorize: bool | None = None) -> torch.Tensor:
        """``f`` over the leading dim of the batched ``args``: vmapped, or one point after another.

        The point functions are compiled once ``self._compiled`` is set (see ``_run``).
        """
        own = vectorize is None
        vectorize = self.vectorize if own else vectorize
        if vectorize:
            try:
                with torch.no_grad():
                    return self._transformed(f, in_dims, vmapped=True)(*args)
            except torch.cuda.OutOfMemoryError:
                raise
            except Exception as err:  # noqa: BLE001 - any failure of vmap means: not batchable
                if own:
                    self.vectorize = False
                warnings.warn(
                    f"losslens: this model cannot be vmapped ({type(err).__name__}: {err}); "
                    "evaluating its points one after another instead",
                    stacklevel=3,
                )
        g = self._transformed(f, in_dims, vmapped=False)
        k = next(len(_first_leaf(a)) for a, d in zip(args, in_dims) if d == 0 and _first_leaf(a) is not None)
        with torch.no_grad():
            return torch.stack(
                [g(*(self._layout(_index(a, i)) if d == 0 else a for a, d in zip(args, in_dims))) for i in range(k)]
            )

    def _transformed(self, f: Callable, in_dims: tuple, vmapped: bool) -> Callable:
        """``f`` vmapped and/or compiled; compiled functions are cached per (function, vmapped)."""
        g = torch.vmap(f, in_dims=in_dims) if vmapped else f
        name = getattr(f, "__name__", None)
        if not self._compiled or name not in ("_point_sums", "_affine_point_sums"):
            return g
        key = (name, vmapped)
        if key not in self._compiled_fns:
            self._compiled_fns[key] = torch.compile(g, dynamic=False)
        compiled = self._compiled_fns[key]

        def call(*args):
            try:
                return compiled(*args)
            except torch.cuda.OutOfMemoryError:
                raise
            except Exception as err:  # noqa: BLE001 - no compiler, an unsupported op, ...: run uncompiled
                self._compiled = False
                warnings.warn(f"losslens: torch.compile failed ({type(err).__name__}); evaluating uncompiled", stacklevel=4)
                return g(*args)

        return call

    def _recalibrated(self, params: dict, k: int) -> dict[str, torch.Tensor]:
        """Running statistics re-estimated at each of the ``k`` points: ``{name: (k, C)}``."""
        stats = bnm.fresh_running_stats(self._module, k)
        fixed = {n: t for n, t in self._fixed.items() if n not in stats}

        def forward(p, s, x):
            self._call(self._module, (p, s, fixed), x)
            return x.new_zeros(())

        batches = [self._calib_x[i : i + self.batch_size].to(self.device)
                   for i in range(0, len(self._calib_x), self.batch_size)]
        if self.vectorize:
            with bnm.calibrating(self._module):
                for x in batches:
                    self._map(forward, (params, stats, x), (0, 0, None))
        if not self.vectorize:  # also after a fallback in the loop above: recompute every point
            stats = bnm.fresh_running_stats(self._module, k)
            with torch.no_grad():
                for i in range(k):
                    with bnm.calibrating(self._module):
                        for x in batches:
                            forward(_index(params, i), _index(stats, i), x)
        return stats

    def _batch_loss(self, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self._call(self._module, (self.space.unflatten(w), self._fixed), x)
        return self._loss(out, y)

    # -- sizes and data ---------------------------------------------------------------------------

    def _chunk_size(self, affine) -> int:
        """Points per chunk so that their parameters and activations fit the budget."""
        per_point = self.space.size * self.dtype.itemsize
        if self.vectorize:
            per_point += 2 * self.batch_size * self._act_bytes
        if affine is not None:
            per_point += self.batch_size * self._act_bytes
        return int(max(1, min(_MAX_CHUNK, self.budget // per_point)))

    def _batch_size(self, asked: int | None) -> int:
        """Samples per forward: ``asked``, else 128 with ``bn="batch"``, else a target size split evenly.

        The target: on CPU about ``_CPU_BATCH_BYTES`` of activations, near the cache (measured on 2
        cores: the bench CNNs run 10-30% slower over 1024-2048 samples at once than over 256, the
        bench MLP fastest over all 2048); on CUDA what a quarter of the budget holds. If a batch up to
        twice the target splits the set exactly, it is taken (one shape: one compiled graph).
        """
        if asked is not None:
            return int(max(1, min(self.n_samples, asked)))
        if self.bn == "batch":
            return min(self.n_samples, 128)
        target = _CPU_BATCH_BYTES if self.device.type == "cpu" else self.budget // 4
        n_target = -(-self.n_samples // max(1, min(self.n_samples, target // self._act_bytes)))
        for n_batches in range(n_target, max(1, n_target // 2) - 1, -1):
            if self.n_samples % n_batches == 0:
                return self.n_samples // n_batches
        return -(-self.n_samples // n_target)

    def _grad_batch_size(self, n_vectors: int) -> int:
        """Samples per batch of gradient work; with ``bn="batch"`` the evaluation batches themselves,
        since batch statistics (and so the function differentiated) depend on them."""
        if self.bn == "recalibrate":
            raise ValueError("gradients and Hessians with bn='recalibrate' are not supported (the running statistics "
                             "would have to be re-estimated as a function of w); use bn='eval' or bn='batch'")
        if self.bn == "batch":
            return self.batch_size
        return int(max(1, min(self.n_samples, self.budget // (8 * n_vectors * self._act_bytes))))

    def _batches(self, size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(0, self.n_samples, size):
            yield self._x[i : i + size].to(self.device), self._y[i : i + size].to(self.device)

    def _prepare(self, t: torch.Tensor) -> torch.Tensor:
        """Data on the device (on CUDA when under 1 GiB, else streamed per batch), floats in ``dtype``."""
        t = self._layout(t.to(self.dtype) if t.is_floating_point() else t)
        return t.to(self.device) if t.numel() * t.element_size() <= _resident_limit(self.device) else t

    def _layout(self, tree):
        """4-D tensors (images, convolution weights) in channels_last memory format where that is faster."""
        if isinstance(tree, dict):
            return {n: self._layout(t) for n, t in tree.items()}
        if self._channels_last and tree.dim() == 4:
            return tree.contiguous(memory_format=torch.channels_last)
        return tree

    def _points(self, W) -> torch.Tensor:
        W = torch.as_tensor(W)
        W = W[None] if W.dim() == 1 else W
        if W.dim() != 2 or W.shape[1] != self.space.size or len(W) == 0:
            raise ValueError(f"expected points of shape (K, {self.space.size}), found {list(W.shape)}")
        return W.to(device=self.device, dtype=self.dtype)


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` (CUDA when available, else CPU) or any torch device spec."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"invalid device {device!r}; valid: auto, cpu, cuda, cuda:N, ...") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise ConfigError(f"device {str(device)!r} is not available here ({torch.cuda.device_count()} CUDA devices)")
    return device


def _resident_limit(device: torch.device) -> int:
    return (1 << 30) if device.type == "cuda" else (1 << 62)


def _index(tree, i: int):
    return {n: t[i] for n, t in tree.items()} if isinstance(tree, dict) else tree[i]


def _first_leaf(a):
    return next(iter(a.values()), None) if isinstance(a, dict) else a
