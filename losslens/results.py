"""Every result file says its kind; ``load_result`` reads any of them into its result object.

A result is a frozen dataclass deriving from ``Result``: it names its ``KIND`` and declares once, on
each field, how the field is stored (``array(...)``, ``grid()``, ``attr(...)``, or ``stored(how)`` with a
``Group``, ``Items``, ``Nested`` or a ``Stored`` of its own; a field declared with plain ``field()`` is a
JSON value of the header, as ``meta`` is). ``save``,
``load``, the shape checks and the file's provenance header (``losslens_kind``, version, ``meta``)
come from the base, through ``_io.write_h5``/``_io.load``: arrays are HDF5 datasets named as their
field (``name/key`` for groups), every other field a key of the JSON ``meta`` attribute.

``RESULT_CLASSES``, the one list of kinds, maps each kind to the class that reads it, as a
``"module:Class"`` string imported only when a file of that kind is read (so reading a kind imports only
its module, and this base imports no layer above it). Files of the reference loss-landscape tool carry no
header and are read as surfaces.
"""

from __future__ import annotations

import dataclasses
import html
import importlib
import os
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from losslens._io import load, write_h5
from losslens._vet import open_h5
from losslens.errors import LosslensError

RESULT_CLASSES: dict[str, str] = {
    "surface": "losslens.landscape.surface:Surface",
    "curvature_map": "losslens.landscape.curvature:CurvatureMap",
    "directions": "losslens.landscape.directions:Directions",
    "eigenpairs": "losslens.curvature.hessian:Eigenpairs",
    "trace": "losslens.curvature.trace_estimation:TraceEstimate",
    "spectrum": "losslens.curvature.spectrum:Spectrum",
    "multiscale": "losslens.landscape.wavelets:Multiscale",
    "topology": "losslens.landscape.topology:Topology",
    "topology_stability": "losslens.landscape.topology_stability:TopologyStability",
    "surface_comparison": "losslens.landscape.surface_comparison:SurfaceComparison",
    "trajectory_pca": "losslens.trajectories.pca:TrajectoryPCA",
    "trajectory": "losslens.trajectories.paths:TrajectoryPaths",
    "embedding": "losslens.trajectories.embeddings:Embedding",
    "optimizer_comparison": "losslens.trajectories.optimizer_comparison:OptimizerComparison",
    "dynamics": "losslens.trajectories.dynamics:Dynamics",
    "fit": "losslens.landscape.fit:SurfaceFit",
    "replay": "losslens.trajectories.replay_result:Replay",
    "connection": "losslens.connectivity.connection:Connection",
    "alignment": "losslens.connectivity.alignment:Alignment",
    "barrier_matrix": "losslens.connectivity.barrier_matrix:BarrierMatrix",
}


