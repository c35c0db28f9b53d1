"""Trajectories of training runs: checkpoint series, their exact PCA, honest paths on the PCA plane,
embeddings, optimizer comparisons and training dynamics.

Runs written by ``losslens.core.train`` (``losslens train``) are the series these tools read.
"""

from losslens.trajectories.pca import TrajectoryPCA, pca_directions, trajectory_pca
from losslens.trajectories.series import Checkpoint, CheckpointSeries, checkpoint_vectors

__all__ = [
    # series
    "Checkpoint", "CheckpointSeries", "checkpoint_vectors",
    # PCA
    "TrajectoryPCA", "trajectory_pca", "pca_directions",
]
