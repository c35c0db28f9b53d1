"""The HDF5 file of a surface, written chunk by chunk so that an interrupted grid resumes.

Layout (``nx = len(x)``; arrays are ``(nx, ny)`` for a plane, ``(nx,)`` for a line; the first four
names are those of the older ``loss-landscape`` tool (Li et al. 2018), so its users' scripts read
these files unchanged):

- ``xcoordinates`` ``(nx,)``, ``ycoordinates`` ``(ny,)`` (planes only);
- ``{split}_loss``: loss, ``split`` being ``"train"`` or ``"test"`` (the evaluation data's split);
- ``{split}_acc``: accuracy in percent, as the older tool writes it (only with the ``accuracy`` metric);
- ``metrics/<name>``: every metric as a fraction;
- ``done``: bool, which points are computed. A point not done holds NaN; a NaN that is done is a
  computed value (a diverged loss);
- ``w0`` ``(P,)`` and ``directions/vectors`` ``(m, P)``, with the directions' ``kind`` and ``meta``
  (JSON) as attributes of the ``directions`` group;
- the attributes of ``losslens._io.set_header``: ``losslens_kind = "surface"`` and ``meta`` (JSON).

After each chunk the rows it touched and then ``done`` are written and the file is flushed, so a
crash or Ctrl-C loses at most the chunk in flight.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from losslens._io import _jsonable, open_h5, set_header
from losslens.core.data import SPLITS  # the data split names the loss keys (train_loss, test_loss)
from losslens.errors import LosslensError

KIND = "surface"
_LEGACY_UNDONE = -1.0  # the older tool fills its arrays with -1 before computing them


@dataclass(frozen=True)
class GridSpec:
    """What a grid is: its coordinates, origin and directions, and the settings its values depend on.

    Attributes:
        x: ``(nx,)`` float64 coordinates along the first direction.
        y: ``(ny,)`` float64 coordinates along the second, ``None`` for a line.
        w0: ``(P,)`` origin. vectors: ``(m, P)`` directions, one per row (both ``None`` for a
            surface read from an older tool's file, which does not hold them).
        directions_kind, directions_meta: provenance of the directions.
        metric_names: metrics stored beside the loss.
        split: ``"train"`` or ``"test"``, the evaluation data's split (names the loss dataset).
        identity: settings a resumed file must share (evaluator settings that change the values).
    """

    x: np.ndarray
    y: np.ndarray | None
    w0: np.ndarray | None
    vectors: np.ndarray | None
    directions_kind: str | None
    directions_meta: dict
    metric_names: tuple[str, ...]
    split: str
    identity: dict

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.x),) if self.y is None else (len(self.x), len(self.y))


class GridFile:
    """The values of a grid in memory, mirrored after each chunk to an HDF5 file when a path is given.

    Opening an existing file resumes it: the file must describe the same grid (else ``ValueError``),
    and its computed points are loaded, so only the others remain.
    """

    def __init__(self, spec: GridSpec, path: str | Path | None, meta: dict, *, overwrite: bool = False):
        self.spec = spec
        self.path = None if path is None else Path(path)
        self.loss = np.full(spec.shape, np.nan)
        self.metrics = {n: np.full(spec.shape, np.nan) for n in spec.metric_names}
        self.done = np.zeros(spec.shape, dtype=bool)
        self.previous_meta: dict = {}
        self._f = None
        if self.path is not None and self.path.exists() and not overwrite:
            self._resume(meta)
        elif self.path is not None:
            self._create(meta)

    @property
    def loss_key(self) -> str:
        return f"{self.spec.split}_loss"

    def write(self, flat: np.ndarray, loss: np.ndarray, metrics: dict[str, np.ndarray]) -> None:
        """Store the values of the points at the flat (row-major) indices ``flat``, then flush."""
        if len(flat) == 0:
            return
        self.loss.reshape(-1)[flat] = loss
        for name in self.spec.metric_names:
            self.metrics[name].reshape(-1)[flat] = metrics[name]
        self.done.reshape(-1)[flat] = True
        if self._f is None:
            return
        row = 1 if self.spec.y is None else len(self.spec.y)
        rows = slice(int(flat.min()) // row, int(flat.max()) // row + 1)
        for key, values in self._datasets().items():
            self._f[key][rows] = values[rows]
        self._f["done"][rows] = self.done[rows]
        self._f.flush()

    def close(self, meta: dict) -> None:
        """Write the final metadata into the header and close the file."""
        if self._f is not None:
            set_header(self._f, KIND, meta)
            self._f.close()
            self._f = None

    # -- creating and resuming ---------------------------------------------------------------------

    def _datasets(self) -> dict[str, np.ndarray]:
        out = {self.loss_key: self.loss} | {f"metrics/{n}": v for n, v in self.metrics.items()}
        if "accuracy" in self.metrics:
            out[f"{self.spec.split}_acc"] = 100.0 * self.metrics["accuracy"]
        return out

    def _create(self, meta: dict) -> None:
        import h5py

        bad = [n for n in self.spec.metric_names if "/" in n]
        if bad:
            raise ValueError(f"metric names cannot contain '/' in a surface file: {bad}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = f = h5py.File(self.path, "w")
        try:
            self._write_layout(f, meta)
        except BaseException:
            f.close()
            raise

    def _write_layout(self, f, meta: dict) -> None:
        """Header, coordinates, not-yet-computed values, the done mask, w0 and the directions."""
        set_header(f, KIND, meta)
        f.create_dataset("xcoordinates", data=self.spec.x)
        if self.spec.y is not None:
            f.create_dataset("ycoordinates", data=self.spec.y)
        for key, values in self._datasets().items():
            f.create_dataset(key, data=values)
        f.create_dataset("done", data=self.done)
        if self.spec.w0 is not None:
            f.create_dataset("w0", data=self.spec.w0)
        if self.spec.vectors is not None:
            group = f.create_group("directions")
            group.create_dataset("vectors", data=self.spec.vectors)
            group.attrs["kind"] = self.spec.directions_kind
            group.attrs["meta"] = json.dumps(self.spec.directions_meta, default=_jsonable)
        f.flush()

    def _resume(self, meta: dict) -> None:
        import h5py

        try:
            stored = read_grid(self.path)
        except LosslensError as err:
            raise ValueError(f"{err}; cannot resume it: choose another path, or delete the file") from None
        if stored["legacy"]:
            raise ValueError(
                f"{self.path} was written by the older loss-landscape tool and cannot be resumed: "
                "choose another path, or delete the file to start over"
            )
        diffs = _differences(self.spec, stored)
        if diffs:
            raise ValueError(
                f"{self.path} holds a different grid ({'; '.join(diffs)}): choose another path, "
                "or delete the file to start over"
            )
        self.loss, self.done = stored["loss"], stored["done"]
        self.metrics = {n: stored["metrics"][n] for n in self.spec.metric_names}
        self.previous_meta = stored["meta"]
        self._f = h5py.File(self.path, "r+")
        set_header(self._f, KIND, meta)
        self._f.flush()


def _differences(spec: GridSpec, stored: dict) -> list[str]:
    """What differs between the grid ``spec`` asks for and the one a file holds, in words."""
    diffs = []
    if (spec.y is None) != (stored["y"] is None):
        return [f"a {'line' if spec.y is None else 'plane'} is asked for, the file holds a "
                f"{'line' if stored['y'] is None else 'plane'}"]
    for name, now, then, rtol in (
        ("x coordinates", spec.x, stored["x"], 1e-9),
        ("y coordinates", spec.y, stored["y"], 1e-9),
        ("direction vectors", spec.vectors, stored["vectors"], 1e-5),
        ("origin w0", spec.w0, stored["w0"], 1e-5),
    ):
        if (now is None) != (then is None) or (now is not None and not _close(now, then, rtol)):
            diffs.append(f"{name} differ ({_describe(then)} in the file, {_describe(now)} now)")
    file_meta = stored["meta"]
    for key, value in spec.identity.items():
        if file_meta.get(key) != value:
            diffs.append(f"evaluator setting {key!r} differs ({file_meta.get(key)!r} in the file, {value!r} now)")
    split = file_meta.get("data", {}).get("split", "train") if isinstance(file_meta.get("data"), dict) else "train"
    if split != spec.split:
        diffs.append(f"data split differs ({split!r} in the file, {spec.split!r} now)")
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


def read_grid(path: str | Path) -> dict:
    """Everything a surface file holds, from losslens or from the older loss-landscape tool.

    Returns:
        A dict with ``x``, ``y`` (``None`` for a line), ``loss``, ``metrics`` (fractions), ``done``,
        ``w0`` and ``vectors`` (``None`` for an older tool's file, which keeps its directions in a
        separate file), ``directions_kind``, ``directions_meta``, ``meta`` and ``legacy``.

    Raises:
        LosslensError: the file is missing, not HDF5, of another losslens kind, or lacks the datasets
            of a surface.
    """
    path = Path(path)
    with open_h5(path) as f:
        kind = f.attrs.get("losslens_kind")
        if kind is None:
            return _read_legacy(f, path)
        if kind != KIND:
            raise LosslensError(f"{path}: expected a losslens {KIND} file, found a {kind} file")
        meta = json.loads(f.attrs["meta"])
        split = meta.get("data", {}).get("split", "train") if isinstance(meta.get("data"), dict) else "train"
        metrics = {n: f["metrics"][n][()] for n in f["metrics"]} if "metrics" in f else {}
        group = f.get("directions")
        return {
            "x": f["xcoordinates"][()],
            "y": f["ycoordinates"][()] if "ycoordinates" in f else None,
            "loss": f[f"{split}_loss"][()],
            "metrics": metrics,
            "done": f["done"][()].astype(bool),
            "w0": f["w0"][()] if "w0" in f else None,
            "vectors": None if group is None else group["vectors"][()],
            "directions_kind": None if group is None else str(group.attrs["kind"]),
            "directions_meta": {} if group is None else json.loads(group.attrs["meta"]),
            "meta": meta,
            "legacy": False,
        }


def _read_legacy(f, path: Path) -> dict:
    """A file of the older tool: ``xcoordinates`` [``ycoordinates``] ``train_loss`` [``train_acc``]."""
    split = next((s for s in SPLITS if f"{s}_loss" in f), None)
    if "xcoordinates" not in f or split is None:
        raise LosslensError(
            f"{path}: not a surface file (neither a losslens header nor the older tool's "
            "xcoordinates and train_loss/test_loss datasets)"
        )
    x = f["xcoordinates"][()]
    y = f["ycoordinates"][()] if "ycoordinates" in f else None
    shape = (len(x),) if y is None else (len(x), len(y))
    loss = np.asarray(f[f"{split}_loss"][()], dtype=np.float64)
    if loss.shape != shape:
        raise LosslensError(f"{path}: {split}_loss has shape {list(loss.shape)}, expected {list(shape)} from the coordinates")
    done = loss != _LEGACY_UNDONE
    loss[~done] = np.nan
    metrics = {}
    if f"{split}_acc" in f:
        acc = np.asarray(f[f"{split}_acc"][()], dtype=np.float64) / 100.0
        metrics["accuracy"] = np.where(done, acc, np.nan)
    meta = {"legacy": "loss-landscape", "data": {"split": split}}
    if "dir_file" in f:  # the older tool names its directions file in a string dataset
        value = f["dir_file"][()]
        meta["dir_file"] = value.decode() if isinstance(value, bytes) else str(value)
    return {
        "x": x, "y": y, "loss": loss, "metrics": metrics, "done": done, "w0": None, "vectors": None,
        "directions_kind": None, "directions_meta": {}, "meta": meta, "legacy": True,
    }
