"""Every result file says its kind; ``load_result`` reads any of them into its result object.

A result class has a ``KIND`` and ``save``/``load`` methods; ``RESULT_CLASSES`` maps each kind to
the class that reads it (imported when first needed). Files of the reference loss-landscape tool
carry no header and are read as surfaces.
"""

from __future__ import annotations

import dataclasses
import html
import importlib
import os
from pathlib import Path

import numpy as np

from losslens._io import open_h5
from losslens.errors import LosslensError

RESULT_CLASSES: dict[str, str] = {
    "surface": "losslens.landscape.surface:Surface",
    "curvature_map": "losslens.landscape.curvature:CurvatureMap",
    "directions": "losslens.landscape.directions:Directions",
    "eigenpairs": "losslens.curvature.hessian:Eigenpairs",
    "trace": "losslens.curvature.spectrum:TraceEstimate",
    "spectrum": "losslens.curvature.spectrum:Spectrum",
    "multiscale": "losslens.landscape.wavelets:Multiscale",
    "topology": "losslens.landscape.topology:Topology",
    "topology_stability": "losslens.landscape.topology:TopologyStability",
    "surface_comparison": "losslens.landscape.surface_comparison:SurfaceComparison",
    "trajectory_pca": "losslens.trajectories.pca:TrajectoryPCA",
    "trajectory": "losslens.trajectories.paths:TrajectoryPaths",
    "embedding": "losslens.trajectories.embeddings:Embedding",
    "optimizer_comparison": "losslens.trajectories.optimizer_comparison:OptimizerComparison",
    "dynamics": "losslens.trajectories.dynamics:Dynamics",
    "fit": "losslens.landscape.fit:SurfaceFit",
    "replay": "losslens.trajectories.replay:Replay",
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
            than its kind needs (``losslens._io.open_h5`` and ``load``); the message names the
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
