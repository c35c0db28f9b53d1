"""The line barriers between the final checkpoints of runs, before and after weight matching: do several
optimizers (or seeds) end in one basin, up to a permutation of their hidden units?

``run_barriers`` reads each run's last checkpoint with the evaluator's architecture and hands the vectors to
``losslens.connectivity.barrier_matrix`` (the definitions are there); ``write_barriers_csv`` writes the matrices
as ``barriers.csv``: header ``alignment, barrier, run, <run 1>, ..., <run n>``, one row per matrix
(``alignment`` ``none``, then ``weights``) and run, ``barrier`` naming the definition used. A model whose
permutation structure cannot be derived gets the raw matrix only, and says why in ``meta["note"]``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from losslens.connectivity.barrier_matrix import DEFAULT_POINTS, BarrierMatrix, barrier_matrix
from losslens.connectivity.permutation import permutation_spec
from losslens.errors import ConfigError
from losslens.trajectories.optimizer_comparison import _run_labels
from losslens.trajectories.series import CheckpointSeries, run_evaluator, run_series
from losslens.trajectories.table import write_csv


def run_barriers(runs: Sequence[str | os.PathLike], evaluator=None, *, labels: Sequence[str] | None = None,
                 split: str = "train", points: int = DEFAULT_POINTS, barrier: str = "barrier") -> BarrierMatrix:
    """The ``BarrierMatrix`` of the lines between the runs' final checkpoints.

    Args:
        runs: run directories written by ``losslens train`` (the same model).
        evaluator: the ``Evaluator`` of every loss (default: the first run's model on its data set's ``split``).
        labels: a name per run (default as ``compare_runs``: the directories' names, or their paths).
        split: the split of the default evaluator, ``"train"`` or ``"test"``.
        points: values of ``t`` on each line, both ends included.
        barrier: ``barrier``, ``barrier_mean`` or ``barrier_max`` (``losslens.connectivity.barriers``).

    Raises:
        ConfigError: fewer than two runs, labels that are not one distinct name per run, a directory that is
            not a run, a bad argument.
    """
    runs = [Path(r) for r in runs]
    labels = _run_labels(runs, labels)
    if evaluator is None:
        evaluator = run_evaluator(CheckpointSeries.from_run(runs[0]), split)
    finals = []
    for run, label in zip(runs, labels):
        series = run_series(run, evaluator, name=label)
        finals.append(series.vector(len(series) - 1, evaluator.w0.dtype).to(evaluator.w0.device))
    try:
        permutation_spec(evaluator.module_at(evaluator.w0))
        note = None
    except ConfigError as err:
        note = f"not aligned: {err}"
    return barrier_matrix(evaluator, finals, labels, points=points, barrier=barrier, aligned=note is None,
                          meta={"runs": [str(r) for r in runs], **({"note": note} if note else {})})


def write_barriers_csv(matrix: BarrierMatrix, path: str | os.PathLike) -> Path:
    """Write ``matrix`` as the table of the module docstring; returns the path."""
    return write_csv(path, matrix.rows(), matrix.columns())
