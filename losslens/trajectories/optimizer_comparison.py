"""Comparing optimizers: runs from one seeded initialization, their paths on one joint PCA plane, a table.

``compare_optimizers`` trains each optimizer with ``losslens.core.train.train`` from the same seeded
initialization, on the same data in the same batch order (the seed fixes both), one run directory
per optimizer; ``compare_runs`` takes finished run directories. Both then compute one joint PCA of
all checkpoints (``trajectory_pca``: one basis, so the paths share one picture), the honest paths
on its plane (``trajectory_paths``), the loss surface over the plane (``plane_surface``), and a
table with, per run:

- ``final_train_loss``, ``final_test_loss``, ``final_train_acc``, ``final_test_acc``: the last epoch
  of ``run.json`` (the trainer's evaluator over the full sets);
- ``path_length``: :math:`\\sum_t \\lVert x_{t+1} - x_t \\rVert` over the saved checkpoints, in the full
  weight space (a lower bound of the distance travelled between them);
- ``distance_from_init``: :math:`\\lVert x_T - x_0 \\rVert`;
- ``max_rel_residual``: the largest relative residual of the run's checkpoints (how much of its
  motion the plane hides), and ``n_untrusted``, the checkpoints above the trust threshold;
- ``epochs``, ``lr``, ``n_checkpoints``.

The default learning rates (``DEFAULT_LRS``) were chosen on the built-in MLP and digits (batch 64,
10 epochs) as the best of a 3-point grid per optimizer (about 3x apart); other models need their own.
``adamw`` gets its decoupled weight decay of 0.01 (``DEFAULT_OPTIONS``; the trainer passes 0 unless
asked, which would make it Adam).

Under ``torchrun`` with ``W`` processes, rank ``r`` trains optimizers ``r, r + W, ...``; after a
barrier every rank computes the comparison (the surface's grid is shared among them, see
``losslens.landscape.surface``), so the result equals a single process's (training is seeded and
deterministic on one device). Only rank 0 writes the surface file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Sequence

import torch

from losslens.errors import ConfigError
from losslens.results import Nested, Result, attr, stored, to_dataframe
from losslens.trajectories.table import write_csv
from losslens.trajectories.paths import DEFAULT_THRESHOLD, TrajectoryPaths, plane_surface, trajectory_paths
from losslens.trajectories.pca import DEFAULT_BUDGET, trajectory_pca
from losslens.trajectories.series import CheckpointSeries, run_evaluator, run_series

DEFAULT_LRS: dict[str, float] = {
    "sgd": 0.1, "momentum": 0.03, "nesterov": 0.03, "book-momentum": 0.1, "adam": 3e-3, "adamw": 3e-3,
    "rmsprop": 1e-3, "adagrad": 0.03, "lion": 1e-3,
}
DEFAULT_OPTIONS: dict[str, dict] = {"adamw": {"weight_decay": 1e-2}}  # AdamW's own default; else it is Adam
COMPARISON_COLUMNS: tuple[str, ...] = (
    "optimizer", "final_train_loss", "final_test_loss", "final_train_acc", "final_test_acc", "path_length",
    "distance_from_init", "max_rel_residual", "n_untrusted", "n_checkpoints", "epochs", "lr", "run",
)
RUNS_DIR = "runs"  # under the output directory: one run directory per optimizer


@dataclass(frozen=True, eq=False, repr=False)
class OptimizerComparison(Result):
    """Runs compared on one joint PCA plane.

    Attributes:
        table: one row per run, with the ``COMPARISON_COLUMNS``.
        paths: every run's checkpoints on the plane (``TrajectoryPaths``; runs named by ``optimizer``).
        meta: the runs' recipes (``sources``), the threshold, the evaluator, notes on skipped optimizers.
    """

    KIND: ClassVar[str] = "optimizer_comparison"

    table: tuple[dict, ...] = attr(tuple)
    paths: TrajectoryPaths = stored(Nested(TrajectoryPaths))
    meta: dict = field(default_factory=dict)

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write the table as CSV with the header ``COMPARISON_COLUMNS``; returns the path."""
        return write_csv(path, self.table, COMPARISON_COLUMNS)

    def to_pandas(self):
        """The table, one row per run, as a ``pandas.DataFrame`` (pandas is needed)."""
        return to_dataframe(self.table, COMPARISON_COLUMNS)


