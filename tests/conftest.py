"""Fixtures shared by the Hessian tests (tests/curvature/, and the curvature map's in tests/landscape/)."""

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call, hessian

from losslens.core.evaluator import Evaluator
from losslens.core.plan import Plan
from losslens.curvature.operator import HessianOperator


@pytest.fixture(scope="module")
def net():
    """A tiny MLP in train mode, its float64 evaluator and the dense Hessian of the mean loss at w0."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 3))
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    ev = Evaluator(model, "cross_entropy", (x, y), plan=Plan(dtype=torch.float64))
    op = HessianOperator(ev)
    ref = copy.deepcopy(model).double()

    def loss(w):
        return nn.functional.cross_entropy(functional_call(ref, ev.space.unflatten(w), (x.double(),)), y)

    dense = hessian(loss)(op.w.cpu())
    return model, ev, op, dense


@pytest.fixture(scope="session")
def one_of_each_kind():
    """``{kind: result}``: a small real result of every kind of ``losslens.results.RESULT_CLASSES``
    (synthetic grids and paths, no model), for the figure registry's tests and ``losslens plot``'s."""
    from pathlib import Path

    import numpy as np

    from losslens.connectivity.connect import connect
    from losslens.connectivity.alignment import Alignment
    from losslens.connectivity.barrier_matrix import BarrierMatrix
    from losslens.curvature.hessian import Eigenpairs
    from losslens.curvature.spectrum import Spectrum
    from losslens.curvature.trace_estimation import TraceEstimate
    from losslens.landscape.curvature import CurvatureMap
    from losslens.landscape.directions import Directions
    from losslens.landscape.fit import fit_surface
    from losslens.landscape.surface import Surface
    from losslens.landscape.surface_comparison import compare_surfaces
    from losslens.landscape.topology import topology
    from losslens.landscape.topology_stability import topology_stability
    from losslens.landscape.wavelets import multiscale
    from losslens.trajectories.dynamics import DYNAMICS_COLUMNS, Dynamics
    from losslens.trajectories.embeddings import embed
    from losslens.trajectories.optimizer_comparison import COMPARISON_COLUMNS, OptimizerComparison
    from losslens.trajectories.paths import TrajectoryPaths
    from losslens.trajectories.pca import trajectory_pca
    from losslens.trajectories.replay import replay
    from losslens.trajectories.series import Checkpoint

    x, y = np.linspace(-1, 1, 9), np.linspace(-1, 1, 7)
    bowl = 0.1 + x[None, :] ** 2 + 2 * y[:, None] ** 2 + 0.05 * np.sin(7 * x[None, :])
    plane = Surface.from_arrays(x, y, bowl, {"accuracy": np.full(bowl.shape, 0.5)}, meta={"model": {"name": "mlp"}})
    other = Surface.from_arrays(x, y, bowl + 0.2 * np.cos(5 * y[:, None]))
    metrics = {"max_eigenvalue": 2 + bowl, "min_eigenvalue": bowl - 1, "eigenvalue_ratio": np.abs((bowl - 1) / (2 + bowl)),
               "max_residual": 0 * bowl, "min_residual": 0 * bowl}
    runs = [Checkpoint(run, i, 10 * i, float(i), Path(f"{run}/step_{10 * i}.safetensors"))
            for run in ("sgd", "adam") for i in range(4)]
    g = np.random.default_rng(0)
    paths = TrajectoryPaths(tuple(runs), g.normal(size=(8, 2)), g.random(8), g.random(8) + 1, np.ones(8),
                            np.arange(8.0), g.random(8) + 1, g.random(8) + 1,
                            meta={"threshold": 0.5, "pca": {"explained_variance_ratio": [0.8, 0.15]}})
    table = tuple({c: None for c in COMPARISON_COLUMNS} | {"optimizer": r, "final_train_loss": 0.3 + k,
                                                           "final_test_loss": 0.4 + k, "run": r}
                  for k, r in enumerate(("sgd", "adam")))
    walk = torch.cumsum(torch.randn(9, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64), 0)
    pca = trajectory_pca(walk, 2)
    grid = np.linspace(-1, 11, 50)
    return {
        "surface": plane,
        "curvature_map": CurvatureMap.from_arrays(x, y, bowl, metrics),
        "directions": Directions(torch.randn(2, 30, generator=torch.Generator().manual_seed(1)), "random"),
        "eigenpairs": Eigenpairs(torch.tensor([3.0, 1.0]), torch.eye(2, 4), "largest", 0.0, 8,
                                 {"residual_norms": [0.0, 0.0]}),
        "trace": TraceEstimate(4.0, 0.3, 12, "hutchinson", {"samples": [3.5, 4.6, 3.9, 4.0]}),
        "spectrum": Spectrum(grid, np.exp(-0.5 * (grid - 1) ** 2), np.array([[0.0, 1.0, 10.0]]),
                             np.array([[0.8, 0.15, 0.05]]), 0.2, {"n_vectors": 1, "n_lanczos": 3, "n_params": 3}),
        "multiscale": multiscale(plane),
        "topology": topology(plane),
        "topology_stability": topology_stability([plane, other], names=["seed 0", "seed 1"]),
        "surface_comparison": compare_surfaces([plane, other], names=["a", "b"]),
        "trajectory_pca": pca,
        "trajectory": paths,
        "embedding": embed(pca, "pca"),
        "optimizer_comparison": OptimizerComparison(table, paths, {"threshold": 0.5}),
        "dynamics": Dynamics(("step",) * 4, {c: np.linspace(1, 2, 4) for c in DYNAMICS_COLUMNS[1:]}),
        "fit": fit_surface(plane, "quadratic"),
        "replay": replay("quadratic", ["sgd", "adam"], lr=0.05, steps=5),
        "connection": _connection(connect),
        "alignment": Alignment("weights", {"0": np.array([1, 0, 2])}, np.array([0.5, 0.9, 0.9]), 3e-8),
        "barrier_matrix": BarrierMatrix(("sgd", "adam", "lion"), np.array([[0, 0.4, 0.5], [0.4, 0, 0.3], [0.5, 0.3, 0]]),
                                        np.array([[0, 0.05, 0.02], [0.05, 0, 0.04], [0.02, 0.04, 0]]), "barrier"),
    }


def _connection(connect):
    """A line and a Bezier curve between two points of a tiny classifier (two steps of bend training)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    g = torch.Generator().manual_seed(1)
    data = torch.randn(20, 3, generator=g, dtype=torch.float64), torch.randint(0, 2, (20,), generator=g)
    ev = Evaluator(model, "cross_entropy", data, plan=Plan(device="cpu", dtype=torch.float64))
    w_b = ev.w0 + torch.randn(ev.space.size, generator=g, dtype=torch.float64)
    return connect(ev, ev.w0, w_b, path=["line", "bezier"], points=9, steps=2)
