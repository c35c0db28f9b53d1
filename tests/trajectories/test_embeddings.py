"""Tests of losslens/trajectories/embeddings.py: t-SNE and PCA embeddings against scikit-learn."""

import sys

import numpy as np
import pytest
import torch

from losslens.errors import ConfigError
from losslens.trajectories.embeddings import Embedding, embed
from losslens.trajectories.pca import trajectory_pca


def _walk(T=14, P=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.cumsum(torch.randn(T, P, generator=g, dtype=torch.float64), dim=0)


def test_tsne_equals_sklearn_on_the_vectors_and_is_reproducible_with_a_seed():
    from sklearn.manifold import TSNE, trustworthiness

    X = _walk()
    pca = trajectory_pca(X, 2)
    a = embed(pca, "tsne", perplexity=4, max_iter=300, init="random", seed=3)
    b = embed(pca, "tsne", perplexity=4, max_iter=300, init="random", seed=3)
    c = embed(pca, "tsne", perplexity=4, max_iter=300, init="random", seed=4)
    np.testing.assert_array_equal(a.coords, b.coords)
    assert not np.allclose(a.coords, c.coords)
    # the precomputed full-dimensional distances give the t-SNE of the vectors themselves
    start = embed(pca, "tsne", perplexity=4, max_iter=300, seed=0)
    scores = pca.scores[:, :2]
    init = scores / np.std(scores[:, 0]) * 1e-4
    ref = TSNE(perplexity=4, max_iter=300, init=init, random_state=0, method="exact").fit_transform(X.numpy())
    np.testing.assert_allclose(start.coords, ref, atol=1e-8)
    assert start.trustworthiness == pytest.approx(trustworthiness(X.numpy(), ref, n_neighbors=5), abs=1e-12)
    assert start.meta["perplexity"] == 4 and start.meta["n_neighbors"] == 5 and start.method == "tsne"


def test_tsne_refuses_a_perplexity_of_T_or_more_and_too_few_iterations():
    pca = trajectory_pca(_walk(T=11), 2)
    with pytest.raises(ValueError, match=r"perplexity 11 must be .*less than the number of checkpoints T=11.*at most 3\.33"):
        embed(pca, "tsne", perplexity=11)
    with pytest.raises(ValueError, match="max_iter must be an integer >= 250"):
        embed(pca, "tsne", max_iter=100)
    assert embed(pca, "tsne", max_iter=250).meta["perplexity"] == pytest.approx(10 / 3)  # the default fits T
    with pytest.raises(ValueError, match=r"method must be one of pca, tsne, phate \(got 'umap'\)"):
        embed(pca, "umap")


def test_pca_embedding_is_the_pca_scores_and_keeps_a_straight_path_trustworthy():
    from sklearn.decomposition import PCA
    from sklearn.manifold import trustworthiness

    X = _walk(T=9, seed=1)
    emb = embed(X, "pca")
    ref = PCA(2, svd_solver="full").fit_transform(X.numpy())
    np.testing.assert_allclose(np.abs(emb.coords), np.abs(ref), atol=1e-9)
    assert emb.meta["n_neighbors"] == 4  # the largest k < T / 2
    assert emb.trustworthiness == pytest.approx(trustworthiness(X.numpy(), ref, n_neighbors=4), abs=1e-12)
    line = torch.linspace(0, 1, 8, dtype=torch.float64)[:, None] * torch.randn(1, 20, dtype=torch.float64)
    line = line + 1e-3 * torch.randn(8, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert embed(line, "pca").trustworthiness == pytest.approx(1.0)


def test_phate_is_optional(monkeypatch):
    monkeypatch.setitem(sys.modules, "phate", None)  # as if not installed
    with pytest.raises(ConfigError, match="needs the phate package.*GPL-2.*pip install phate"):
        embed(_walk(T=6), "phate")


def test_save_load_and_csv(tmp_path):
    emb = embed(_walk(T=6), "tsne", max_iter=250)
    back = Embedding.load(emb.save(tmp_path / "e.h5"))
    np.testing.assert_array_equal(back.coords, emb.coords)
    assert (back.method, back.trustworthiness, back.checkpoints, back.meta) == (
        emb.method, emb.trustworthiness, emb.checkpoints, emb.meta)
    lines = emb.to_csv(tmp_path / "e.csv").read_text().splitlines()
    assert lines[0] == "method,run,step,epoch,x,y,checkpoint" and len(lines) == 7