def compare_runs(
    runs: Sequence[str | os.PathLike],
    evaluator=None,
    *,
    labels: Sequence[str] | None = None,
    split: str = "train",
    origin: int | tuple[int, int] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    steps: int | tuple[int, int] = 41,
    margin: float = 0.1,
    surface_path: str | os.PathLike | None = None,
    progress: bool = True,
    memory_budget: int = DEFAULT_BUDGET,
    meta: dict | None = None,
):
    """Compare finished runs on one joint PCA plane.

    Args:
        runs: run directories written by ``losslens train`` (the same model).
        evaluator: the ``Evaluator`` of every loss (default: the first run's model on its data set's
            ``split``, ``losslens.trajectories.series.run_evaluator``).
        labels: a name per run (default: the directories' names, or their paths when two share a name).
        split: the split of the default evaluator, ``"train"`` or ``"test"``.
        origin: the plane's origin, as in ``trajectory_pca`` (default: the first run's last checkpoint).
        threshold: the largest relative residual of a trusted point.
        steps, margin: the surface's grid (``plane_grid``).
        surface_path: HDF5 file of the surface (resumable), or ``None``.
        progress: progress bar of the surface.
        memory_budget: bytes of checkpoints held at once.
        meta: the caller's provenance (model, data), kept in the results.

    Returns:
        ``(comparison, surface)``: the ``OptimizerComparison`` and the loss over the plane (``(ny, nx)``).

    Raises:
        ConfigError: fewer than two runs, labels that are not one distinct name per run, a
            directory that is not a run.
    """
    runs = [Path(r) for r in runs]
    labels = _run_labels(runs, labels)
    if evaluator is None:
        evaluator = run_evaluator(CheckpointSeries.from_run(runs[0]), split)
    series = [run_series(r, evaluator, name=label) for r, label in zip(runs, labels)]
    pca = trajectory_pca(series, 2, origin=origin, memory_budget=memory_budget)
    paths = trajectory_paths(evaluator, series, pca, threshold=threshold, memory_budget=memory_budget, meta=meta)
    surface = plane_surface(evaluator, pca, paths, steps=steps, margin=margin, path=surface_path, progress=progress,
                            meta=meta)
    table = tuple(_row(s, paths) for s in series)
    info = {"threshold": float(threshold), "evaluator": evaluator.meta(), "source": dict(meta or {}),
            "sources": [{k: v for k, v in s.metadata.items() if k not in ("checkpoints", "history")} for s in series],
            "pca": paths.meta["pca"]}
    return OptimizerComparison(table, paths, info), surface


def _run_labels(runs: list[Path], labels) -> list[str]:
    """The runs' labels: those given, else the directories' names, or their paths when two share a name;
    a ConfigError for fewer than two runs, a folder given twice, or labels that are not one distinct name
    per run."""
    given = labels is not None
    labels = [str(x) for x in labels] if given else [r.resolve().name for r in runs]
    if not given and len(set(labels)) < len(labels):  # a/run and b/run: label them by their paths
        labels = [str(r.resolve()) for r in runs]
    if len(runs) < 2:
        raise ConfigError(f"a comparison needs at least two runs, got {len(runs)}")
    if not given and len(set(labels)) < len(labels):
        raise ConfigError(f"the runs must be different folders, got {[str(r) for r in runs]}")
    if len(labels) != len(runs) or len(set(labels)) != len(labels):
        raise ConfigError(f"labels must name each of the {len(runs)} runs once, got {labels}")
    return labels


