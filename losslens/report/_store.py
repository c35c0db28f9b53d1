"""The report's result files: each analysis's file is reused when it answers the same request.

Two kinds of files:

- **grids** (``surface.h5``, ``interpolation.h5``, ``hessian_plane.h5``, ``trajectory_surface.h5``): the
  surface functions themselves resume a file of the same grid (coordinates, origin, direction vectors,
  evaluator identity) and refuse another one, naming the argument that differs; ``grid`` replaces a
  refused file of the report's own and says why.
- **results** (every other kind): ``result`` computes a ``losslens.core.reuse.Call`` (the analysis
  function with its bound arguments) and stores its *request* (every argument, each input by its
  fingerprint) under ``meta["report"]``, with the warnings raised while computing and the library
  versions. A file is reused only when its stored request answers the current one (``core.reuse``:
  equal, but for the step's named cover rules, such as ``k >= top_k`` eigenpairs); else it is
  recomputed, and the differing arguments are printed.

**Files of other commands are never replaced.** A file under the report's name that the report did not
write (it has no ``meta["report"]``: ``losslens surface``, ``hessian``, ``train``'s ``dynamics.h5``..., or
one that cannot be read) is reused when it answers the request (a complete grid of the same grid and
evaluator; a result whose step says it does, e.g. eigenpairs with ``k >= top_k``), and otherwise kept
untouched: the report writes its own result beside it, as ``report-<name>`` (``report-surface.h5``). Names
``report-*`` belong to the report; a file there that the report did not write is an error.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import platform
import shutil
import warnings
from pathlib import Path
from typing import Callable

from losslens._version import __version__
from losslens.core import reuse
from losslens.errors import ConfigError, LosslensError
from losslens.landscape.grid_file import points_done, read_grid

BESIDE = "report-"  # the prefix of the report's own file beside another command's
_VERSIONS = ("torch", "numpy", "scipy", "h5py", "scikit-learn", "PyWavelets", "gudhi", "matplotlib", "plotly")


def versions() -> dict[str, str]:
    """Versions of Python, losslens and the libraries its results depend on (``None``: not installed)."""
    out = {"python": platform.python_version(), "losslens": __version__}
    for name in _VERSIONS:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


class Log:
    """What one step did: the files it wrote or reused (with their status) and the warnings raised."""

    def __init__(self) -> None:
        self.files: list[tuple[Path, str]] = []
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        message = " ".join(str(message).split()).removeprefix("losslens: ")
        if message not in self.warnings:
            self.warnings.append(message)


class WarningCapture:
    """Context manager recording the warnings raised inside it into ``log`` (instead of printing them)."""

    def __init__(self, log: Log):
        self.log = log
        self._catcher = warnings.catch_warnings(record=True)

    def __enter__(self):
        self._records = self._catcher.__enter__()
        warnings.simplefilter("always")
        return self.log

    def __exit__(self, *exc):
        for record in self._records:
            self.log.warn(record.message)
        return self._catcher.__exit__(*exc)


def result(path: Path, cls: type, call: reuse.Call, log: Log, say, *, covers: dict | None = None,
           narrow: Callable[[object], object] | None = None,
           answers: Callable[[object], object | None] | None = None) -> object:
    """The result in ``path`` if its request answers ``call``'s, else ``call()`` saved there (or beside a file
    that another command wrote there, see the module docstring).

    Args:
        path: the result file. cls: its class (``load``, ``save``, a frozen ``meta`` field).
        call: the analysis with its arguments; its request is stored with the result, and the warnings
            it raises too.
        log: receives the file's status (``"reused"`` or ``"computed"``) and the warnings (stored or new).
        say: prints a line (on the main process).
        covers: the cover rules of arguments (``core.reuse``): a stored result answers more than its request.
        narrow: makes a stored result that covers the request into its answer (the top ``k`` eigenpairs).
        answers: given another command's result in ``path``, the answer to the request it holds, or ``None``
            when it holds none (default: it never does).
    """
    request = call.request()
    old, reason = _read(path, cls)
    if old is not None and "report" not in old.meta:
        value = None if answers is None else answers(old)
        if value is not None:
            say(f"  reused {path} (written by another command)")
            log.files.append((path, "reused"))
            return value
    if _foreign(old, reason, path):
        path = _beside(path, reason or f"it is not the report's and does not answer "
                       f"{request['analysis'].rpartition('.')[2]}", say)
        old, reason = _read(path, cls)
        if old is not None and "report" not in old.meta:
            raise ConfigError(f"{path}: the report writes its own results under this name, but this file was not "
                              "written by a report: move it away")
    if old is not None:
        differing = reuse.differences(old.meta["report"].get("request"), request, covers)
        if not differing:
            say(f"  reused {path}")
            log.files.append((path, "reused"))
            for message in old.meta["report"].get("warnings", []):
                log.warn(message)
            return old if narrow is None else narrow(old)
        arguments = dict.fromkeys(key.partition(".")[0] for key, _, _ in differing)  # the arguments, in order
        reason = f"it answers another request (differing: {', '.join(arguments)})"
    if reason:
        say(f"  recomputing {path}: {reason}")
    return _compute(path, call, request, log, say, "recomputed" if reason else "computed")


def _compute(path: Path, call: reuse.Call, request: dict, log: Log, say, status: str) -> object:
    """``call()`` saved in ``path`` with its request, its warnings and the library versions."""
    own = Log()
    with WarningCapture(own):
        new = call()
    record = {"request": request, "warnings": own.warnings, "versions": versions()}
    new = dataclasses.replace(new, meta={**new.meta, "report": record})
    new.save(path)
    say(f"  wrote {path}")
    log.files.append((path, status))
    for message in own.warnings:
        log.warn(message)
    return new


def _read(path: Path, cls: type) -> tuple[object | None, str | None]:
    """``(result, None)`` of a readable file, ``(None, why)`` of an unreadable one, ``(None, None)`` of none."""
    if not path.exists():
        return None, None
    try:
        return cls.load(path), None
    except LosslensError as err:
        return None, f"it cannot be read ({err})"


def _foreign(old, reason: str | None, path: Path) -> bool:
    """Whether the file at ``path`` is another command's (or unreadable) under a name that is not ``report-*``."""
    if path.name.startswith(BESIDE):
        return False
    return (old is not None and "report" not in old.meta) or reason is not None


