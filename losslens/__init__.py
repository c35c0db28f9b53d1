"""losslens: loss landscapes of neural networks from one batched evaluator core.

Every loss value comes from ``Evaluator``, which evaluates many flat parameter vectors at once;
surfaces, lines, Hessian spectra and trajectories are built on it and return result objects that
carry their axes and provenance (plotting lives in ``losslens.plot``; ``load_result`` reads any
result file).
"""

from losslens._version import __version__
from losslens.core import (  # noqa: E402
    EvalResult, Evaluator, ParameterSpace, TrainRun, build_model, load_checkpoint, load_dataset, load_model,
    save_checkpoint, subset,
)
from losslens.curvature import (  # noqa: E402
    Eigenpairs, HessianOperator, Spectrum, TraceEstimate, density, eigenpairs, trace,
)
from losslens.landscape import (  # noqa: E402
    Directions, Multiscale, Surface, SurfaceComparison, SurfaceFit, Topology, barrier, between, compare_surfaces,
    fit_surface, hessian_directions, interpolate, multiscale, random_directions, surface_1d, surface_2d, topology,
)
from losslens.report import Report, ReportOptions, build_report  # noqa: E402
from losslens.results import load_result  # noqa: E402
from losslens.trajectories import (  # noqa: E402
    CheckpointSeries, Dynamics, DynamicsRecorder, Embedding, OptimizerComparison, Replay, TrajectoryPaths,
    TrajectoryPCA, compare_optimizers, compare_runs, dynamics_of_run, embed, pca_directions, replay, trajectory_paths,
    trajectory_pca,
)
from losslens.trajectories.training import train_with_dynamics as train  # noqa: E402  (the trainer, dynamics recorded)

__all__ = [
    "__version__",
    # core
    "Evaluator", "EvalResult", "ParameterSpace", "build_model", "load_dataset", "subset", "load_checkpoint",
    "load_model", "save_checkpoint", "train", "TrainRun",
    # landscape
    "Directions", "random_directions", "hessian_directions", "pca_directions", "between", "Surface",
    "surface_1d", "surface_2d", "interpolate", "barrier",
    # curvature
    "HessianOperator", "Eigenpairs", "eigenpairs", "TraceEstimate", "trace", "Spectrum", "density",
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
