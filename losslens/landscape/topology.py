"""Topology of a loss surface: sublevel-set persistent homology, its basins, and distances between surfaces.

The sublevel sets :math:`\\{p : Z(p) \\le t\\}` grow with :math:`t`; a class of :math:`H_0` (a basin) is
born at a local minimum and dies at the saddle where it merges into an older, deeper basin (the elder
rule); a class of :math:`H_1` (a loop) is born when a ring of low values closes around higher ground and
dies when that ground fills in (Edelsbrunner, Letscher, Zomorodian 2002, "Topological persistence and
simplification"). A class's persistence is death minus birth; a basin's is its depth below its merge
saddle. The global basin never dies (death :math:`\\infty`).

Computed by gudhi's cubical complex (Wagner, Chen, Vuçini 2012, "Efficient computation of persistent
homology for cubical data"), in the surface's own loss units (``normalize=True`` maps values to
:math:`(Z - \\min Z)/(\\max Z - \\min Z)`):

- ``construction="vertices"`` (default): the grid values are the vertices, an edge joins 4-neighbours
  and enters at the larger of its two values. A grid of point samples is connected this way.
- ``construction="cells"``: the values are top-dimensional cells (pixels) that meet along edges and at
  corners, so diagonal neighbours join (8-connectivity) and basins a point grid keeps apart merge.
  This is what the book chapter does.

Traps of gudhi handled here: ``compute_persistence()`` runs before any query; its cell indices are flat
in column-major (Fortran) order and are mapped back to ``(iy, ix)``; NaN is accepted silently and an
``inf`` makes a spurious permanent loop, so non-finite values are filled first (each takes the largest of
its finite 4-neighbours: never a new minimum nor a peak; see ``_grid_values``) and counted.

Basins are the :math:`H_0` classes whose persistence exceeds a noise ``threshold`` (default
``THRESHOLD_FRACTION`` = 1% of the value range, the spacing of a 100-level contour plot), always
including the global one; a single basin is reported as such. Distances between diagrams: bottleneck
:math:`d_B = \\inf_\\gamma \\sup_p \\lVert p - \\gamma(p) \\rVert_\\infty`, stable under perturbation,
:math:`d_B(D(f), D(g)) \\le \\lVert f - g \\rVert_\\infty` (Cohen-Steiner, Edelsbrunner, Harer 2007), and the
q-Wasserstein distance, both exact: finite points matched to each other or to the diagonal, the classes that
never die matched among themselves, those left over when their counts differ counted apart
(``essential_count_difference``), never folded into an infinite distance. (gudhi's hera Wasserstein never
returns on some diagrams with such classes, e.g. ``[[0, inf]]`` against ``[[1, inf], [2, 3], [4, 5]]``, so
the matching is our own.)
"""

from __future__ import annotations

import importlib.metadata
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from losslens import _io
from losslens.checks import check_choice, check_number
from losslens.landscape._grid_values import (
    describe_nonfinite, fill_nonfinite, grid_values, nonfinite_counts, source_meta,
)
from losslens.results import ResultDisplay

CONSTRUCTIONS: tuple[str, ...] = ("vertices", "cells")
THRESHOLD_FRACTION = 0.01  # default noise threshold, as a fraction of the value range
MATCHING_POINTS = 4000  # most finite points of two diagrams together for the exact Wasserstein matching
HEADLINE: tuple[str, ...] = ("n_basins", "n_loops", "minimum", "max_persistence_h0", "total_persistence_h0",
                             "max_persistence_h1")


