"""The Hessian's extreme eigenvalues over a plane: a map of (non-)convexity.

The reference tool's ``plot_hessian_eigen.py`` (tomgoldstein/loss-landscape; Li et al. 2018, section 6):
at every point :math:`w = w_0 + x_j d_1 + y_i d_2` of a grid, the largest eigenvalue
:math:`\\lambda_{max}` and the smallest (most negative) :math:`\\lambda_{min}` of the Hessian
:math:`H(w) = \\nabla^2 L(w)`, and the ratio

.. math::  r_{ij} = \\left| \\lambda_{min} / \\lambda_{max} \\right| ,

which is small where the loss is locally convex (:math:`\\lambda_{min} \\ge 0` and small) and large
where negative curvature is as strong as the positive one.

Each eigenvalue is found by Lanczos (``eigenpairs`` with ``which="largest"``, ARPACK's ``"LA"``, and
``which="smallest"``, ``"SA"``) on a ``HessianOperator`` at the point, whose products are the
evaluator core's Hessian-vector products; ``maxiter`` bounds its restarts, so the cost per point is
bounded. The residual norms :math:`\\lVert Hv - \\lambda v \\rVert` (which bound each eigenvalue's
error) are kept beside them. A point where Lanczos does not converge within ``maxiter``, or where
the loss diverged, holds NaN and is counted in a warning.

The grid is stored like a surface's (``grid_file.py``), written point by point: running again with
the same ``path`` resumes an interrupted map.

Why this module is in ``landscape/`` and not ``curvature/``: what it owns is the grid, not the
curvature. A ``CurvatureMap`` is a ``Surface`` (same axes, directions, resumable grid file, figures and
``losslens plot``), built with the surface's helpers (``surface_inputs.py``) and ``grid_file``; the
eigenvalues at each point come whole from ``losslens.curvature`` (``HessianOperator``, ``eigenpairs``). So
``landscape`` imports ``curvature`` here (as ``hessian_directions`` does), and ``curvature`` imports nothing
of ``landscape``.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch

from losslens.checks import check_int, check_number, check_seed
from losslens.curvature.hessian import NotConverged, eigenpairs
from losslens.curvature.operator import HessianOperator, NonFiniteHessian
from losslens.landscape import grid_file as gf
from losslens.landscape.surface import Surface, _progress
from losslens.landscape.surface_inputs import _as_directions, _coordinates, _header, _held, _numpy, _spec

__all__ = ["CurvatureMap", "curvature_map", "CURVATURE_NAMES"]

CURVATURE_NAMES: tuple[str, ...] = ("max_eigenvalue", "min_eigenvalue", "eigenvalue_ratio", "max_residual",
                                    "min_residual")


class CurvatureMap(Surface):
    """The Hessian's extreme eigenvalues on a plane: a ``Surface`` whose values hold, beside the
    ``loss`` at each point, ``max_eigenvalue``, ``min_eigenvalue``, ``eigenvalue_ratio``
    (:math:`|\\lambda_{min}/\\lambda_{max}|`) and the residual norms ``max_residual``, ``min_residual``,
    each ``(ny, nx)``; ``meta["lanczos"]`` records ``tol``, ``maxiter`` and ``seed``.

    Attributes:
        x: ``(nx,)`` increasing coordinates along the first direction.
        y: ``(ny,)`` increasing coordinates along the second direction.
        values: ``{split: {"loss": Z, "max_eigenvalue": Z, "min_eigenvalue": Z, "eigenvalue_ratio": Z,
            "max_residual": Z, "min_residual": Z}}``, each ``Z`` ``(ny, nx)``; NaN where Lanczos did not
            converge or the loss diverged.
        directions: the directions ``d1``, ``d2`` with their vectors.
        meta: provenance as a ``Surface``'s, with ``meta["lanczos"]``.
        done: bool array ``(ny, nx)``: which points are computed.
        w0: ``(P,)`` the origin.
    """

    KIND = "curvature_map"

    @property
    def max_eigenvalue(self) -> np.ndarray:
        return self.metrics["max_eigenvalue"]

    @property
    def min_eigenvalue(self) -> np.ndarray:
        return self.metrics["min_eigenvalue"]

    @property
    def eigenvalue_ratio(self) -> np.ndarray:
        return self.metrics["eigenvalue_ratio"]


def curvature_map(evaluator, w0, directions, x, y, *, path=None, tol: float = 1e-4, maxiter: int = 100,
                  seed: int = 0, progress: bool = True, meta: dict | None = None) -> CurvatureMap:
    """:math:`\\lambda_{max}`, :math:`\\lambda_{min}` and :math:`|\\lambda_{min}/\\lambda_{max}|` of the
    Hessian at every point ``w0 + x[ix] d1 + y[iy] d2`` of a plane.

    Args:
        evaluator: the ``Evaluator`` whose mean loss is differentiated.
        w0: ``(P,)`` origin, usually ``evaluator.w0``.
        directions: ``Directions`` with two rows, or a ``(2, P)`` tensor.
        x, y: strictly increasing finite coordinates.
        path: HDF5 file written point by point; an existing file of the same map is resumed.
        tol: Lanczos' relative accuracy of each eigenvalue (ARPACK's ``tol``).
        maxiter: Lanczos restarts per eigenvalue at most (bounds the products per point).
        seed: seed of Lanczos' start vector.
        progress: show a tqdm bar over the grid points.
        meta: the caller's further provenance.

    Returns:
        The ``CurvatureMap``.

    Raises:
        ConfigError: bad options.
        ValueError: bad coordinates or directions, or a file holding another map.
    """
    maxiter = check_int("maxiter", maxiter, minimum=1)
    tol = check_number("tol", tol, minimum=0)
    ev = evaluator
    x, y = _coordinates(x, "x"), _coordinates(y, "y")
    dirs = _as_directions(directions, 2, ev.space.size)
    w = torch.as_tensor(w0).detach()
    if w.shape != (ev.space.size,):
        raise ValueError(f"w0 must have shape ({ev.space.size},), found {list(w.shape)}")
    settings = {"tol": tol, "maxiter": maxiter, "seed": check_seed(seed)}
    identity = {ev.data.split or "unspecified": ev.identity(), "lanczos": settings}
    header = _header([ev], dirs, {**(meta or {}), "lanczos": settings}, x, y, 1, identity)
    header["metrics"] = list(CURVATURE_NAMES)  # the values stored beside the loss (not the evaluator's metrics)
    spec = _spec(x, y, _numpy(w), dirs, (ev.data.split,), CURVATURE_NAMES, identity)
    grid = gf.GridFile(spec, path, header, kind=CurvatureMap.KIND)
    started = time.perf_counter()
    failed, todo = _fill(grid, ev, w, dirs, np.stack(np.meshgrid(x, y), axis=-1).reshape(-1, 2), settings, progress)
    if failed:
        warnings.warn(f"losslens: at {failed} of {todo} points the eigenvalues are NaN (the loss diverged, or "
                      f"Lanczos did not converge within maxiter={maxiter}; raise maxiter or tol)", stacklevel=2)
    seconds = grid.seconds_before + (time.perf_counter() - started if todo else 0.0)
    return CurvatureMap(x, y, grid.values, _held(dirs, grid), grid.meta | _progress(grid.values, grid.done, seconds),
                        grid.done, grid.w0)


def _fill(grid: gf.GridFile, ev, w: torch.Tensor, dirs, coords: np.ndarray, settings: dict,
          progress: bool) -> tuple[int, int]:
    """Compute and write every point of ``grid`` not done yet (``coords`` ``(ny * nx, 2)`` in the grid's flat
    order), then close the file; returns ``(points whose eigenvalues are NaN, points computed)``."""
    from tqdm.auto import tqdm

    w_, D = w.to(device=ev.device, dtype=ev.dtype), dirs.vectors.to(device=ev.device, dtype=ev.dtype)
    todo = np.flatnonzero(~grid.done.reshape(-1))
    failed, started = 0, time.perf_counter()
    bar = tqdm(total=grid.done.size, initial=grid.done.size - len(todo), unit="pt", desc="curvature map",
               disable=not progress, dynamic_ncols=True)
    try:
        for flat in todo:
            point = w_ + torch.from_numpy(coords[flat]).to(device=ev.device, dtype=ev.dtype) @ D
            values = _at_point(ev, point, settings["tol"], settings["maxiter"], settings["seed"])
            failed += int(np.isnan(values["eigenvalue_ratio"]))
            grid.write(np.array([flat]), {ev.data.split: {k: np.array([v]) for k, v in values.items()}},
                       time.perf_counter() - started)
            bar.update(1)
    finally:
        bar.close()
        grid.close()
    return failed, len(todo)


def _at_point(ev, w: torch.Tensor, tol: float, maxiter: int, seed: int) -> dict[str, float]:
    """The loss, the extreme eigenvalues, their ratio and residual norms at ``w`` (NaN where they fail)."""
    H = HessianOperator(ev, w)
    out = {"loss": float(ev.evaluate(w[None]).loss[0])}
    for name, which in (("max", "largest"), ("min", "smallest")):
        try:
            pair = eigenpairs(H, 1, which=which, tol=tol, seed=seed, maxiter=maxiter)
            out[f"{name}_eigenvalue"], out[f"{name}_residual"] = float(pair.values[0]), pair.meta["residual_norms"][0]
        except (NotConverged, NonFiniteHessian):
            out[f"{name}_eigenvalue"] = out[f"{name}_residual"] = float("nan")
    H.release()
    with np.errstate(divide="ignore", invalid="ignore"):
        out["eigenvalue_ratio"] = float(np.abs(np.float64(out["min_eigenvalue"]) / out["max_eigenvalue"]))
    return out
