"""The values of a surface as the analyses (multiscale, topology) read them: checked, and made finite.

A surface is anything with ``x`` ``(nx,)``, ``y`` ``(ny,)`` or ``None`` for a line, ``loss`` ``(ny, nx)``
(``loss[iy, ix]`` at ``(x[ix], y[iy])``, as ``np.meshgrid(x, y)`` indexes) or ``(nx,)``, and ``meta``.

Non-finite points (NaN: not computed; inf: diverged) are refused or filled, never passed on. The fill
gives each one the largest value among its finite 4-neighbours, repeated inward for clusters. Such a
value is never above its surroundings, so it is never a peak (no loop class in a persistence diagram, no
essential class as an ``inf`` point makes), and never below its lowest neighbour, so it is never a new
minimum (no basin). A missing point inside a one-point-wide valley is raised to the valley's walls and
can split it; the count of filled points is always reported.
"""

from __future__ import annotations

import numpy as np


def grid_values(surface, caller: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """``(x, y, Z)`` of a surface as float64 arrays, ``Z`` a copy of shape ``(ny, nx)`` or ``(nx,)``.

    Raises:
        ValueError: the coordinates are not 1-D, a side has fewer than 2 points, or the loss's shape
            is not ``(ny, nx)`` (``(nx,)`` for a line).
    """
    x = np.asarray(surface.x, dtype=np.float64)
    y = None if getattr(surface, "y", None) is None else np.asarray(surface.y, dtype=np.float64)
    Z = np.array(surface.loss, dtype=np.float64)
    if x.ndim != 1 or (y is not None and y.ndim != 1):
        raise ValueError(f"{caller}: surface coordinates must be 1-D, found x {list(x.shape)}"
                         + ("" if y is None else f" and y {list(y.shape)}"))
    expected = (len(x),) if y is None else (len(y), len(x))
    if Z.shape != expected:
        layout = "(nx,) for a line" if y is None else "(ny, nx): loss[iy, ix] is the loss at (x[ix], y[iy])"
        raise ValueError(f"{caller}: surface.loss has shape {list(Z.shape)}, expected {list(expected)} {layout}")
    if min(expected) < 2:
        raise ValueError(f"{caller}: a surface needs at least 2 points along each side, found shape {list(expected)}")
    check_increasing(x, "x", caller)
    if y is not None:
        check_increasing(y, "y", caller)
    return x, y, Z


def check_increasing(coordinates: np.ndarray, axis: str, where: str | None = None) -> None:
    """Refuse coordinates that do not strictly increase: a repeated value puts two grid points in one
    place (a zero spacing for fits, wavelets and plots; two points one basin apart for topology).

    Raises:
        ValueError: naming ``axis`` and the first value at fault (prefixed by ``where``).
    """
    steps = np.diff(np.asarray(coordinates, dtype=np.float64))
    bad = np.flatnonzero(~(steps > 0))
    if bad.size:
        i = int(bad[0])
        a, b = float(coordinates[i]), float(coordinates[i + 1])
        fault = (f"{a!r} is repeated ({axis}[{i}] = {axis}[{i + 1}])" if a == b
                 else f"{axis}[{i + 1}] = {b!r} follows {axis}[{i}] = {a!r}")
        raise ValueError(("" if where is None else f"{where}: ") + f"{axis} coordinates must be strictly increasing: "
                         + fault)


def source_meta(surface) -> dict:
    """The surface's own provenance, to keep under ``"source"`` in a result's metadata."""
    return dict(getattr(surface, "meta", None) or {})


def nonfinite_counts(Z: np.ndarray) -> dict[str, int]:
    """``{"nan": ..., "inf": ...}``: how many points are NaN and how many are +-inf."""
    return {"nan": int(np.isnan(Z).sum()), "inf": int(np.isinf(Z).sum())}


def describe_nonfinite(counts: dict[str, int], size: int) -> str:
    """``"3 non-finite values (2 NaN, 1 inf) of 400"``."""
    n = counts["nan"] + counts["inf"]
    return f"{n} non-finite value{'' if n == 1 else 's'} ({counts['nan']} NaN, {counts['inf']} inf) of {size}"


def fill_nonfinite(Z: np.ndarray) -> np.ndarray:
    """A copy of ``Z`` where each non-finite point holds the largest of its finite 4-neighbours.

    Clusters are filled from their edge inward, one ring per pass, each ring from the values known
    before it. Works for lines (2 neighbours) and planes.

    Raises:
        ValueError: no value is finite.
    """
    Z = np.array(Z, dtype=np.float64)
    missing = ~np.isfinite(Z)
    if missing.all():
        raise ValueError(f"the surface has no finite value (all {Z.size} points are NaN or inf)")
    while missing.any():
        padded = np.pad(np.where(missing, -np.inf, Z), 1, constant_values=-np.inf)
        best = np.full(Z.shape, -np.inf)
        for axis in range(Z.ndim):
            for start in (0, 2):  # the neighbour before and the one after, along this axis
                window = tuple(slice(start, start + n) if a == axis else slice(1, 1 + n)
                               for a, n in enumerate(Z.shape))
                best = np.maximum(best, padded[window])
        ready = missing & (best > -np.inf)
        Z[ready] = best[ready]
        missing &= ~ready
    return Z
