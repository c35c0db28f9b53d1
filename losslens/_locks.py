"""Advisory locks of outputs: one process computes or writes an output at a time.

``output_lock`` holds the lock of an output for a block; ``lock_output``/``unlock_output`` take and give it
back across calls (a resumable grid file holds it from opening to closing). The lock is ``fcntl.flock`` on
``PATH.lock`` beside the output, which records its holder, and goes with the process that took it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from losslens.errors import LosslensError

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
