"""Exact PCA of training trajectories, from the T x T Gram matrix, reading checkpoints as it goes.

For checkpoints :math:`x_1, \\dots, x_T \\in \\mathbb R^P` (one run, or several runs together: one
basis for all), PCA decomposes the centred matrix :math:`X_c = X - \\mathbf 1 \\bar x^\\top`. With
:math:`T \\ll P` its right singular vectors come from the small Gram matrix
:math:`G_c = X_c X_c^\\top = U \\Lambda U^\\top` (``eigh`` in float64):

.. math::  s_i = \\sqrt{\\lambda_i}, \\qquad v_i = X_c^\\top u_i / s_i, \\qquad
           \\text{ratio}_i = \\lambda_i / \\operatorname{tr} G_c ,

exactly the SVD :math:`X_c = U S V^\\top` that ``sklearn.decomposition.PCA(svd_solver="full")``
computes (Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets", Sec. 7, use it for
trajectory planes). The :math:`T \\times P` matrix is never held:

1. **Gram pass.** The vectors are taken relative to the origin checkpoint :math:`o`,
   :math:`y_t = x_t - o` (centring removes any common shift, so this changes nothing but the
   rounding: it avoids the cancellation of :math:`\\|x\\|^2 \\gg \\|x_t - x_s\\|^2`). A pair's product
   :math:`y_s \\cdot y_t` needs both vectors, so checkpoints are read in blocks of
   :math:`B = \\lfloor \\text{budget} / 8P \\rfloor`: a block's own products, then every later checkpoint,
   read one at a time, against the block. Memory :math:`O(T^2 + BP)`; files read
   :math:`T + \\sum_{\\text{blocks}} (T - \\text{block end}) \\approx T + T^2/2B`, just :math:`T` when all
   fit the budget. The centring is then exact algebra on the small matrix,
   :math:`G_c = J G J` with :math:`J = I - \\mathbf 1 \\mathbf 1^\\top / T` (no pass for the mean).
2. **Direction pass.** One more read of each checkpoint accumulates :math:`\\sum_t u_{ti} y_t` and
   :math:`\\sum_t y_t`, which give :math:`v_i = (\\sum_t u_{ti} y_t - \\bar y \\sum_t u_{ti}) / s_i`.

The Gram matrix squares the condition number: a component :math:`s_i` loses about
:math:`\\varepsilon s_1^2 / s_i^2` in relative accuracy, harmless for the leading components a plane
uses; components at the rounding level (:math:`\\lambda_i \\le 10 T \\varepsilon \\lambda_1`) are refused.
Each direction's sign makes its largest-magnitude entry positive.

Reference: Antognini & Sohl-Dickstein 2018, "PCA of high dimensional random walks with comparison to
neural network training": PCA of any random walk explains most variance in few components, so a
high explained variance does not make a plane faithful; ``losslens.trajectories.paths`` measures how
far each checkpoint lies off the plane.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch

from losslens.checks import check_int, refuse
from losslens.errors import ConfigError
from losslens.landscape.directions import Directions
from losslens.results import Result, array, attr
from losslens.trajectories.series import Checkpoint, CheckpointSeries

DEFAULT_BUDGET = 2 << 30  # bytes of checkpoints the Gram pass holds at once


def checkpoints_attr():
    """A field of checkpoints, stored in the file's header as records ``run, index, step, epoch, path``."""
    return attr(lambda records: tuple(Checkpoint(r["run"], int(r["index"]), r["step"], r["epoch"], Path(r["path"]))
                                      for r in records),
                lambda checkpoints: [{"run": c.run, "index": c.index, "step": c.step, "epoch": c.epoch,
                                      "path": str(c.path)} for c in checkpoints])


