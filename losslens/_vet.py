"""Opening an HDF5 file safely, before any of its data is read.

``open_h5`` (which ``_io.load``, ``results.load_result`` and the surface reader use) refuses what is
not a regular file without opening it (a FIFO would never answer), and ``vet`` refuses a file whose data
lives elsewhere (external storage, external or soft links, virtual datasets) or that declares more data
than it can hold (a decompression bomb).
"""

from __future__ import annotations

import errno
import stat
from pathlib import Path

import numpy as np

from losslens.errors import LosslensError

# A decompression bomb is a small file declaring huge datasets (compressed zeros, or chunks never
# written, which read as the fill value). losslens writes its datasets uncompressed, so a dataset
# read back holds about the bytes it stores; the rule leaves room for files recompressed by hand:
# each dataset may declare at most max(64 MiB, 1000 x the bytes it stores), and all of them together
# at most max(64 MiB, 1000 x the file's size). Shapes each kind needs are checked on top (``load``).
DECLARED_FLOOR = 64 << 20
COMPRESSION_ALLOWANCE = 1000


class NotHDF5(LosslensError):
    """A regular file that HDF5 cannot open, for another reason than a lock or a permission."""


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
