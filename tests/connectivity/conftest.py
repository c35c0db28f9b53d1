"""Fixtures of the connectivity tests: two digits MLPs trained from different seeds (the minima the curves connect)."""

import pytest


@pytest.fixture(scope="session")
def two_minima(tmp_path_factory):
    """``(A, B)`` final checkpoints of two digits MLPs (one hidden layer of 32) trained 8 epochs by SGD with
    momentum (lr 0.05) from seeds 1 and 2."""
    from losslens.core.train import train

    out = tmp_path_factory.mktemp("minima")
    runs = [train("mlp", "digits", epochs=8, lr=0.05, optimizer="momentum", seed=s, out=out / f"seed{s}",
                  model_kwargs={"hidden": [32]}, progress=False) for s in (1, 2)]
    return tuple(run.checkpoints[-1] for run in runs)