@dataclass(frozen=True, eq=False, repr=False)
class TrajectoryPCA(Result):
    """Principal components of one or several runs' checkpoints (one basis for all).

    Attributes:
        components: ``(k, P)`` float64 unit principal directions :math:`v_i`, one per row.
        singular_values: ``(k,)`` :math:`s_i` of the centred checkpoint matrix.
        explained_variance: ``(k,)`` :math:`s_i^2 / (T - 1)`.
        explained_variance_ratio: ``(k,)`` :math:`s_i^2 / \\sum_j s_j^2` over all components.
        scores: ``(T, k)`` coordinates of the centred checkpoints, :math:`(x_t - \\bar x) \\cdot v_i`
            (scikit-learn's ``transform``).
        gram: ``(T, T)`` centred Gram matrix :math:`G_c` (pairwise distances follow from it).
        mean: ``(P,)`` mean checkpoint :math:`\\bar x`.
        origin: ``(P,)`` the origin checkpoint, where planes through the components are centred.
        checkpoints: the ``T`` checkpoints in order (runs one after another).
        origin_index: position of the origin among them.
        meta: ``n_points``, ``n_params``, ``runs``, ``n_reads`` (files read), ``memory_budget``,
            ``block`` (checkpoints held at once), the runs' metadata under ``sources``.
    """

    KIND: ClassVar[str] = "trajectory_pca"

    components: np.ndarray = array()
    singular_values: np.ndarray = array()
    explained_variance: np.ndarray = array()
    explained_variance_ratio: np.ndarray = array()
    scores: np.ndarray = array()
    gram: np.ndarray = array()
    mean: np.ndarray = array()
    origin: np.ndarray = array()
    checkpoints: tuple[Checkpoint, ...] = checkpoints_attr()
    origin_index: int = attr(int)
    meta: dict = field(default_factory=dict)

    @property
    def n_components(self) -> int:
        return len(self.components)

    @property
    def runs(self) -> list[str]:
        """The runs' names, in order, each once."""
        return list(dict.fromkeys(c.run for c in self.checkpoints))

    def distances(self) -> np.ndarray:
        """``(T, T)`` Euclidean distances between checkpoints in the full weight space,
        :math:`\\|x_s - x_t\\|^2 = G_{ss} + G_{tt} - 2 G_{st}` (centring does not change them)."""
        d = np.diag(self.gram)
        return np.sqrt(np.clip(d[:, None] + d[None, :] - 2 * self.gram, 0.0, None))

    def directions(self, n: int = 2, dtype: torch.dtype = torch.float64) -> Directions:
        """The first ``n`` components as ``Directions`` of kind ``"pca"`` (for ``surface_2d``)."""
        n = check_int("n", n, minimum=1, maximum=self.n_components)
        v = torch.from_numpy(self.components[:n].copy())
        meta = {
            "explained_variance_ratio": [float(r) for r in self.explained_variance_ratio[:n]],
            "singular_values": [float(s) for s in self.singular_values[:n]],
            "origin": self.origin_index,
            "origin_checkpoint": str(self.checkpoints[self.origin_index].path),
            "n_points": len(self.checkpoints),
            "n_params": int(self.components.shape[1]),
            "runs": self.runs,
            "cosine": (v @ v.T).tolist(),
        }
        return Directions(v.to(dtype), "pca", meta)


