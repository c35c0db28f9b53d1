"""Self-describing result files: arrays in HDF5 datasets, metadata as JSON in the file's attributes.

Every result object's ``save``/``load`` goes through ``write_h5``/``load``, so a file always says
what it holds (``kind``), which losslens wrote it, and how it was made (``meta``).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np

from losslens.errors import LosslensError

T = TypeVar("T")
FORMAT_VERSION = 2  # 2: surfaces stored (ny, nx) as the reference tool reads them


def write_h5(path: str | Path, kind: str, arrays: dict[str, Any], meta: dict) -> Path:
    """Write ``arrays`` (name -> array, ``None`` skipped; ``a/b`` names make groups) and ``meta``.

    The file is written under a temporary name and renamed: a crash leaves the old file or the new
    one, never half of one.
    """
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic(path) as tmp, h5py.File(tmp, "w") as f:
        set_header(f, kind, meta)
        for name, value in arrays.items():
            if value is not None:
                f.create_dataset(name, data=np.asarray(value))
    return path


@contextlib.contextmanager
def atomic(path: Path):
    """A temporary path beside ``path``, renamed to it when the block succeeds, removed otherwise."""
    tmp = path.with_name(f".{path.name}.writing-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def set_header(f, kind: str, meta: dict) -> None:
    """Store ``kind`` and ``meta`` (JSON) in the attributes of an open HDF5 file."""
    from losslens import __version__

    f.attrs["losslens_kind"] = kind
    f.attrs["losslens_version"] = __version__
    f.attrs["losslens_format"] = FORMAT_VERSION
    f.attrs["meta"] = json.dumps(meta, default=_jsonable)


def load(path: str | Path, kind: str, build: Callable[[dict[str, np.ndarray], dict], T]) -> T:
    """``build(arrays, meta)`` from a file written by ``write_h5``; every error of a damaged or
    foreign file (h5py's, a missing key, a wrong type) becomes one ``LosslensError`` naming the file.
    """
    import h5py

    path = Path(path)
    with open_h5(path) as f:
        found = f.attrs.get("losslens_kind")
        if found != kind:
            raise LosslensError(f"{path}: expected a losslens {kind} file, found {found or 'no losslens header'}")
        try:
            arrays: dict[str, np.ndarray] = {}
            f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
            return build(arrays, json.loads(f.attrs["meta"]))
        except Exception as err:  # noqa: BLE001 - a damaged file can fail in any of these ways
            raise LosslensError(f"{path}: damaged {kind} file ({type(err).__name__}: {err})") from None


def open_h5(path: Path):
    """An HDF5 file opened for reading.

    Raises:
        LosslensError: the file is missing or is not HDF5.
    """
    import h5py

    if path.is_dir():
        raise LosslensError(f"{path}: is a directory, not a result file")
    if not path.is_file():
        raise LosslensError(f"{path}: no such file")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise LosslensError(f"{path}: not an HDF5 file ({err})") from None


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, tuple)):
        return list(np.asarray(value).tolist())
    return str(value)  # paths, dtypes, devices
