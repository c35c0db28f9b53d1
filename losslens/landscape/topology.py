"""Topology of a loss surface: sublevel-set persistent homology and its basins.

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
including the global one; a single basin is reported as such. Distances between diagrams: ``diagram_distances.py``;
the spread over several surfaces: ``topology_stability.py``.
"""

from __future__ import annotations

import importlib.metadata
import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np

from losslens.checks import check_choice, check_number
from losslens.landscape._grid_values import (
    describe_nonfinite, fill_nonfinite, grid_values, nonfinite_counts, source_meta,
)
from losslens.results import Result, array, attr, grid

CONSTRUCTIONS: tuple[str, ...] = ("vertices", "cells")
THRESHOLD_FRACTION = 0.01  # default noise threshold, as a fraction of the value range
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
class Topology(Result):
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

    x: np.ndarray = array(("nx",))
    y: np.ndarray | None = array(("ny",), optional=True)
    values: np.ndarray = grid()
    diagram_h0: np.ndarray = array()
    pairs_h0: np.ndarray = array()
    diagram_h1: np.ndarray = array()
    pairs_h1: np.ndarray = array()
    threshold: float = attr(float)
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


def _persistence(diagram: np.ndarray) -> np.ndarray:
    return diagram[:, 1] - diagram[:, 0]


def _diagram_json(diagram: np.ndarray) -> list[list]:
    return [[float(b), None if math.isinf(d) else float(d)] for b, d in diagram]


