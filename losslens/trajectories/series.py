"""Checkpoint series: the checkpoints of a training run, in training order, read one at a time.

A ``CheckpointSeries`` is built from a run directory written by ``losslens train`` (its ``run.json``
lists the checkpoints with their steps and epochs), a glob pattern, or a list of files. Each item is
a ``Checkpoint`` (run name, position, step, epoch, path); its weights are read only when asked for,
by ``load_checkpoint(path, model)`` (checked against the model) and ``ParameterSpace.flatten``, so a
long trajectory of a large model is never held in memory at once.

The order of files not listed by a ``run.json`` is decided in ``checkpoint_order.py`` (the steps in
their metadata, else the epochs, else the numbers in their names), or kept as given.
"""

from __future__ import annotations

import glob as globlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Literal, Sequence

import torch
from torch import nn

from losslens.core.checkpoints import load_checkpoint
from losslens.core.params import ParameterSpace
from losslens.errors import ConfigError
from losslens.trajectories.checkpoint_order import training_order

ORDERS: tuple[str, ...] = ("auto", "given")
CHECKPOINT_SUFFIXES: tuple[str, ...] = (".safetensors", ".pt", ".pth", ".ckpt", ".bin")


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint of a series.

    Attributes:
        run: the name of its run (the run directory's name, or the name given).
        index: its position in the series, from 0.
        step: optimizer steps taken, or ``None`` when unknown.
        epoch: epochs taken (fractional between epochs), or ``None`` when unknown.
        path: the file.
    """

    run: str
    index: int
    step: int | None
    epoch: float | None
    path: Path


class CheckpointSeries:
    """The checkpoints of one run in training order, loaded lazily as flat vectors.

    Build it with ``from_run``, ``from_glob``, ``from_paths`` or ``open`` (any of them).
    """

    def __init__(
        self,
        checkpoints: Sequence[Checkpoint],
        model: nn.Module,
        *,
        space: ParameterSpace | None = None,
        metadata: dict | None = None,
        unsafe_pickle: bool = False,
    ):
        """The checkpoints of one run, read one at a time.

        Args:
            checkpoints: the checkpoints, in order.
            model: a model of the architecture the checkpoints fit (only read).
            space: the parameter space of the vectors (default ``ParameterSpace(model)``; pass
                ``evaluator.space`` to evaluate them).
            metadata: what is known of the run (``run.json`` without the checkpoints), or ``{}``.
            unsafe_pickle: load pickles holding arbitrary Python objects, which can run code from the
                file (only for files you trust).
        """
        if not checkpoints:
            raise ConfigError("a checkpoint series needs at least one checkpoint")
        self.checkpoints: tuple[Checkpoint, ...] = tuple(checkpoints)
        self.model = model
        self.space = space if space is not None else ParameterSpace(model)
        self.metadata = dict(metadata or {})
        self.unsafe_pickle = unsafe_pickle

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def from_run(
        cls, run_dir: str | os.PathLike, model: nn.Module | None = None, *, space: ParameterSpace | None = None,
        name: str | None = None,
    ) -> "CheckpointSeries":
        """The checkpoints ``run.json`` lists, with their steps and epochs.

        Args:
            run_dir: a directory written by ``losslens train``.
            model: the architecture; by default the built-in model ``run.json`` names, built from its
                options, input shape and outputs (an import string there is refused, never imported:
                pass the model).
            space: as in the constructor.
            name: the run's name (default: the directory's name).

        Raises:
            ConfigError: no ``run.json`` or a malformed one (see ``TrainRun.load``), or a model that
                ``run.json`` cannot rebuild.
        """
        from losslens.core.train import TrainRun

        run = TrainRun.load(run_dir)
        name = name or Path(run_dir).resolve().name
        items = [
            Checkpoint(name, i, c["step"], c["epoch"], run.out / c["file"])
            for i, c in enumerate(run.metadata["checkpoints"])
        ]
        if model is None:
            model = model_of_run(run.metadata, run_dir)
        metadata = {**run.metadata, "history": list(run.history)}
        return cls(items, model, space=space, metadata=metadata)

    @classmethod
    def from_paths(
        cls,
        paths: Iterable[str | os.PathLike],
        model: nn.Module,
        *,
        run: str | None = None,
        order: Literal["auto", "given"] = "auto",
        space: ParameterSpace | None = None,
        unsafe_pickle: bool = False,
    ) -> "CheckpointSeries":
        """Checkpoint files, ordered as the module docstring says (or as given).

        Args:
            paths: the files.
            model: the architecture the files fit.
            run: the run's name (default: the name of the files' common directory).
            order: ``"auto"`` (metadata steps, else epochs, else numbers in the names) or ``"given"``.
            space: the parameter space of the vectors (default ``ParameterSpace(model)``).
            unsafe_pickle: load pickles holding arbitrary Python objects, which can run code from the
                file (only for files you trust).

        Raises:
            ConfigError: no files, an unknown order, names without numbers or with equal keys.
        """
        if order not in ORDERS:
            raise ConfigError(f"unknown order {order!r}; valid: {', '.join(ORDERS)}")
        paths = [Path(p) for p in paths]
        if not paths:
            raise ConfigError("no checkpoint files given")
        positions, steps, epochs = training_order(paths, order)
        if run is None:
            run = Path(os.path.commonpath([str(p.resolve().parent) for p in paths])).name or "run"
        items = [Checkpoint(run, i, steps[j], epochs[j], paths[j]) for i, j in enumerate(positions)]
        return cls(items, model, space=space, unsafe_pickle=unsafe_pickle)

    @classmethod
    def from_glob(cls, pattern: str, model: nn.Module, **kwargs) -> "CheckpointSeries":
        """The files matching a glob pattern (``runs/adam/epoch_*.pt``), ordered as ``from_paths``.

        Raises:
            ConfigError: nothing matches.
        """
        paths = sorted(globlib.glob(pattern, recursive=True))
        if not paths:
            raise ConfigError(f"no checkpoint files match {pattern!r}")
        return cls.from_paths(paths, model, **kwargs)

    @classmethod
    def open(
        cls,
        source,
        model: nn.Module | None = None,
        *,
        run: str | None = None,
        order: Literal["auto", "given"] = "auto",
        space: ParameterSpace | None = None,
        unsafe_pickle: bool = False,
    ) -> "CheckpointSeries":
        """A series from whatever ``source`` is: a ``CheckpointSeries`` (returned as it is), a run
        directory (with ``run.json``), another directory (its checkpoint files), a glob pattern, or
        a list of files. The options are those of ``from_run`` and ``from_paths``.

        Raises:
            ConfigError: a source that is none of these, or no model for files without ``run.json``.
        """
        if isinstance(source, CheckpointSeries):
            return source
        options = {"run": run, "order": order, "space": space, "unsafe_pickle": unsafe_pickle}
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if (path / "run.json").is_file():
                return cls.from_run(path, model, space=space, name=run)
            _need_model(model, source)
            if path.is_dir():
                files = [p for p in sorted(path.iterdir()) if p.suffix in CHECKPOINT_SUFFIXES]
                if not files:
                    raise ConfigError(f"{path}: no run.json and no checkpoint files ({', '.join(CHECKPOINT_SUFFIXES)})")
                return cls.from_paths(files, model, **options)
            if globlib.has_magic(str(source)):
                return cls.from_glob(str(source), model, **options)
            return cls.from_paths([path], model, **options)
        if isinstance(source, Iterable):
            _need_model(model, "a list of files")
            return cls.from_paths(source, model, **options)
        raise ConfigError(f"cannot read a checkpoint series from a {type(source).__name__}; give a run directory, "
                          "a glob pattern or a list of files")

    # -- access ----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.checkpoints)

    def __getitem__(self, i: int) -> Checkpoint:
        return self.checkpoints[i]

    def __iter__(self) -> Iterator[Checkpoint]:
        return iter(self.checkpoints)

    def __repr__(self) -> str:
        return f"CheckpointSeries(run={self.run!r}, T={len(self)}, P={self.space.size})"

    @property
    def run(self) -> str:
        """The run's name."""
        return self.checkpoints[0].run

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(c.path for c in self.checkpoints)

    def vector(self, i: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``(P,)`` CPU weights of checkpoint ``i``, read from its file now.

        Raises:
            CheckpointError: the file is missing, unreadable or does not fit the model.
        """
        path = self.checkpoints[i].path
        state = load_checkpoint(path, self.model, unsafe_pickle=self.unsafe_pickle)
        return self.space.flatten(state, dtype=dtype).cpu()

    def vectors(self, dtype: torch.dtype | None = None) -> Iterator[torch.Tensor]:
        """The checkpoints' weights one after another, each read when reached."""
        for i in range(len(self)):
            yield self.vector(i, dtype)


def checkpoint_vectors(
    paths: Iterable[str | os.PathLike] | str | os.PathLike,
    model: nn.Module,
    space: ParameterSpace,
    *,
    unsafe_pickle: bool = False,
) -> torch.Tensor:
    """Flat weight vectors of saved checkpoints, one per row, in the order given.

    Holds all of them: ``(T, P)``. For long trajectories of large models use a ``CheckpointSeries``,
    which reads one checkpoint at a time.

    Args:
        paths: checkpoint files (a single path gives one row).
        model: a model of the architecture the checkpoints fit (only read).
        space: the parameter space of the vectors (``evaluator.space``).
        unsafe_pickle: load pickles holding arbitrary Python objects, which can run code from the
            file (only for files you trust).

    Returns:
        ``(T, P)`` CPU tensor in the space's dtypes.

    Raises:
        ValueError: no paths. CheckpointError: a file is missing, unreadable or does not fit.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = list(paths)
    if not paths:
        raise ValueError("checkpoint_vectors: no checkpoint paths given")
    return torch.stack([space.flatten(load_checkpoint(p, model, unsafe_pickle=unsafe_pickle)).cpu() for p in paths])


def run_evaluator(series: CheckpointSeries, split: str = "train", *, device: str | torch.device = "auto"):
    """An ``Evaluator`` of a run's model (at its last checkpoint) on its data set's ``split``, with the
    run's loss and, for classification, accuracy: the run's ``Recipe`` (``Recipe.from_run``).

    Args:
        series: a ``CheckpointSeries`` of a run (``CheckpointSeries.from_run``).
        split: ``"train"`` or ``"test"``.
        device: ``"auto"`` (CUDA when available) or a torch device.

    Raises:
        ConfigError: a series without a run's metadata, or whose data set cannot be loaded by name
            (one given as tensors, or an import string, which is never imported from run.json):
            build the evaluator yourself then.
    """
    from losslens.core.recipe import Recipe

    # the series' model is a module already (given, or rebuilt by model_of_run): only data and loss are read
    recipe = Recipe.from_run(series.metadata, read=("data", "loss"), where=f"run {series.run!r}", split=split)
    if recipe.data is None or recipe.loss is None:
        raise ConfigError(f"run {series.run!r}: no run.json data set and loss to build an evaluator from; pass one")
    return recipe.evaluator(series[-1].path, model=series.model, unsafe_pickle=series.unsafe_pickle, device=device)


def run_series(run_dir: str | os.PathLike, evaluator, *, name: str | None = None) -> CheckpointSeries:
    """A run's checkpoints read with ``evaluator``'s architecture, as points of its parameter space
    (a checkpoint that does not fit is named with its keys).

    Args:
        run_dir: a run directory written by ``train`` (``run.json`` and its checkpoints).
        evaluator: the ``Evaluator`` whose model architecture and parameter space read the checkpoints.
        name: the run's name (default: the directory's name).

    Raises:
        ConfigError: not a run directory. CheckpointError (when read): a file that does not fit.
    """
    return CheckpointSeries.from_run(run_dir, evaluator.module_at(evaluator.w0), space=evaluator.space, name=name)


def model_of_run(info: dict, where) -> nn.Module:
    """The built-in model a ``run.json`` describes, built again (its weights are the checkpoints' business).

    Raises:
        ConfigError: the run was trained on a module given as an object, which cannot be rebuilt, or
            on a model named by an import string, which a file may not make losslens import.
    """
    from losslens.core.models import build_model
    from losslens.core.recipe import Recipe

    recipe = Recipe.from_run(info, read=("model",), where=str(where))
    if not recipe.model:
        raise ConfigError(
            f"{where}: the run was trained on a model given as a module ({info.get('model_class')}), which cannot "
            "be rebuilt from run.json; pass the model"
        )
    return build_model(recipe.model, input_shape=tuple(info["input_shape"]), num_classes=int(info["num_outputs"]),
                       **recipe.model_kwargs)


def _need_model(model, source) -> None:
    if model is None:
        raise ConfigError(f"{source}: checkpoint files without a run.json need the model they fit (model=...)")
