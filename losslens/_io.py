"""Self-describing result files, and the one writer of every file losslens writes.

Every result object's ``save``/``load`` goes through ``write_h5``/``load`` (``results.Result`` declares what
goes in), so a file always says what it holds (``kind``), which losslens wrote it, and how it was made
(``meta``). Every file losslens writes, HDF5 results, resumable grids, JSON, HTML and checkpoints, is
written under a temporary name and renamed by ``atomic``: a crash leaves the old file or the new one,
never half of one (``write_text`` and ``write_json`` for text).

The checks every file goes through live here and beside it, once:

- reading: ``_vet.open_h5`` refuses what is not a regular file without opening it, and a file whose
  data lives elsewhere or that declares more than it can hold, before any data is read; ``load``
  checks the shapes each kind needs (``check_shapes``);
- writing: ``_locks.output_lock`` (an advisory lock per output, held while it is computed or written),
  ``check_replaceable`` (an existing file is replaced only by a result of its own kind) and
  ``check_space``/``no_space`` (a full disk is one line, and no partial file is left).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np

from losslens._locks import output_lock
from losslens._version import __version__
from losslens._vet import NotHDF5, check_regular, open_h5
from losslens.errors import LosslensError

T = TypeVar("T")
FORMAT_VERSION = 2  # 2: surfaces stored (ny, nx) as the reference tool reads them

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def write_h5(path: str | Path, kind: str, arrays: dict[str, Any], meta: dict) -> Path:
    """Write ``arrays`` (name -> array, ``None`` skipped; ``a/b`` names make groups) and ``meta``.

    The file is written through ``atomic``: a crash leaves the old file or the new one, never half of
    one. The output is locked while it is written (``output_lock``), and an
    existing file is replaced only when it is a result of the same ``kind`` (``check_replaceable``).

    Raises:
        LosslensError: another process writes ``path``, ``path`` holds something else, or the disk is full.
    """
    import h5py

    path = Path(path)
    arrays = {name: np.asarray(value) for name, value in arrays.items() if value is not None}
    with output_lock(path):
        if check_replaceable(path, kind) == "damaged":
            keep_aside(path)
        check_space(path, sum(a.nbytes for a in arrays.values()))
        with no_space(path), atomic(path) as tmp, h5py.File(tmp, "w") as f:
            set_header(f, kind, meta)
            for name, value in arrays.items():
                f.create_dataset(name, data=value)
    return path


def set_header(f, kind: str, meta: dict) -> None:
    """Store ``kind`` and ``meta`` (JSON) in the attributes of an open HDF5 file."""
    f.attrs["losslens_kind"] = kind
    f.attrs["losslens_version"] = __version__
    f.attrs["losslens_format"] = FORMAT_VERSION
    f.attrs["meta"] = json.dumps(meta, default=json_default)


def load(path: str | Path, kind: str, build: Callable[[dict[str, np.ndarray], dict], T],
         shapes: dict[str, tuple] | Callable[[set[str]], dict[str, tuple]] | None = None) -> T:
    """``build(arrays, meta)`` from a file written by ``write_h5``; every error of a damaged or
    foreign file (h5py's, a missing key, a wrong type) becomes one ``LosslensError`` naming the file.

    ``shapes`` maps dataset names to the shapes the kind needs, checked before any data is read
    (``check_shapes``): each entry an int, ``None`` (any length), or a name standing for the same
    length wherever it appears (``{"values": ("k",), "vectors": ("k", "P")}``); or a function of
    the names at the file's top level giving them (``results.Result.shapes``).
    """
    import h5py

    path = Path(path)
    with open_h5(path) as f:
        found = f.attrs.get("losslens_kind")
        if found != kind:
            raise LosslensError(f"{path}: expected a losslens {kind} file, found {found or 'no losslens header'}")
        if shapes:
            check_shapes(f, path, kind, shapes(set(f)) if callable(shapes) else shapes)
        try:
            arrays: dict[str, np.ndarray] = {}
            f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
            return build(arrays, read_meta(f, path))
        except LosslensError:
            raise
        except Exception as err:  # noqa: BLE001 - a damaged file can fail in any of these ways
            raise LosslensError(f"{path}: damaged {kind} file ({type(err).__name__}: {err})") from None


def read_meta(obj, path: Path, where: str = "") -> dict:
    """The JSON object in the ``meta`` attribute of ``obj`` (a file or a group at ``where``).

    Raises:
        LosslensError: no ``meta``, or one that is not a JSON object; the message names the file.
    """
    text = obj.attrs.get("meta")
    try:
        meta = json.loads(text) if isinstance(text, (str, bytes)) else text
    except ValueError as err:
        raise LosslensError(f"{path}: attribute {where}meta is not JSON ({err})") from None
    if not isinstance(meta, dict):
        found = "missing" if meta is None else f"a {type(meta).__name__}"
        raise LosslensError(f"{path}: attribute {where}meta must be a JSON object, found {found}")
    return meta


def check_shapes(f, path: Path, kind: str, shapes: dict[str, tuple],
                 sizes: dict[str, int] | None = None) -> dict[str, int]:
    """Check that each dataset of ``shapes`` exists, holds numbers, and has the shape asked for.

    Named lengths are bound by ``sizes`` or by their first appearance; returns the bindings.

    Raises:
        LosslensError: naming the file, the dataset, the expected and the found shape.
    """
    import h5py

    sizes = dict(sizes or {})
    for name, expected in shapes.items():
        ds = f.get(name)
        if not isinstance(ds, h5py.Dataset):
            raise LosslensError(f"{path}: damaged {kind} file: dataset {name} is missing")
        if ds.dtype.kind not in "biuf":
            raise LosslensError(f"{path}: damaged {kind} file: dataset {name} holds {ds.dtype}, expected numbers")
        found = ds.shape or ()
        want = [sizes.get(d, d) if isinstance(d, str) else d for d in expected]
        ok = len(found) == len(want) and all(w is None or isinstance(w, str) or w == n for w, n in zip(want, found))
        if not ok:
            shown = ", ".join(f"{d}={sizes[d]}" if isinstance(d, str) and d in sizes else str(d or "any")
                              for d in expected)
            raise LosslensError(f"{path}: damaged {kind} file: dataset {name} has shape {list(found)}, "
                                f"expected [{shown}]")
        sizes.update({w: n for w, n in zip(want, found) if isinstance(w, str)})
    return sizes


# -- writing ---------------------------------------------------------------------------------------


def existing_kind(path: Path) -> str | None:
    """The kind of result an existing HDF5 file holds: its ``losslens_kind``, ``"surface"`` for a
    reference tool's surface file, ``None`` for any other HDF5 file.

    Raises:
        LosslensError: the file cannot be opened, is not HDF5, or fails ``vet``.
    """
    with open_h5(path) as f:
        kind = f.attrs.get("losslens_kind")
        if kind is not None:
            return str(kind)
        if "xcoordinates" in f and ("train_loss" in f or "test_loss" in f):
            return "surface"
        return None


def check_replaceable(path: Path, kind: str) -> str | None:
    """Refuse to replace an existing ``path`` unless it is a result of ``kind`` (or an empty file).

    A checkpoint, a text file or another kind of result named as an output is the user's: it is
    never overwritten. A file that cannot be opened because another process locks it, or for want
    of permission, is refused, never taken for a damaged one.

    Returns:
        ``None`` (no file, or an empty one), ``"same"`` (a result of ``kind``), or ``"damaged"``
        (HDF5's signature, but HDF5 cannot open it: a truncated file; see ``keep_aside``).

    Raises:
        LosslensError: naming the file, what it holds, and what to do.
    """
    path = Path(path)
    if not os.path.lexists(path):
        return None
    check_regular(path, f"losslens {kind} file")
    if path.stat().st_size == 0:
        return None
    with open(path, "rb") as fh:
        signature = fh.read(len(_HDF5_SIGNATURE))
    if signature != _HDF5_SIGNATURE:
        raise LosslensError(f"{path}: exists and is not a losslens {kind} file (not HDF5); will not overwrite it: "
                            "choose another path or remove it")
    try:
        found = existing_kind(path)
    except NotHDF5:
        return "damaged"
    if found != kind:
        what = f"a losslens {found} result" if found else "an HDF5 file that is not a losslens result"
        raise LosslensError(f"{path}: holds {what}, not a {kind}; will not overwrite it: choose another path or "
                            "remove it")
    return "same"


def keep_aside(path: Path) -> Path:
    """Rename a damaged output to ``PATH.damaged`` (``PATH.damaged-<pid>`` if that exists) and
    return the new name: a damaged file is never deleted."""
    kept = path.with_name(path.name + ".damaged")
    if os.path.lexists(kept):
        kept = path.with_name(f"{path.name}.damaged-{os.getpid()}")
    os.replace(path, kept)
    return kept


def check_space(path: Path, nbytes: int) -> None:
    """Refuse to start writing ``nbytes`` (plus 1 MiB of HDF5 overhead) where the disk has less free.

    Raises:
        LosslensError: ``no space left on device writing PATH``, with the sizes.
    """
    free = shutil.disk_usage(Path(path).parent).free
    need = int(nbytes) + (1 << 20)
    if need > free:
        raise LosslensError(f"no space left on device writing {path} (needs about {need} bytes, {free} free)")


@contextlib.contextmanager
def no_space(path: Path):
    """Turn a full disk (``ENOSPC``, also from h5py) while writing ``path`` into one ``LosslensError``."""
    try:
        yield
    except OSError as err:
        if err.errno == errno.ENOSPC or "No space left on device" in str(err):
            raise LosslensError(f"no space left on device writing {path}") from None
        raise


def json_default(value):
    """What ``json.dumps(..., default=json_default)`` writes for a value JSON has no type for: numpy scalars
    as numbers, arrays and tuples as lists, anything else (paths, dtypes, devices) as its text."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, tuple)):
        return list(np.asarray(value).tolist())
    return str(value)  # paths, dtypes, devices


# -- the one writer ----------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic(path: str | Path):
    """A temporary path beside ``path`` (``.NAME.writing-PID``, parent directories created), renamed to
    ``path`` when the block succeeds and removed otherwise. Temporaries of ``path`` left by killed
    processes are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.writing-*"):
        pid = stale.name.rpartition("-")[2]
        if pid.isdigit() and not _alive(int(pid)):
            stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.writing-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through ``atomic``; returns the path."""
    with atomic(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, obj, *, indent: int = 2) -> Path:
    """Write ``obj`` as indented JSON and a newline (a value JSON has no type for as its text) through
    ``atomic``; returns the path."""
    return write_text(path, json.dumps(obj, indent=indent, default=str) + "\n")


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