@dataclass(frozen=True)
class Basin:
    """A basin of the surface: an :math:`H_0` class above the noise threshold.

    Attributes:
        x, y: coordinates of its minimum (``y`` ``None`` for a line).
        value: the minimum's value.
        index: the minimum's grid index, ``(iy, ix)`` (``(ix,)`` for a line).
        persistence: saddle value minus minimum (``inf`` for the global basin).
        depth: the persistence, or for the global basin the whole range above it (max - min).
        saddle: ``{"x", "y", "value", "index"}`` of the point where it merges into a deeper basin;
            ``None`` for the global basin.
    """

    x: float
    y: float | None
    value: float
    index: tuple[int, ...]
    persistence: float
    depth: float
    saddle: dict | None

    @property
    def is_global(self) -> bool:
        """Whether this is the basin of the global minimum (it never merges)."""
        return self.saddle is None

    def to_json(self) -> dict:
        return {"x": self.x, "y": self.y, "value": self.value, "index": list(self.index),
                "persistence": None if math.isinf(self.persistence) else self.persistence,
                "depth": self.depth, "saddle": self.saddle, "global": self.is_global}


@dataclass(frozen=True, repr=False)
class Topology(ResultDisplay):
    """Persistence diagrams of a surface's sublevel sets, with where each class is born and dies.

    Attributes:
        x: ``(nx,)`` the surface's first coordinates.
        y: ``(ny,)`` its second coordinates, or ``None`` for a line.
        values: the array analysed, ``(ny, nx)`` or ``(nx,)``: the surface with non-finite points
            filled, normalised when asked.
        diagram_h0, diagram_h1: ``(n, 2)`` ``[birth, death]`` with positive persistence, death ``inf``
            for a class that never dies; sorted by persistence, longest first.
        pairs_h0, pairs_h1: ``(n, 2)`` flat row-major indices into ``values`` (``np.unravel_index(i,
            values.shape)`` is ``(iy, ix)``) of the points whose values are the birth and the death;
            ``-1`` for no death.
        threshold: the noise threshold, in the units of ``values``.
        meta: ``construction``, ``normalize``, ``normalization`` (``min``, ``range``), ``units``,
            ``threshold_rule``, ``nonfinite`` counts, ``warnings``, ``source`` (the surface's meta), ``versions``.
    """

    KIND: ClassVar[str] = "topology"

    x: np.ndarray
    y: np.ndarray | None
    values: np.ndarray
    diagram_h0: np.ndarray
    pairs_h0: np.ndarray
    diagram_h1: np.ndarray
    pairs_h1: np.ndarray
    threshold: float
    meta: dict = field(default_factory=dict)

    def diagram(self, dim: int) -> np.ndarray:
        """The ``(n, 2)`` diagram of dimension 0 or 1."""
        check_choice("dim (a surface has no higher homology)", dim, (0, 1))
        return self.diagram_h0 if dim == 0 else self.diagram_h1

    @property
    def basins(self) -> list[Basin]:
        """The global basin, then the others whose persistence exceeds ``threshold``, deepest first."""
        out = []
        for (birth, death), (b, d) in zip(self.diagram_h0, self.pairs_h0):
            essential = math.isinf(death)
            if not essential and death - birth <= self.threshold:
                continue
            saddle = None if essential else {**self._point(int(d)), "value": float(death)}
            depth = float(np.max(self.values) - birth) if essential else float(death - birth)
            out.append(Basin(**self._point(int(b)), value=float(birth), persistence=float(death - birth),
                             depth=depth, saddle=saddle))
        return out

    @property
    def n_loops(self) -> int:
        """Loops (:math:`H_1` classes) whose persistence exceeds ``threshold``."""
        return int(np.sum(np.diff(self.diagram_h1, axis=1) > self.threshold))

    def summary(self) -> dict:
        """Headline figures: ``n_basins``, ``single_basin``, ``n_loops``, ``minimum`` (the global minimum),
        ``max_persistence_h0`` (the deepest basin after the global one; 0 if none),
        ``total_persistence_h0`` (of all finite classes), ``max_persistence_h1``, ``threshold``, ``units``."""
        finite0, finite1 = (_persistence(d[np.isfinite(d[:, 1])]) for d in (self.diagram_h0, self.diagram_h1))
        basins = self.basins
        return {"n_basins": len(basins), "single_basin": len(basins) == 1, "n_loops": self.n_loops,
                "minimum": basins[0].value, "max_persistence_h0": float(finite0.max(initial=0.0)),
                "total_persistence_h0": float(finite0.sum()), "max_persistence_h1": float(finite1.max(initial=0.0)),
                "threshold": self.threshold, "units": self.meta["units"]}

    def to_json(self) -> dict:
        """The content of ``topology.json``: ``basins``, ``n_basins``, ``diagram_h0``, ``diagram_h1``
        (``[birth, death]``, death ``null`` for a class that never dies), ``threshold``, and the rest."""
        m = self.meta
        return {"format": "losslens-topology", "basins": [b.to_json() for b in self.basins],
                "n_basins": len(self.basins), "single_basin": len(self.basins) == 1, "n_loops": self.n_loops,
                "diagram_h0": _diagram_json(self.diagram_h0), "diagram_h1": _diagram_json(self.diagram_h1),
                "threshold": self.threshold,
                **{k: m[k] for k in ("threshold_rule", "construction", "units", "normalization", "nonfinite")},
                "warnings": m["warnings"], "source": m["source"], "versions": m["versions"]}

    def save(self, path: str | Path) -> Path:
        """Write to an HDF5 file (kind ``topology``)."""
        arrays = {"x": self.x, "y": self.y, "values": self.values, "diagram_h0": self.diagram_h0,
                  "pairs_h0": self.pairs_h0, "diagram_h1": self.diagram_h1, "pairs_h1": self.pairs_h1}
        return _io.write_h5(path, self.KIND, arrays, {"threshold": self.threshold, "meta": self.meta})

    @classmethod
    def load(cls, path: str | Path) -> "Topology":
        """Read a file written by ``save``."""
        return _io.load(path, cls.KIND, cls._unpack, _io.grid_shapes("values"))

    @classmethod
    def _unpack(cls, a: dict, m: dict) -> "Topology":
        return cls(a["x"], a.get("y"), a["values"], a["diagram_h0"], a["pairs_h0"], a["diagram_h1"],
                   a["pairs_h1"], float(m["threshold"]), m["meta"])

    def _point(self, flat: int) -> dict:
        index = tuple(int(i) for i in np.unravel_index(flat, self.values.shape))
        x = float(self.x[index[-1]])
        y = None if self.y is None else float(self.y[index[0]])
        return {"x": x, "y": y, "index": index}