def _beside(path: Path, why: str, say) -> Path:
    """The report's own name ``report-<name>`` beside another command's file ``path``, which is kept."""
    beside = path.with_name(BESIDE + path.name)
    say(f"  keeping {path} ({why}): the report's result goes to {beside}")
    return beside


def grid(path: Path, compute: Callable[[Path], object], log: Log, say, *, main: bool) -> object:
    """A surface computed by ``compute(path)`` into the grid file ``path``: finished files are reused,
    partial ones resumed, and a file of another grid (refused by the grid machinery with an error
    naming it) is deleted and computed anew, if the report wrote it. Another command's file there is
    reused when it is complete and of the same grid, else kept: the grid goes to ``report-<name>``.

    Under torchrun every rank calls this (the grid is shared); only the main rank prints and deletes.
    """
    foreign = _foreign_grid(path)
    if foreign is not None:
        surface = _same_grid(path, compute) if foreign == "complete" else None
        if surface is not None:
            if main:
                say(f"  reused {path} (written by another command)")
                log.files.append((path, "reused"))
            return surface
        path = _beside(path, "it is not the report's and holds " + (
            "another grid" if foreign == "complete" else foreign), say if main else (lambda text: None))
        if _foreign_grid(path) is not None:
            raise ConfigError(f"{path}: the report writes its own grids under this name, but this file was not "
                              "written by a report: move it away")
    before = points_done(path) if main else None
    replaced = None
    try:
        surface = compute(path)
    except ValueError as err:
        if not path.exists() or str(path) not in str(err):
            raise
        replaced = " ".join(str(err).split())
        if main:
            say(f"  replacing {path}: {replaced}")
            path.unlink()
        before = None
        surface = compute(path)
    if not main:
        return surface
    n = surface.meta["n_points"]
    if replaced:
        status = "recomputed"
    elif before == n:
        status = "reused"
    elif before:
        status = f"resumed: {before} of {n} points were computed"
    else:
        status = "computed"
    say(f"  reused {path}" if status == "reused" else f"  wrote {path}" + (f" ({status})" if before else ""))
    log.files.append((path, status))
    return surface


def _foreign_grid(path: Path) -> str | None:
    """``None`` when there is no file at ``path`` or the report wrote it (``meta["report"]``); else
    ``"complete"`` for another command's finished grid, or what keeps it from answering."""
    if not path.exists():
        return None
    try:
        stored = read_grid(path)
    except LosslensError as err:
        return f"an unreadable file ({err})"
    if "report" in stored["meta"]:
        return None
    return "complete" if stored["done"].all() else "a partial grid"


def _same_grid(path: Path, compute: Callable[[Path], object]) -> object | None:
    """The surface of another command's complete grid file ``path`` if it is the grid ``compute`` asks for,
    else ``None``. The file is left untouched: the grid machinery (which opens a file it resumes for
    writing) checks and loads a private copy beside it, removed afterwards."""
    copy = path.with_name(f".{path.name}.report-check-{os.getpid()}")
    shutil.copyfile(path, copy)
    try:
        return compute(copy)
    except ValueError as err:
        if str(copy) not in str(err):
            raise
        return None
    finally:
        copy.unlink(missing_ok=True)
