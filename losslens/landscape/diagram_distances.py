"""Distances between persistence diagrams (of ``Topology`` results, or ``(n, 2)`` arrays of ``[birth, death]``).

Bottleneck :math:`d_B = \\inf_\\gamma \\sup_p \\lVert p - \\gamma(p) \\rVert_\\infty`, stable under perturbation,
:math:`d_B(D(f), D(g)) \\le \\lVert f - g \\rVert_\\infty` (Cohen-Steiner, Edelsbrunner, Harer 2007), and the
q-Wasserstein distance, both exact: finite points matched to each other or to the diagonal, the classes that
never die matched among themselves, those left over when their counts differ counted apart
(``essential_count_difference``), never folded into an infinite distance. (gudhi's hera Wasserstein never
returns on some diagrams with such classes, e.g. ``[[0, inf]]`` against ``[[1, inf], [2, 3], [4, 5]]``, so
the matching is our own.)
"""

from __future__ import annotations

import math

import numpy as np

from losslens.checks import check_number
from losslens.landscape.topology import Topology


MATCHING_POINTS = 4000  # most finite points of two diagrams together for the exact Wasserstein matching


def bottleneck(a, b, dim: int = 0) -> float:
    """The bottleneck distance between the dimension-``dim`` diagrams of two ``Topology`` results (or two
    ``(n, 2)`` arrays): :math:`\\inf_\\gamma \\sup_p \\lVert p - \\gamma(p) \\rVert_\\infty`.

    Finite points may go to the diagonal (gudhi's ``bottleneck_distance``, exact, given finite points only);
    the classes that never die are matched among themselves by their births (``_essential_matching``); when
    their counts differ the extra ones stay out (``essential_count_difference`` counts them), so the
    distance is always finite.

    Args:
        a: a ``Topology`` or an ``(n, 2)`` array of ``[birth, death]`` pairs (death ``inf`` for an essential class).
        b: the other diagram, of the same kinds.
        dim: the homology dimension of ``Topology`` inputs: 0 (basins) or 1 (loops).
    """
    import gudhi

    (fa, ea), (fb, eb) = (_split_essential(d) for d in _pair(a, b, dim))
    gaps = _essential_matching(ea, eb, math.inf)
    return max(float(gudhi.bottleneck_distance(fa, fb)), float(gaps.max(initial=0.0)))


def wasserstein(a, b, dim: int = 0, *, order: float = 1.0, internal_p: float = math.inf) -> float:
    """The ``order``-Wasserstein distance between two diagrams (``Topology`` results or ``(n, 2)`` arrays):
    :math:`(\\inf_\\gamma \\sum_p \\lVert p - \\gamma(p) \\rVert_{internal\\_p}^{order})^{1/order}`, exact.

    Finite points are matched to each other or to their projection on the diagonal, by an optimal assignment
    on the augmented cost matrix (``_finite_wasserstein_cost``); the classes that never die are matched
    among themselves by their births (``_essential_matching``), the extra ones left out when their counts
    differ (``essential_count_difference`` counts them), so the distance is always finite.

    Args:
        a: a ``Topology`` or an ``(n, 2)`` array of ``[birth, death]`` pairs (death ``inf`` for an essential class).
        b: the other diagram, of the same kinds.
        dim: the homology dimension of ``Topology`` inputs: 0 (basins) or 1 (loops).
        order: the exponent :math:`q` of the distance.
        internal_p: the ground norm between two points of the diagrams (``inf``: the max norm).

    Raises:
        ConfigError: ``order < 1`` or ``internal_p < 1``.
        ValueError: diagrams with more than ``MATCHING_POINTS`` finite points together.
    """
    check_number("order", order, minimum=1, finite=False)
    check_number("internal_p", internal_p, minimum=1, finite=False)
    (fa, ea), (fb, eb) = (_split_essential(d) for d in _pair(a, b, dim))
    essential = float(np.sum(_essential_matching(ea, eb, order) ** order))
    return (_finite_wasserstein_cost(fa, fb, order, internal_p) + essential) ** (1.0 / order)


def essential_count_difference(a, b, dim: int = 0) -> int:
    """How many more classes that never die one diagram has than the other (``|n_a - n_b|``): those the
    distances leave unmatched. 0 for two surfaces' :math:`H_0` (one global basin each).

    Args:
        a: a ``Topology`` or an ``(n, 2)`` array of ``[birth, death]`` pairs.
        b: the other diagram, of the same kinds.
        dim: the homology dimension of ``Topology`` inputs.
    """
    (_, ea), (_, eb) = (_split_essential(d) for d in _pair(a, b, dim))
    return abs(len(ea) - len(eb))


def _pair(a, b, dim: int) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(a, Topology) and isinstance(b, Topology) and a.meta["units"] != b.meta["units"]:
        raise ValueError(f"the diagrams are in different units ({a.meta['units']!r} and {b.meta['units']!r}): "
                         "compare both normalised or both not")
    return _as_diagram(a, dim), _as_diagram(b, dim)