def topology(
    surface,
    *,
    construction: Literal["vertices", "cells"] = "vertices",
    threshold: float | None = None,
    normalize: bool = False,
) -> Topology:
    """Sublevel-set persistence of a surface (a plane or a line), with its basins above a noise threshold.

    Args:
        surface: ``x``, ``y`` (``None`` for a line), ``loss`` ``(ny, nx)`` or ``(nx,)``, ``meta``.
        construction: ``"vertices"`` (4-connectivity, default) or ``"cells"`` (8-connectivity).
        threshold: basins (and loops) count when their persistence exceeds it, in the units analysed;
            default ``THRESHOLD_FRACTION`` of the value range.
        normalize: analyse :math:`(Z - \\min Z)/(\\max Z - \\min Z)` instead of the loss.

    Returns:
        A ``Topology``.

    Raises:
        ValueError: an invalid option, a bad surface, or one with no finite value.
    """
    import gudhi

    check_choice("construction", construction, CONSTRUCTIONS)
    check_number("threshold", threshold, minimum=0, none=True)
    x, y, Z = grid_values(surface, "topology")
    warnings: list[str] = []
    counts = nonfinite_counts(Z)
    if counts["nan"] + counts["inf"]:
        Z = fill_nonfinite(Z)
        warnings.append(f"{describe_nonfinite(counts, Z.size)} replaced by the largest of their finite 4-neighbours, "
                        "so that they create no class")
    low, span = float(Z.min()), float(Z.max() - Z.min())
    if normalize:
        Z = (Z - low) / span if span > 0 else Z - low
    span_analysed = float(Z.max() - Z.min())
    rule = "given" if threshold is not None else f"{THRESHOLD_FRACTION} x value range ({span_analysed:.6g})"
    threshold = float(threshold) if threshold is not None else THRESHOLD_FRACTION * span_analysed

    complex_ = gudhi.CubicalComplex(**{"vertices" if construction == "vertices" else "top_dimensional_cells": Z})
    complex_.compute_persistence()
    regular, essential = (complex_.vertices_of_persistence_pairs() if construction == "vertices"
                          else complex_.cofaces_of_persistence_pairs())
    diagrams = [_classes(Z, regular, essential, dim) for dim in (0, 1)]
    meta = {"construction": construction, "normalize": normalize, "normalization": {"min": low, "range": span},
            "units": "normalized loss (L - min) / (max - min)" if normalize else "loss",
            "threshold_rule": rule, "nonfinite": counts, "warnings": warnings, "source": source_meta(surface),
            "versions": {"gudhi": importlib.metadata.version("gudhi")}}
    return Topology(x, y, Z, *diagrams[0], *diagrams[1], threshold, meta)


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


