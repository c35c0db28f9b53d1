"""The loss on the line through two points of weight space.

The line through ``w_a`` towards ``w_b`` (Goodfellow et al. 2015, "Qualitatively characterizing
neural network optimization problems"):

.. math::  w(t) = w_a + t\\, (w_b - w_a),

so ``t = 0`` is ``w_a`` and ``t = 1`` is ``w_b``; ``t`` outside ``[0, 1]`` extrapolates. The result is a
1-D ``Surface`` along the direction of kind ``"between"`` (which records the two endpoints), so it is
saved, resumed, loaded and drawn like any surface. Its barriers (``connectivity.barriers.line_barriers``:
``barrier``, ``barrier_mean`` and ``barrier_max``, named by their papers) are measured on the grid, which
always holds ``t = 0`` and ``t = 1`` exactly and at least one point strictly between them: a default grid
with none is refused, and so is ``extrapolate`` above ``MAX_EXTRAPOLATE`` (so far out the grid says nothing
about the segment).
"""

from __future__ import annotations

import numpy as np
import torch

from losslens.checks import check_int, check_number
from losslens.landscape.directions import _flat, between
from losslens.landscape.surface import Surface, surface_1d

_SNAP = 1e-10  # grid values this close (relative to the grid's span) to 0 or 1 are set to 0 or 1
MAX_EXTRAPOLATE = 10.0  # the default grid reaches at most this far beyond each endpoint (in |w_b - w_a|)


def interpolate(
    evaluator,
    w_a: torch.Tensor,
    w_b: torch.Tensor,
    *,
    t=None,
    steps: int = 41,
    extrapolate: float = 0.5,
    names: tuple[str, str] | None = None,
    path=None,
    progress: bool = False,
    meta: dict | None = None,
) -> Surface:
    """Loss and metrics along the line :math:`w_a + t (w_b - w_a)`, as a 1-D ``Surface``.

    Args:
        evaluator: the ``Evaluator`` that computes every value (or several, one per data split).
        w_a: ``(P,)`` start point (``t = 0``).
        w_b: ``(P,)`` end point (``t = 1``).
        t: path coordinates; by default ``linspace(-extrapolate, 1 + extrapolate, steps)``. The grid
            is sorted, duplicates dropped, values within ``1e-10`` of the span from 0 or 1 set to 0
            or 1, and 0 and 1 added when missing, so its size can exceed ``steps``.
        steps: points of the default grid (at least 2).
        extrapolate: how far the default grid goes beyond each endpoint, in units of :math:`\\|w_b - w_a\\|`
            (0 to ``MAX_EXTRAPOLATE``).
        names: labels of the two endpoints (checkpoint names), kept in the direction's ``endpoints``.
        path: HDF5 file written as points are computed; an existing file of the same line is resumed
            (another line's is refused, naming what differs). ``None`` keeps it in memory.
        progress: show a progress bar over the points.
        meta: the caller's further provenance, stored in the surface's ``meta`` and the file.

    Returns:
        A 1-D ``Surface`` with ``x = t``, origin ``w_a`` and one direction of kind ``"between"``
        (``meta["norm"]`` is the distance :math:`\\|w_b - w_a\\|`).

    Raises:
        ValueError: vectors whose shape is not ``(P,)``, identical endpoints, or a bad grid
            (``steps < 2``, ``extrapolate`` outside ``[0, MAX_EXTRAPOLATE]``, a default grid with no point
            strictly between 0 and 1, an empty or non-finite ``t``).
    """
    first = evaluator[0] if isinstance(evaluator, (list, tuple)) else evaluator
    P = first.space.size
    w_a = _flat(w_a, "w_a", P).detach()
    direction = between(w_a, _flat(w_b, "w_b", P).detach(), names=names)
    if direction.meta["norm"] == 0:
        raise ValueError("w_a and w_b are the same point: there is no line between them")
    grid = _grid(t, steps, extrapolate)
    caller = {"extrapolate": float(extrapolate) if t is None else None, **(meta or {})}
    return surface_1d(evaluator, w_a, direction, grid, path=path, progress=progress, meta=caller)


def _grid(t, steps: int, extrapolate: float) -> np.ndarray:
    """The sorted path coordinates, holding 0 and 1 exactly."""
    if t is None:
        steps = check_int("steps", steps, minimum=2)
        extrapolate = check_number("extrapolate", extrapolate, minimum=0, maximum=MAX_EXTRAPOLATE)
        grid = np.linspace(-extrapolate, 1.0 + extrapolate, steps)
        if not np.any((grid > _SNAP) & (grid < 1.0 - _SNAP)):
            raise ValueError(f"{steps} steps over [-{extrapolate:g}, {1 + extrapolate:g}] put no point strictly between "
                             "t=0 and t=1, so the barrier would not be measured: use more steps")
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
