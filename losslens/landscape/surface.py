"""Loss surfaces: the loss on a line or a plane of weight space, on an explicit grid of coordinates.

A 2D surface along directions :math:`d_1, d_2` through the point :math:`w_0` is the array

.. math::  Z_{ij} = L(w_0 + x_j d_1 + y_i d_2), \\qquad i < n_y, \\; j < n_x,

indexed ``Z[iy, ix]`` with shape ``(ny, nx)``, exactly as ``np.meshgrid(x, y)`` indexes (so
``plt.contour(x, y, Z)`` draws it the right way round), the picture of Li et al. 2018, "Visualizing
the Loss Landscape of Neural Nets" (NeurIPS); a 1D surface (a line) is ``Z[ix] = L(w_0 + x_i d)``.
Points are evaluated in that row-major order, chunk by chunk, by ``Evaluator.evaluate_affine``.

One ``Surface`` type holds lines and planes, along any directions (random, Hessian, PCA, or the
segment between two checkpoints, see ``interpolation.py``), for one or several data splits.

With ``path=...`` the grid lives in an HDF5 file written as it is computed, in the reference tool's
layout (see ``grid_file.py``); running again with the same path resumes an interrupted grid. Under
``torchrun`` the points are shared among the processes (see ``losslens/_distributed.py``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from losslens.checks import check_int
from losslens.errors import LosslensError
from losslens.landscape import grid_file as gf
from losslens._distributed import Group
from losslens.landscape._grid_values import check_increasing
from losslens.landscape.directions import Directions
from losslens.landscape.surface_inputs import (
    _as_directions, _as_evaluators, _coordinates, _fingerprint, _header, _held, _numpy, _spec, _split_key,
)
from losslens.results import Result

__all__ = ["Surface", "surface_1d", "surface_2d"]

_FIRST_CHUNK = 32  # points of the first chunk when chunk=None; later chunks aim at _CHUNK_SECONDS
_MAX_CHUNK = 512
_CHUNK_SECONDS = 2.0


@dataclass(frozen=True, eq=False, repr=False)
class Surface(Result):
    """The loss (and metrics) on a grid of a line or a plane through ``w0``.

    Attributes:
        x: ``(nx,)`` increasing coordinates along the first direction.
        y: ``(ny,)`` increasing coordinates along the second direction, ``None`` for a line.
        values: ``{split: {"loss": Z, metric: Z, ...}}``, one entry per evaluated data split (the
            first is the surface's own; ``None`` for data of unknown split); each ``Z`` is float64 of
            shape ``(ny, nx)`` (``Z[iy, ix]`` at ``(x[ix], y[iy])``) or ``(nx,)``; metrics are
            fractions (accuracy in ``[0, 1]``). NaN/inf where the model diverged, NaN where not computed.
        directions: the directions ``d1`` (``d2``) with their vectors; ``None`` for a file of the
            reference tool, which keeps them in a separate file.
        meta: provenance: the evaluator's ``meta()`` (model, data, checkpoint, plan, ...), the
            caller's ``meta``, ``directions_kind``, ``seed``, ``splits``, and the grid's ``ndim``,
            ``shape``, ``n_points``, ``n_done``, ``n_nonfinite``, ``seconds``, ``points_per_second``.
        done: bool array of the grid's shape: which points are computed.
        w0: ``(P,)`` the origin, ``None`` when unknown.
    """

    x: np.ndarray
    y: np.ndarray | None
    values: dict
    directions: Directions | None
    meta: dict
    done: np.ndarray | None = None
    w0: np.ndarray | None = None
    KIND: ClassVar[str] = "surface"

    def __post_init__(self):
        x = np.asarray(self.x, dtype=np.float64)
        y = None if self.y is None else np.asarray(self.y, dtype=np.float64)
        shape = (len(x),) if y is None else (len(y), len(x))
        done = np.ones(shape, dtype=bool) if self.done is None else np.asarray(self.done, dtype=bool)
        if not self.values or any("loss" not in v for v in self.values.values()):
            raise ValueError("Surface.values must map each split to a dict holding at least 'loss'")
        values = {s: {n: np.asarray(a, dtype=np.float64) for n, a in named.items()} for s, named in self.values.items()}
        for split, named in values.items():
            for name, a in {**named, "done": done}.items():
                if a.shape != shape:
                    raise ValueError(f"Surface {name} of split {split!r} has shape {list(a.shape)}, expected "
                                     f"{list(shape)} = (ny, nx) from x and y" if y is not None else
                                     f"Surface {name} of split {split!r} has shape {list(a.shape)}, expected {list(shape)}")
        check_increasing(x, "x")
        if y is not None:
            check_increasing(y, "y")
        for attr, value in (("x", x), ("y", y), ("values", values), ("done", done)):
            object.__setattr__(self, attr, value)

    @classmethod
    def from_arrays(cls, x, y, loss, metrics: dict | None = None, *, split: str | None = "train",
                    directions: Directions | None = None, meta: dict | None = None, w0=None) -> "Surface":
        """A surface of one split from plain arrays (``loss`` of shape ``(ny, nx)`` or ``(nx,)``)."""
        meta = {"data": {"split": split}, **(meta or {})}
        return cls(x, y, {split: {"loss": loss, **(metrics or {})}}, directions, meta, w0=w0)

    @property
    def split(self) -> str | None:
        """The surface's own split (the first evaluated)."""
        return next(iter(self.values))

    @property
    def loss(self) -> np.ndarray:
        """The loss on the surface's own split: ``(ny, nx)`` or ``(nx,)``."""
        return self.values[self.split]["loss"]

    @property
    def metrics(self) -> dict[str, np.ndarray]:
        """The metrics on the surface's own split."""
        return {n: a for n, a in self.values[self.split].items() if n != "loss"}

    @property
    def ndim(self) -> int:
        """1 for a line, 2 for a plane."""
        return 1 if self.y is None else 2

    @property
    def shape(self) -> tuple[int, ...]:
        """``(ny, nx)`` or ``(nx,)``."""
        return self.loss.shape

    @property
    def complete(self) -> bool:
        """Whether every grid point is computed."""
        return bool(self.done.all())

    def key_figures(self) -> dict:
        """Line or plane, shape, split, the finite loss's range, the directions, the points computed."""
        finite = self.loss[np.isfinite(self.loss)]
        return {"kind": "plane" if self.ndim == 2 else "line", "shape": self.shape, "split": self.split,
                "loss": f"{finite.min():.4g} to {finite.max():.4g}" if len(finite) else "no finite value",
                "directions": self.directions.kind if self.directions is not None else None,
                "done": f"{int(self.done.sum())}/{self.done.size}"}

    @property
    def origin_index(self) -> tuple[int, ...] | None:
        """Index of the grid point at the origin ``w0`` (``(ix,)`` or ``(iy, ix)``), ``None`` when the
        grid does not hold it (coordinates within 1e-12 of the span from 0)."""
        axes = (self.x,) if self.y is None else (self.y, self.x)
        index = []
        for a in axes:
            i = int(np.argmin(np.abs(a)))
            if abs(a[i]) > 1e-12 * max(1.0, float(np.ptp(a))):
                return None
            index.append(i)
        return tuple(index)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the surface to an HDF5 file; returns the path. Its own layout, not the base's: the
        resumable grid file of ``grid_file.py``, which the reference loss-landscape tool reads too."""
        metric_names = tuple(n for n in self.values[self.split] if n != "loss")
        meta = {k: v for k, v in self.meta.items() if k not in ("n_done", "n_nonfinite", "seconds", "points_per_second")}
        meta |= {"splits": list(self.values), "metrics": list(metric_names)}
        spec = _spec(self.x, self.y, self.w0, self.directions, tuple(self.values), metric_names,
                     self.meta.get("identity", {}))
        grid = gf.GridFile(spec, path, meta, overwrite=True, kind=self.KIND)
        try:
            flat = np.flatnonzero(self.done)
            grid.write(flat, {s: {n: a.reshape(-1)[flat] for n, a in named.items()} for s, named in self.values.items()},
                       float(self.meta.get("seconds") or 0.0))
        finally:
            grid.close()
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Surface":
        """Read a surface file, finished or partial, of losslens or of the reference loss-landscape tool.

        A partial file gives NaN where points are not done; ``meta["n_done"]`` counts the others.
        A reference tool's file (``xcoordinates``, ``ycoordinates``, ``train_loss``/``test_loss`` and
        ``*_acc`` in percent) gives ``directions=None`` and ``meta["legacy"] = "loss-landscape"``.

        Raises:
            LosslensError: the file is missing, unreadable, damaged or not a surface.
        """
        g = gf.read_grid(path, cls.KIND)
        directions = None
        if g["vectors"] is not None:
            directions = Directions(torch.from_numpy(g["vectors"]), g["directions_kind"], g["directions_meta"])
        meta = g["meta"] | _progress(g["values"], g["done"], g["progress_seconds"])
        try:
            return cls(g["x"], g["y"], g["values"], directions, meta, g["done"], g["w0"])
        except ValueError as err:  # coordinates or shapes that do not make a grid
            raise LosslensError(f"{path}: {err}") from None


def surface_1d(evaluator, w0, directions, x, *, path=None, chunk=None, progress=True, meta=None) -> Surface:
    """The loss along a line: ``Z[ix] = L(w0 + x[ix] d)``.

    Args:
        evaluator: the ``Evaluator`` that gives every value, or several (one per data split, e.g.
            train and test; the first is the surface's own split), sharing the parameter space.
        w0: ``(P,)`` origin, usually ``evaluator.w0``.
        directions: ``Directions`` with one row, or a ``(1, P)`` tensor (wrapped as kind ``"custom"``).
        x: ``(nx,)`` strictly increasing finite coordinates.
        path: HDF5 file to write as points are computed; an existing file is resumed (it must hold
            the same grid, else ``ValueError`` naming what differs). ``None`` keeps it in memory.
        chunk: grid points per ``evaluate_affine`` call; ``None`` starts at 32 and sizes chunks to
            about two seconds each (at most 512 points), the work a crash can lose.
        progress: show a tqdm bar over grid points (points/second), on rank 0 only.
        meta: the caller's further provenance, stored in ``Surface.meta`` and the file (its keys
            must not clash with those the surface records itself).

    Returns:
        The ``Surface``; under torchrun with several processes, the same full surface on every rank.

    Raises:
        ValueError: bad coordinates, directions or options, or an existing file holding another grid.
    """
    return _compute(evaluator, w0, directions, x, None, path=path, chunk=chunk, progress=progress, meta=meta)


def surface_2d(evaluator, w0, directions, x, y, *, path=None, chunk=None, progress=True, meta=None) -> Surface:
    """The loss on a plane: ``Z[iy, ix] = L(w0 + x[ix] d1 + y[iy] d2)``, shape ``(ny, nx)``.

    Args:
        evaluator: the ``Evaluator`` that gives every value, or several (one per data split, e.g.
            train and test; the first is the surface's own split), sharing the parameter space.
        w0: ``(P,)`` origin, usually ``evaluator.w0``.
        directions: ``Directions`` with two rows, or a ``(2, P)`` tensor (wrapped as kind ``"custom"``).
        x: ``(nx,)`` strictly increasing finite coordinates along ``d1``.
        y: ``(ny,)`` strictly increasing finite coordinates along ``d2`` (``ny`` may differ from ``nx``).
        path: HDF5 file to write as points are computed; an existing file is resumed (it must hold
            the same grid, else ``ValueError`` naming what differs). ``None`` keeps it in memory.
        chunk: grid points per ``evaluate_affine`` call; ``None`` starts at 32 and sizes chunks to
            about two seconds each (at most 512 points), the work a crash can lose.
        progress: show a tqdm bar over grid points (points/second), on rank 0 only.
        meta: the caller's further provenance, stored in ``Surface.meta`` and the file (its keys
            must not clash with those the surface records itself).

    Returns:
        The ``Surface``; under torchrun with several processes, the same full surface on every rank.

    Raises:
        ValueError: bad coordinates, directions or options, no ``y``, or an existing file holding
            another grid.
    """
    if y is None:
        raise ValueError("surface_2d needs y coordinates; use surface_1d for a line")
    return _compute(evaluator, w0, directions, x, y, path=path, chunk=chunk, progress=progress, meta=meta)


# -- the engine -----------------------------------------------------------------------------------


def _compute(evaluators, w0, directions, x, y, *, path, chunk, progress, meta) -> Surface:
    evaluators = _as_evaluators(evaluators)
    first = evaluators[0]
    x = _coordinates(x, "x")
    y = None if y is None else _coordinates(y, "y")
    dirs = _as_directions(directions, 1 if y is None else 2, first.space.size)
    chunk = check_int("chunk", chunk, minimum=1, none=True)
    w = _origin(w0, first.space.size)
    group = Group()
    splits = tuple(ev.data.split for ev in evaluators)
    identity = {_split_key(ev.data.split): ev.identity() for ev in evaluators}
    header = _header(evaluators, dirs, meta, x, y, group.size, identity)
    spec = _spec(x, y, _numpy(w), dirs, splits, tuple(first.metric_names), identity)
    if group.active:
        group.check_same(_fingerprint(spec))
    grid, done = _open_grid(group, spec, path, header)
    todo = np.flatnonzero(~done)
    for ev in evaluators:
        ev.expect(int(done.size))  # the whole grid: a resumed half decides as the first did
    coords = x[:, None] if y is None else np.stack(np.meshgrid(x, y), axis=-1).reshape(-1, 2)
    started = time.perf_counter()  # time spent here: evaluation only
    try:
        _evaluate_points(group, grid, evaluators, (w, dirs.vectors), coords, todo, (len(done), chunk, progress))
    finally:
        if grid is not None:
            grid.close()
    surface = None
    if group.is_main:
        seconds = grid.seconds_before + (time.perf_counter() - started if len(todo) else 0.0)
        surface = Surface(x, y, grid.values, _held(dirs, grid), grid.meta | _progress(grid.values, grid.done, seconds),
                          grid.done, grid.w0)
    return group.broadcast(surface)


def _origin(w0, size: int) -> torch.Tensor:
    """``w0`` as a detached ``(size,)`` tensor of finite entries, or a ValueError."""
    w = torch.as_tensor(w0).detach()
    if w.shape != (size,):
        raise ValueError(f"w0 must have shape ({size},), found {list(w.shape)}")
    if not torch.isfinite(w).all():
        raise ValueError("w0 holds NaN or infinite entries")
    return w


def _open_grid(group: Group, spec: gf.GridSpec, path, header: dict) -> tuple[gf.GridFile | None, np.ndarray]:
    """The grid file (on the main rank; ``None`` elsewhere) and the flat mask of its done points, shared by
    every rank; an error opening it is raised on every rank, so that none waits."""
    grid, error = None, None
    if group.is_main:
        try:
            grid = gf.GridFile(spec, path, header)
        except Exception as err:  # noqa: BLE001 - re-raised below, on every rank so none waits
            error = err
    error, done = group.broadcast((error, None if grid is None else grid.done.reshape(-1)))
    if error is not None:
        raise error
    return grid, done


def _evaluate_points(group: Group, grid, evaluators, origin: tuple, coords: np.ndarray, todo: np.ndarray,
                     run: tuple) -> None:
    """Evaluate the points ``todo`` (flat indices of ``coords``) at ``w0 + coords @ D`` (``origin`` is
    ``(w0, D)``) in chunks shared among the ranks, the main rank writing each chunk to ``grid``. ``run`` is
    ``(grid points, chunk size or None, progress)``: without a chunk size each chunk is sized from the last
    one's time (``_next_chunk``)."""
    from tqdm.auto import tqdm

    n_points, chunk, progress = run
    tensors = [tuple(t.to(device=ev.device, dtype=ev.dtype) for t in origin) for ev in evaluators]
    bar = tqdm(total=n_points, initial=n_points - len(todo), unit="pt", desc="surface",
               disable=not (progress and group.is_main), dynamic_ncols=True)
    size, pos, started = chunk or _FIRST_CHUNK, 0, time.perf_counter()
    try:
        while pos < len(todo):
            mine = todo[pos + group.rank * size : pos + (group.rank + 1) * size]
            t = time.perf_counter()
            values = None
            if len(mine):
                values = {}
                for ev, (w_, D_) in zip(evaluators, tensors):
                    r = ev.evaluate_affine(w_, D_, torch.from_numpy(coords[mine]))
                    values[ev.data.split] = {"loss": r.loss.numpy(), **{k: v.numpy() for k, v in r.metrics.items()}}
            parts = group.all_gather((mine, values, time.perf_counter() - t))
            if group.is_main:
                for idx, vals, _ in parts:
                    if vals is not None:
                        grid.write(idx, vals, time.perf_counter() - started)
                        bar.update(len(idx))
            pos += group.size * size
            if chunk is None:
                size = _next_chunk(size, max(p[2] for p in parts))
    finally:
        bar.close()


def _progress(values: dict, done: np.ndarray, seconds: float) -> dict:
    """Counts of points and the time spent over every run on this grid."""
    n_done = int(done.sum())
    loss = next(iter(values.values()))["loss"]
    return {"n_done": n_done, "n_nonfinite": int((done & ~np.isfinite(loss)).sum()), "seconds": seconds,
            "points_per_second": n_done / seconds if seconds > 0 else None}


def _next_chunk(size: int, seconds: float) -> int:
    """Chunk size aiming at ``_CHUNK_SECONDS`` per chunk, changing at most fourfold per step."""
    target = size * _CHUNK_SECONDS / max(seconds, 1e-3)
    return int(min(_MAX_CHUNK, max(1, size // 4, min(4 * size, target))))