@dataclass(frozen=True, repr=False)
class TopologyStability(ResultDisplay):
    """How the topology of surfaces from several random-direction seeds spreads.

    Attributes:
        names: one name per surface.
        figures: ``{figure: (n,) values}``, one per ``HEADLINE`` figure.
        bottleneck_h0: ``(n, n)`` pairwise bottleneck distances of the :math:`H_0` diagrams.
        meta: ``threshold`` (the one applied to every surface), ``threshold_rule``, ``construction``,
            ``normalize``, ``warnings`` (each surface's, prefixed by its name), ``sources``.
    """

    KIND: ClassVar[str] = "topology_stability"

    names: tuple[str, ...]
    figures: dict[str, np.ndarray]
    bottleneck_h0: np.ndarray
    meta: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """``{figure: {"mean", "std", "min", "max"}}`` for each headline figure and for the pairwise
        ``bottleneck_h0`` distances (``std`` with ``n - 1`` in the denominator; ``None`` for one value)."""
        pairs = self.bottleneck_h0[np.triu_indices(len(self.names), k=1)]
        return {name: _spread(v) for name, v in {**self.figures, "bottleneck_h0": pairs}.items()}

    def save(self, path: str | Path) -> Path:
        """Write to an HDF5 file (kind ``topology_stability``)."""
        arrays = {f"figures/{k}": v for k, v in self.figures.items()} | {"bottleneck_h0": self.bottleneck_h0}
        return _io.write_h5(path, self.KIND, arrays, {"names": list(self.names), "meta": self.meta})

    @classmethod
    def load(cls, path: str | Path) -> "TopologyStability":
        """Read a file written by ``save``."""
        return _io.load(path, cls.KIND, cls._unpack)

    @classmethod
    def _unpack(cls, a: dict, m: dict) -> "TopologyStability":
        figures = {k: a[f"figures/{k}"] for k in HEADLINE}
        return cls(tuple(m["names"]), figures, a["bottleneck_h0"], m["meta"])


