"""The HDF5 file of a surface: the reference tool's layout, written chunk by chunk, safe to interrupt.

Layout (format 2). Arrays of a plane have shape ``(ny, nx)`` and hold ``Z[iy, ix]`` at
``(xcoordinates[ix], ycoordinates[iy])``, exactly as ``np.meshgrid(x, y)`` indexes, which is how the
reference tool (tomgoldstein/loss-landscape) fills its arrays and how its ``plot_2D.py`` reads them
(``X, Y = np.meshgrid(x, y); contour(X, Y, f['train_loss'])``); a line's arrays have shape ``(nx,)``:

- ``xcoordinates`` ``(nx,)``, ``ycoordinates`` ``(ny,)`` (planes only);
- per evaluated split ``s`` (``train``, ``test``): ``s_loss`` and ``s_<metric>`` for each metric
  (``s_accuracy`` a fraction), and ``s_acc``, the accuracy in percent as the reference tool writes it
  (for its readers; losslens reads ``s_accuracy``); data of unknown split gives unprefixed names;
- ``done``: bool, which points are computed (a point not done holds NaN; a NaN that is done is a
  diverged value); ``progress_seconds``: evaluation time over every run on this grid;
- ``w0`` ``(P,)`` and ``directions/vectors`` ``(m, P)``, the directions' ``kind`` and ``meta`` (JSON)
  as attributes of the ``directions`` group;
- the attributes of ``losslens._io.set_header``: ``losslens_kind = "surface"``, the format, and
  ``meta`` (JSON), written once when the file is made and never rewritten.

Crash safety: a new file is laid out under a temporary name in the same directory and renamed to
its path once complete, so an interrupted creation leaves no file that blocks a rerun. Afterwards
only dataset values change in place: after each chunk the rows it touched, then ``done`` and
``progress_seconds``, then a flush.

Ownership: the output is locked (``losslens._locks.lock_output``) from opening to ``close``, so a second
process on the same path is refused, naming the first. An existing path is resumed or replaced only
when it is a surface file (``losslens._io.check_replaceable``): any other file, or one that cannot be
opened because it is locked or for want of permission, is refused and left alone. A damaged
surface file (one that opens but fails validation, or has HDF5's signature but does not open) is
kept aside as ``PATH.damaged``, never deleted, and the grid is started over, with a notice; one
holding no computed point is started over; one of another grid is refused with a message naming
the argument that differs (a grid resumes only the same request: ``_differences``).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from losslens import _io, _locks
from losslens._io import FORMAT_VERSION, atomic, json_default, set_header
from losslens._vet import open_h5
from losslens.core import reuse
from losslens.errors import LosslensError
from losslens.landscape.reference_grid import coordinate_shapes, read_reference

KIND = "surface"
_FORMAT_IJ = 1  # losslens 0.1 stored (nx, ny) arrays holding loss[ix, iy]


@dataclass(frozen=True)
class GridSpec:
    """What a grid is: its coordinates, origin, directions, and what its values depend on.

    Attributes:
        x: ``(nx,)`` float64 coordinates along the first direction.
        y: ``(ny,)`` float64 coordinates along the second, ``None`` for a line.
        w0: ``(P,)`` origin. vectors: ``(m, P)`` directions, one per row.
        directions_kind, directions_meta: provenance of the directions.
        splits: the evaluated splits, the first being the surface's own (``None``: unknown).
        metric_names: metrics stored beside the loss, for every split.
        identity: per split, the evaluator's ``identity()``: a resumed file must hold the same.
    """

    x: np.ndarray
    y: np.ndarray | None
    w0: np.ndarray | None
    vectors: np.ndarray | None
    directions_kind: str | None
    directions_meta: dict
    splits: tuple[str | None, ...]
    metric_names: tuple[str, ...]
    identity: dict

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.x),) if self.y is None else (len(self.y), len(self.x))


def value_key(split: str | None, name: str) -> str:
    """Dataset name of a value: ``train_loss``, ``test_accuracy``, ``train_<metric>``; unprefixed for
    an unknown split."""
    return f"{split}_{name}" if split else name


class GridFile:
    """The values of a grid in memory, mirrored after each chunk to an HDF5 file when a path is given.

    Opening an existing file resumes it: it must describe the same grid (else ``ValueError`` naming
    what differs), and its computed points are loaded, so only the others remain. ``kind`` is the
    result kind in the file's header (a grid of another kind, e.g. ``"curvature_map"``, uses the same layout).
    The output stays locked until ``close`` (see the module's docstring).
    """

    def __init__(self, spec: GridSpec, path: str | Path | None, meta: dict, *, overwrite: bool = False,
                 kind: str = KIND):
        self.spec = spec
        self.kind = kind
        self.path = None if path is None else Path(path)
        names = ("loss",) + spec.metric_names
        self.values = {s: {n: np.full(spec.shape, np.nan) for n in names} for s in spec.splits}
        self.done = np.zeros(spec.shape, dtype=bool)
        self.seconds_before = 0.0
        self.meta = meta
        self.w0, self.vectors = spec.w0, spec.vectors  # on resume, the file's (equal to rounding): what it holds
        self._f = None
        self._lock = None
        if self.path is None:
            return
        bad = [n for n in spec.metric_names if "/" in n or n in ("loss", "acc")]
        if bad:
            raise ValueError(f"metric names {bad} cannot be stored in a surface file")
        self._lock = _locks.lock_output(self.path)
        try:
            if _io.check_replaceable(self.path, self.kind) == "damaged":
                _notice(f"{self.path} is damaged (HDF5 cannot open it); kept it as {_io.keep_aside(self.path)} "
                        "and starting over")
            if not (self.path.exists() and not overwrite and self._resume()):
                self._create()
        except BaseException:
            self.close()
            raise

    @property
    def resumed(self) -> bool:
        return self.seconds_before > 0 or bool(self.done.any())

    def write(self, flat: np.ndarray, values: dict, seconds: float) -> None:
        """Store the values (``{split: {name: (len(flat),)}}``) of the points at the flat row-major
        indices ``flat``, then flush; ``seconds`` is this run's evaluation time so far."""
        if len(flat):
            for split, named in values.items():
                for name, v in named.items():
                    self.values[split][name].reshape(-1)[flat] = v
            self.done.reshape(-1)[flat] = True
        if self._f is None:
            return
        row = 1 if self.spec.y is None else len(self.spec.x)
        rows = slice(int(flat.min()) // row, int(flat.max()) // row + 1) if len(flat) else slice(0, 0)
        for key, array in self._datasets().items():
            self._f[key][rows] = array[rows]
        self._f["done"][rows] = self.done[rows]
        self._f["progress_seconds"][()] = self.seconds_before + seconds
        self._f.flush()

    def close(self) -> None:
        """Close the file and give back the output's lock."""
        if self._f is not None:
            self._f.close()
            self._f = None
        if self._lock is not None:
            _locks.unlock_output(self._lock)
            self._lock = None

    # -- creating and resuming ---------------------------------------------------------------------

    def _datasets(self) -> dict[str, np.ndarray]:
        out = {}
        for split, named in self.values.items():
            for name, array in named.items():
                out[value_key(split, name)] = array
                if name == "accuracy":  # the reference tool's key, in percent
                    out[value_key(split, "acc")] = 100.0 * array
        return out

    def _create(self) -> None:
        """Lay the file out under a temporary name (``_io.atomic``), then rename it to its path and open it."""
        import h5py

        extra = [a for a in (self.spec.x, self.spec.y, self.spec.w0, self.spec.vectors) if a is not None]
        _io.check_space(self.path, sum(a.nbytes for a in [*self._datasets().values(), self.done, *extra]))
        with _io.no_space(self.path), atomic(self.path) as tmp, h5py.File(tmp, "w") as f:
            set_header(f, self.kind, self.meta)
            f.create_dataset("xcoordinates", data=self.spec.x)
            if self.spec.y is not None:
                f.create_dataset("ycoordinates", data=self.spec.y)
            for key, array in self._datasets().items():
                f.create_dataset(key, data=array)
            f.create_dataset("done", data=self.done)
            f.create_dataset("progress_seconds", data=0.0)
            if self.spec.w0 is not None:
                f.create_dataset("w0", data=self.spec.w0)
            if self.spec.vectors is not None:
                group = f.create_group("directions")
                group.create_dataset("vectors", data=self.spec.vectors)
                group.attrs["kind"] = self.spec.directions_kind
                group.attrs["meta"] = json.dumps(self.spec.directions_meta, default=json_default)
        self._f = h5py.File(self.path, "r+")

    def _resume(self) -> bool:
        """Load a file of this grid; ``False`` when it should be started over (empty, damaged: kept
        aside as ``PATH.damaged``). The caller has checked that it is a surface file."""
        import h5py

        if self.path.stat().st_size == 0:
            return False
        try:
            stored = read_grid(self.path, self.kind)
        except LosslensError as err:
            _notice(f"{err}; kept it as {_io.keep_aside(self.path)} and starting over")
            return False
        if stored["legacy"] is not None:
            raise ValueError(
                f"{self.path} was written by {stored['legacy']} and cannot be resumed: choose another path, or "
                "delete the file to start over"
            )
        if not stored["done"].any():
            _notice(f"{self.path} holds no computed point; starting it over")
            return False
        diffs = _differences(self.spec, stored)
        if diffs:
            raise ValueError(f"{self.path} holds a different grid ({'; '.join(diffs)}): choose another path, "
                             "or delete the file to start over")
        self.values = {s: {n: stored["values"][s][n] for n in self.values[s]} for s in self.spec.splits}
        self.done = stored["done"]
        self.seconds_before = stored["progress_seconds"]
        self.meta = stored["meta"]
        self.w0, self.vectors = stored["w0"], stored["vectors"]
        self._f = h5py.File(self.path, "r+")
        return True


def _notice(message: str) -> None:
    warnings.warn(f"losslens: {message}", stacklevel=4)


def _differences(spec: GridSpec, stored: dict) -> list[str]:
    """What differs between the grid ``spec`` asks for and the one a file holds, in words, each named by the
    argument of ``surface_1d``/``surface_2d`` it comes from: the arrays ``x``, ``y``, ``directions``, ``w0``
    compared to rounding, the ``evaluator``'s identity exactly (the reuse rule, ``core.reuse.differences``)."""
    if (spec.y is None) != (stored["y"] is None):
        return [f"a {'line' if spec.y is None else 'plane'} is asked for, the file holds a "
                f"{'line' if stored['y'] is None else 'plane'}"]
    diffs = []
    for argument, name, now, then, rtol in (
        ("x", "x coordinates", spec.x, stored["x"], 1e-9),
        ("y", "y coordinates", spec.y, stored["y"], 1e-9),
        ("directions", "direction vectors", spec.vectors, stored["vectors"], 1e-5),
        ("w0", "origin w0", spec.w0, stored["w0"], 1e-5),
    ):
        if (now is None) != (then is None) or (now is not None and not _close(now, then, rtol)):
            diffs.append(f"argument {argument}: {name} differ ({_describe(then)} in the file, {_describe(now)} now)")
    old = stored["meta"].get("identity", {})
    if list(old) != list(spec.identity):
        diffs.append(f"argument evaluator: evaluated splits differ ({', '.join(map(str, old)) or 'none'} in the "
                     f"file, {', '.join(map(str, spec.identity))} now)")
        return diffs
    for split, now in spec.identity.items():
        where = f" of the {split} evaluation" if split != "unspecified" else ""
        diffs += [f"argument evaluator: {key} differs ({a!r} in the file, {b!r} now){where}"
                  for key, a, b in reuse.differences(old[split], reuse.canonical(now))]
    return diffs


def _close(a: np.ndarray, b: np.ndarray, rtol: float) -> bool:
    if np.shape(a) != np.shape(b):
        return False
    scale = float(np.max(np.abs(a), initial=0.0))
    return bool(np.allclose(a, b, rtol=rtol, atol=rtol * scale, equal_nan=True))


def _describe(a: np.ndarray | None) -> str:
    if a is None:
        return "none"
    a = np.asarray(a)
    if a.ndim == 1 and a.size:
        return f"{a.size} values in [{a.min():.6g}, {a.max():.6g}]"
    return f"shape {list(a.shape)}"


# -- reading ---------------------------------------------------------------------------------------


def read_grid(path: str | Path, kind: str = KIND) -> dict:
    """Everything a surface file holds, from losslens or from the reference loss-landscape tool.

    Returns:
        A dict with ``x``, ``y`` (``None`` for a line), ``values`` (``{split: {name: array}}``, the
        arrays ``(ny, nx)`` or ``(nx,)``, accuracy as a fraction), ``done``, ``w0`` and ``vectors``
        (``None`` where the file lacks them), ``directions_kind``, ``directions_meta``, ``meta``,
        ``progress_seconds`` and ``legacy`` (``None``, or who wrote an older layout).

    ``kind``: the kind the file must hold (a reference tool's file, which has no header, is a surface).

    Raises:
        LosslensError: the file is missing, not HDF5, of another losslens kind, or damaged; the
            message names the file.
    """
    path = Path(path)
    with open_h5(path) as f:
        try:
            found = f.attrs.get("losslens_kind")
            if found is None and kind == KIND:
                return read_reference(f, path)
            if found != kind:
                raise LosslensError(f"{path}: expected a losslens {kind} file, found "
                                    f"{f'a {found} file' if found else 'no losslens header'}")
            return _read_losslens(f, path, kind)
        except LosslensError:
            raise
        except Exception as err:  # noqa: BLE001 - h5py, JSON and key errors of a damaged or foreign file
            what = "damaged or not a surface" if kind == KIND else f"damaged {kind}"
            raise LosslensError(f"{path}: {what} file ({type(err).__name__}: {err})") from None


def points_done(path: str | Path, kind: str = KIND) -> int:
    """How many points the grid file ``path`` holds computed, which a run on it resumes from (0 without a
    readable file)."""
    if not Path(path).exists():
        return 0
    try:
        return int(read_grid(path, kind)["done"].sum())
    except LosslensError:
        return 0


def _read_losslens(f, path: Path, kind: str) -> dict:
    meta = _io.read_meta(f, path)
    fmt = int(f.attrs.get("losslens_format", _FORMAT_IJ))
    if fmt > FORMAT_VERSION:
        raise LosslensError(f"{path}: written in format {fmt} by a newer losslens; this one reads up to "
                            f"{FORMAT_VERSION}")
    plane = "ycoordinates" in f
    transpose = fmt == _FORMAT_IJ and plane  # losslens 0.1 stored loss[ix, iy]
    grid = ("nx", "ny") if transpose else ("ny", "nx") if plane else ("nx",)
    shape = meta.get("shape") if fmt == FORMAT_VERSION else None  # the grid's shape, as the header records it
    recorded = dict(zip(("ny", "nx") if plane else ("nx",), shape)) if isinstance(shape, list) else {}
    sizes = _io.check_shapes(f, path, kind, coordinate_shapes(plane), recorded)
    x = f["xcoordinates"][()]
    y = f["ycoordinates"][()] if plane else None
    if fmt == _FORMAT_IJ:
        data = meta.get("data")
        splits = [data.get("split", "train") if isinstance(data, dict) else "train"]
        names = ["loss", *meta.get("metrics", [])]
        keys = {("loss", splits[0]): f"{splits[0]}_loss"} | {(n, splits[0]): f"metrics/{n}" for n in names[1:]}
    else:
        splits = meta["splits"]
        names = ["loss", *meta["metrics"]]
        keys = {(n, s): value_key(s, n) for s in splits for n in names}
    _io.check_shapes(f, path, kind, {key: grid for key in keys.values()} | {"done": grid}, sizes)
    _io.check_shapes(f, path, kind, ({"w0": ("P",)} if "w0" in f else {})
                     | ({"directions/vectors": ("m", "P")} if "directions" in f else {}))
    done = f["done"][()].astype(bool)
    done = done.T if transpose else done
    values = {}
    for s in splits:
        values[s] = {}
        for n in names:
            array = np.asarray(f[keys[(n, s)]][()], dtype=np.float64)
            values[s][n] = np.where(done, array.T if transpose else array, np.nan)  # nothing where not done
    group = f.get("directions")
    return {
        "x": x, "y": y, "values": values, "done": done,
        "w0": f["w0"][()] if "w0" in f else None,
        "vectors": None if group is None else group["vectors"][()],
        "directions_kind": None if group is None else str(group.attrs["kind"]),
        "directions_meta": {} if group is None else _io.read_meta(group, path, "directions/"),
        "meta": meta,
        "progress_seconds": float(f["progress_seconds"][()]) if "progress_seconds" in f else float(meta.get("seconds") or 0),
        "legacy": "losslens 0.1 (the [ix, iy] layout)" if fmt == _FORMAT_IJ else None,
    }


