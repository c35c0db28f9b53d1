"""Comparing loss surfaces: a table of each one's figures, and the distances between every pair.

Per surface: its shape, minimum, maximum and loss range, the number of basins and loops
(``topology``, each with its own default threshold, so a row agrees with ``losslens topology``), the
roughness (``multiscale`` with its defaults), and the sharpness :math:`\\lambda_{max}` of the Hessian at
the centre when the surface's metadata carries one (``sharpness_of``).

Per pair: the bottleneck and 1-Wasserstein distances of the :math:`H_0` and :math:`H_1` diagrams, which
need no common grid (classes that never die matched among themselves; how many are left over is its own
column, ``essential_count_difference_h0``/``_h1``, never an infinite distance), and for surfaces on the
same grid the distances of their values,
:math:`\\lVert f - g \\rVert_\\infty` (which bounds the bottleneck distance, Cohen-Steiner et al. 2007) and
the root mean square difference.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from losslens.checks import check_choice
from losslens.landscape._grid_values import grid_values, source_meta
from losslens.landscape.wavelets import multiscale
from losslens.landscape.surface import Surface
from losslens.landscape.diagram_distances import bottleneck, essential_count_difference, wasserstein
from losslens.landscape.topology import topology
from losslens.results import Result, attr, to_dataframe

TABLE_COLUMNS: tuple[str, ...] = ("name", "shape", "min", "max", "range", "n_basins", "threshold", "n_loops",
                                  "roughness", "sharpness")
DISTANCE_COLUMNS: tuple[str, ...] = ("a", "b", "bottleneck_h0", "bottleneck_h1", "wasserstein_h0",
                                     "wasserstein_h1", "essential_count_difference_h0",
                                     "essential_count_difference_h1", "max_abs_difference", "rms_difference")


def sharpness_of(meta: dict) -> float | None:
    """The sharpness of a surface from its metadata: ``meta["hessian"]["lambda_max"]``, else ``None``.

    The hook: the one place that knows where a surface keeps Hessian figures; change it when they move.
    """
    hessian = meta.get("hessian")
    value = hessian.get("lambda_max") if isinstance(hessian, dict) else None
    return None if value is None else float(value)


@dataclass(frozen=True, repr=False)
class SurfaceComparison(Result):
    """Figures of several surfaces and distances between them.

    Attributes:
        rows: one dict per surface with ``TABLE_COLUMNS`` (``None`` where a figure does not apply).
        distances: one dict per pair ``(a, b)``, ``a`` before ``b`` in input order, with
            ``DISTANCE_COLUMNS``; the value distances are ``None`` unless both share their grid, a
            Wasserstein distance ``None`` (with a warning) for diagrams beyond ``MATCHING_POINTS``.
        meta: ``warnings`` (each prefixed by the surface's name), ``sources`` (each surface's meta).
    """

    KIND: ClassVar[str] = "surface_comparison"

    rows: tuple[dict, ...] = attr(tuple)
    distances: tuple[dict, ...] = attr(tuple)
    meta: dict = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(r["name"] for r in self.rows)

    def summary(self) -> dict:
        """``n_surfaces``, and the pair farthest apart by :math:`H_0` bottleneck distance."""
        far = max(self.distances, key=lambda d: d["bottleneck_h0"])
        return {"n_surfaces": len(self.rows), "farthest_pair": [far["a"], far["b"]],
                "max_bottleneck_h0": far["bottleneck_h0"]}

    def to_json(self) -> dict:
        return {"format": "losslens-comparison", "surfaces": list(self.rows), "distances": list(self.distances),
                "summary": self.summary(), "warnings": self.meta["warnings"], "sources": self.meta["sources"]}

    def format_table(self) -> str:
        """The table of figures and the table of distances as aligned text."""
        return _text_table(self.rows, TABLE_COLUMNS) + "\n\n" + _text_table(self.distances, DISTANCE_COLUMNS)

    def to_pandas(self, table: str = "surfaces"):
        """``table`` as a ``pandas.DataFrame`` (pandas is needed): ``"surfaces"`` (one row per surface,
        ``TABLE_COLUMNS``) or ``"distances"`` (one row per pair, ``DISTANCE_COLUMNS``).

        Raises:
            ValueError: an unknown table.
        """
        tables = {"surfaces": (self.rows, TABLE_COLUMNS), "distances": (self.distances, DISTANCE_COLUMNS)}
        check_choice("table", table, tables)
        return to_dataframe(*tables[table])


def compare_surfaces(surfaces, names=None) -> SurfaceComparison:
    """The figures of each surface and the distances between every pair.

    Args:
        surfaces: two or more surfaces (``x``, ``y``, ``loss`` ``(ny, nx)`` or ``(nx,)``, ``meta``) or
            paths of surface files.
        names: one per surface; default the file names for paths, ``"0"``, ``"1"``, ... otherwise.

    Raises:
        ValueError: fewer than two surfaces, names that do not match them, or a bad surface.
    """
    surfaces = list(surfaces)
    if len(surfaces) < 2:
        raise ValueError(f"compare_surfaces needs at least 2 surfaces, found {len(surfaces)}")
    if names is None:
        names = [Path(s).stem if isinstance(s, (str, os.PathLike)) else str(i) for i, s in enumerate(surfaces)]
        if len(set(names)) < len(names):  # run1/surface.h5 and run2/surface.h5: name them by their paths
            names = [str(s) if isinstance(s, (str, os.PathLike)) else n for n, s in zip(names, surfaces)]
    names = [str(n) for n in names]
    if len(names) != len(surfaces):
        raise ValueError(f"{len(names)} names for {len(surfaces)} surfaces")
    if len(set(names)) < len(names):
        raise ValueError(f"the surfaces' names must be distinct (each row and pair is named by them), got {names}")
    surfaces = [Surface.load(s) if isinstance(s, (str, os.PathLike)) else s for s in surfaces]
    warnings: list[str] = []
    rows, topologies = [], []
    for name, surface in zip(names, surfaces):
        topo = topology(surface)
        topologies.append(topo)
        roughness = None
        try:
            roughness = multiscale(surface).roughness
        except ValueError as err:  # non-finite values: no roughness rather than a made-up one
            warnings.append(f"{name}: no roughness: {err}")
        warnings += [f"{name}: {w}" for w in topo.meta["warnings"]]
        _, _, Z = grid_values(surface, "compare_surfaces")
        finite = Z[np.isfinite(Z)]
        rows.append({"name": name, "shape": list(Z.shape), "min": float(finite.min()), "max": float(finite.max()),
                     "range": float(np.ptp(finite)), "n_basins": len(topo.basins), "threshold": topo.threshold,
                     "n_loops": topo.n_loops, "roughness": roughness, "sharpness": sharpness_of(source_meta(surface))})
    distances = []
    for i in range(len(surfaces)):
        for j in range(i + 1, len(surfaces)):
            pair = {"a": names[i], "b": names[j]}
            for d in (0, 1):
                pair[f"bottleneck_h{d}"] = bottleneck(topologies[i], topologies[j], d)
                try:
                    pair[f"wasserstein_h{d}"] = wasserstein(topologies[i], topologies[j], d)
                except ValueError as err:  # too many points for the exact matching
                    pair[f"wasserstein_h{d}"] = None
                    warnings.append(f"{names[i]} vs {names[j]}: no wasserstein_h{d}: {err}")
            for d in (0, 1):
                pair[f"essential_count_difference_h{d}"] = essential_count_difference(topologies[i], topologies[j], d)
            distances.append(pair | _value_distances(surfaces[i], surfaces[j]))
    return SurfaceComparison(tuple(rows), tuple(distances), {"warnings": warnings,
                                                      "sources": [source_meta(s) for s in surfaces]})


def _value_distances(a, b) -> dict:
    """``max_abs_difference`` and ``rms_difference`` over the points finite in both, when the grids agree."""
    xa, ya, Za = grid_values(a, "compare_surfaces")
    xb, yb, Zb = grid_values(b, "compare_surfaces")
    same = Za.shape == Zb.shape and np.allclose(xa, xb) and (ya is None) == (yb is None) \
        and (ya is None or np.allclose(ya, yb))
    both = np.isfinite(Za) & np.isfinite(Zb) if same else np.zeros((), dtype=bool)
    if not both.any():
        return {"max_abs_difference": None, "rms_difference": None}
    diff = Za[both] - Zb[both]
    return {"max_abs_difference": float(np.abs(diff).max()), "rms_difference": float(np.sqrt(np.mean(diff**2)))}


def _text_table(rows, columns: tuple[str, ...]) -> str:
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[k]) for row in cells)) for k, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.4g}"
    if isinstance(value, list):
        return "x".join(str(v) for v in value)
    return str(value)
