"""2D embeddings of checkpoints (PCA, t-SNE, optional PHATE), each scored by its trustworthiness.

Every embedding maps the ``T`` checkpoints (of one run or several) to the plane and reports
``sklearn.manifold.trustworthiness`` (Venna & Kaski 2001): 1 when each point's ``k`` nearest
neighbours in the plane are also among its nearest in the full weight space, lower when the
picture invents neighbours. PCA and t-SNE pictures of the same path can disagree (measured on the
digits MLP: t-SNE 0.56, PCA 1.00 for a 22-checkpoint path); the score says which one to believe.

All three work from the full-dimensional pairwise distances, which the streamed Gram matrix of
``trajectory_pca`` gives (:math:`\\|x_s - x_t\\|^2 = G_{ss} + G_{tt} - 2G_{st}`), so the ``(T, P)``
matrix is never held:

- ``"pca"``: the scores on the first two principal components (``TrajectoryPCA.scores``);
- ``"tsne"``: scikit-learn's exact t-SNE (van der Maaten & Hinton 2008) on the precomputed distances
  (the same result as t-SNE of the vectors themselves), initialized from the PCA scores scaled to a
  standard deviation of 1e-4 (scikit-learn's ``init="pca"``) or at random from ``seed``;
- ``"phate"``: PHATE (Moon et al. 2019) when the ``phate`` package is installed. It is GPL-2
  licensed, so losslens never requires it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from losslens.checks import check_choice, check_int, check_seed
from losslens.errors import ConfigError
from losslens.results import Result, array, attr
from losslens.trajectories.table import write_csv
from losslens.trajectories.pca import TrajectoryPCA, checkpoints_attr, trajectory_pca
from losslens.trajectories.series import Checkpoint

METHODS: tuple[str, ...] = ("pca", "tsne", "phate")
TSNE_INITS: tuple[str, ...] = ("pca", "random")
EMBEDDING_COLUMNS: tuple[str, ...] = ("method", "run", "step", "epoch", "x", "y", "checkpoint")
MIN_TSNE_ITER = 250  # scikit-learn's lower bound on max_iter


@dataclass(frozen=True, eq=False, repr=False)
class Embedding(Result):
    """Checkpoints placed in the plane by one method, with the trustworthiness of the picture.

    Attributes:
        coords: ``(T, 2)`` positions.
        method: ``"pca"``, ``"tsne"`` or ``"phate"``.
        checkpoints: the ``T`` checkpoints (run, step, epoch, path), runs one after another.
        trustworthiness: ``sklearn.manifold.trustworthiness`` of ``coords`` against the distances
            in the full weight space, with ``meta["n_neighbors"]`` neighbours.
        meta: the method's options (perplexity, max_iter, init, seed, explained variance ratio),
            ``n_neighbors``, library versions.
    """

    KIND: ClassVar[str] = "embedding"

    coords: np.ndarray = array()
    method: str = attr()
    checkpoints: tuple[Checkpoint, ...] = checkpoints_attr()
    trustworthiness: float = attr(float)
    meta: dict = field(default_factory=dict)

    @property
    def runs(self) -> list[str]:
        """The runs' names, in order, each once."""
        return list(dict.fromkeys(c.run for c in self.checkpoints))

    def table(self) -> list[dict]:
        """One row per checkpoint: ``method, run, step, epoch, x, y, checkpoint``."""
        return [{"method": self.method, "run": c.run, "step": c.step, "epoch": c.epoch, "x": float(self.coords[i, 0]),
                 "y": float(self.coords[i, 1]), "checkpoint": str(c.path)} for i, c in enumerate(self.checkpoints)]

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write ``table()`` as CSV with the header ``EMBEDDING_COLUMNS``; returns the path."""
        return write_csv(path, self.table(), EMBEDDING_COLUMNS)


def embed(
    source,
    method: Literal["pca", "tsne", "phate"] = "tsne",
    *,
    perplexity: float | None = None,
    max_iter: int = 1000,
    init: Literal["pca", "random"] = "pca",
    seed: int = 0,
    n_neighbors: int | None = None,
) -> Embedding:
    """A 2D embedding of checkpoints and its trustworthiness.

    Args:
        source: a ``TrajectoryPCA`` (its Gram matrix and scores are used), or what ``trajectory_pca``
            takes (a ``CheckpointSeries``, a list of them, a ``(T, P)`` tensor), whose PCA is computed.
        method: ``"pca"``, ``"tsne"`` or ``"phate"``.
        perplexity: t-SNE's perplexity, below ``T`` (about the number of neighbours each point
            keeps); default ``min(30, max(1, (T - 1) / 3))``.
        max_iter: t-SNE iterations, at least 250.
        init: t-SNE's start: ``"pca"`` (the PCA scores, deterministic) or ``"random"`` (from ``seed``).
        seed: seed of t-SNE (``random_state``) and PHATE.
        n_neighbors: neighbours of the trustworthiness score, ``1 <= k < T / 2``; default
            ``min(5, ceil(T / 2) - 1)``.

    Returns:
        The ``Embedding``.

    Raises:
        ConfigError: an unknown method or init, a perplexity ``>= T``, a ``max_iter`` below 250,
            ``n_neighbors`` out of range, ``"phate"`` without the ``phate`` package.
        ValueError: fewer than 3 checkpoints.
    """
    check_choice("method", method, METHODS)
    check_choice("init", init, TSNE_INITS)
    seed = check_seed(seed, high=2**32)  # t-SNE's and PHATE's numpy RandomState
    pca = source if isinstance(source, TrajectoryPCA) else trajectory_pca(source, 2)
    T = len(pca.checkpoints)
    if T < 3:
        raise ValueError(f"an embedding needs at least 3 checkpoints to score its neighbourhoods, found {T}")
    k = _neighbors(n_neighbors, T)
    distances = pca.distances()
    if method == "pca":
        coords, options = pca.scores[:, :2], {"explained_variance_ratio": [float(r) for r in
                                                                          pca.explained_variance_ratio[:2]]}
    elif method == "tsne":
        coords, options = _tsne(pca, distances, perplexity, max_iter, init, seed)
    else:
        coords, options = _phate(distances, seed, T)
    from sklearn.manifold import trustworthiness

    score = float(trustworthiness(distances, coords, n_neighbors=k, metric="precomputed"))
    meta = {**options, "n_neighbors": k, "n_points": T, "runs": pca.runs, "sources": pca.meta.get("sources", [])}
    return Embedding(np.ascontiguousarray(coords, dtype=np.float64), method, pca.checkpoints, score, meta)


def _tsne(pca: TrajectoryPCA, distances: np.ndarray, perplexity, max_iter, init: str, seed: int):
    import sklearn
    from sklearn.manifold import TSNE

    T = len(distances)
    if perplexity is None:
        perplexity = min(30.0, max(1.0, (T - 1) / 3))
    if not (isinstance(perplexity, (int, float)) and 0 < perplexity < T):
        raise ConfigError(
            f"t-SNE perplexity {perplexity!r} must be positive and less than the number of checkpoints T={T} "
            f"(it is about the number of neighbours each point keeps); try at most {(T - 1) / 3:.3g}, (T - 1) / 3"
        )
    max_iter = check_int("max_iter", max_iter, minimum=MIN_TSNE_ITER)
    if init == "pca":
        scores = pca.scores[:, :2]
        start = scores / (np.std(scores[:, 0]) or 1.0) * 1e-4
    else:
        start = "random"
    tsne = TSNE(n_components=2, perplexity=float(perplexity), max_iter=max_iter, init=start, random_state=seed,
                metric="precomputed", method="exact")
    coords = tsne.fit_transform(distances)
    options = {"perplexity": float(perplexity), "max_iter": max_iter, "init": init, "seed": seed,
               "kl_divergence": float(tsne.kl_divergence_), "n_iter": int(tsne.n_iter_),
               "sklearn_version": sklearn.__version__}
    return coords, options


def _phate(distances: np.ndarray, seed: int, T: int):
    try:
        import phate
    except ImportError:
        raise ConfigError(
            "the PHATE embedding needs the phate package, which losslens does not install (it is GPL-2 licensed): "
            "pip install phate, or use method 'pca' or 'tsne'"
        ) from None
    knn = min(5, T - 2)
    op = phate.PHATE(n_components=2, knn=knn, knn_dist="precomputed_distance", random_state=seed, verbose=0)
    coords = op.fit_transform(distances)
    return coords, {"knn": knn, "seed": seed, "phate_version": getattr(phate, "__version__", None)}


def _neighbors(n_neighbors, T: int) -> int:
    top = -(-T // 2) - 1  # the largest k < T / 2
    if n_neighbors is None:
        return min(5, top)
    return check_int(f"n_neighbors (below T / 2 = {T / 2:g})", n_neighbors, minimum=1, maximum=top)