def train_optimizers(
    optimizers: Sequence[str] | None = None,
    *,
    out: str | os.PathLike,
    lrs: dict[str, float] | None = None,
    options: dict[str, dict] | None = None,
    model: str = "mlp",
    data: str = "digits",
    epochs: int = 10,
    batch_size: int = 64,
    seed: int = 0,
    model_kwargs: dict | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
) -> tuple[list[Path], list[str]]:
    """Train each optimizer from the same seeded initialization into ``out/runs/<name>``.

    A run directory that already holds a finished run of the same recipe is reused. Under
    ``torchrun``, rank ``r`` trains optimizers ``r, r + W, ...`` and every rank waits for all.

    Args:
        optimizers: optimizer names (see ``losslens.core.optimizers``); default
            ``COMPARISON_DEFAULTS``, without those whose package is missing (lion needs
            ``pytorch-optimizer``), which are skipped with one warning each (``installed``).
        out: the output directory.
        lrs: learning rates by name, over ``DEFAULT_LRS``.
        options: optimizer options by name (``{"momentum": {"dampening": 0.9}}``), over ``DEFAULT_OPTIONS``.
        model: a built-in model name or import string, built for the data and initialized with ``seed``.
        data: a data set name or import string (its train split trained on, its test split evaluated).
        epochs: passes over the training set of each run.
        batch_size: samples per optimizer step.
        seed: the seed of the common initialization and of the batches' order.
        model_kwargs: options of a built-in model (``{"hidden": [128, 64]}``).
        device: ``"auto"`` (CUDA when available) or a torch device.
        progress: show progress bars.

    Returns:
        ``(run directories, notes)``: the runs in the order of ``optimizers``, and a note per
        skipped optimizer.

    Raises:
        ConfigError: an unknown or repeated optimizer, one without a default learning rate and
            none given, a learning rate for an optimizer not compared.
    """
    optimizers, notes = _installed_defaults() if optimizers is None else (list(optimizers), [])
    recipes = _optimizer_recipes(optimizers, dict(lrs or {}), dict(options or {}))
    root = Path(out) / RUNS_DIR
    common = {"model": model, "model_kwargs": dict(model_kwargs or {}), "data": data, "epochs": epochs,
              "batch_size": batch_size, "seed": seed}
    _train_missing(root, recipes, common, device, progress)
    return [root / name for name in optimizers], notes


def _installed_defaults() -> tuple[list[str], list[str]]:
    """``COMPARISON_DEFAULTS`` whose packages are installed, and a note for each of the others."""
    from losslens.core.optimizers import COMPARISON_DEFAULTS, installed

    optimizers = installed(COMPARISON_DEFAULTS)
    return list(optimizers), [f"{o} skipped: pytorch-optimizer is not installed" for o in COMPARISON_DEFAULTS
                              if o not in optimizers]


def _train_missing(root: Path, recipes: dict[str, tuple], common: dict, device, progress: bool) -> None:
    """Train each optimizer of ``recipes`` (from ``_optimizer_recipes``) into ``root/<name>`` with the
    ``common`` recipe (model, data, epochs, batch size, seed), unless that folder holds the finished run
    already; under ``torchrun`` rank ``r`` trains the optimizers ``r, r + W, ...`` and every rank waits."""
    from losslens._distributed import Group
    from losslens.trajectories.training import train_with_dynamics

    group = Group()
    for i, (name, (lr, extra, recorded)) in enumerate(recipes.items()):
        if i % group.size != group.rank or _finished(root / name, {**common, **recorded}):
            continue
        train_with_dynamics(common["model"], common["data"], optimizer=name, lr=lr, optimizer_kwargs=extra,
                            epochs=common["epochs"], batch_size=common["batch_size"], seed=common["seed"],
                            out=root / name, model_kwargs=common["model_kwargs"], device=device,
                            overwrite=True, progress=progress)
    if group.active:
        torch.distributed.barrier()


def _optimizer_recipes(optimizers: list[str], lrs: dict, options: dict) -> dict[str, tuple]:
    """``{name: (lr, options, what train records of the optimizer)}``, each name's learning rate and options
    over the defaults; a ConfigError for a name unknown, repeated or without a learning rate, or a rate or
    options given for an optimizer not compared."""
    from losslens.core.optimizers import make_optimizer, resolve_optimizer

    if len(set(optimizers)) != len(optimizers) or not optimizers:
        raise ConfigError(f"give each optimizer once (and at least one), got {optimizers}")
    for what, given in (("learning rates", lrs), ("options", options)):
        unused = sorted(set(given) - set(optimizers))
        if unused:
            raise ConfigError(f"{what} given for {', '.join(unused)}, which are not compared "
                              f"(optimizers: {', '.join(optimizers)})")
    recipes = {}
    for name in optimizers:
        resolve_optimizer(name)  # an unknown name fails here, listing the valid ones
        lr = lrs.get(name, DEFAULT_LRS.get(name.lower()))
        if lr is None:
            raise ConfigError(f"no default learning rate for optimizer {name!r}; give one (lrs={{{name!r}: ...}}, "
                              f"--lr {name}=VALUE); defaults exist for {', '.join(DEFAULT_LRS)}")
        extra = options.get(name, DEFAULT_OPTIONS.get(name.lower(), {}))
        opt, kwargs = make_optimizer(name, [torch.zeros(1, requires_grad=True)], lr, extra)  # as train records them
        recipes[name] = (lr, extra, {"optimizer": type(opt).__name__, "optimizer_kwargs": _jsonable(kwargs), "lr": lr})
    return recipes


