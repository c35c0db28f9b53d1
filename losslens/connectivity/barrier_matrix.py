"""The barriers of the straight lines between every pair of trained weight vectors, before and after weight
matching: are several runs' solutions in one basin, up to a permutation of their hidden units?

For runs ``i < j`` the line :math:`w(t) = (1 - t) w_i + t w_j` is evaluated at ``points`` values of ``t`` in
one batched call of the evaluator core, and its ``barrier`` (``losslens.connectivity.barriers``: by default
:math:`\\max_t L(w(t)) - ((1 - t) L(w_i) + t L(w_j))`, Frankle et al. 2020; Entezari et al. 2022) fills
``raw[i, j]``; then run ``j``'s hidden units are permuted to match run ``i``'s by weight matching
(``alignment.align``, which keeps ``j``'s function) and the line's barrier fills ``aligned[i, j]``. The line
reversed is the same line, so ``raw`` is symmetric (``aligned`` is filled the same way, aligning the later run
to the earlier); the diagonal is 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Sequence

import numpy as np
import torch

from losslens.checks import check_choice, check_int
from losslens.connectivity.alignment import align
from losslens.connectivity.barriers import DEFINITIONS, NAMES, barriers
from losslens.errors import ConfigError
from losslens.results import Result, array, attr

DEFAULT_POINTS = 11


@dataclass(frozen=True, eq=False, repr=False)
class BarrierMatrix(Result):
    """Line barriers between every pair of runs.

    Attributes:
        labels: the runs' names (rows and columns).
        raw: ``(n, n)`` barrier of the line between runs ``i`` and ``j``.
        aligned: ``(n, n)`` the same after weight matching run ``j`` to run ``i`` (``None`` when not computed).
        barrier: which barrier (a key of ``losslens.connectivity.barriers.DEFINITIONS``).
        meta: ``points``, the definition, the output change of each alignment, the evaluator's provenance.
    """

    labels: tuple[str, ...] = attr(tuple)
    raw: np.ndarray = array(("n", "n"))
    aligned: np.ndarray | None = array(("n", "n"), optional=True)
    barrier: str = attr()
    meta: dict = field(default_factory=dict)
    KIND: ClassVar[str] = "barrier_matrix"

    def key_figures(self) -> dict:
        return {"runs": list(self.labels), "barrier": self.barrier, **{f"largest ({how})": float(np.max(m))
                                                                       for how, m in self.matrices().items()}}

    def matrices(self) -> dict[str, np.ndarray]:
        """``{"none": raw, "weights": aligned}`` (the alignment each matrix is after; ``weights`` when computed)."""
        return {"none": self.raw, **({"weights": self.aligned} if self.aligned is not None else {})}

    def columns(self) -> tuple[str, ...]:
        """The table's header: ``alignment, barrier, run`` then one column per run."""
        return ("alignment", "barrier", "run", *self.labels)

    def rows(self) -> list[dict]:
        """One row per matrix and run ``i``: its barriers to every run ``j`` (see ``columns``)."""
        return [{"alignment": how, "barrier": self.barrier, "run": label,
                 **{other: float(m[i, j]) for j, other in enumerate(self.labels)}}
                for how, m in self.matrices().items() for i, label in enumerate(self.labels)]


def line_barrier(evaluator, w_a: torch.Tensor, w_b: torch.Tensor, *, points: int = DEFAULT_POINTS,
                 barrier: str = "barrier") -> float:
    """The ``barrier`` of the line from ``w_a`` to ``w_b``, evaluated at ``points`` values of ``t`` in ``[0, 1]``
    in one call of ``evaluator.evaluate``."""
    t = torch.linspace(0.0, 1.0, check_int("points", points, 3), dtype=w_a.dtype, device=w_a.device)
    loss = evaluator.evaluate((1 - t)[:, None] * w_a[None] + t[:, None] * w_b[None]).loss
    return barriers(t.cpu().numpy(), loss.cpu().numpy())[barrier]


def barrier_matrix(evaluator, weights: Sequence[torch.Tensor], labels: Sequence[str], *,
                   points: int = DEFAULT_POINTS, barrier: str = "barrier", aligned: bool = True,
                   seed: int = 0, meta: dict | None = None) -> BarrierMatrix:
    """The ``BarrierMatrix`` of the lines between every pair of ``weights`` (module docstring).

    Args:
        evaluator: the ``Evaluator`` of every loss (its model's architecture holds each vector).
        weights: flat weight vectors of the evaluator's parameter space, one per run.
        labels: a distinct name per run.
        points: values of ``t`` on each line, both ends included (at least 3).
        barrier: which barrier: ``barrier``, ``barrier_mean`` or ``barrier_max``.
        aligned: also the matrix after weight matching.
        seed: the seed of weight matching's order of groups.
        meta: the caller's provenance, kept in the result's ``meta``.

    Raises:
        ConfigError: fewer than two vectors, labels that are not one distinct name per vector, a bad argument,
            a model whose permutation structure cannot be derived (with ``aligned``).
    """
    check_choice("barrier", barrier, NAMES)
    labels = tuple(str(x) for x in labels)
    if len(weights) < 2 or len(labels) != len(weights) or len(set(labels)) != len(labels):
        raise ConfigError(f"a barrier matrix needs two or more weight vectors with one distinct label each, got "
                          f"{len(weights)} vectors and labels {list(labels)}")
    n = len(weights)
    raw, matched, changes = np.zeros((n, n)), np.zeros((n, n)), {}
    for i in range(n):
        for j in range(i + 1, n):
            raw[i, j] = raw[j, i] = line_barrier(evaluator, weights[i], weights[j], points=points, barrier=barrier)
            if aligned:
                w_j, changes[f"{labels[i]}|{labels[j]}"] = _matched(evaluator, weights[i], weights[j], seed)
                matched[i, j] = matched[j, i] = line_barrier(evaluator, weights[i], w_j, points=points,
                                                             barrier=barrier)
    meta = {**(meta or {}), "points": points, "definition": DEFINITIONS[barrier], "evaluator": evaluator.meta(),
            "alignment": "weights" if aligned else "none", "parameter_change": changes}
    return BarrierMatrix(labels, raw, matched if aligned else None, barrier, meta)


def _matched(evaluator, w_a: torch.Tensor, w_b: torch.Tensor, seed: int) -> tuple[torch.Tensor, float]:
    """``w_b`` with its hidden units permuted to match ``w_a`` (weight matching), and how far it moved
    (relative: :math:`\\lVert w_b' - w_b \\rVert / \\lVert w_b \\rVert`, 0 when already matched)."""
    model_b = evaluator.module_at(w_b)
    matched = align(evaluator.module_at(w_a), model_b, "weights", seed=seed).apply(model_b)
    w = evaluator.space.flatten(matched, dtype=w_b.dtype).to(w_b.device)
    return w, float((w - w_b).norm() / w_b.norm().clamp_min(1e-30))