def _as_diagram(d, dim: int) -> np.ndarray:
    if isinstance(d, Topology):
        return d.diagram(dim)
    d = np.asarray(d, dtype=np.float64)
    if d.size and (d.ndim != 2 or d.shape[1] != 2):
        raise ValueError(f"a persistence diagram is an (n, 2) array of [birth, death], found shape {list(d.shape)}")
    return d.reshape(-1, 2)


def _split_essential(diagram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The finite points ``(n, 2)`` and the births ``(k,)`` of the classes that never die."""
    essential = np.isinf(diagram[:, 1])
    return diagram[~essential], diagram[essential, 0]


def _essential_matching(births_a: np.ndarray, births_b: np.ndarray, order: float) -> np.ndarray:
    """The birth gaps :math:`|a_i - b_{\\gamma(i)}|` of an optimal matching of two sets of classes that never
    die, ``min(k_a, k_b)`` pairs. Equal counts: sorted births in order, optimal on a line for every
    ``order >= 1`` and for the bottleneck (``order=inf``). Unequal counts: an optimal assignment of the
    smaller set into the larger, minimising the sum of gaps to the ``order`` (for ``inf``: the largest gap,
    the smallest threshold below which a full assignment exists)."""
    from scipy.optimize import linear_sum_assignment

    a, b = np.sort(births_a), np.sort(births_b)
    if len(a) == len(b):
        return np.abs(a - b)
    if min(len(a), len(b)) == 0:
        return np.zeros(0)
    gaps = np.abs(a[:, None] - b[None, :])
    if math.isinf(order):
        candidates = np.unique(gaps)
        lo, hi = 0, len(candidates) - 1  # the largest candidate always allows a full assignment
        while lo < hi:
            mid = (lo + hi) // 2
            blocked = (gaps > candidates[mid]).astype(np.float64)
            rows, cols = linear_sum_assignment(blocked)
            lo, hi = (mid + 1, hi) if blocked[rows, cols].any() else (lo, mid)
        rows, cols = linear_sum_assignment((gaps > candidates[lo]).astype(np.float64))
        return gaps[rows, cols]
    rows, cols = linear_sum_assignment(gaps**order)
    return gaps[rows, cols]


def _finite_wasserstein_cost(a: np.ndarray, b: np.ndarray, order: float, internal_p: float) -> float:
    """:math:`\\min_\\gamma \\sum \\lVert p - \\gamma(p) \\rVert^{order}` over matchings of the finite points of
    ``a`` ``(n, 2)`` and ``b`` ``(m, 2)`` where a point may go to its projection on the diagonal, at
    :math:`\\lVert (d - b)/2, (d - b)/2 \\rVert_{internal\\_p}`.

    The assignment on the ``(n + m) x (n + m)`` matrix ``[[C, D_a], [D_b, 0]]``: ``C`` the point-to-point
    costs, ``D_a`` (``D_b``) diagonal with each point of ``a`` (``b``) to the diagonal and ``inf`` elsewhere,
    ``0`` for diagonal to diagonal (a projection left unused pairs with another at no cost). Exact, in
    :math:`O((n + m)^3)` time and :math:`(n + m)^2` memory, hence ``MATCHING_POINTS``; scipy's solver
    releases the GIL, so a signal still stops the process (``losslens.cli._signals``).
    """
    from scipy.optimize import linear_sum_assignment

    n, m = len(a), len(b)
    if n + m > MATCHING_POINTS:
        raise ValueError(f"the exact Wasserstein matching is limited to {MATCHING_POINTS} finite points in both "
                         f"diagrams together, found {n} + {m} (a noisy or large grid): compare coarser or smoother surfaces")
    if n + m == 0:
        return 0.0
    to_diagonal_a, to_diagonal_b = (_to_diagonal(d, internal_p) ** order for d in (a, b))
    cost = np.zeros((n + m, n + m))
    cost[:n, :m] = np.linalg.norm(a[:, None, :] - b[None, :, :], ord=internal_p, axis=2) ** order
    cost[:n, m:] = np.where(np.eye(n, dtype=bool), to_diagonal_a[:, None], np.inf)
    cost[n:, :m] = np.where(np.eye(m, dtype=bool), to_diagonal_b[None, :], np.inf)
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].sum())


def _to_diagonal(diagram: np.ndarray, internal_p: float) -> np.ndarray:
    """The distance of each point to its projection :math:`((b + d)/2, (b + d)/2)` on the diagonal:
    :math:`2^{1/p} (d - b)/2` in the :math:`p`-norm (:math:`(d - b)/2` for :math:`p = \\infty`)."""
    half = (diagram[:, 1] - diagram[:, 0]) / 2
    return half if math.isinf(internal_p) else half * 2 ** (1 / internal_p)
