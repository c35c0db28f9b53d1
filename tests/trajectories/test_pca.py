"""Tests of losslens/trajectories/pca.py: the streamed Gram PCA against scikit-learn and known planes."""

import numpy as np
import pytest
import torch

from losslens.core.params import ParameterSpace
from losslens.trajectories.pca import TrajectoryPCA, pca_directions, trajectory_pca
from losslens.trajectories.series import CheckpointSeries

from _trajectory_helpers import plane_trajectory, write_checkpoints


def _series(tmp_path, model, points, run):
    (tmp_path / run).mkdir()
    paths = write_checkpoints(tmp_path / run, model, points)
    return CheckpointSeries.from_paths(paths, model, run=run)


@pytest.mark.parametrize("budget", [1, 10**9])  # one checkpoint held at a time, or all of them
def test_streamed_gram_pca_equals_sklearn_full_pca(tmp_path, model, budget):
    from sklearn.decomposition import PCA

    P = ParameterSpace(model).size
    g = torch.Generator().manual_seed(3)
    # an anisotropic cloud far from zero: centring and the origin shift must not cost accuracy
    X = 5.0 + torch.randn(12, P, generator=g, dtype=torch.float64) * torch.linspace(2, 0.05, P, dtype=torch.float64)
    series = _series(tmp_path, model, X, "a")
    pca = trajectory_pca(series, 4, origin=3, memory_budget=budget)
    ref = PCA(n_components=4, svd_solver="full").fit(X.numpy())
    np.testing.assert_allclose(pca.explained_variance_ratio, ref.explained_variance_ratio_, rtol=1e-10)
    np.testing.assert_allclose(pca.explained_variance, ref.explained_variance_, rtol=1e-10)
    np.testing.assert_allclose(pca.singular_values, ref.singular_values_, rtol=1e-10)
    signs = np.sign(np.sum(pca.components * ref.components_, axis=1))  # PCA fixes directions up to sign
    np.testing.assert_allclose(pca.components * signs[:, None], ref.components_, atol=1e-10)
    np.testing.assert_allclose(pca.scores * signs[None, :], ref.transform(X.numpy()), atol=1e-9)
    np.testing.assert_allclose(pca.mean, ref.mean_, atol=1e-12)
    np.testing.assert_array_equal(pca.origin, X[3].numpy())
    T = len(X)
    block = pca.meta["block"]
    assert block == (1 if budget == 1 else T)
    # origin + Gram pass (T reads plus, per block, the later checkpoints) + direction pass
    gram_reads = T + sum(T - min(T, s + block) for s in range(0, T, block))
    assert pca.meta["n_reads"] == 1 + gram_reads + T


def test_a_trajectory_in_a_known_plane_gives_that_plane(tmp_path, model):
    P = ParameterSpace(model).size
    points, basis, coeffs, _ = plane_trajectory(P)
    pca = trajectory_pca(_series(tmp_path, model, points, "a"), 2)
    assert pca.origin_index == len(points) - 1
    V = pca.components
    np.testing.assert_allclose(V @ V.T, np.eye(2), atol=1e-12)
    # the known basis lies in the span of the components: its projection keeps its norm
    np.testing.assert_allclose(np.linalg.norm(basis.numpy() @ V.T, axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(pca.explained_variance_ratio.sum(), 1.0, rtol=1e-12)
    # coordinates: the known ones up to a rotation/reflection of the plane, so distances agree
    found = (points.numpy() - pca.origin) @ V.T
    np.testing.assert_allclose(found @ found.T, coeffs.numpy() @ coeffs.numpy().T, atol=1e-12)


def test_joint_basis_is_one_basis_shared_by_all_runs(tmp_path, model):
    from sklearn.decomposition import PCA

    P = ParameterSpace(model).size
    a, *_ = plane_trajectory(P, T=7, seed=1)
    b = a[-1] + torch.randn(5, P, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 0.2
    runs = [_series(tmp_path, model, a, "a"), _series(tmp_path, model, b, "b")]
    joint = trajectory_pca(runs, 3)
    ref = PCA(n_components=3, svd_solver="full").fit(torch.cat([a, b]).numpy())
    np.testing.assert_allclose(np.abs(joint.components @ ref.components_.T), np.eye(3), atol=1e-10)
    assert joint.runs == ["a", "b"] and len(joint.checkpoints) == 12
    assert [c.run for c in joint.checkpoints] == ["a"] * 7 + ["b"] * 5
    assert joint.origin_index == 6  # the last checkpoint of the first run
    np.testing.assert_array_equal(joint.origin, a[-1].numpy())
    assert trajectory_pca(runs, 2, origin=(1, -1)).origin_index == 11
    # each run's own PCA differs from the joint one: the joint basis is not one run's
    own_b = trajectory_pca(runs[1], 2)
    assert np.abs(own_b.components @ joint.components[:2].T).max() < 0.999
    distances = joint.distances()
    X = torch.cat([a, b]).numpy()
    np.testing.assert_allclose(distances, np.linalg.norm(X[:, None] - X[None], axis=2), atol=1e-10)


def test_refuses_components_the_checkpoints_do_not_span(tmp_path, model):
    P = ParameterSpace(model).size
    line = torch.linspace(0, 1, 5, dtype=torch.float64)[:, None] * torch.ones(P, dtype=torch.float64)
    with pytest.raises(ValueError, match="span only 1 dimension"):
        trajectory_pca(line, 2)
    with pytest.raises(ValueError, match=r"n=5 directions.*min\(T - 1, P\) = 4"):
        trajectory_pca(line, 5)
    with pytest.raises(ValueError, match="origin must be 'last' or an index of the 5 points"):
        pca_directions(line, 1, origin=5)


def test_save_load_and_directions(tmp_path, model):
    P = ParameterSpace(model).size
    points, *_ = plane_trajectory(P)
    pca = trajectory_pca(_series(tmp_path, model, points, "a"), 2)
    back = TrajectoryPCA.load(pca.save(tmp_path / "pca.h5"))
    for name in ("components", "singular_values", "explained_variance_ratio", "scores", "gram", "mean", "origin"):
        np.testing.assert_array_equal(getattr(back, name), getattr(pca, name))
    assert back.checkpoints == pca.checkpoints and back.meta == pca.meta
    dirs = back.directions(2)
    assert dirs.kind == "pca" and dirs.meta["origin"] == len(points) - 1
    np.testing.assert_array_equal(dirs.vectors.numpy(), pca.components)
