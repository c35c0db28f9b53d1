"""Tests of losslens/trajectories/paths.py: coordinates, residuals, true vs plane loss, the plane's grid."""

import csv

import h5py
import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from losslens.core.evaluator import Evaluator
from losslens.core.plan import Plan
from losslens.errors import LosslensError
from losslens.trajectories.paths import PATHS_COLUMNS, TrajectoryPaths, plane_grid, plane_surface, trajectory_paths
from losslens.trajectories.pca import trajectory_pca
from losslens.trajectories.series import CheckpointSeries

from _trajectory_helpers import plane_trajectory, write_checkpoints


@pytest.fixture
def evaluator(model):
    g = torch.Generator().manual_seed(7)
    x, y = torch.randn(40, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (40,), generator=g)
    return Evaluator(model, "cross_entropy", (x, y), plan=Plan(dtype=torch.float64, device="cpu"))


def _series(tmp_path, ev, model, points, run):
    (tmp_path / run).mkdir()
    paths = write_checkpoints(tmp_path / run, model, points)
    return CheckpointSeries.from_paths(paths, model, run=run, space=ev.space)


def _loss_by_hand(model, ev, w):
    x, y = ev.data.x, ev.data.y
    out = functional_call(model, ev.space.unflatten(w), (x,))
    return float(nn.functional.cross_entropy(out, y))


def test_a_path_in_the_plane_has_no_residual_and_its_plane_loss_is_its_true_loss(tmp_path, model, evaluator):
    points, basis, coeffs, _ = plane_trajectory(evaluator.space.size)
    series = _series(tmp_path, evaluator, model, points, "a")
    paths = trajectory_paths(evaluator, series, memory_budget=3 * 8 * evaluator.space.size)  # chunks of 3
    assert paths.residual.max() < 1e-12 and paths.trusted.all()
    assert paths.rel_residual[-1] == 0.0 and paths.distance[-1] == 0.0  # the origin
    # the coordinates are the known ones up to a rotation/reflection of the plane
    np.testing.assert_allclose(paths.coords @ paths.coords.T, coeffs.numpy() @ coeffs.numpy().T, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(paths.coords, axis=1), paths.distance, rtol=1e-12)
    np.testing.assert_allclose(paths.plane_loss, paths.true_loss, rtol=1e-12)
    for t in (0, 4, 8):
        assert paths.true_loss[t] == pytest.approx(_loss_by_hand(model, evaluator, points[t]), rel=1e-12)
    steps = np.linalg.norm(np.diff(points.numpy(), axis=0), axis=1)
    np.testing.assert_allclose(paths.step_distance, np.concatenate([[0.0], steps]), rtol=1e-12)
    assert paths.path_length("a") == pytest.approx(steps.sum(), rel=1e-12)


