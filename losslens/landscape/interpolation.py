"""One-dimensional loss along a line in weight space, and the barrier between two points.

The line through ``w_a`` towards ``w_b`` (Goodfellow et al. 2015, "Qualitatively characterizing
neural network optimization problems") or along a direction ``d``:

.. math::  w(t) = w_a + t\\, d, \\qquad d = w_b - w_a \\ \\text{(or given)},

so ``t = 0`` is ``w_a`` and ``t = 1`` is ``w_b`` (or ``w_a + d``). The loss barrier of the segment
(Frankle et al. 2020, "Linear Mode Connectivity and the Lottery Ticket Hypothesis") is

.. math::  B = \\max_{t \\in [0, 1]} L(w(t)) - \\max(L(w(0)), L(w(1))),

measured on the grid, which always holds ``t = 0`` and ``t = 1`` exactly. Every loss value comes from
``Evaluator.evaluate_affine``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from losslens import _io
from losslens.core.evaluator import EvalResult
from losslens.landscape.directions import Directions, _flat

_SNAP = 1e-10  # grid values this close (relative to the grid's span) to 0 or 1 are set to 0 or 1
_PROGRESS_CHUNKS = 20


@dataclass(frozen=True, eq=False)
class Interpolation:
    """Loss and metrics along a line, at path coordinates ``t``.

    Attributes:
        t: ``(n,)`` sorted path coordinates; 0 is the start point, 1 the end point.
        loss: ``(n,)`` mean loss at each ``w_a + t d`` (NaN/inf kept).
        metrics: ``{name: (n,)}`` means of each metric.
        meta: ``evaluator`` (its ``meta()``), ``path`` (``"between"`` or ``"direction"``),
            ``distance`` :math:`\\|d\\|`, ``endpoints`` (names or ``None``), ``steps``,
            ``extrapolate`` (``None`` for a given grid), ``n_nonfinite``.
    """

    t: np.ndarray
    loss: np.ndarray
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        t = np.asarray(self.t, dtype=np.float64)
        loss = np.asarray(self.loss, dtype=np.float64)
        metrics = {k: np.asarray(v, dtype=np.float64) for k, v in self.metrics.items()}
        if t.ndim != 1:
            raise ValueError(f"Interpolation.t must be one-dimensional, found shape {list(t.shape)}")
        for name, values in [("loss", loss), *((f"metric {k!r}", v) for k, v in metrics.items())]:
            if values.shape != t.shape:
                raise ValueError(
                    f"Interpolation {name} has shape {list(values.shape)}, expected {list(t.shape)} like t"
                )
        object.__setattr__(self, "t", t)
        object.__setattr__(self, "loss", loss)
        object.__setattr__(self, "metrics", metrics)

    def __len__(self) -> int:
        return len(self.t)

    @property
    def barrier(self) -> float:
        """:math:`\\max_{t \\in [0,1]} L - \\max(L(0), L(1))`; NaN if a loss in ``[0, 1]`` is NaN.

        Raises:
            ValueError: ``t`` does not hold 0 and 1 (``interpolate`` always puts them in).
        """
        ends = [np.flatnonzero(self.t == v) for v in (0.0, 1.0)]
        if any(len(e) == 0 for e in ends):
            raise ValueError("the barrier needs the endpoints t=0 and t=1 on the grid, and t misses one of them")
        inside = (self.t >= 0.0) & (self.t <= 1.0)
        return float(np.max(self.loss[inside]) - max(self.loss[ends[0][0]], self.loss[ends[1][0]]))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the arrays and the metadata to an HDF5 file; returns the path."""
        arrays = {"t": self.t, "loss": self.loss} | {f"metrics/{k}": v for k, v in self.metrics.items()}
        return _io.write_h5(path, "interpolation", arrays, {"metrics": list(self.metrics), "meta": self.meta})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Interpolation":
        """Read a file written by ``save``.

        Raises:
            LosslensError: the file is missing or does not hold an interpolation.
        """
        arrays, meta = _io.read_h5(path, "interpolation")
        metrics = {k: arrays[f"metrics/{k}"] for k in meta["metrics"]}
        return cls(arrays["t"], arrays["loss"], metrics, meta["meta"])


