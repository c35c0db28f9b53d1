"""How the evaluator runs: the ``Plan`` asked for, and the ``ExecutionPlan`` decided from it, in one place.

``Plan`` is what a caller asks (``Evaluator(..., plan=Plan(device="cpu", threads=1))``): device, dtype,
samples per forward, memory budget, threads, ``torch.compile`` and ``vmap``, each ``"auto"`` by default.
``ExecutionPlan`` is what was decided: the device, dtype, samples per forward, whether a chunk's points
are ``vmap``-ped, the memory layout, the number of intra-op threads and whether the per-point function
is compiled. ``Evaluator.meta()["plan"]`` records it; a fallback (vmap or ``torch.compile`` failing on
the model) replaces it by a new plan that says why. The plan changes how fast the numbers come, not
the numbers (to float rounding), except ``dtype`` and, with batch statistics, ``batch_size``.

Decisions, each from the model, the data and the announced work, never from a clock, except the
thread count (which does not change the numbers):

- ``vectorize``: ``vmap`` on CUDA, where small models are launch-bound point by point; on CPU a
  forward is already compute-bound and the points run one after another over large sample batches.
- ``channels_last``: on CPU, for 4-D inputs of a model with 2-D pooling (oneDNN's pooling measured
  1.25x faster in NHWC; strided convolutions without pooling measured 0.75x).
- ``threads``: on CPU with several cores, all of them only when a forward over one batch takes at
  least ``_MIN_PARALLEL_S`` with one thread and runs ``_THREAD_GAIN`` times faster with all (best of
  3 each); else one. On a machine where another process keeps a core busy, every parallel region
  waits for the descheduled thread: the default model's forward ran 500x slower with two threads
  than with one. So the runner also watches the chunks (``Runner.observe``): when several threads run
  far slower than measured, it measures again and falls back to one thread, recording why.
- ``compile``: ``True``/``False``, or ``"auto"``: compile once the work announced by
  ``Evaluator.expect`` (or a call's own points) is expected to take over ``_COMPILE_WORTH_S``
  seconds at a nominal rate (FLOPs counted by ``torch.utils.flop_counter`` on the model at hand), so
  two runs of the same command, or the two halves of a resumed grid, decide the same.
- the memory budget (``resolve_budget``), the activations per sample it is shared with
  (``activation_bytes_per_sample``), and the allocator (``keep_freed_memory``).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import os
import sys
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn

from losslens.checks import check_choice
from losslens.core import _batches as bt
from losslens.core._checks import check_batch_size
from losslens.errors import ConfigError

MAX_THREADS = 1024  # torch/OpenMP abort (or segfault) when asked for tens of thousands of threads
_MAX_CHUNK = 4096
_CPU_BATCH_BYTES = 16 << 20
_THREAD_GAIN = 1.3
_MIN_PARALLEL_S = 2e-3
_COMPILE_WORTH_S = 60.0
_NOMINAL_FLOPS = {"cpu": 20e9, "cuda": 5e12}  # deliberately constant: the decision must not depend on a clock
_POOLING = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_GiB = 1 << 30


@dataclass(frozen=True)
class Plan:
    """How an evaluator runs, as asked (``"auto"``: decided, see the module docstring).

    Attributes:
        device: ``"auto"`` (CUDA when available), or any torch device.
        dtype: floating dtype of parameters and inputs (float32 by default; float64 for reference work).
        batch_size: samples per forward; by default sized to the cache on CPU and to the budget on CUDA
            (128 with ``bn="batch"``, where batch statistics depend on it).
        memory_budget: bytes for one chunk of points, or ``"auto"``.
        threads: intra-op threads during the evaluator's calls: ``"auto"`` (measured: one unless more
            are clearly faster) or a number.
        compile: ``torch.compile`` the per-point function: ``True``, ``False``, or ``"auto"`` (when the
            work announced with ``Evaluator.expect`` is expected to take over a minute).
        vectorize: ``"auto"`` (vmap on CUDA, sequential on CPU), ``True`` or ``False``.

    Raises:
        ValueError: an invalid value (one line naming the field and the valid values).
    """

    device: str | torch.device = "auto"
    dtype: torch.dtype = torch.float32
    batch_size: int | None = None
    memory_budget: int | str = "auto"
    threads: int | str = "auto"
    compile: bool | str = "auto"
    vectorize: bool | str = "auto"

    def __post_init__(self):
        if not (isinstance(self.dtype, torch.dtype) and self.dtype.is_floating_point):
            raise ValueError(f"dtype must be a floating torch dtype, got {self.dtype}")
        check_choice("vectorize", self.vectorize, ("auto", True, False))
        check_choice("compile", self.compile, ("auto", True, False))
        check_batch_size(self.batch_size)

    @classmethod
    def of(cls, plan: "Plan | Mapping | None") -> "Plan":
        """``plan`` as a ``Plan``: one, a mapping of its fields, or ``None`` (every field ``"auto"``).

        Raises:
            ConfigError: a mapping with a key that is not a field (the fields are listed).
        """
        if plan is None or isinstance(plan, Plan):
            return plan or cls()
        unknown = sorted(set(plan) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"unknown plan option {unknown[0]!r}; valid: {', '.join(cls.__dataclass_fields__)}")
        return cls(**plan)


@dataclass(frozen=True)
class ExecutionPlan:
    """How the evaluator runs its points (see the module docstring for how each field is decided).

    Attributes:
        device, dtype: where and in which floating dtype the model runs.
        batch_size: samples per forward.
        vectorize: ``vmap`` over a chunk's points, else one point after another.
        channels_last: 4-D inputs and weights in NHWC memory format.
        threads: intra-op threads used during the evaluator's calls (restored afterwards).
        compile: whether the per-point function is compiled with ``torch.compile``.
        compile_rule: ``"on"``, ``"off"`` or ``"auto"`` (as asked).
        fallbacks: why the plan changed after it was made (vmap or compile failing), in order.
    """

    device: str
    dtype: str
    batch_size: int
    vectorize: bool
    channels_last: bool
    threads: int
    compile: bool
    compile_rule: str
    fallbacks: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return dataclasses.asdict(self) | {"fallbacks": list(self.fallbacks)}

    def changed(self, reason: str | None = None, **fields) -> "ExecutionPlan":
        """A new plan with ``fields`` changed and, when given, ``reason`` appended to ``fallbacks``."""
        fallbacks = self.fallbacks + ((reason,) if reason else ())
        return dataclasses.replace(self, fallbacks=fallbacks, **fields)


def decide(plan: Plan, module: nn.Module, data, bn: str, device: torch.device, forward: Callable) -> tuple:
    """``(ExecutionPlan, memory budget, activation bytes per sample, a timed forward)`` of ``plan`` for
    ``module`` on ``data`` (an ``EvalData``; both switched to channels_last when that is decided);
    ``forward(inputs, target)`` runs the model without gradients. See the module docstring."""
    budget = resolve_budget(plan.memory_budget, device)
    if device.type == "cpu":
        keep_freed_memory()
    probe = data.probe()
    activation_bytes = activation_bytes_per_sample(module, lambda: forward(*probe), bt.length(probe[0]))
    channels_last = isinstance(data.x, torch.Tensor) and wants_channels_last(module, data.x, device)
    if channels_last:
        module.to(memory_format=torch.channels_last)
        data.to_layout(True)
    if not data.as_tensors:
        if plan.batch_size is not None:
            raise ValueError("batch_size applies to data held as tensors; batches from a DataLoader are used as "
                             "they come (set the loader's batch_size)")
        batch = data.loader_batch_size or 1
    else:
        batch = batch_size_for(plan.batch_size, data.n, bn, device, budget, activation_bytes)
    first_batch = next(data.batches(batch))
    probe_forward = lambda: forward(*first_batch)  # noqa: E731
    decided = ExecutionPlan(
        device=str(device), dtype=str(plan.dtype).removeprefix("torch."), batch_size=batch,
        vectorize=device.type == "cuda" if plan.vectorize == "auto" else plan.vectorize,
        channels_last=channels_last, threads=choose_threads(plan.threads, device, probe_forward)[0],
        compile=plan.compile is True, compile_rule={True: "on", False: "off"}.get(plan.compile, "auto"),
    )
    return decided, budget, activation_bytes, probe_forward


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` (CUDA when available, else CPU) or any torch device spec.

    Raises:
        ConfigError: an invalid spec, the ``meta`` device (it holds no values), or a device this
            machine or this build of torch does not have.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"invalid device {device!r}; valid: auto, cpu, cuda, cuda:N, ...") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise ConfigError(f"device {str(device)!r} is not available here ({torch.cuda.device_count()} CUDA devices)")
    if device.type == "meta":
        raise ConfigError("device 'meta' holds shapes, not values: nothing can be evaluated on it")
    try:
        torch.empty(1, device=device)
    except Exception as e:  # a backend torch names but was not built with (mps, xpu, xla, ...)
        raise ConfigError(f"device {str(device)!r} is not usable here ({type(e).__name__})") from None
    return device


def batch_size_for(asked: int | None, n: int, bn: str, device: torch.device, budget: int, activation_bytes: int) -> int:
    """Samples per forward over a set of ``n`` held as tensors: ``asked``, else 128 with
    ``bn="batch"`` (batch statistics depend on it), else a target size split evenly.

    The target: on CPU about ``_CPU_BATCH_BYTES`` of activations, near the cache (measured on 2
    cores: the bench CNNs run 10-30% slower over 1024-2048 samples at once than over 256, the bench
    MLP fastest over all 2048); on CUDA what a quarter of the budget holds. If a batch up to twice the
    target splits the set exactly, it is taken (one shape: one compiled graph).
    """
    if asked is not None:
        return _whole_batches(int(min(n, asked)), n, bn)
    if bn == "batch":
        return _whole_batches(min(n, 128), n, bn)
    target = _CPU_BATCH_BYTES if device.type == "cpu" else budget // 4
    n_target = -(-n // max(1, min(n, target // activation_bytes)))
    for n_batches in range(n_target, max(1, n_target // 2) - 1, -1):
        if n % n_batches == 0:
            return n // n_batches
    return -(-n // n_target)


def _whole_batches(batch: int, n: int, bn: str) -> int:
    """``batch``, refused with ``bn="batch"`` when it leaves a batch of one sample (no batch statistics)."""
    if bn == "batch" and n > 1 and 1 in (batch, n % batch):
        raise ValueError(f"bn='batch' normalizes with each batch's own statistics, which need at least 2 samples: "
                         f"batch_size={batch} over {n} samples leaves a batch of 1; choose another batch_size")
    return batch


def chunk_size(budget: int, point_bytes: int, batch: int, activation_bytes: int, *, vectorized: bool,
               affine: bool) -> int:
    """Points per chunk so that their parameters (``point_bytes`` each) and activations fit the budget."""
    per_point = point_bytes
    if vectorized:
        per_point += 2 * batch * activation_bytes
    if affine:
        per_point += batch * activation_bytes
    return int(max(1, min(_MAX_CHUNK, budget // per_point)))


def wants_channels_last(module: nn.Module, x: torch.Tensor, device: torch.device) -> bool:
    """NHWC on CPU for 4-D floating inputs of a model with 2-D pooling (see the module docstring)."""
    return (device.type == "cpu" and x.dim() == 4 and x.is_floating_point()
            and any(isinstance(m, _POOLING) for m in module.modules()))


def choose_threads(requested: int | str, device: torch.device, forward: Callable[[], object]) -> tuple[int, float]:
    """``(threads, seconds per forward with them)``: ``requested`` when it is a number, else decided
    by measuring ``forward`` (CPU only; see the module docstring).

    Raises:
        ValueError: ``requested`` is neither ``"auto"`` nor an integer from 1 to ``MAX_THREADS``.
    """
    if requested != "auto":
        if isinstance(requested, bool) or not isinstance(requested, int) or not 1 <= requested <= MAX_THREADS:
            raise ValueError(f"threads must be 'auto' or an integer from 1 to {MAX_THREADS}, got {requested!r}")
        return requested, best_time(forward, requested)
    available = torch.get_num_threads()
    if device.type != "cpu" or available <= 1:
        return available, best_time(forward, available)
    return faster_threads(forward, available)


def faster_threads(forward: Callable[[], object], available: int) -> tuple[int, float]:
    """``(1 or available, its seconds per forward)``: all threads only for a clear gain on real work."""
    single = best_time(forward, 1)
    if single < _MIN_PARALLEL_S:
        return 1, single
    multi = best_time(forward, available)
    return (available, multi) if multi * _THREAD_GAIN < single else (1, single)


def best_time(forward: Callable[[], object], threads: int, repeats: int = 3) -> float:
    """Best of ``repeats`` timings of ``forward()`` with ``threads`` intra-op threads (after a warm-up)."""
    with using_threads(threads):
        forward()  # warm-up: allocations and kernel selection
        best = float("inf")
        for _ in range(repeats):
            tic = time.perf_counter()
            forward()
            best = min(best, time.perf_counter() - tic)
    return best


@contextlib.contextmanager
def using_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads, then restore the process's setting."""
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n != before:
            torch.set_num_threads(before)