def test_off_plane_checkpoints_against_sklearn_and_direct_evaluation(tmp_path, model, evaluator):
    from sklearn.decomposition import PCA

    P = evaluator.space.size
    a, *_ = plane_trajectory(P, T=8, seed=1)
    b = a[0] + torch.randn(6, P, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 0.3
    runs = [_series(tmp_path, evaluator, model, a, "a"), _series(tmp_path, evaluator, model, b, "b")]
    paths = trajectory_paths(evaluator, runs, threshold=0.3)
    X = torch.cat([a, b]).numpy()
    ref = PCA(n_components=2, svd_solver="full").fit(X)
    pca = trajectory_pca(runs, 2)
    V = ref.components_ * np.sign(np.sum(ref.components_ * pca.components, axis=1))[:, None]
    Y = X - a[-1].numpy()  # the origin: the last checkpoint of the first run
    coords = Y @ V.T
    residual = np.linalg.norm(Y - coords @ V, axis=1)
    np.testing.assert_allclose(paths.coords, coords, atol=1e-10)
    np.testing.assert_allclose(paths.residual, residual, atol=1e-10)
    rel = np.where(np.arange(14) == 7, 0.0, residual / np.maximum(np.linalg.norm(Y, axis=1), 1e-300))
    np.testing.assert_allclose(paths.rel_residual, rel, atol=1e-10)
    np.testing.assert_array_equal(paths.trusted, rel <= 0.3)
    assert 0 < paths.trusted.sum() < 14  # the threshold splits these checkpoints
    for t in (2, 7, 12):
        assert paths.true_loss[t] == pytest.approx(_loss_by_hand(model, evaluator, torch.from_numpy(X[t])), rel=1e-10)
        projected = torch.from_numpy(a[-1].numpy() + coords[t] @ V)
        assert paths.plane_loss[t] == pytest.approx(_loss_by_hand(model, evaluator, projected), rel=1e-10)
    assert paths.runs == ["a", "b"] and list(paths.of_run("b")) == list(range(8, 14))
    assert paths.step_distance[8] == 0.0  # a run's first checkpoint
    assert set(paths.true_metrics) == {"accuracy"} and paths.meta["pca"]["origin_index"] == 7


def test_table_csv_save_load_and_projection_file(tmp_path, model, evaluator):
    points, *_ = plane_trajectory(evaluator.space.size, T=5)
    paths = trajectory_paths(evaluator, _series(tmp_path, evaluator, model, points, "a"), meta={"model": "tiny"})
    with open(paths.to_csv(tmp_path / "paths.csv")) as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == PATHS_COLUMNS == ("run", "step", "epoch", "pc1", "pc2", "residual", "rel_residual",
                                               "true_loss", "plane_loss", "checkpoint")
    assert len(rows) == 6 and rows[3][0] == "a" and rows[3][1] == "2" and float(rows[3][7]) == paths.true_loss[2]
    back = TrajectoryPaths.load(paths.save(tmp_path / "paths.h5"))
    assert back.checkpoints == paths.checkpoints and back.meta == paths.meta
    np.testing.assert_array_equal(back.coords, paths.coords)
    np.testing.assert_array_equal(back.plane_metrics["accuracy"], paths.plane_metrics["accuracy"])
    with h5py.File(paths.save_projection(tmp_path / "proj.h5"), "r") as f:
        np.testing.assert_array_equal(f["proj_xcoord"][()], paths.coords[:, 0])
        np.testing.assert_array_equal(f["proj_ycoord"][()], paths.coords[:, 1])
        assert f["explained_variance_ratio_"].shape == (2,)
    (tmp_path / "model.safetensors").write_bytes(b"weights")  # never overwritten by a projection
    with pytest.raises(LosslensError, match="model.safetensors: exists and is not a losslens projection file"):
        paths.save_projection(tmp_path / "model.safetensors")
    assert (tmp_path / "model.safetensors").read_bytes() == b"weights"
    with pytest.raises(ValueError, match=r"threshold must be a number > 0 \(got"):
        trajectory_paths(evaluator, CheckpointSeries.from_paths([paths.checkpoints[0].path], model), threshold=0)


def test_plane_surface_covers_every_point_and_is_indexed_y_then_x(tmp_path, model, evaluator):
    points, *_ = plane_trajectory(evaluator.space.size, T=6)
    series = _series(tmp_path, evaluator, model, points, "a")
    pca = trajectory_pca(series, 2)
    paths = trajectory_paths(evaluator, series, pca)
    x, y = plane_grid(paths, (5, 3), margin=0.25)
    for values, axis in ((paths.coords[:, 0], x), (paths.coords[:, 1], y)):
        lo, hi = min(values.min(), 0), max(values.max(), 0)
        assert axis[0] == pytest.approx(lo - 0.25 * (hi - lo)) and axis[-1] == pytest.approx(hi + 0.25 * (hi - lo))
    surface = plane_surface(evaluator, pca, paths, steps=(5, 3), margin=0.25, progress=False, path=tmp_path / "s.h5")
    assert surface.loss.shape == (3, 5) and surface.meta["directions_kind"] == "pca"
    o, D = torch.from_numpy(pca.origin), torch.from_numpy(pca.components)
    for ix, iy in ((0, 0), (4, 1), (1, 2)):
        w = o + x[ix] * D[0] + y[iy] * D[1]
        assert surface.loss[iy, ix] == pytest.approx(_loss_by_hand(model, evaluator, w), rel=1e-10)
    assert (tmp_path / "s.h5").is_file()
