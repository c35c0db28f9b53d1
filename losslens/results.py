"""Every result file says its kind; ``load_result`` reads any of them into its result object.

A result class has a ``KIND`` and ``save``/``load`` methods; ``RESULT_CLASSES`` maps each kind to
the class that reads it (imported when first needed). Files of the reference loss-landscape tool
carry no header and are read as surfaces.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from losslens._io import open_h5
from losslens.errors import LosslensError

RESULT_CLASSES: dict[str, str] = {
    "surface": "losslens.landscape.surface:Surface",
    "curvature_map": "losslens.landscape.curvature:CurvatureMap",
    "directions": "losslens.landscape.directions:Directions",
    "eigenpairs": "losslens.landscape.hessian:Eigenpairs",
    "trace": "losslens.landscape.spectrum:TraceEstimate",
    "spectrum": "losslens.landscape.spectrum:Spectrum",
    "multiscale": "losslens.landscape.multiscale:Multiscale",
    "topology": "losslens.landscape.topology:Topology",
    "topology_stability": "losslens.landscape.topology:TopologyStability",
    "surface_comparison": "losslens.landscape.compare:SurfaceComparison",
    "trajectory_pca": "losslens.trajectories.pca:TrajectoryPCA",
    "trajectory": "losslens.trajectories.paths:TrajectoryPaths",
    "embedding": "losslens.trajectories.embeddings:Embedding",
    "optimizer_comparison": "losslens.trajectories.comparison:OptimizerComparison",
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
    path = Path(path)
    kind = result_kind(path)
    try:
        cls = result_class(kind)
    except LosslensError as err:
        raise LosslensError(f"{path}: {err}") from None
    return cls.load(path)
