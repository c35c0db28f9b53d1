"""Loss surfaces: the loss on a line or a plane of weight space, on an explicit grid of coordinates.

A 2D surface along directions :math:`d_1, d_2` through the point :math:`w_0` is the array

.. math::  L_{ij} = L(w_0 + x_i d_1 + y_j d_2), \\qquad i < n_x, \\; j < n_y,

(a 1D surface drops the second direction), the picture of Li et al. 2018, "Visualizing the Loss
Landscape of Neural Nets" (NeurIPS). The lattice is exactly the grid given: ``loss[i, j]`` is the
loss at ``(x[i], y[j])``, points are taken in row-major order over ``(i, j)``, and every value comes
from ``Evaluator.evaluate_affine(w0, D, coeffs)`` on chunks of grid points.

With ``path=...`` the grid lives in an HDF5 file written as it is computed (see ``_grid_file.py``:
the older loss-landscape tool's key names, plus ``done`` and all metadata); running again with the
same path resumes an interrupted grid. Under ``torchrun`` the points are shared among the processes
(see ``_distributed.py`` and ``init_distributed_from_env``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from losslens.landscape import _grid_file as gf
from losslens.landscape._distributed import Group, init_distributed_from_env
from losslens.landscape.directions import Directions

__all__ = ["Surface", "surface_1d", "surface_2d", "init_distributed_from_env"]

_FIRST_CHUNK = 32  # points of the first chunk when chunk=None; later chunks aim at _CHUNK_SECONDS
_MAX_CHUNK = 512
_CHUNK_SECONDS = 2.0
_RUN_KEYS = ("ndim", "shape", "n_points", "n_done", "n_nonfinite", "seconds", "points_per_second", "world_size")


@dataclass(frozen=True, eq=False)
class Surface:
    """The loss (and metrics) on a grid of a line or plane through ``w0``.

    Attributes:
        x: ``(nx,)`` coordinates along the first direction.
        y: ``(ny,)`` coordinates along the second direction, ``None`` for a 1D surface.
        loss: ``(nx,)`` or ``(nx, ny)`` float64; ``loss[i, j]`` is the loss at
            ``w0 + x[i] d1 + y[j] d2``. NaN/inf where the model diverged; NaN where not computed.
        metrics: ``{name: array}`` of the same shape (fractions in ``[0, 1]``, e.g. ``accuracy``).
        directions: the directions ``d1`` (``d2``), with their vectors; ``None`` for a file of the
            older loss-landscape tool, which keeps them in a separate file.
        meta: the evaluator's ``meta()``, the caller's ``meta`` (model, data, checkpoint), ``seed``,
            ``ndim``, ``shape``, ``n_points``, ``n_done``, ``n_nonfinite``, ``seconds``,
            ``points_per_second`` and ``world_size``.
        done: bool array of the loss's shape, which points are computed (all, unless the surface
            was read from an interrupted file).
        w0: ``(P,)`` the origin, ``None`` when unknown (older tool's files).
    """

    x: np.ndarray
    y: np.ndarray | None
    loss: np.ndarray
    metrics: dict[str, np.ndarray]
    directions: Directions | None
    meta: dict
    done: np.ndarray | None = None
    w0: np.ndarray | None = None

    def __post_init__(self):
        shape = (len(self.x),) if self.y is None else (len(self.x), len(self.y))
        done = np.ones(shape, dtype=bool) if self.done is None else np.asarray(self.done, dtype=bool)
        for name, value in {"loss": self.loss, "done": done, **{f"metrics[{k!r}]": v for k, v in self.metrics.items()}}.items():
            if np.shape(value) != shape:
                raise ValueError(f"Surface.{name} has shape {list(np.shape(value))}, expected {list(shape)} from x and y")
        object.__setattr__(self, "done", done)

    @property
    def ndim(self) -> int:
        """1 for a line, 2 for a plane."""
        return 1 if self.y is None else 2

    @property
    def complete(self) -> bool:
        """Whether every grid point is computed."""
        return bool(self.done.all())

    @property
    def origin_index(self) -> tuple[int, ...]:
        """Index of the grid point nearest the origin ``w0``: ``(i,)`` or ``(i, j)``."""
        axes = (self.x,) if self.y is None else (self.x, self.y)
        return tuple(int(np.argmin(np.abs(a))) for a in axes)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the surface to an HDF5 file (the layout of ``_grid_file.py``); returns the path."""
        spec = _spec(self.x, self.y, self.w0, self.directions, self.meta, tuple(self.metrics))
        grid = gf.GridFile(spec, path, self.meta, overwrite=True)
        try:
            flat = np.flatnonzero(self.done)
            grid.write(flat, self.loss.reshape(-1)[flat], {k: v.reshape(-1)[flat] for k, v in self.metrics.items()})
        finally:
            grid.close(self.meta)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Surface":
        """Read a surface file, finished or partial, of losslens or of the older loss-landscape tool.

        A partial file gives NaN where points are not done; ``meta["n_done"]`` counts the others.
        An older tool's file (``xcoordinates``, ``ycoordinates``, ``train_loss``/``test_loss`` and
        ``*_acc`` in percent) gives ``directions=None`` and ``meta["legacy"] = "loss-landscape"``.

        Raises:
            LosslensError: the file is missing, unreadable or not a surface.
        """
        g = gf.read_grid(path)
        directions = None
        if g["vectors"] is not None:
            directions = Directions(torch.from_numpy(g["vectors"]), g["directions_kind"], g["directions_meta"])
        meta = g["meta"] | {"n_points": int(g["done"].size), "n_done": int(g["done"].sum())}
        return cls(g["x"], g["y"], g["loss"], g["metrics"], directions, meta, g["done"], g["w0"])


def surface_1d(evaluator, w0, directions, x, *, path=None, chunk=None, progress=True, meta=None) -> Surface:
    """The loss along a line: ``loss[i] = L(w0 + x[i] d)``.

    Args:
        evaluator: the ``Evaluator`` that gives every value.
        w0: ``(P,)`` origin, usually ``evaluator.w0``.
        directions: ``Directions`` with one row, or a ``(1, P)`` tensor (wrapped as kind ``"custom"``).
        x: ``(nx,)`` coordinates, any finite values in any order.
        path: HDF5 file to write as points are computed; an existing file is resumed (it must hold
            the same grid, else ``ValueError``). ``None`` keeps the surface in memory.
        chunk: grid points per ``evaluate_affine`` call; ``None`` starts at 32 and sizes chunks to
            about two seconds each (at most 512 points), the work a crash can lose.
        progress: show a tqdm bar over grid points (points/second), on rank 0 only.
        meta: the caller's provenance (``{"model": ..., "data": {"name": ..., "split": ...},
            "checkpoint": ...}``), stored in ``Surface.meta`` and the file. ``data.split``
            (``"train"``, the default, or ``"test"``) names the file's loss dataset.

    Returns:
        The ``Surface``; under torchrun with several processes, the same full surface on every rank.

    Raises:
        ValueError: bad coordinates, directions or options, or an existing file holding another grid.
    """
    return _compute(evaluator, w0, directions, x, None, path=path, chunk=chunk, progress=progress, meta=meta)


def surface_2d(evaluator, w0, directions, x, y, *, path=None, chunk=None, progress=True, meta=None) -> Surface:
    """The loss on a plane: ``loss[i, j] = L(w0 + x[i] d1 + y[j] d2)``.

    Args:
        directions: ``Directions`` with two rows, or a ``(2, P)`` tensor (wrapped as kind ``"custom"``).
        x, y: ``(nx,)`` and ``(ny,)`` coordinates, any finite values (``nx`` and ``ny`` may differ).
        Others: as ``surface_1d``.

    Returns:
        The ``Surface``; points are evaluated in row-major order over ``(i, j)``.
    """
    if y is None:
        raise ValueError("surface_2d needs y coordinates; use surface_1d for a line")
    return _compute(evaluator, w0, directions, x, y, path=path, chunk=chunk, progress=progress, meta=meta)


# -- the engine -----------------------------------------------------------------------------------


def _compute(evaluator, w0, directions, x, y, *, path, chunk, progress, meta) -> Surface:
    from tqdm.auto import tqdm

    x = _coordinates(x, "x")
    y = None if y is None else _coordinates(y, "y")
    dirs = _as_directions(directions, 1 if y is None else 2, evaluator.space.size)
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"chunk must be a positive number of grid points or None, got {chunk!r}")
    w = torch.as_tensor(w0).detach()
    if w.shape != (evaluator.space.size,):
        raise ValueError(f"w0 must have shape ({evaluator.space.size},), found {list(w.shape)}")
    w = w.to(device=evaluator.device, dtype=evaluator.dtype)
    D = dirs.vectors.to(device=evaluator.device, dtype=evaluator.dtype)
    group = Group()
    meta = _run_meta(evaluator.meta(), dirs, meta, x, y, group.size)
    spec = _spec(x, y, _numpy(w), dirs, meta, tuple(meta["metrics"]))
    if group.active:
        group.check_same(_fingerprint(spec))

    grid, error = None, None
    if group.is_main:
        try:
            grid = gf.GridFile(spec, path, meta)
        except Exception as err:  # noqa: BLE001 - re-raised below, on every rank so none waits
            error = err
    error, done = group.broadcast((error, None if grid is None else grid.done.reshape(-1)))
    if error is not None:
        raise error
    todo = np.flatnonzero(~done)
    evaluator.plan(-(-len(todo) // group.size))
    coords = x[:, None] if y is None else np.stack(np.meshgrid(x, y, indexing="ij"), axis=-1).reshape(-1, 2)
    bar = tqdm(total=len(done), initial=len(done) - len(todo), unit="pt", desc="surface",
               disable=not (progress and group.is_main), dynamic_ncols=True)
    size, pos, started = chunk or _FIRST_CHUNK, 0, time.perf_counter()
    try:
        while pos < len(todo):
            mine = todo[pos + group.rank * size : pos + (group.rank + 1) * size]
            t = time.perf_counter()
            values = None
            if len(mine):
                r = evaluator.evaluate_affine(w, D, torch.from_numpy(coords[mine]))
                values = (r.loss.numpy(), {k: v.numpy() for k, v in r.metrics.items()})
            parts = group.all_gather((mine, values, time.perf_counter() - t))
            if group.is_main:
                for idx, vals, _ in parts:
                    if vals is not None:
                        grid.write(idx, *vals)
                        bar.update(len(idx))
            pos += group.size * size
            if chunk is None:
                size = _next_chunk(size, max(p[2] for p in parts))
    finally:
        bar.close()
        if grid is not None:
            _finish(meta, grid, time.perf_counter() - started)
            grid.close(meta)
    surface = Surface(x, y, grid.loss, grid.metrics, dirs, meta, grid.done, spec.w0) if group.is_main else None
    return group.broadcast(surface)


def _finish(meta: dict, grid: gf.GridFile, seconds: float) -> None:
    """Record the progress: counts of points and the time spent over every run on this grid."""
    total = float(grid.previous_meta.get("seconds") or 0.0) + seconds
    n_done = int(grid.done.sum())
    meta.update(
        n_done=n_done,
        n_nonfinite=int((grid.done & ~np.isfinite(grid.loss)).sum()),
        seconds=total,
        points_per_second=n_done / total if total > 0 else None,
    )


def _next_chunk(size: int, seconds: float) -> int:
    """Chunk size aiming at ``_CHUNK_SECONDS`` per chunk, changing at most fourfold per step."""
    target = size * _CHUNK_SECONDS / max(seconds, 1e-3)
    return int(min(_MAX_CHUNK, max(1, size // 4, min(4 * size, target))))


def _run_meta(ev_meta: dict, dirs: Directions, caller: dict | None, x, y, world: int) -> dict:
    caller = dict(caller or {})
    clash = sorted(set(caller) & (set(ev_meta) | set(_RUN_KEYS)))
    if clash:
        raise ValueError(f"meta keys {clash} are recorded by the surface itself; give them other names")
    shape = [len(x)] if y is None else [len(x), len(y)]
    meta = {**ev_meta, **caller}
    meta.setdefault("seed", dirs.meta.get("seed"))
    meta.update(ndim=len(shape), shape=shape, n_points=int(np.prod(shape)), n_done=0, n_nonfinite=0,
                seconds=0.0, points_per_second=None, world_size=world)
    return meta


def _spec(x, y, w0, dirs: Directions | None, meta: dict, metric_names: tuple[str, ...]) -> gf.GridSpec:
    data = meta.get("data")
    split = data.get("split", "train") if isinstance(data, dict) else "train"
    if split not in gf.SPLITS:
        raise ValueError(f"unknown data split {split!r} in meta['data']; valid: {', '.join(gf.SPLITS)}")
    identity = {k: meta[k] for k in ("loss", "metrics", "bn", "n_samples", "dtype", "n_params", "include_buffers")
                if k in meta}
    if meta.get("bn") in ("batch", "recalibrate"):  # batch statistics depend on the batches
        identity.update({k: meta[k] for k in ("batch_size", "calibration_size") if k in meta})
    return gf.GridSpec(
        x=np.asarray(x, dtype=np.float64),
        y=None if y is None else np.asarray(y, dtype=np.float64),
        w0=None if w0 is None else np.asarray(w0),
        vectors=None if dirs is None else _numpy(dirs.vectors),
        directions_kind=None if dirs is None else dirs.kind,
        directions_meta={} if dirs is None else dirs.meta,
        metric_names=metric_names,
        split=split,
        identity=identity,
    )


def _fingerprint(spec: gf.GridSpec) -> dict[str, str]:
    """Digests of what every rank must share, for ``Group.check_same``."""

    def digest(a) -> str:
        return "none" if a is None else hashlib.sha256(np.ascontiguousarray(a, dtype=np.float64).tobytes()).hexdigest()

    return {
        "x coordinates": digest(spec.x),
        "y coordinates": digest(spec.y),
        "origin w0": digest(spec.w0),
        "direction vectors": digest(spec.vectors),
        "evaluator settings": json.dumps([spec.identity, spec.split], sort_keys=True, default=str),
    }


def _as_directions(directions, m: int, size: int) -> Directions:
    if not isinstance(directions, Directions):
        vectors = torch.as_tensor(directions).detach()
        if vectors.dim() == 1:
            vectors = vectors[None]
        directions = Directions(vectors.cpu(), "custom", {})
    if directions.vectors.shape != (m, size):
        raise ValueError(
            f"a {m}D surface needs {m} direction(s) of length {size} (the evaluator's parameters), found "
            f"vectors of shape {list(directions.vectors.shape)}; pick rows with e.g. directions.vectors[:{m}]"
        )
    return directions


def _coordinates(values, name: str) -> np.ndarray:
    a = np.asarray(torch.as_tensor(values).detach().cpu(), dtype=np.float64)
    if a.ndim != 1 or a.size == 0 or not np.isfinite(a).all():
        raise ValueError(f"{name} must be a non-empty 1-D array of finite coordinates, found shape {list(a.shape)}")
    return a


def _numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach().cpu()
    return (t if t.dtype == torch.float64 else t.float()).numpy()