def topology_stability(
    surfaces,
    *,
    names=None,
    construction: Literal["vertices", "cells"] = "vertices",
    threshold: float | None = None,
    normalize: bool = False,
) -> TopologyStability:
    """The spread of the topology's headline figures over surfaces (e.g. one per direction seed).

    One threshold applies to every surface, so that ``n_basins`` counts the same thing in each: the
    given one, or ``THRESHOLD_FRACTION`` of the mean of their value ranges (after normalising, when asked).

    Args:
        surfaces: two or more surfaces.
        names: one per surface (default ``"0"``, ``"1"``, ...).
        construction: ``"vertices"`` (4-connectivity, default) or ``"cells"`` (8-connectivity).
        threshold: the persistence above which a class counts, in the units analysed; default
            ``THRESHOLD_FRACTION`` of the mean of the surfaces' value ranges.
        normalize: analyse each :math:`(Z - \\min Z)/(\\max Z - \\min Z)` instead of the loss.

    Raises:
        ValueError: fewer than two surfaces, names that do not match them, or an invalid option.
    """
    surfaces = list(surfaces)
    if len(surfaces) < 2:
        raise ValueError(f"topology_stability needs at least 2 surfaces, found {len(surfaces)}")
    names = tuple(str(n) for n in names) if names is not None else tuple(str(i) for i in range(len(surfaces)))
    if len(names) != len(surfaces):
        raise ValueError(f"{len(names)} names for {len(surfaces)} surfaces")
    check_number("threshold", threshold, minimum=0, none=True)
    results = [topology(s, construction=construction, threshold=threshold, normalize=normalize) for s in surfaces]
    rule = "given"
    if threshold is None:
        threshold = THRESHOLD_FRACTION * float(np.mean([np.ptp(r.values) for r in results]))
        rule = f"{THRESHOLD_FRACTION} x mean value range of the surfaces"
        results = [replace(r, threshold=threshold, meta={**r.meta, "threshold_rule": rule}) for r in results]
    summaries = [r.summary() for r in results]
    figures = {k: np.array([float(s[k]) for s in summaries]) for k in HEADLINE}
    distances = np.zeros((len(results), len(results)))
    for i, j in zip(*np.triu_indices(len(results), k=1)):
        distances[i, j] = distances[j, i] = bottleneck(results[i], results[j])
    meta = {"threshold": threshold, "threshold_rule": rule, "construction": construction, "normalize": normalize,
            "warnings": [f"{n}: {w}" for n, r in zip(names, results) for w in r.meta["warnings"]],
            "sources": [r.meta["source"] for r in results]}
    return TopologyStability(names, figures, distances, meta)


def _classes(Z: np.ndarray, regular: list, essential: list, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``(n, 2)`` diagram and the ``(n, 2)`` row-major index pairs of dimension ``dim`` from gudhi's
    column-major cell indices, zero-persistence pairs dropped, longest first."""
    flat_f = Z.ravel(order="F")
    pairs = np.asarray(regular[dim] if dim < len(regular) else np.zeros((0, 2)), dtype=np.int64).reshape(-1, 2)
    births = np.asarray(essential[dim] if dim < len(essential) else [], dtype=np.int64).reshape(-1)
    index_f = np.concatenate([pairs, np.stack([births, np.full_like(births, -1)], axis=1)])
    diagram = np.stack([flat_f[index_f[:, 0]], np.where(index_f[:, 1] >= 0, flat_f[index_f[:, 1]], np.inf)], axis=1)
    index = np.where(index_f >= 0, _row_major(index_f, Z.shape), -1)
    keep = diagram[:, 1] > diagram[:, 0]
    order = np.argsort(-(diagram[keep, 1] - diagram[keep, 0]), kind="stable")
    return diagram[keep][order].reshape(-1, 2), index[keep][order].reshape(-1, 2)


def _row_major(index_f: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Column-major flat indices (gudhi's) as row-major ones (numpy's), ``-1`` kept as any valid index."""
    safe = np.where(index_f >= 0, index_f, 0)
    return np.ravel_multi_index(np.unravel_index(safe, shape, order="F"), shape)


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


def _persistence(diagram: np.ndarray) -> np.ndarray:
    return diagram[:, 1] - diagram[:, 0]


def _diagram_json(diagram: np.ndarray) -> list[list]:
    return [[float(b), None if math.isinf(d) else float(d)] for b, d in diagram]


def _spread(values: np.ndarray) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else None,
            "min": float(v.min()), "max": float(v.max())}

