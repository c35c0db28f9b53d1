"""Reading a surface file of the reference tool (tomgoldstein/loss-landscape), which has no losslens header:
``xcoordinates`` [``ycoordinates``], ``train_loss``/``test_loss`` and ``*_acc`` in percent. Such a file is a
surface (``grid_file.read_grid`` reads it through ``read_reference``)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from losslens import _io
from losslens.errors import LosslensError

LEGACY_UNDONE = -1.0  # the reference tool fills its arrays with -1 before computing them


def coordinate_shapes(plane: bool) -> dict[str, tuple]:
    """The shapes of a surface file's coordinates (``losslens._io.check_shapes``): ``(nx,)`` [and ``(ny,)``]."""
    return {"xcoordinates": ("nx",)} | ({"ycoordinates": ("ny",)} if plane else {})


def read_reference(f, path: Path) -> dict:
    """A file of the reference tool: ``xcoordinates`` [``ycoordinates``] ``train_loss`` [``train_acc``] ...

    Its ``plot_surface.py`` allocates ``(nx, ny)`` arrays but fills them in the flat order of
    ``np.meshgrid(x, y)`` (``scheduler.get_job_indices``), so the values are ``Z.ravel()`` of the
    ``(ny, nx)`` array: square files read as they are, non-square ones are reshaped to ``(ny, nx)``
    in that order (the reference tool's own ``plot_2D.py`` cannot draw them), with a warning.
    """
    splits = [s for s in ("train", "test") if f"{s}_loss" in f]
    if "xcoordinates" not in f or not splits:
        raise LosslensError(f"{path}: not a surface file (neither a losslens header nor the reference tool's "
                            "xcoordinates and train_loss/test_loss datasets)")
    _io.check_shapes(f, path, "surface", coordinate_shapes("ycoordinates" in f))
    x = f["xcoordinates"][()]
    y = f["ycoordinates"][()] if "ycoordinates" in f else None
    shape = (len(x),) if y is None else (len(y), len(x))
    values, done = {}, None
    for s in splits:
        values[s] = {}
        for name, key, scale in (("loss", f"{s}_loss", 1.0), ("accuracy", f"{s}_acc", 100.0)):
            if key not in f:
                continue
            _io.check_shapes(f, path, "surface", {key: (None,) * f[key].ndim})  # numbers, whatever the shape
            if f[key].size != int(np.prod(shape)):
                raise LosslensError(f"{path}: dataset {key} holds {f[key].size} values, but the coordinates make a "
                                    f"{' x '.join(map(str, shape[::-1]))} grid")
            array = np.asarray(f[key][()], dtype=np.float64)
            if y is not None and array.shape != shape:
                warnings.warn(f"losslens: {path}: {key} has shape {list(array.shape)} for a {len(x)} x {len(y)} grid; "
                              "read in the order the reference tool fills it (np.meshgrid(x, y), values [iy, ix])",
                              stacklevel=4)
            array = array.reshape(shape)
            undone = array == LEGACY_UNDONE
            done = ~undone if done is None else done & ~undone
            values[s][name] = np.where(undone, np.nan, array / scale)
    names = {n for v in values.values() for n in v}
    for s in splits:  # every split holds the same names; a missing one is all NaN; nothing where not done
        for n in names:
            values[s][n] = np.where(done, values[s].get(n, np.nan), np.nan)
    meta = {"legacy": "loss-landscape", "data": {"split": splits[0]}, "splits": splits,
            "metrics": sorted(names - {"loss"})}
    if "dir_file" in f:  # the reference tool names its directions file in a string dataset
        value = f["dir_file"][()]
        meta["dir_file"] = value.decode() if isinstance(value, bytes) else str(value)
    return {
        "x": x, "y": y, "values": values, "done": done, "w0": None, "vectors": None, "directions_kind": None,
        "directions_meta": {}, "meta": meta, "progress_seconds": 0.0, "legacy": "the reference loss-landscape tool",
    }