def trajectory_pca(
    runs,
    n_components: int = 2,
    *,
    origin: int | tuple[int, int] | None = None,
    memory_budget: int = DEFAULT_BUDGET,
) -> TrajectoryPCA:
    """Exact PCA of the checkpoints of one run or of several runs jointly (see the module docstring).

    Args:
        runs: a ``CheckpointSeries``, a list of them (one basis for all; their parameter spaces must
            match), or a ``(T, P)`` tensor of points held in memory.
        n_components: components to compute, at most ``T - 1`` (and ``P``).
        origin: the origin checkpoint: ``None`` for the last checkpoint of the first run, an index
            into all checkpoints in order (negative counts from the end), or ``(run, index)``.
        memory_budget: bytes of float64 checkpoints the Gram pass may hold at once (at least one
            is always held).

    Returns:
        The ``TrajectoryPCA``.

    Raises:
        ConfigError: ``n_components`` out of range, an invalid origin.
        ValueError: fewer than two checkpoints, ``n_components`` beyond the dimensions the checkpoints
            span, runs of different sizes.
    """
    points = _Points(runs)
    T, P = len(points), points.size
    if T < 2:
        raise ValueError(f"PCA of a trajectory needs at least 2 checkpoints, found {T}")
    k = check_int("n_components", n_components, minimum=1)
    if k > min(T - 1, P):
        raise ConfigError(f"n={k} directions: PCA of {T} checkpoints of {P} parameters gives at most "
                          f"min(T - 1, P) = {min(T - 1, P)} components")
    memory_budget = check_int("memory_budget", memory_budget, minimum=1)
    o_index = points.origin_index(origin)
    o = points.get(o_index)
    block = max(1, min(T, memory_budget // (8 * P)))
    Gc, lam, U = _centred_eigenpairs(_gram(points, o, block), k)
    s = np.sqrt(lam[:k])
    V, U_k, y_mean = _components(points, o, np.ascontiguousarray(U[:, :k]), s)
    total = float(np.trace(Gc))
    meta = {"n_points": T, "n_params": P, "runs": list(dict.fromkeys(c.run for c in points.labels)),
            "n_reads": points.reads, "memory_budget": memory_budget, "block": block,
            "total_variance": total / (T - 1), "sources": points.sources}
    return TrajectoryPCA(
        components=V,
        singular_values=s,
        explained_variance=lam[:k] / (T - 1),
        explained_variance_ratio=lam[:k] / total,
        scores=U_k * s[None, :],
        gram=Gc,
        mean=o.numpy() + y_mean,
        origin=o.numpy(),
        checkpoints=tuple(points.labels),
        origin_index=o_index,
        meta=meta,
    )


def _centred_eigenpairs(G: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(Gc, eigenvalues, eigenvectors)`` of the Gram matrix centred on the checkpoints' mean,
    :math:`G_c = (I - \\tfrac1T 11^T) G (I - \\tfrac1T 11^T)`, descending; a ValueError when its first ``k``
    eigenvalues are not all above rounding (the checkpoints span fewer dimensions)."""
    T = len(G)
    row = G.mean(axis=1)
    Gc = G - row[:, None] - row[None, :] + row.mean()
    Gc = (Gc + Gc.T) / 2
    lam, U = np.linalg.eigh(Gc)
    lam, U = lam[::-1], U[:, ::-1]
    floor = 10 * T * np.finfo(np.float64).eps * max(lam[0], 0.0)
    if lam[0] <= 0 or lam[k - 1] <= floor:
        rank = int((lam > floor).sum())
        raise ValueError(
            f"n={k} directions: the {T} checkpoints span only {rank} dimension(s) around their mean "
            "(identical or collinear checkpoints); ask for fewer components"
        )
    return Gc, lam, U


def _components(points: "_Points", o: torch.Tensor, U_k: np.ndarray, s: np.ndarray):
    """``(V, U_k, mean offset)``: the unit components :math:`v_i = Y_c^T u_i / s_i` from one pass over the
    checkpoints (``Y`` their offsets from ``o``, centred), each with the sign that makes its entry of largest
    magnitude positive (``U_k`` flipped with it), and the mean of the offsets."""
    k = len(s)
    V, y_sum = _directions_pass(points, o, U_k)
    y_mean = y_sum / len(points)
    V = (V - np.outer(U_k.sum(axis=0), y_mean)) / s[:, None]
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    signs = np.where(V[np.arange(k), np.abs(V).argmax(axis=1)] < 0, -1.0, 1.0)
    return V * signs[:, None], U_k * signs[None, :], y_mean


def pca_directions(points, n: int = 2, *, origin: Literal["last"] | int = "last") -> Directions:
    """Principal directions of a trajectory (Li et al. 2018, Sec. 7), as ``Directions`` of kind ``"pca"``.

    ``trajectory_pca(points, n, origin=...).directions(n)``, in the points' dtype for a tensor
    (float32 for a lower precision), float64 for checkpoint series. ``meta`` holds
    ``explained_variance_ratio``, ``singular_values``, ``origin`` (the non-negative index),
    ``n_points``, ``n_params`` and ``cosine``.

    Args:
        points: a ``(T, P)`` tensor, a ``CheckpointSeries`` or a list of them.
        n: number of directions.
        origin: ``"last"`` (the last point of the first run) or an index.

    Raises:
        ValueError: as ``trajectory_pca``; an origin that is not ``"last"`` or a valid index.
    """
    if not (origin == "last" or (isinstance(origin, int) and not isinstance(origin, bool))):
        raise refuse("origin", "'last' or an index of the points", origin)
    pca = trajectory_pca(points, n, origin=None if origin == "last" else origin)
    dtype = torch.float64
    if isinstance(points, torch.Tensor) and points.dtype != torch.float64:
        dtype = torch.float32
    return pca.directions(n, dtype)


# -- the passes -----------------------------------------------------------------------------------


class _Points:
    """The checkpoints of several series in order (or the rows of a tensor), read on demand."""

    def __init__(self, runs):
        if isinstance(runs, torch.Tensor):
            if runs.dim() != 2 or not runs.is_floating_point():
                raise ValueError(f"points must be a floating (T, P) tensor, found {runs.dtype} of shape {list(runs.shape)}")
            rows = runs.detach().cpu()
            self._get = lambda t: rows[t].to(torch.float64)
            self.labels = [Checkpoint("points", t, None, None, Path(f"row {t}")) for t in range(len(rows))]
            self.size, self.sources, self._ends = rows.shape[1], [], [len(rows)]
        else:
            series = [runs] if isinstance(runs, CheckpointSeries) else list(runs)
            if not series or not all(isinstance(s, CheckpointSeries) for s in series):
                raise ValueError("runs must be a CheckpointSeries, a non-empty list of them, or a (T, P) tensor")
            sizes = {s.space.size for s in series}
            if len(sizes) > 1:
                raise ValueError(f"the runs' parameter spaces differ in size ({sorted(sizes)}): one basis needs one space")
            where = [(s, i) for s in series for i in range(len(s))]
            self._get = lambda t: where[t][0].vector(where[t][1], torch.float64)
            self.labels = [s[i] for s, i in where]
            self.size = sizes.pop()
            self.sources = [{k: v for k, v in s.metadata.items() if k not in ("checkpoints", "history")}
                            for s in series]
            self._ends = list(np.cumsum([len(s) for s in series]))
        self.reads = 0

    def __len__(self) -> int:
        return len(self.labels)

    def get(self, t: int) -> torch.Tensor:
        self.reads += 1
        return self._get(t)

    def origin_index(self, origin) -> int:
        T = len(self)
        if origin is None:
            return int(self._ends[0]) - 1
        if isinstance(origin, tuple) and len(origin) == 2:
            run, i = origin
            starts = [0] + [int(e) for e in self._ends[:-1]]
            if not (isinstance(run, int) and 0 <= run < len(starts)):
                raise refuse("origin's run", f"an index of the {len(starts)} runs", run)
            n = int(self._ends[run]) - starts[run]
            if not (isinstance(i, int) and -n <= i < n):
                raise refuse("origin's index", f"an index of the {n} checkpoints of run {run}", i)
            return starts[run] + i % n
        if isinstance(origin, bool) or not isinstance(origin, int) or not -T <= origin < T:
            raise refuse("origin", f"'last' or an index of the {T} points", origin)
        return origin % T


def _gram(points: _Points, o: torch.Tensor, block: int) -> np.ndarray:
    """``(T, T)`` products :math:`(x_s - o) \\cdot (x_t - o)`, holding ``block`` checkpoints at a time."""
    T = len(points)
    G = torch.zeros(T, T, dtype=torch.float64)
    for start in range(0, T, block):
        end = min(T, start + block)
        Y = torch.stack([points.get(t) - o for t in range(start, end)])
        G[start:end, start:end] = Y @ Y.T
        for t in range(end, T):
            g = Y @ (points.get(t) - o)
            G[start:end, t] = g
            G[t, start:end] = g
    return G.numpy()


def _directions_pass(points: _Points, o: torch.Tensor, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:math:`\\sum_t u_{ti} y_t` for the columns of ``U`` (``(k, P)``) and :math:`\\sum_t y_t`, one read each."""
    U = torch.from_numpy(U)
    V = torch.zeros(U.shape[1], points.size, dtype=torch.float64)
    y_sum = torch.zeros(points.size, dtype=torch.float64)
    for t in range(len(points)):
        y = points.get(t) - o
        V += U[t][:, None] * y[None, :]
        y_sum += y
    return V.numpy(), y_sum.numpy()