def result_class(kind: str) -> type:
    """The class that reads results of ``kind``.

    Raises:
        LosslensError: an unknown kind (the known ones are listed).
    """
    if kind not in RESULT_CLASSES:
        raise LosslensError(f"unknown kind of result {kind!r}; known: {', '.join(RESULT_CLASSES)}")
    module, _, name = RESULT_CLASSES[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def result_kind(path: str | os.PathLike) -> str:
    """The kind a result file holds (``"surface"`` for a reference tool's file, which has no header)."""
    with open_h5(Path(path)) as f:
        return str(f.attrs.get("losslens_kind", "surface"))


def load_result(path: str | os.PathLike):
    """The result object a losslens HDF5 file (or a reference tool's surface file) holds.

    Args:
        path: a losslens HDF5 result file (any kind: surface, Hessian, fit, ...) or a reference tool's surface file.

    Raises:
        LosslensError: the file is missing, not a regular file (a FIFO is never opened), not HDF5,
            damaged, of an unknown kind, holds data outside itself (external storage or links,
            virtual datasets) or declares more than it can hold, or a dataset has another shape
            than its kind needs (``losslens._vet.open_h5`` and ``load``); the message names the
            file and the dataset.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"load_result needs the path of a result file, got {type(path).__name__}")
    path = Path(path)
    kind = result_kind(path)
    try:
        cls = result_class(kind)
    except LosslensError as err:
        raise LosslensError(f"{path}: {err}") from None
    return cls.load(path)


# -- how a result shows itself: a one-line repr, an HTML table in Jupyter, a pandas table ----------

_REPR_ITEMS = 6  # key figures in a repr (the HTML table shows them all)
_PROVENANCE = ("model", "checkpoint", "data", "split", "samples", "directions", "seed")


class ResultDisplay:
    """A result's short displays: ``repr`` is one line of its key figures, and Jupyter shows a small
    table of them with the provenance (``_repr_html_``). A class names its key figures in
    ``key_figures``; by default each field, an array by its shape (or its values when at most 6)."""

    def key_figures(self) -> dict:
        """``{name: value}``: what identifies the result at a glance."""
        return {f.name: _brief(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name not in ("meta", "w0")}

    def __repr__(self) -> str:
        figures = list(self.key_figures().items())
        items = [f"{name}={_text(value)}" for name, value in figures[:_REPR_ITEMS]]
        return f"{type(self).__name__}({', '.join(items + ['…'] * (len(figures) > _REPR_ITEMS))})"

    def _repr_html_(self) -> str:
        rows = [(name, value) for name, value in self.key_figures().items()]
        rows += [(f"{name} (provenance)", value) for name, value in provenance(getattr(self, "meta", None)).items()]
        cells = "".join(f"<tr><th style='text-align:left'>{html.escape(n)}</th><td style='text-align:left'>"
                        f"{html.escape(_text(v))}</td></tr>" for n, v in rows)
        return f"<table><caption>{html.escape(type(self).__name__)}</caption>{cells}</table>"


def provenance(meta) -> dict:
    """What a result was computed from, in a few words each: model, checkpoint, data, split, samples,
    directions, seed (those the ``meta`` records)."""
    if not isinstance(meta, dict):
        return {}
    model = meta.get("model")
    ckpt = meta.get("checkpoint")
    data = meta.get("data") if isinstance(meta.get("data"), dict) else {}
    found = {
        "model": (model.get("name") or model.get("class")) if isinstance(model, dict) else model,
        "checkpoint": (ckpt.get("label") or ckpt.get("path")) if isinstance(ckpt, dict) else ckpt,
        "data": data.get("name"), "split": data.get("split"),
        "samples": data.get("n_samples") or meta.get("n_samples"),
        "directions": meta.get("directions_kind"), "seed": meta.get("seed"),
    }
    return {k: found[k] for k in _PROVENANCE if found[k] is not None}


def to_dataframe(rows, columns=None):
    """``rows`` (dicts, or sequences with ``columns``) as a ``pandas.DataFrame``.

    Raises:
        LosslensError: pandas is not installed.
    """
    try:
        import pandas
    except ImportError:
        raise LosslensError("to_pandas() needs pandas, which losslens does not require: pip install pandas") from None
    return pandas.DataFrame(list(rows), columns=list(columns) if columns is not None else None)


def _brief(value):
    """A field's value for a key figure: numbers and short text as they are, containers by their size."""
    if isinstance(value, np.ndarray):
        if value.ndim == 1 and value.size <= 6 and value.dtype.kind in "biuf":
            return [float(v) for v in value]
        return f"{value.dtype} array {tuple(value.shape)}"
    if isinstance(value, (bool, int, float, str, type(None))):
        return value
    if isinstance(value, (list, tuple)) and len(value) <= 6 and all(isinstance(v, (str, int, float)) for v in value):
        return list(value)
    if isinstance(value, (list, tuple, dict)):
        return f"{len(value)} {'entries' if isinstance(value, dict) else 'items'}"
    return type(value).__name__


def _text(value) -> str:
    """A key figure as short text: floats to 4 significant digits, long text cut at 40 characters."""
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    if isinstance(value, tuple):
        return "(" + ", ".join(_text(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    text = str(value)
    return text if len(text) <= 40 else text[:39] + "…"


# -- how a result is stored: each field declares it once; save and load come from the base -----------


class Stored:
    """How one field of a result is stored: ``put`` adds it to the file's arrays or header, ``take``
    reads it back, ``shape`` is the shape its dataset must have (``_io.check_shapes``), if any."""

    def shape(self, name: str, names: set[str]) -> tuple | None:
        return None

    def put(self, name: str, value, arrays: dict, header: dict) -> None:
        raise NotImplementedError

    def take(self, name: str, arrays: dict, header: dict):
        raise NotImplementedError


_REQUIRED = object()


@dataclasses.dataclass(frozen=True)
class Attr(Stored):
    """A JSON value of the file's header: ``encode`` before writing, ``decode`` after reading (e.g.
    ``float``, ``tuple``); ``missing`` is taken when the header lacks it (else it is required)."""

    decode: Callable | None = None
    encode: Callable | None = None
    missing: Any = _REQUIRED

    def put(self, name, value, arrays, header):
        header[name] = self.encode(value) if self.encode else value

    def take(self, name, arrays, header):
        if name not in header and self.missing is not _REQUIRED:
            return self.missing
        return self.decode(header[name]) if self.decode else header[name]


@dataclasses.dataclass(frozen=True)
class Array(Stored):
    """A dataset named as the field. ``dims``: the shape checked before reading (an int, ``None`` for
    any length, or a name standing for one length wherever it appears); ``tensor``: read back as a
    torch tensor; ``optional``: ``None`` is not written, and a file without it gives ``None``."""

    dims: tuple | None = None
    tensor: bool = False
    optional: bool = False

    def shape(self, name, names):
        return None if self.dims is None or (self.optional and name not in names) else self.dims

    def put(self, name, value, arrays, header):
        if value is not None:
            arrays[name] = value

    def take(self, name, arrays, header):
        value = arrays.get(name) if self.optional else arrays[name]
        if self.tensor and value is not None:
            import torch

            return torch.from_numpy(value)
        return value


class Grid(Array):
    """A dataset on the grid of the result's ``x`` ``(nx,)`` and ``y`` ``(ny,)``: ``(ny, nx)``, or
    ``(nx,)`` for a line (a file without ``y``)."""

    def shape(self, name, names):
        return ("ny", "nx") if "y" in names else ("nx",)


@dataclasses.dataclass(frozen=True)
class Group(Stored):
    """A ``{key: array}`` field stored as datasets ``field/key`` (at the file's top level with
    ``top=True``); ``keys``: the keys a file must hold (default: those it holds)."""

    keys: tuple[str, ...] | None = None
    top: bool = False

    def put(self, name, value, arrays, header):
        arrays.update({k if self.top else f"{name}/{k}": v for k, v in value.items()})

    def take(self, name, arrays, header):
        prefix = "" if self.top else f"{name}/"
        if self.keys is not None:
            return {k: arrays[prefix + k] for k in self.keys}
        return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix) and "/" not in k[len(prefix):]}


@dataclasses.dataclass(frozen=True)
class Items(Stored):
    """A tuple of arrays stored as datasets ``field/0``, ``field/1``, ... (or ``field/<name>`` for each
    of ``names``); ``optional``: ``None`` is not written, and a file holding none of them gives ``None``."""

    names: tuple[str, ...] | None = None
    optional: bool = False

    def put(self, name, value, arrays, header):
        if value is not None:
            arrays.update({f"{name}/{k}": v for k, v in zip(self.names or range(len(value)), value)})

    def take(self, name, arrays, header):
        keys = self.names or [str(i) for i in range(sum(k.startswith(f"{name}/") for k in arrays))]
        if self.optional and not any(f"{name}/{k}" in arrays for k in keys):
            return None
        return tuple(arrays[f"{name}/{k}"] for k in keys)


@dataclasses.dataclass(frozen=True)
class Nested(Stored):
    """Another result held as a field: its arrays under ``field/``, its header as the field's header value."""

    cls: type

    def put(self, name, value, arrays, header):
        inner, header[name] = value.pack()
        arrays.update({f"{name}/{k}": v for k, v in inner.items()})

    def take(self, name, arrays, header):
        return self.cls.unpack({k.removeprefix(f"{name}/"): v for k, v in arrays.items() if k.startswith(f"{name}/")},
                               header[name])


def stored(how: Stored, **field_options) -> dataclasses.Field:
    """A dataclass field stored as ``how`` says (``field_options``: ``default``, ``default_factory``)."""
    return dataclasses.field(metadata={"stored": how}, **field_options)


def attr(decode: Callable | None = None, encode: Callable | None = None, missing: Any = _REQUIRED,
         **field_options) -> dataclasses.Field:
    """A field stored as a JSON value of the header (see ``Attr``)."""
    return stored(Attr(decode, encode, missing), **field_options)


def array(dims: tuple | None = None, *, tensor: bool = False, optional: bool = False,
          **field_options) -> dataclasses.Field:
    """A field stored as a dataset (see ``Array``)."""
    return stored(Array(dims, tensor, optional), **field_options)


def grid(**field_options) -> dataclasses.Field:
    """A field stored as a dataset on the result's ``x``/``y`` grid (see ``Grid``)."""
    return stored(Grid(), **field_options)


class Result(ResultDisplay):
    """The base of every result class: a frozen dataclass with a ``KIND``, saved to and loaded from a
    self-describing HDF5 file as its fields declare (module docstring). A class with a layout of its own
    (a surface: a resumable grid file that the reference tool reads too) overrides ``save``/``load``."""

    KIND: ClassVar[str]

    @classmethod
    def stored_fields(cls) -> list[tuple[str, Stored]]:
        """``(name, how it is stored)`` of each field, in order (a plain field is a header value)."""
        return [(f.name, f.metadata.get("stored", Attr())) for f in dataclasses.fields(cls) if f.init]

    def pack(self) -> tuple[dict[str, Any], dict]:
        """``(arrays, header)`` as ``_io.write_h5`` stores them."""
        arrays: dict[str, Any] = {}
        header: dict = {}
        for name, how in self.stored_fields():
            how.put(name, getattr(self, name), arrays, header)
        return arrays, header

    @classmethod
    def unpack(cls, arrays: dict[str, np.ndarray], header: dict):
        """The result ``pack`` gave ``(arrays, header)`` of."""
        return cls(**{name: how.take(name, arrays, header) for name, how in cls.stored_fields()})

    @classmethod
    def shapes(cls, names: set[str]) -> dict[str, tuple]:
        """The shapes its datasets must have in a file whose top level holds ``names``."""
        found = {name: how.shape(name, names) for name, how in cls.stored_fields()}
        return {name: shape for name, shape in found.items() if shape is not None}

    def save(self, path: str | os.PathLike) -> Path:
        """Write to an HDF5 file of kind ``KIND`` (atomically, locked, never over another kind's file:
        ``_io.write_h5``); returns the path."""
        return write_h5(path, self.KIND, *self.pack())

    @classmethod
    def load(cls, path: str | os.PathLike):
        """Read a file written by ``save``.

        Raises:
            LosslensError: the file is missing, of another kind, damaged, or a dataset has another shape
                than the field declares (naming the file, the dataset, the expected and found shapes).
        """
        return load(path, cls.KIND, cls.unpack, cls.shapes)
