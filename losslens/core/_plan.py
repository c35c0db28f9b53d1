"""The evaluator's execution plan: every choice of how points run, decided once and recorded.

``ExecutionPlan`` holds the device, dtype, samples per forward, whether a chunk's points are
``vmap``-ped, the memory layout, the number of intra-op threads and whether the per-point function
is compiled. ``Evaluator.meta()["plan"]`` records it; a fallback (vmap or ``torch.compile`` failing
on the model) replaces it by a new plan that says why.

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
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn

from losslens.errors import ConfigError

MAX_THREADS = 1024  # torch/OpenMP abort (or segfault) when asked for tens of thousands of threads
_MAX_CHUNK = 4096
_CPU_BATCH_BYTES = 16 << 20
_THREAD_GAIN = 1.3
_MIN_PARALLEL_S = 2e-3
_COMPILE_WORTH_S = 60.0
_NOMINAL_FLOPS = {"cpu": 20e9, "cuda": 5e12}  # deliberately constant: the decision must not depend on a clock
_POOLING = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


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


def check_option(name: str, value, valid: tuple) -> None:
    """Raise ``ValueError`` listing the valid values when ``value`` is not one of them."""
    if not any(value is v or (type(value) is type(v) and value == v) for v in valid):
        raise ValueError(f"{name} must be one of {', '.join(map(repr, valid))}, got {value!r}")


def batch_size_for(asked: int | None, n: int, bn: str, device: torch.device, budget: int, activation_bytes: int) -> int:
    """Samples per forward over a set of ``n`` held as tensors: ``asked``, else 128 with
    ``bn="batch"`` (batch statistics depend on it), else a target size split evenly.

    The target: on CPU about ``_CPU_BATCH_BYTES`` of activations, near the cache (measured on 2
    cores: the bench CNNs run 10-30% slower over 1024-2048 samples at once than over 256, the bench
    MLP fastest over all 2048); on CUDA what a quarter of the budget holds. If a batch up to twice the
    target splits the set exactly, it is taken (one shape: one compiled graph).
    """
    if asked is not None:
        return int(min(n, asked))
    if bn == "batch":
        return min(n, 128)
    target = _CPU_BATCH_BYTES if device.type == "cpu" else budget // 4
    n_target = -(-n // max(1, min(n, target // activation_bytes)))
    for n_batches in range(n_target, max(1, n_target // 2) - 1, -1):
        if n % n_batches == 0:
            return n // n_batches
    return -(-n // n_target)


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