def forward_flops(module: nn.Module, call: Callable[[], object]) -> int:
    """FLOPs (matmuls, convolutions) of ``call()``, counted by ``torch.utils.flop_counter``."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with warnings.catch_warnings(), counter, torch.no_grad():
        warnings.simplefilter("ignore")
        call()
    return int(counter.get_total_flops())


def compile_is_worth_it(n_points: int, flops_per_point: float, device: torch.device) -> bool:
    """Whether ``n_points`` evaluations of ``flops_per_point`` each are expected to take over
    ``_COMPILE_WORTH_S`` at the device's nominal rate (a cold compile costs 5-15 s)."""
    rate = _NOMINAL_FLOPS.get(device.type, _NOMINAL_FLOPS["cpu"])
    return n_points * flops_per_point / rate > _COMPILE_WORTH_S


def math_attention():
    """Attention on its math backend, which has a double backward and vmap batching rules (a no-op where
    torch lacks the switch)."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch older than 2.3
        return contextlib.nullcontext()
    return sdpa_kernel([SDPBackend.MATH])


def resolve_budget(budget: int | str, device: torch.device) -> int:
    """Bytes the evaluator may use for one chunk: an int, or ``"auto"``.

    ``"auto"`` is half the free memory of a CUDA device, or a quarter of the RAM (at most 2 GiB) on CPU.
    """
    if isinstance(budget, int) and not isinstance(budget, bool):
        if budget <= 0:
            raise ValueError(f"memory_budget must be positive, got {budget}")
        return budget
    if budget != "auto":
        raise ValueError(f"memory_budget must be a number of bytes or 'auto', got {budget!r}")
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free // 2
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 * _GiB
    return min(2 * _GiB, total // 4)


@functools.cache
def keep_freed_memory() -> bool:
    """Stop glibc from returning big freed blocks to the OS (Linux only; once per process).

    By default glibc serves big blocks with ``mmap`` and unmaps them on free, so every forward over a
    large batch page-faults its activations back in. Raising ``M_MMAP_THRESHOLD`` (to 512 MiB) and
    ``M_TRIM_THRESHOLD`` (to 2 GiB) keeps them in the heap: measured 2.3x on a fresh CNN forward of
    2048 samples. Process-wide and harmless (freed memory is reused, not leaked).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, _GiB // 2) and libc.mallopt(m_trim_threshold, 2 * _GiB))


def activation_bytes_per_sample(module: nn.Module, forward: Callable[[], object], n: int) -> int:
    """Bytes of all leaf-module outputs for one sample, measured on ``forward()`` over ``n`` samples."""
    total = [0]

    def count(_, __, out):
        if isinstance(out, torch.Tensor):
            total[0] += out.numel() * out.element_size()

    hooks = [m.register_forward_hook(count) for m in module.modules() if not any(True for _ in m.children())]
    try:
        with torch.no_grad():
            forward()
    finally:
        for h in hooks:
            h.remove()
    return max(1, total[0] // max(1, n))
