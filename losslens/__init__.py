"""losslens: loss landscapes of neural networks from one batched evaluator core.

Every loss value comes from ``Evaluator``, which evaluates many flat parameter vectors at once;
surfaces, lines, Hessian spectra and trajectories are built on it and return result objects that
carry their axes and provenance (plotting lives in ``losslens.plot``; ``load_result`` reads any
result file).

The names below are imported when first used (PEP 562), so ``import losslens`` and the command's start
cost nothing until torch is needed; ``from losslens import Evaluator`` works as usual.
"""

import importlib

from losslens._version import __version__

_SOURCES = {
    "losslens.connectivity.alignment": ("Alignment", "align"),
    "losslens.connectivity.barrier_matrix": ("BarrierMatrix", "barrier_matrix"),
    "losslens.core": ("EvalResult", "Evaluator", "ParameterSpace", "Plan", "Recipe", "TrainRun", "build_model",
                      "load_checkpoint", "load_dataset", "load_model", "save_checkpoint", "subset"),
    "losslens.connectivity": ("Connection", "NEBChain", "barriers", "connect", "line_barriers", "neb"),
    "losslens.curvature": ("Eigenpairs", "HessianOperator", "Spectrum", "TraceEstimate", "density", "eigenpairs",
                           "trace"),
    "losslens.landscape": ("Directions", "Multiscale", "Surface", "SurfaceComparison", "SurfaceFit", "Topology",
                           "between", "compare_surfaces", "fit_surface", "hessian_directions", "interpolate",
                           "multiscale", "random_directions", "surface_1d", "surface_2d", "topology"),
    "losslens.report": ("Report", "ReportOptions", "build_report"),
    "losslens.results": ("load_result",),
    "losslens.trajectories": ("CheckpointSeries", "Dynamics", "DynamicsRecorder", "Embedding", "OptimizerComparison",
                              "Replay", "TrajectoryPaths", "TrajectoryPCA", "compare_optimizers", "compare_runs",
                              "dynamics_of_run", "embed", "pca_directions", "replay", "trajectory_paths",
                              "trajectory_pca"),
}
# name -> (module, name there); ``train`` is the trainer with the dynamics recorded
_WHERE = {name: (module, name) for module, names in _SOURCES.items() for name in names} | {
    "train": ("losslens.trajectories.training", "train_with_dynamics")}

__all__ = [
    "__version__",
    # core
    "Evaluator", "EvalResult", "Plan", "Recipe", "ParameterSpace", "build_model", "load_dataset", "subset", "load_checkpoint",
    "load_model", "save_checkpoint", "train", "TrainRun",
    # landscape
    "Directions", "random_directions", "hessian_directions", "pca_directions", "between", "Surface",
    "surface_1d", "surface_2d", "interpolate",
    # connectivity: paths between checkpoints
    "connect", "Connection", "barriers", "line_barriers", "neb", "NEBChain",
    # curvature
    "HessianOperator", "Eigenpairs", "eigenpairs", "TraceEstimate", "trace", "Spectrum", "density",
    # connectivity
    "Alignment", "align", "BarrierMatrix", "barrier_matrix",
    # analyses of surfaces
    "Multiscale", "multiscale", "Topology", "topology", "SurfaceComparison", "compare_surfaces", "SurfaceFit",
    "fit_surface",
    # trajectories
    "CheckpointSeries", "TrajectoryPCA", "trajectory_pca", "TrajectoryPaths", "trajectory_paths", "Embedding", "embed",
    "OptimizerComparison", "compare_runs", "compare_optimizers", "Dynamics", "DynamicsRecorder", "dynamics_of_run",
    "Replay", "replay",
    # the report, and result files
    "build_report", "Report", "ReportOptions", "load_result",
]


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'losslens' has no attribute {name!r}")
    module, attribute = _WHERE[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # imported once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
