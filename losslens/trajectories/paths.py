"""Training paths on the PCA plane, with how much of each checkpoint the plane hides.

A checkpoint :math:`x_t` is drawn on the plane through the origin checkpoint :math:`o` spanned by
the unit principal directions :math:`v_1, v_2` (``losslens.trajectories.pca``) at its coordinates

.. math::  c_t = \\big((x_t - o) \\cdot v_1,\\; (x_t - o) \\cdot v_2\\big)

(in weight-space units: distances in the plane are distances between weights), but the point drawn
is its projection :math:`p_t = o + c_{t,1} v_1 + c_{t,2} v_2`, not the checkpoint. So for every
checkpoint this module reports

- the **residual** :math:`r_t = \\lVert x_t - p_t \\rVert`, the part of the weights outside the plane,
  and the **relative residual** :math:`r_t / \\lVert x_t - o \\rVert` (0 at the origin);
- the **true loss** :math:`L(x_t)` (``Evaluator.evaluate`` at the checkpoint) next to the **plane
  loss** :math:`L(p_t)` (``Evaluator.evaluate_affine`` at the projection), the value the contour
  shows under the drawn point (why a drawn path's loss disagrees with the contour:
  tomgoldstein/loss-landscape issue 1);
- a **trust flag**: the point is trusted when its relative residual is at most ``threshold``
  (default 0.1: at most 10% of its displacement from the origin lies off the plane). Antognini &
  Sohl-Dickstein (2018) show that PCA of any random walk explains most of its variance in two
  components, so a high explained variance alone does not make the picture faithful.

``plane_surface`` evaluates the loss over the plane through the core (``surface_2d``), on a grid
stretched to cover every projected point with a margin. Checkpoints are read one at a time and
evaluated in chunks sized to a memory budget; the ``(T, P)`` matrix is never held.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np
import torch

from losslens import _io
from losslens.checks import check_number
from losslens.core.evaluator import EvalResult
from losslens.results import Group, Result, array, stored, to_dataframe
from losslens.trajectories.table import write_csv
from losslens.trajectories.pca import (
    DEFAULT_BUDGET, TrajectoryPCA, checkpoints_attr, trajectory_pca,
)
from losslens.trajectories.series import Checkpoint, CheckpointSeries

DEFAULT_THRESHOLD = 0.1
PATHS_COLUMNS: tuple[str, ...] = (
    "run", "step", "epoch", "pc1", "pc2", "residual", "rel_residual", "true_loss", "plane_loss", "checkpoint",
)


@dataclass(frozen=True, eq=False, repr=False)
class TrajectoryPaths(Result):
    """Checkpoints of one or several runs on a PCA plane, with residuals and true/plane losses.

    Attributes:
        checkpoints: the ``T`` checkpoints, runs one after another, each in training order.
        coords: ``(T, 2)`` plane coordinates :math:`c_t` along the unit directions (weight-space units).
        residual: ``(T,)`` :math:`\\lVert x_t - p_t \\rVert`, the distance of each checkpoint from the plane.
        distance: ``(T,)`` :math:`\\lVert x_t - o \\rVert`, its distance from the origin.
        step_distance: ``(T,)`` :math:`\\lVert x_t - x_{t-1} \\rVert` to the previous checkpoint of the
            same run (0 for a run's first), in the full weight space.
        distance_from_init: ``(T,)`` distance to the first checkpoint of the same run (its
            initialization, for a run of ``losslens train``), in the full weight space.
        true_loss: ``(T,)`` :math:`L(x_t)`.
        plane_loss: ``(T,)`` :math:`L(p_t)`, the loss at the projection on the plane.
        true_metrics, plane_metrics: ``{name: (T,)}`` the evaluator's metrics at the same points.
        meta: ``threshold``; ``pca`` (explained variance ratio and singular values of the two
            components, origin index and checkpoint, points and parameters); the evaluator's
            ``meta()`` under ``evaluator``; the caller's provenance under ``source``.
    """

    KIND: ClassVar[str] = "trajectory"

    checkpoints: tuple[Checkpoint, ...] = checkpoints_attr()
    coords: np.ndarray = array()
    residual: np.ndarray = array()
    distance: np.ndarray = array()
    step_distance: np.ndarray = array()
    distance_from_init: np.ndarray = array()
    true_loss: np.ndarray = array()
    plane_loss: np.ndarray = array()
    true_metrics: dict[str, np.ndarray] = stored(Group(), default_factory=dict)
    plane_metrics: dict[str, np.ndarray] = stored(Group(), default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.checkpoints)

    @property
    def threshold(self) -> float:
        """The largest relative residual of a trusted point."""
        return float(self.meta["threshold"])

    @property
    def rel_residual(self) -> np.ndarray:
        """``(T,)`` residual over distance from the origin; 0 at the origin itself."""
        safe = np.where(self.distance > 0, self.distance, 1.0)
        return np.where(self.distance > 0, self.residual / safe, 0.0)

    @property
    def trusted(self) -> np.ndarray:
        """``(T,)`` bool: the relative residual is at most ``threshold``."""
        return self.rel_residual <= self.threshold

    @property
    def runs(self) -> list[str]:
        """The runs' names, in order, each once."""
        return list(dict.fromkeys(c.run for c in self.checkpoints))

    def of_run(self, run: str) -> np.ndarray:
        """Positions of the checkpoints of ``run``, in training order.

        Raises:
            ValueError: no such run (the runs are listed).
        """
        index = np.array([i for i, c in enumerate(self.checkpoints) if c.run == run], dtype=int)
        if not len(index):
            raise ValueError(f"no run {run!r} in these paths; runs: {', '.join(self.runs)}")
        return index

    def path_length(self, run: str) -> float:
        """Length of ``run``'s path in the full weight space: the sum of its step distances."""
        return float(self.step_distance[self.of_run(run)].sum())

    def paths_table(self) -> list[dict]:
        """One row per checkpoint: ``run, step, epoch, pc1, pc2, residual, rel_residual, true_loss,
        plane_loss, checkpoint`` (``PATHS_COLUMNS``)."""
        rel = self.rel_residual
        return [
            {"run": c.run, "step": c.step, "epoch": c.epoch, "pc1": float(self.coords[i, 0]),
             "pc2": float(self.coords[i, 1]), "residual": float(self.residual[i]), "rel_residual": float(rel[i]),
             "true_loss": float(self.true_loss[i]), "plane_loss": float(self.plane_loss[i]),
             "checkpoint": str(c.path)}
            for i, c in enumerate(self.checkpoints)
        ]

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write ``paths_table()`` as CSV with the header ``PATHS_COLUMNS``; returns the path."""
        return write_csv(path, self.paths_table(), PATHS_COLUMNS)

    def key_figures(self) -> dict:
        """Runs, checkpoints, the trust threshold and how many checkpoints are above it."""
        return {"runs": self.runs, "checkpoints": len(self), "threshold": self.threshold,
                "untrusted": int((~self.trusted).sum())}

    def to_pandas(self):
        """``paths_table()`` as a ``pandas.DataFrame`` (pandas is needed)."""
        return to_dataframe(self.paths_table(), PATHS_COLUMNS)

    def save_projection(self, path: str | os.PathLike, run: str | None = None) -> Path:
        """A projection file of the older loss-landscape tool (tomgoldstein/loss-landscape): one run's
        coordinates as ``proj_xcoord`` and ``proj_ycoord``, and ``explained_variance_ratio_``, so the
        same file serves its ``plot_2D.plot_contour_trajectory(surf_file, dir_file, proj_file)`` as
        ``dir_file`` and ``proj_file`` (with the plane's surface file as ``surf_file``).

        Args:
            run: the run (default: the only one; required when there are several).

        The file is written like every result file (``_io.write_h5``: atomically, locked, never over a
        file that is not a projection), with a ``projection`` header the older tool ignores.

        Raises:
            ValueError: several runs and no ``run``, or an unknown run.
            LosslensError: ``path`` holds something else, or another process writes it.
        """
        if run is None:
            if len(self.runs) > 1:
                raise ValueError(f"these paths hold {len(self.runs)} runs ({', '.join(self.runs)}): name one")
            run = self.runs[0]
        index = self.of_run(run)
        arrays = {"proj_xcoord": self.coords[index, 0], "proj_ycoord": self.coords[index, 1],
                  "explained_variance_ratio_": np.asarray(self.meta["pca"]["explained_variance_ratio"][:2])}
        return _io.write_h5(Path(path), "projection", arrays, {"run": run})



def trajectory_paths(
    evaluator,
    runs: CheckpointSeries | Sequence[CheckpointSeries],
    pca: TrajectoryPCA | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    memory_budget: int = DEFAULT_BUDGET,
    meta: dict | None = None,
) -> TrajectoryPaths:
    """Coordinates, residuals, true and plane losses of every checkpoint on the PCA plane.

    For models with BatchNorm, evaluate with ``include_buffers=True`` (each checkpoint's running
    statistics travel with its vector) or ``bn="recalibrate"``; with the default, every point uses the
    statistics of the evaluator's own model.

    Args:
        evaluator: the ``Evaluator`` giving every loss; the series' vectors must be in its parameter
            space (build them with ``space=evaluator.space``).
        runs: a ``CheckpointSeries`` or a list of them.
        pca: their joint PCA (default: ``trajectory_pca(runs, 2)``, origin the last checkpoint of the
            first run); its first two components span the plane, its origin is the plane's origin.
        threshold: the largest relative residual of a trusted point, ``> 0``.
        memory_budget: bytes of checkpoints evaluated together (at least one at a time).
        meta: the caller's provenance (model, data), kept under ``meta["source"]``.

    Returns:
        The ``TrajectoryPaths``.

    Raises:
        ConfigError: a threshold that is not positive.
        ValueError: a PCA of other checkpoints or with fewer than two components, series in another
            parameter space than the evaluator's.
    """
    series = [runs] if isinstance(runs, CheckpointSeries) else list(runs)
    threshold = check_number("threshold", threshold, positive=True, finite=False)
    _check_spaces(series, evaluator)
    pca = pca if pca is not None else trajectory_pca(series, 2, memory_budget=memory_budget)
    items = [c for s in series for c in s]
    if [c.path for c in pca.checkpoints] != [c.path for c in items] or pca.n_components < 2:
        raise ValueError("pca must be the PCA (with at least 2 components) of exactly these runs' checkpoints")
    o, D = torch.from_numpy(pca.origin), torch.from_numpy(np.ascontiguousarray(pca.components[:2]))
    rows, true = _project(series, evaluator, o, D, max(1, memory_budget // (evaluator.space.size * 8)))
    coords = torch.stack([r[0] for r in rows])
    plane = evaluator.evaluate_affine(o, D, coeffs=coords)
    info = {"threshold": threshold, "pca": _plane_record(pca, evaluator.space.size), "evaluator": evaluator.meta(),
            "source": dict(meta or {})}
    return TrajectoryPaths(
        checkpoints=tuple(items),
        coords=coords.numpy(),
        residual=np.array([r[1] for r in rows]),
        distance=np.array([r[2] for r in rows]),
        step_distance=np.array([r[3] for r in rows]),
        distance_from_init=np.array([r[4] for r in rows]),
        true_loss=_float64(true.loss),
        plane_loss=_float64(plane.loss),
        true_metrics={k: _float64(v) for k, v in true.metrics.items()},
        plane_metrics={k: _float64(v) for k, v in plane.metrics.items()},
        meta=info,
    )


def _float64(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _check_spaces(series: list[CheckpointSeries], evaluator) -> None:
    """A ValueError naming the first run whose checkpoints are read into another space than the evaluator's."""
    for s in series:
        if s.space.names != evaluator.space.names or s.space.shapes != evaluator.space.shapes:
            raise ValueError(f"run {s.run!r}: its checkpoints are read into another parameter space than the "
                             "evaluator's; build the series with space=evaluator.space")


def _project(series: list[CheckpointSeries], evaluator, o: torch.Tensor, D: torch.Tensor, chunk: int):
    """``(rows, true losses)``: per checkpoint ``(coords D (x - o), residual, distance from o, step distance,
    distance from the run's first)``, and its ``EvalResult``, evaluated ``chunk`` checkpoints at a time."""
    rows, pending, true_parts = [], [], []
    for s in series:
        previous = first = None
        for i in range(len(s)):
            x = s.vector(i, torch.float64)
            first = x if first is None else first
            y = x - o
            c = D @ y
            rows.append((c, float((y - c @ D).norm()), float(y.norm()),
                         0.0 if previous is None else float((x - previous).norm()), float((x - first).norm())))
            previous = x
            pending.append(x)
            if len(pending) == chunk:
                true_parts.append(evaluator.evaluate(torch.stack(pending)))
                pending = []
    if pending:
        true_parts.append(evaluator.evaluate(torch.stack(pending)))
    return rows, EvalResult.cat(true_parts)


def _plane_record(pca: TrajectoryPCA, n_params: int) -> dict:
    """What the paths' ``meta["pca"]`` keeps of the plane's PCA."""
    return {
        "explained_variance_ratio": [float(v) for v in pca.explained_variance_ratio[:2]],
        "singular_values": [float(v) for v in pca.singular_values[:2]],
        "origin_index": pca.origin_index,
        "origin_checkpoint": str(pca.checkpoints[pca.origin_index].path),
        "n_points": len(pca.checkpoints),
        "n_params": n_params,
    }


def plane_grid(paths: TrajectoryPaths, steps: int | tuple[int, int] = 41, margin: float = 0.1):
    """``(x, y)`` grid coordinates covering every projected point and the origin, each axis widened
    by ``margin`` times its span on both sides (a span of 0 counts as 1).

    Args:
        paths: the ``TrajectoryPaths`` whose projected points the grid covers.
        steps: grid points per axis, or ``(nx, ny)``.
        margin: the fraction of each axis's span added on both sides (>= 0).

    Raises:
        ValueError: fewer than 2 steps; ConfigError: a negative margin.
    """
    nx, ny = (steps, steps) if isinstance(steps, int) else steps
    if min(nx, ny) < 2:
        raise ValueError(f"a plane needs at least 2 grid steps per axis, got {steps!r}")
    check_number("margin", margin, minimum=0)
    axes = []
    for values, n in ((paths.coords[:, 0], nx), (paths.coords[:, 1], ny)):
        lo, hi = min(float(values.min()), 0.0), max(float(values.max()), 0.0)
        pad = margin * ((hi - lo) or 1.0)
        axes.append(np.linspace(lo - pad, hi + pad, n))
    return axes[0], axes[1]


def plane_surface(
    evaluator,
    pca: TrajectoryPCA,
    paths: TrajectoryPaths,
    *,
    steps: int | tuple[int, int] = 41,
    margin: float = 0.1,
    path: str | os.PathLike | None = None,
    progress: bool = True,
    meta: dict | None = None,
):
    """The loss over the PCA plane, :math:`L(o + x v_1 + y v_2)`, on ``plane_grid(paths, steps, margin)``.

    Computed by ``losslens.landscape.surface.surface_2d`` (resumable with ``path``, shared among
    torchrun processes), with ``meta`` (the caller's provenance) and the runs and threshold of the paths.

    Args:
        evaluator: the ``Evaluator`` that computes every value.
        pca: the ``TrajectoryPCA`` whose origin :math:`o` and directions :math:`v_1, v_2` span the plane.
        paths: the ``TrajectoryPaths`` on that plane (they set the grid's extent).
        steps: grid points per axis, or ``(nx, ny)``.
        margin: the fraction of each axis's span added on both sides (>= 0).
        path: HDF5 file of the surface, resumed when it holds the same grid; ``None`` keeps it in memory.
        progress: show a progress bar over the grid points.
        meta: the caller's provenance, stored in the surface's ``meta``.

    Returns:
        The surface, its ``loss`` of shape ``(ny, nx)`` (``loss[iy, ix]`` at ``(x[ix], y[iy])``).
    """
    from losslens.landscape.surface import surface_2d

    x, y = plane_grid(paths, steps, margin)
    caller = dict(meta or {})
    caller.setdefault("trajectory", {"runs": paths.runs, "threshold": paths.threshold})
    return surface_2d(evaluator, torch.from_numpy(pca.origin), pca.directions(2), x, y,
                      path=path, progress=progress, meta=caller)

