"""The report's result files: each analysis's file is reused when it answers the same request.

Two kinds of files:

- **grids** (``surface.h5``, ``interpolation.h5``, ``hessian_plane.h5``, ``trajectory_surface.h5``): the
  surface functions themselves resume a file of the same grid (coordinates, origin, direction vectors,
  evaluator identity) and refuse another one, naming what differs; ``grid`` replaces a refused file
  and says why.
- **results** (every other kind): ``result`` stores the *request* (the analysis, its options and
  fingerprints of its inputs: the evaluator's identity and checkpoint hash, or the content hash of the
  surface or fit it analyses) under ``meta["report"]``, with the warnings raised while computing and
  the library versions. A file is reused only when its stored request equals the current one; else it
  is recomputed, and the differing keys are printed.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import platform
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from losslens._io import _jsonable
from losslens.errors import LosslensError

_VERSIONS = ("torch", "numpy", "scipy", "h5py", "scikit-learn", "PyWavelets", "gudhi", "matplotlib", "plotly")


def versions() -> dict[str, str]:
    """Versions of Python, losslens and the libraries its results depend on (``None``: not installed)."""
    from losslens import __version__

    out = {"python": platform.python_version(), "losslens": __version__}
    for name in _VERSIONS:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def jsonable(obj):
    """``obj`` as it reads back from a result file's JSON metadata (tuples as lists, numpy scalars as numbers)."""
    return json.loads(json.dumps(obj, default=_jsonable, sort_keys=True))


def content_hash(*arrays) -> str:
    """A hash of arrays' dtypes, shapes and bytes (``None`` entries skipped)."""
    from losslens.core.provenance import fingerprint

    return fingerprint([np.asarray(a) for a in arrays if a is not None])


def surface_hash(surface) -> str:
    """What an analysis of a surface depends on: its coordinates and its loss."""
    return content_hash(surface.x, surface.y, surface.loss)


class Log:
    """What one step did: the files it wrote or reused (with their status) and the warnings raised."""

    def __init__(self) -> None:
        self.files: list[tuple[Path, str]] = []
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        message = " ".join(str(message).split()).removeprefix("losslens: ")
        if message not in self.warnings:
            self.warnings.append(message)


class capture:
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


def result(path: Path, cls: type, request: dict, compute: Callable[[], object], log: Log, say) -> object:
    """The result in ``path`` if it holds ``request``, else ``compute()`` saved there.

    Args:
        path: the result file. cls: its class (``load``, ``save``, a frozen ``meta`` field).
        request: what the result depends on (JSON-able).
        compute: makes the result; the warnings it raises are stored with it.
        log: receives the file's status (``"reused"`` or ``"computed"``) and the warnings (stored or new).
        say: prints a line (on the main process).
    """
    request = jsonable(request)
    reason = None
    if path.exists():
        try:
            old = cls.load(path)
        except LosslensError as err:
            reason = f"it cannot be read ({err})"
        else:
            stored = (old.meta.get("report") or {}).get("request")
            if stored == request:
                say(f"  reused {path}")
                log.files.append((path, "reused"))
                for message in old.meta["report"].get("warnings", []):
                    log.warn(message)
                return old
            reason = ("it records no report request" if stored is None
                      else f"it answers another request (differing: {', '.join(differences(stored, request))})")
        say(f"  recomputing {path}: {reason}")
    own = Log()
    with capture(own):
        new = compute()
    record = {"request": request, "warnings": own.warnings, "versions": versions()}
    new = dataclasses.replace(new, meta={**new.meta, "report": record})
    new.save(path)
    say(f"  wrote {path}")
    log.files.append((path, "recomputed" if reason else "computed"))
    for message in own.warnings:
        log.warn(message)
    return new


def grid(path: Path, compute: Callable[[], object], log: Log, say, *, main: bool) -> object:
    """A surface computed by ``compute()`` into the grid file ``path``: finished files are reused,
    partial ones resumed, and a file of another grid (refused by the grid machinery with an error
    naming it) is deleted and computed anew.

    Under torchrun every rank calls this (the grid is shared); only the main rank prints and deletes.
    """
    before = _points_done(path) if main else None
    replaced = None
    try:
        surface = compute()
    except ValueError as err:
        if not path.exists() or str(path) not in str(err):
            raise
        replaced = " ".join(str(err).split())
        if main:
            say(f"  replacing {path}: {replaced}")
            path.unlink()
        before = None
        surface = compute()
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


def differences(old, new, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two JSON-like dicts."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [prefix.rstrip(".") or "the whole request"] if old != new else []
    out = []
    for key in sorted(set(old) | set(new)):
        out += differences(old.get(key), new.get(key), f"{prefix}{key}.")
    return out


def _points_done(path: Path) -> int | None:
    """Points already computed in a grid file; ``None`` when there is no readable file."""
    from losslens.landscape._grid_file import read_grid

    if not path.exists():
        return None
    try:
        return int(read_grid(path)["done"].sum())
    except LosslensError:
        return None
