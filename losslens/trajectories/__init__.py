"""Trajectories of training runs: checkpoint series, their exact PCA, honest paths on the PCA plane,
embeddings scored by trustworthiness, optimizer comparisons and training dynamics; and optimizers
replayed on two-parameter objectives (analytic functions, fits, measured grids, the true loss in a plane).

Runs written by ``train_with_dynamics`` (``losslens.train``, ``losslens train``) or ``losslens.core.train`` are the series these tools read.
"""

from losslens.trajectories.dynamics import Dynamics, dynamics_of_run
from losslens.trajectories.dynamics_recorder import DynamicsRecorder
from losslens.trajectories.embeddings import Embedding, embed
from losslens.trajectories.objectives import (
    PlaneLoss, ReplayObjective, as_objective, fit_objective, function_objective, grid_objective,
)
from losslens.trajectories.optimizer_comparison import (
    OptimizerComparison, compare_optimizers, compare_runs, train_optimizers,
)
from losslens.trajectories.paths import TrajectoryPaths, plane_grid, plane_surface, trajectory_paths
from losslens.trajectories.pca import TrajectoryPCA, pca_directions, trajectory_pca
from losslens.trajectories.replay import OptimizerSpec, replay
from losslens.trajectories.replay_result import Replay
from losslens.trajectories.series import Checkpoint, CheckpointSeries, checkpoint_vectors, run_evaluator, run_series
from losslens.trajectories.training import RecordDynamics, train_with_dynamics

__all__ = [
    # series
    "Checkpoint", "CheckpointSeries", "checkpoint_vectors", "run_evaluator", "run_series",
    # PCA and paths on its plane
    "TrajectoryPCA", "trajectory_pca", "pca_directions", "TrajectoryPaths", "trajectory_paths", "plane_grid",
    "plane_surface",
    # embeddings
    "Embedding", "embed",
    # optimizers
    "OptimizerComparison", "compare_runs", "compare_optimizers", "train_optimizers",
    # dynamics
    "Dynamics", "DynamicsRecorder", "dynamics_of_run", "RecordDynamics", "train_with_dynamics",
    # optimizer replays
    "ReplayObjective", "as_objective", "function_objective", "fit_objective", "grid_objective", "PlaneLoss",
    "OptimizerSpec", "Replay", "replay",
]
