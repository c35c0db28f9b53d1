"""Self-describing result files: arrays in HDF5 datasets, metadata as JSON in the file's attributes.

Every result object's ``save``/``load`` goes through ``write_h5``/``load``, so a file always says
what it holds (``kind``), which losslens wrote it, and how it was made (``meta``).

The checks every file goes through live here, once:

- reading: ``open_h5`` (which ``load``, ``results.load_result`` and the surface reader use) refuses
  what is not a regular file without opening it, and ``vet`` refuses, before any data is read, a
  file whose data lives elsewhere (external storage, external or soft links, virtual datasets) or
  that declares more data than it can hold (a decompression bomb);
- writing: ``output_lock`` (an advisory lock per output, held while it is computed or written),
  ``check_replaceable`` (an existing file is replaced only by a result of its own kind) and
  ``check_space``/``no_space`` (a full disk is one line, and no partial file is left).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
import stat
import sys
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np

from losslens._version import __version__
from losslens.errors import LosslensError

T = TypeVar("T")
FORMAT_VERSION = 2  # 2: surfaces stored (ny, nx) as the reference tool reads them

# A decompression bomb is a small file declaring huge datasets (compressed zeros, or chunks never
# written, which read as the fill value). losslens writes its datasets uncompressed, so a dataset
# read back holds about the bytes it stores; the rule leaves room for files recompressed by hand:
# each dataset may declare at most max(64 MiB, 1000 x the bytes it stores), and all of them together
# at most max(64 MiB, 1000 x the file's size). Shapes each kind needs are checked on top (``load``).
DECLARED_FLOOR = 64 << 20
COMPRESSION_ALLOWANCE = 1000
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class NotHDF5(LosslensError):
    """A regular file that HDF5 cannot open, for another reason than a lock or a permission."""


def write_h5(path: str | Path, kind: str, arrays: dict[str, Any], meta: dict) -> Path:
    """Write ``arrays`` (name -> array, ``None`` skipped; ``a/b`` names make groups) and ``meta``.

    The file is written under a temporary name and renamed: a crash leaves the old file or the new
    one, never half of one. The output is locked while it is written (``output_lock``), and an
    existing file is replaced only when it is a result of the same ``kind`` (``check_replaceable``).

    Raises:
        LosslensError: another process writes ``path``, ``path`` holds something else, or the disk is full.
    """
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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
    the names at the file's top level giving them (``grid_shapes``).
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


def grid_shapes(*grids: str) -> Callable[[set[str]], dict[str, tuple]]:
    """The ``shapes`` of a result on a grid: ``x`` ``(nx,)``, ``y`` ``(ny,)`` when the file holds
    one, and each of ``grids`` ``(ny, nx)``, or ``(nx,)`` for a line."""
    def shapes(names: set[str]) -> dict[str, tuple]:
        plane = "y" in names
        grid = ("ny", "nx") if plane else ("nx",)
        return {"x": ("nx",)} | ({"y": ("ny",)} if plane else {}) | {g: grid for g in grids}
    return shapes


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


# -- reading ----------------------------------------------------------------------------------------


def check_regular(path: Path, what: str = "result file") -> None:
    """Refuse, without opening it, a path that is missing or not a regular file (a FIFO, a device).

    Raises:
        LosslensError: naming the path and what it is.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise LosslensError(f"{path}: no such file") from None
    except OSError as err:
        raise LosslensError(f"{path}: cannot be read ({err.strerror or err})") from None
    if stat.S_ISDIR(mode):
        raise LosslensError(f"{path}: is a directory, not a {what}")
    if not stat.S_ISREG(mode):
        raise LosslensError(f"{path}: is a {_file_type(mode)}, not a regular file")


