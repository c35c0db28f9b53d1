"""The one place where ``losslens fit`` and ``losslens replay`` read surfaces (to be replaced by
``Surface.load`` once ``Surface`` stores its loss as ``(ny, nx)``).

A surface here is a namespace with ``x`` ``(nx,)``, ``y`` ``(ny,)`` or ``None``, ``loss`` ``(ny, nx)``
with ``loss[iy, ix]`` at ``(x[ix], y[iy])`` (``(nx,)`` for a line), and ``meta``. Files:

- the reference tool's layout (no losslens header): ``xcoordinates`` ``(nx,)``, ``ycoordinates``
  ``(ny,)`` (absent for a line), ``train_loss`` (or ``test_loss``) of shape ``(ny, nx)``, or ``(nx,)``;
- a losslens surface file: read by ``Surface.load``, whose loss is ``(nx, ny)`` today
  (``loss[i, j]`` at ``(x[i], y[j])``), so it is transposed here, once, explicitly; the directions'
  metadata (the Hessian eigenvalues of a Hessian plane) goes to ``meta["directions_meta"]``.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from losslens._io import open_h5
from losslens.errors import LosslensError

LOSS_KEYS: tuple[str, ...] = ("train_loss", "test_loss")


def read_surface(path: str | Path) -> SimpleNamespace:
    """The surface a file holds, as ``(ny, nx)`` (see the module doc).

    Raises:
        LosslensError: the file is missing, not HDF5, another kind of result, or lacks a surface's
            datasets, or its loss's shape does not match its coordinates.
    """
    path = Path(path)
    with open_h5(path) as f:
        kind = f.attrs.get("losslens_kind")
        if kind is None:
            key = next((k for k in LOSS_KEYS if k in f), None)
            if "xcoordinates" not in f or key is None:
                raise LosslensError(f"{path}: not a surface file (no losslens header, and not xcoordinates with "
                                    f"{' or '.join(LOSS_KEYS)})")
            x = np.asarray(f["xcoordinates"][()], dtype=np.float64)
            y = np.asarray(f["ycoordinates"][()], dtype=np.float64) if "ycoordinates" in f else None
            loss = np.asarray(f[key][()], dtype=np.float64)
            shape = (len(x),) if y is None else (len(y), len(x))
            if loss.shape != shape:
                raise LosslensError(f"{path}: {key} has shape {list(loss.shape)}, expected {list(shape)} "
                                    "(ny, nx) from xcoordinates and ycoordinates")
            return SimpleNamespace(x=x, y=y, loss=loss, meta={"file": str(path), "loss_key": key})
    if kind != "surface":
        raise LosslensError(f"{path} holds a losslens {kind} result, not a surface")
    from losslens.landscape.surface import Surface

    return as_plane(Surface.load(path), source=str(path))


def as_plane(surface, source: str | None = None) -> SimpleNamespace:
    """A losslens ``Surface`` (loss ``(nx, ny)`` today) as a ``(ny, nx)`` namespace."""
    meta = dict(surface.meta)
    if source:
        meta["file"] = source
    if surface.directions is not None:
        meta["directions_meta"] = surface.directions.meta
        meta.setdefault("directions_kind", surface.directions.kind)
    loss = np.asarray(surface.loss, dtype=np.float64)
    return SimpleNamespace(x=surface.x, y=surface.y, loss=loss if surface.y is None else loss.T, meta=meta)


def write_surface(path: str | Path, x, y, loss) -> Path:
    """Write a surface in the reference tool's layout (``loss`` ``(ny, nx)``, or ``(nx,)`` with ``y=None``)."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f["xcoordinates"] = np.asarray(x, dtype=np.float64)
        if y is not None:
            f["ycoordinates"] = np.asarray(y, dtype=np.float64)
        f["train_loss"] = np.asarray(loss, dtype=np.float64)
    return path