def compare_optimizers(
    optimizers: Sequence[str] | None = None,
    *,
    out: str | os.PathLike,
    lrs: dict[str, float] | None = None,
    options: dict[str, dict] | None = None,
    model: str = "mlp",
    data: str = "digits",
    epochs: int = 10,
    batch_size: int = 64,
    seed: int = 0,
    model_kwargs: dict | None = None,
    device: str | torch.device = "auto",
    evaluator=None,
    split: str = "train",
    threshold: float = DEFAULT_THRESHOLD,
    steps: int | tuple[int, int] = 41,
    margin: float = 0.1,
    surface_path: str | os.PathLike | None = None,
    progress: bool = True,
):
    """Train optimizers from one seeded initialization (``train_optimizers``), then ``compare_runs``.

    The plane's origin is the common initialization (the first run's first checkpoint), where every
    path starts, so each residual measures how much of a run's displacement from it the plane hides.

    Args:
        optimizers: optimizer names (see ``losslens.core.optimizers``); default ``COMPARISON_DEFAULTS`` without
            those whose package is missing (each said once in a warning).
        out: the output directory; the runs go to ``out/runs/<name>``.
        lrs: learning rates by name, over ``DEFAULT_LRS``.
        options: optimizer options by name (``{"momentum": {"dampening": 0.9}}``), over ``DEFAULT_OPTIONS``.
        model: a built-in model name or import string, built for the data and initialized with ``seed``.
        data: a data set name or import string (its train split trained on, its test split evaluated).
        epochs: passes over the training set of each run.
        batch_size: samples per optimizer step.
        seed: the seed of the common initialization and of the batches' order.
        model_kwargs: options of a built-in model (``{"hidden": [128, 64]}``).
        device: ``"auto"`` (CUDA when available) or a torch device.
        evaluator: the ``Evaluator`` of the plane's loss; default the first run's model on its data's ``split``.
        split: the split evaluated when ``evaluator`` is not given: ``"train"`` or ``"test"``.
        threshold: the largest relative residual (share of a checkpoint's displacement from the origin off the
            plane) of a trusted point.
        steps: grid points per axis of the plane, or ``(nx, ny)``.
        margin: the grid extends this fraction of the paths' span beyond them.
        surface_path: HDF5 file of the plane's surface (resumed when it holds the same grid); ``None`` keeps it in
            memory.
        progress: show progress bars.

    Returns:
        ``(comparison, surface)`` as ``compare_runs``; ``comparison.meta["notes"]`` lists skipped
        optimizers.
    """
    runs, notes = train_optimizers(optimizers, out=out, lrs=lrs, options=options, model=model, data=data, epochs=epochs,
                                   batch_size=batch_size, seed=seed, model_kwargs=model_kwargs, device=device,
                                   progress=progress)
    comparison, surface = compare_runs(runs, evaluator, labels=[r.name for r in runs], split=split, origin=0,
                                       threshold=threshold, steps=steps, margin=margin, surface_path=surface_path,
                                       progress=progress)
    return OptimizerComparison(comparison.table, comparison.paths, {**comparison.meta, "notes": notes}), surface


def _row(series: CheckpointSeries, paths: TrajectoryPaths) -> dict:
    info = series.metadata
    last = info["history"][-1] if info.get("history") else {}
    index = paths.of_run(series.run)
    rel = paths.rel_residual[index]
    return {
        "optimizer": series.run,
        "final_train_loss": last.get("train_loss"),
        "final_test_loss": last.get("test_loss"),
        "final_train_acc": last.get("train_accuracy"),
        "final_test_acc": last.get("test_accuracy"),
        "path_length": paths.path_length(series.run),
        "distance_from_init": float(paths.distance_from_init[index[-1]]),
        "max_rel_residual": float(rel.max()),
        "n_untrusted": int((rel > paths.threshold).sum()),
        "n_checkpoints": len(index),
        "epochs": info.get("completed_epochs"),
        "lr": info.get("lr"),
        "run": str(series[0].path.parent),
    }


def _finished(run_dir: Path, recipe: dict) -> bool:
    """Whether ``run_dir`` holds a finished run of ``recipe`` with all its checkpoints."""
    from losslens.core.train import TrainRun

    try:
        run = TrainRun.load(run_dir)
    except ConfigError:
        return False
    same = all(_jsonable(run.metadata.get(k)) == _jsonable(v) for k, v in recipe.items())
    return same and run.metadata.get("completed_epochs") == recipe["epochs"] and all(p.is_file() for p in run.checkpoints)


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))