def _file_type(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def open_h5(path: Path):
    """An HDF5 file opened for reading after ``check_regular`` and vetted by ``vet``.

    Raises:
        LosslensError: the file is missing, not a regular file, cannot be opened (locked by another
            process, no permission), is not HDF5, or fails ``vet``.
    """
    import h5py

    path = Path(path)
    check_regular(path)
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        text = str(err)
        if err.errno in (errno.EAGAIN, errno.EWOULDBLOCK) or "unable to lock file" in text:
            raise LosslensError(f"{path}: is open for writing in another process (HDF5 file lock)") from None
        if err.errno == errno.EACCES or "Permission denied" in text:
            raise LosslensError(f"{path}: cannot be opened (permission denied)") from None
        raise NotHDF5(f"{path}: not an HDF5 file ({err})") from None
    try:
        vet(f, path)
    except LosslensError:
        f.close()
        raise
    except Exception as err:  # noqa: BLE001 - h5py's errors of a damaged file's structure
        f.close()
        raise LosslensError(f"{path}: damaged HDF5 file ({type(err).__name__}: {err})") from None
    return f


def vet(f, path: Path) -> None:
    """Refuse, before any data is read, an HDF5 file that reads outside itself or declares too much.

    Every link is walked (not followed): external links, soft links and user-defined links are
    refused, and so are datasets with external raw storage or virtual (mapped from other files),
    since reading them would read another file, perhaps a FIFO that never answers. Declared sizes
    follow the rule stated at ``DECLARED_FLOOR``.

    Raises:
        LosslensError: naming the file and the dataset or link at fault.
    """
    import h5py

    seen: set[int] = set()
    total = 0

    def walk(group, prefix: str) -> None:
        nonlocal total
        for name in group:
            where = f"{prefix}{name}"
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise LosslensError(f"{path}: {where} is an external link to {link.filename}:{link.path}; "
                                    "losslens reads nothing outside the file")
            if isinstance(link, h5py.SoftLink):
                raise LosslensError(f"{path}: {where} is a soft link to {link.path}; losslens files hold no links")
            if not isinstance(link, h5py.HardLink):
                raise LosslensError(f"{path}: {where} is a user-defined link; losslens files hold no links")
            obj = group[name]
            address = h5py.h5o.get_info(obj.id).addr
            if address in seen:
                continue
            seen.add(address)
            if isinstance(obj, h5py.Group):
                walk(obj, where + "/")
            elif isinstance(obj, h5py.Dataset):
                total += _vet_dataset(obj, where, path)

    walk(f, "")
    allowed = max(DECLARED_FLOOR, COMPRESSION_ALLOWANCE * path.stat().st_size)
    if total > allowed:
        raise LosslensError(f"{path}: its datasets declare {total} bytes in a file of {path.stat().st_size}; "
                            f"refused (at most {allowed}: a decompression bomb?)")


def _vet_dataset(ds, where: str, path: Path) -> int:
    """The bytes ``ds`` declares, after refusing it if its data lives elsewhere or is a bomb."""
    if ds.is_virtual:
        raise LosslensError(f"{path}: dataset {where} is a virtual dataset (its data lives in other files); "
                            "losslens reads nothing outside the file")
    plist = ds.id.get_create_plist()
    if plist.get_external_count():
        target = plist.get_external(0)[0].decode(errors="replace")
        raise LosslensError(f"{path}: dataset {where} keeps its data in an external file ({target}); "
                            "losslens reads nothing outside the file")
    declared = int(np.prod(ds.shape or (), dtype=np.float64) * ds.dtype.itemsize) if ds.shape is not None else 0
    stored = ds.id.get_storage_size()
    if declared > max(DECLARED_FLOOR, COMPRESSION_ALLOWANCE * stored):
        raise LosslensError(f"{path}: dataset {where} declares {declared} bytes ({list(ds.shape)} {ds.dtype}) but "
                            f"stores {stored}; refused (a decompression bomb?)")
    return declared


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


_HELD: dict[Path, list] = {}  # lock path -> [file descriptor, depth]: this process's locks


@contextlib.contextmanager
def output_lock(path: str | Path):
    """Hold the advisory lock of the output ``path`` for the block (see ``lock_output``)."""
    lock = lock_output(path)
    try:
        yield
    finally:
        unlock_output(lock)


def lock_output(path: str | Path) -> Path:
    """Take the advisory lock of the output ``path``: ``fcntl.flock`` on ``PATH.lock`` beside it,
    which records the holder (pid, host, command, start). A process may take its own lock again;
    the lock goes with the process, so one left by a killed process is taken over.

    Returns:
        The lock file, to give to ``unlock_output``.

    Raises:
        LosslensError: another process holds it, named with its pid, command and start.
    """
    path = Path(path)
    lock = path.with_name(path.name + ".lock")
    key = lock.resolve()
    if key in _HELD:
        _HELD[key][1] += 1
        return key
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise LosslensError(f"{path} is being written by {holder}; wait for it to finish or choose another "
                                "output") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed this lock file as we opened it: take the new one
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:200] if sys.argv and sys.argv[0] else "python"
    record = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
              "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(record).encode())
    _HELD[key] = [fd, 1]
    return key


def unlock_output(lock: Path) -> None:
    """Give back a lock ``lock_output`` took (the lock file is removed with the last hold)."""
    held = _HELD.get(lock)
    if held is None:
        return
    held[1] -= 1
    if held[1] == 0:
        del _HELD[lock]
        lock.unlink(missing_ok=True)  # removed while still locked: a waiting process sees a new inode
        os.close(held[0])


def _holder(fd: int) -> str:
    """``process 1234 (losslens surface ...) on host, started at ...`` from a lock file's record."""
    try:
        record = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return (f"process {record['pid']} ({record['command']}) on {record['host']}, started at "
                f"{record['started']}")
    except (ValueError, KeyError, OSError):
        return "another process"


def json_default(value):
    """What ``json.dumps(..., default=json_default)`` writes for a value JSON has no type for: numpy scalars
    as numbers, arrays and tuples as lists, anything else (paths, dtypes, devices) as its text."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, tuple)):
        return list(np.asarray(value).tolist())
    return str(value)  # paths, dtypes, devices
