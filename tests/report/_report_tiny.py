"""The tiny run and the options of the report tests (see conftest.py)."""

from __future__ import annotations

from pathlib import Path

from losslens.report import ReportOptions

TINY = ReportOptions(subset=100, device="cpu", threads=1, trace_samples=12, density_vectors=2, lanczos_steps=20,
                     replay_steps=50, tsne_max_iter=250)


def tiny_run(where: Path) -> Path:
    """A 610-parameter MLP trained for 2 epochs on 128 digits: 3 checkpoints."""
    from losslens.core.data import load_dataset, subset
    from losslens.trajectories.training import train_with_dynamics as train  # losslens.train: dynamics recorded

    data = (subset(load_dataset("digits", "train"), 128), subset(load_dataset("digits", "test"), 64))
    train("mlp", data, epochs=2, lr=1e-2, out=where, model_kwargs={"hidden": [8]}, progress=False)
    return where
