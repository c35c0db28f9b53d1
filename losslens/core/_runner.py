"""The run strategy: a per-point function over a chunk of points, vmapped or one after another,
compiled or not, with the plan's thread count; failures of vmap or compile fall back and are recorded.

``Runner`` owns the evaluator's ``ExecutionPlan``. A model ``vmap`` cannot batch (data-dependent
control flow, ``.item()``) switches the plan to the sequential path; a failing ``torch.compile`` (no
compiler, an unsupported operation) switches it to eager execution. Each fallback warns once, and
the new plan records why.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch

from losslens.core.plan import ExecutionPlan, faster_threads, math_attention, using_threads

_SLOWDOWN = 3.0  # a chunk this many times slower per point than the fastest so far: look at the threads again
_RECHECK_S = 5.0  # and at least this often (seconds of evaluation) while several threads run


class Runner:
    """Maps per-point functions over points according to ``plan`` (which it may change).

    Args:
        plan: the execution plan.
        layout: applied to a point's tensors on the sequential path (channels_last weights).
        probe: a forward over one batch, to measure the threads again (``None``: threads were given).
    """

    def __init__(self, plan: ExecutionPlan, layout: Callable, probe: Callable | None = None):
        self.plan = plan
        self._layout = layout
        self._probe = probe
        self._fastest: dict[str, float] = {}  # seconds per point, per kind of call
        self._since_check = 0.0
        self._compiled: dict = {}
        self.compiled_calls = 0  # calls that ran a compiled function (the compiled path really ran)

    def observe(self, seconds: float, n_points: int, kind: str) -> None:
        """After a chunk of ``n_points`` of a ``kind`` of call took ``seconds``: while several threads
        run, measure them against one again when the chunk ran ``_SLOWDOWN`` times slower per point
        than the fastest so far, and every ``_RECHECK_S`` seconds (another process may have taken a
        core since the plan was made); keep one thread from then on if it is as fast."""
        per_point = seconds / max(1, n_points)
        fastest = self._fastest.setdefault(kind, per_point)
        self._fastest[kind] = min(fastest, per_point)
        self._since_check += seconds
        if self.plan.threads == 1 or self._probe is None:
            return
        if per_point <= _SLOWDOWN * fastest and self._since_check < _RECHECK_S:
            return
        self._since_check = 0.0
        threads, _ = faster_threads(self._probe, self.plan.threads)
        if threads == 1:
            self.plan = self.plan.changed(
                f"{self.plan.threads} threads ran {per_point / fastest:.0f}x slower than before and no faster than one "
                "(another process is using the cores): 1 thread from here", threads=1)
        else:
            self._fastest[kind] = per_point  # still faster with all threads: this is the new normal

    def threads(self):
        """Context manager: the plan's intra-op threads during one of the evaluator's calls."""
        return using_threads(self.plan.threads)

    def map(self, f: Callable, args: tuple, in_dims: tuple, *, vectorize: bool | None = None,
            compilable: bool = True) -> torch.Tensor:
        """``f`` over the leading dim of the arguments whose ``in_dims`` is 0, stacked.

        Args:
            vectorize: force vmap (``True``) or not; ``None`` follows the plan (and a vmap failure
                then changes the plan).
            compilable: may be compiled when the plan says so.
        """
        follows_plan = vectorize is None
        if self.plan.vectorize if follows_plan else vectorize:
            try:
                with torch.no_grad(), math_attention():  # fused attention kernels have no batching rule
                    return self._transformed(f, in_dims, True, compilable)(*args)
            except torch.cuda.OutOfMemoryError:
                raise
            except Exception as err:  # noqa: BLE001 - any failure of vmap means: not batchable
                reason = f"vmap failed ({type(err).__name__}: {err}); points run one after another"
                if follows_plan:
                    self.plan = self.plan.changed(reason, vectorize=False)
                warnings.warn(f"losslens: this model cannot be vmapped ({type(err).__name__}: {err}); evaluating "
                              "its points one after another instead", stacklevel=3)
        g = self._transformed(f, in_dims, False, compilable)
        k = next(len(_first_leaf(a)) for a, d in zip(args, in_dims) if d == 0 and _first_leaf(a) is not None)
        with torch.no_grad():
            return torch.stack(
                [g(*(self._layout(index(a, i)) if d == 0 else a for a, d in zip(args, in_dims))) for i in range(k)]
            )

    def _transformed(self, f: Callable, in_dims: tuple, vmapped: bool, compilable: bool) -> Callable:
        """``f`` vmapped and/or compiled; compiled functions are cached per (function, vmapped)."""
        g = torch.vmap(f, in_dims=in_dims) if vmapped else f
        if not (compilable and self.plan.compile):
            return g
        key = (getattr(f, "__name__", id(f)), vmapped)
        if key not in self._compiled:
            self._compiled[key] = torch.compile(g, dynamic=False)
        compiled = self._compiled[key]

        def call(*args):
            try:
                out = compiled(*args)
            except torch.cuda.OutOfMemoryError:
                raise
            except Exception as err:  # noqa: BLE001 - no compiler, an unsupported op, ...: run eagerly
                self.plan = self.plan.changed(f"torch.compile failed ({type(err).__name__}); eager execution",
                                              compile=False)
                self._compiled.clear()
                warnings.warn(f"losslens: torch.compile failed ({type(err).__name__}: {err}); evaluating without it",
                              stacklevel=4)
                return g(*args)
            self.compiled_calls += 1
            return out

        return call


def index(tree, i: int):
    """Point ``i`` of a batched tensor or dict of tensors."""
    return {n: t[i] for n, t in tree.items()} if isinstance(tree, dict) else tree[i]


def _first_leaf(a):
    return next(iter(a.values()), None) if isinstance(a, dict) else a