def interpolate(
    evaluator,
    w_a: torch.Tensor,
    w_b: torch.Tensor | None = None,
    *,
    direction: torch.Tensor | Directions | None = None,
    t=None,
    steps: int = 41,
    extrapolate: float = 0.5,
    names: tuple[str, str] | None = None,
    progress: bool = False,
) -> Interpolation:
    """Loss and metrics along the line :math:`w_a + t\\, d`.

    Give exactly one of ``w_b`` (then :math:`d = w_b - w_a`) or ``direction`` (:math:`d`).

    Args:
        evaluator: the ``Evaluator`` that computes every loss value.
        w_a: ``(P,)`` start point (``t = 0``).
        w_b: ``(P,)`` end point (``t = 1``).
        direction: ``(P,)`` direction, or ``Directions`` with one row (such as ``between(...)``).
        t: path coordinates; by default ``linspace(-extrapolate, 1 + extrapolate, steps)``. The grid
            is sorted, duplicates dropped, values within ``1e-10`` of the span from 0 or 1 set to 0
            or 1, and 0 and 1 added when missing, so its size can exceed ``steps``.
        steps: points of the default grid (at least 2).
        extrapolate: how far the default grid goes beyond each endpoint, in units of :math:`\\|d\\|`.
        names: optional labels of the two endpoints, kept in ``meta["endpoints"]``.
        progress: show a progress bar (the grid is then evaluated in chunks).

    Returns:
        ``Interpolation``.

    Raises:
        ValueError: both or neither of ``w_b`` and ``direction``, vectors whose shape is not
            ``(P,)`` for the evaluator's parameter space, or a bad grid (``steps < 2``, negative
            ``extrapolate``, an empty or non-finite ``t``).
    """
    if (w_b is None) == (direction is None):
        raise ValueError("interpolate needs exactly one of w_b (the end point) and direction, "
                         f"got {'both' if w_b is not None else 'neither'}")
    P = evaluator.space.size
    w_a = _flat(w_a, "w_a", P).detach().to(evaluator.device)
    if w_b is not None:
        d = _flat(w_b, "w_b", P).detach().to(evaluator.device) - w_a
        path = "between"
    else:
        if isinstance(direction, Directions):
            if len(direction) != 1:
                raise ValueError(f"interpolate needs one direction, found Directions with {len(direction)} rows")
            direction = direction.vectors[0]
        d = _flat(direction, "direction", P).detach().to(evaluator.device)
        path = "direction"
    grid = _grid(t, steps, extrapolate)
    coeffs = torch.from_numpy(grid)[:, None]
    if progress:
        from tqdm.auto import tqdm

        size = math.ceil(len(grid) / _PROGRESS_CHUNKS)
        parts = [coeffs[i : i + size] for i in range(0, len(grid), size)]
        result = EvalResult.cat([evaluator.evaluate_affine(w_a, d[None], c) for c in tqdm(parts, desc="interpolate")])
    else:
        result = evaluator.evaluate_affine(w_a, d[None], coeffs)
    meta = {
        "evaluator": evaluator.meta(),
        "path": path,
        "distance": float(d.detach().double().norm()),
        "endpoints": None if names is None else [str(x) for x in names],
        "steps": len(grid),
        "extrapolate": float(extrapolate) if t is None else None,
        "n_nonfinite": result.n_nonfinite,
    }
    metrics = {k: v.numpy() for k, v in result.metrics.items()}
    return Interpolation(grid, result.loss.numpy(), metrics, meta)


def _grid(t, steps: int, extrapolate: float) -> np.ndarray:
    """The sorted path coordinates, holding 0 and 1 exactly."""
    if t is None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
            raise ValueError(f"steps must be an integer of at least 2, got {steps!r}")
        if not (math.isfinite(extrapolate) and extrapolate >= 0):
            raise ValueError(f"extrapolate must be a finite number >= 0, got {extrapolate!r}")
        grid = np.linspace(-extrapolate, 1.0 + extrapolate, steps)
    else:
        grid = np.asarray(t.cpu() if isinstance(t, torch.Tensor) else t, dtype=np.float64)
        if grid.ndim != 1 or grid.size == 0:
            raise ValueError(f"t must be a non-empty one-dimensional array, found shape {list(grid.shape)}")
        if not np.all(np.isfinite(grid)):
            raise ValueError(f"t must hold finite numbers, found {grid[~np.isfinite(grid)][:3].tolist()}")
    tol = _SNAP * max(1.0, float(grid.max() - grid.min()))
    grid = np.where(np.abs(grid) <= tol, 0.0, grid)
    grid = np.where(np.abs(grid - 1.0) <= tol, 1.0, grid)
    return np.unique(np.concatenate([grid, [0.0, 1.0]]))
