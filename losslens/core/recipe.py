"""The recipe of an evaluation: which model, data, split, subset, loss and BatchNorm mode, by name.

A ``Recipe`` is what turns a checkpoint into an ``Evaluator``: the model's name and options (or an
import string), the data set's name and split, the seeded subset, the loss and its units, the keys of
dict batches and outputs, and the BatchNorm mode. Every entry builds its evaluators from one: the CLI
maps its flags to a recipe (``cli/_common.recipe_of``), the report's options hold one
(``ReportOptions.recipe``), a run's series reads one (``run_evaluator``).

The BatchNorm mode belongs here: it changes the numbers (running statistics, batch statistics or
recalibrated ones), as the loss does, so two evaluations are the same only when their recipes, BatchNorm
mode included, are equal. How the evaluation runs (device, threads, batch size) is the ``Plan``'s.

This module is the only code that reads names out of a checkpoint's metadata or a run's ``run.json``
(``from_checkpoint``, ``from_run``), and the only caller of ``provenance.trusted_name``: a name read
there is used only when it is built in; an import string is refused, never imported (a downloaded
file could otherwise make losslens run any function). Names given by the caller (flags, arguments)
may be import strings: the user asked for them.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from torch import nn

from losslens.core.checkpoints import load_checkpoint, load_model
from losslens.core.data import DATASET_NAMES, BatchData, TensorData, load_dataset, subset
from losslens.core.evaluator import Evaluator
from losslens.core.losses import LOSS_NAMES, resolve_loss
from losslens.core.models import MODEL_NAMES
from losslens.core.provenance import CheckpointMeta, trusted_name
from losslens.core.train import TrainRun
from losslens.errors import ConfigError

DEFAULT_MODEL = "mlp"
DEFAULT_DATA = "digits"
RUN_NAMES: tuple[str, ...] = ("model", "data", "loss")  # the names a run.json records


@dataclass(frozen=True)
class Recipe:
    """What an evaluation evaluates, by name; equal recipes of one checkpoint give equal numbers.

    Attributes:
        model: a built-in model name or an import string ``package.module:factory``; ``None``: unknown
            (a run trained on a module given as an object).
        model_kwargs: options of a built-in model (``{"hidden": [128, 64]}``).
        data: a built-in data set name or an import string; ``None``: unknown.
        split: ``"train"`` (the loss training minimized) or ``"test"``.
        subset: a seeded random subset of this many samples (``seed``), or ``None``: all.
        seed: seeds the subset.
        loss: a loss name (``losses.LOSS_NAMES``), or ``None``: the data's task's (cross-entropy for
            classification, MSE for regression), the model's own loss for batches of dicts.
        units: what a batch's mean averages over: ``"auto"`` (the loss's rule), ``"samples"``,
            ``"targets"`` or ``"shifted_targets"``.
        target_key: the target's key in dict batches (``"labels"``).
        output_key: the entry of a dict output holding the logits (``None``: ``"logits"``).
        bn: the BatchNorm mode, ``"eval"``, ``"batch"`` or ``"recalibrate"``.

    Frozen and compared field by field (``model_kwargs`` is a dict: equality, not hashing, is the
    reuse key).
    """

    model: str | None = None
    model_kwargs: dict = field(default_factory=dict)
    data: str | None = None
    split: str = "train"
    subset: int | None = None
    seed: int = 0
    loss: str | None = None
    units: str = "auto"
    target_key: str = "labels"
    output_key: str | None = None
    bn: str = "eval"

    def __post_init__(self):
        object.__setattr__(self, "model_kwargs", dict(self.model_kwargs or {}))

    # -- construction from a file ---------------------------------------------------------------------

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike | None, **overrides) -> "Recipe":
        """The recipe of checkpoint ``path``: ``overrides`` (fields of ``Recipe``; ``None`` means not
        given) win; else the built-in model and data set its metadata names; else ``DEFAULT_MODEL`` on
        ``DEFAULT_DATA``. The stored model options come only with the stored model (a model given takes
        the options given, else none). ``path=None``: no file, the defaults.

        Raises:
            ConfigError: the metadata names a model or data set that is not built in (an import
                string), and no override replaces it.
        """
        stored = CheckpointMeta() if path is None else CheckpointMeta.read(path)
        given = {k: v for k, v in overrides.items() if v is not None}
        if "model" not in given:
            given["model"] = trusted_name(stored.model, MODEL_NAMES, what="model", flag="--model") or DEFAULT_MODEL
            given.setdefault("model_kwargs", stored.model_kwargs if given["model"] == stored.model else {})
        if "data" not in given:
            given["data"] = trusted_name(stored.data, DATASET_NAMES, what="data set", flag="--data") or DEFAULT_DATA
        return cls(**given)

    @classmethod
    def from_run(cls, run: str | os.PathLike | Mapping, *, read: tuple[str, ...] = RUN_NAMES, where: str | None = None,
                 **overrides) -> "Recipe":
        """The recipe a training run records in its ``run.json`` (model, options, data set, loss).

        Args:
            run: the run directory, or its ``run.json`` as a mapping (``TrainRun.metadata``, a series'
                ``metadata``; ``where`` names it in messages).
            read: the names read from ``run.json`` (``RUN_NAMES``: model, data, loss); one left out
                stays unknown (``None``), and so is not checked: ``("model",)`` to rebuild the
                checkpoints' architecture, ``("data", "loss")`` for a model given as a module.
            overrides: as in ``from_checkpoint``.

        Raises:
            ConfigError: not a run directory, or ``run.json`` names a model, data set or loss that is not
                built in (an import string), and no override replaces it.
        """
        if not isinstance(run, Mapping):
            where, run = where or str(run), TrainRun.load(run).metadata
        source = f"{where or 'the run'}/run.json"
        given = {k: v for k, v in overrides.items() if v is not None}
        builtins = {"model": MODEL_NAMES, "data": DATASET_NAMES, "loss": LOSS_NAMES}
        for name in (n for n in read if n not in given):
            given[name] = trusted_name(run.get(name), builtins[name], what="data set" if name == "data" else name,
                                       flag=f"{name}=", source=source)
            if name == "model":  # its options come with it
                given.setdefault("model_kwargs", run.get("model_kwargs"))
        return cls(**given)

    # -- what it builds -------------------------------------------------------------------------------

    def with_split(self, split: str) -> "Recipe":
        """The same recipe on another split."""
        return dataclasses.replace(self, split=split)

    def as_dict(self) -> dict:
        """The fields, as JSON-compatible values (a reuse request's part)."""
        return dataclasses.asdict(self)

    def load_data(self):
        """The ``split`` of the data set, cut to ``subset`` samples (seeded by ``seed``).

        Raises:
            ConfigError: no data set named, or one that cannot be loaded.
        """
        if self.data is None:
            raise ConfigError("the recipe names no data set (a run trained on data given as tensors): pass the data")
        return subset(load_dataset(self.data, self.split), self.subset, seed=self.seed)

    def build_model(self, checkpoint, data, *, unsafe_pickle: bool = False) -> nn.Module:
        """The model named by the recipe, built for ``data``'s shape, holding ``checkpoint``'s weights.

        Raises:
            ConfigError: no model named, or a built-in model on batches that are not tensors.
            CheckpointError: the file does not fit the model.
        """
        if self.model is None:
            raise ConfigError("the recipe names no model (a run trained on a module given as an object): pass the "
                              "model")
        if isinstance(data, BatchData) and self.model in MODEL_NAMES:
            raise ConfigError(f"the built-in model {self.model!r} needs data held as tensors; {data.name!r} yields "
                              "batches of another structure: give your model with --model package.module:factory")
        shape = (data.input_shape, data.num_outputs) if isinstance(data, TensorData) else ((), 0)
        return load_model(checkpoint, self.model, input_shape=shape[0], num_classes=shape[1],
                          unsafe_pickle=unsafe_pickle, **self.model_kwargs)

    def loss_for(self, data) -> str:
        """The loss evaluated on ``data``: ``loss``, checked against a tensor data set's task; by default
        the task's loss, or the model's own loss for batches of another structure (Hugging Face style)."""

        if isinstance(data, BatchData):
            return self.loss or "model"
        if self.loss in (None, "cross_entropy", "mse"):
            return resolve_loss(self.loss, data)
        return self.loss

    def evaluator(self, checkpoint: str | os.PathLike, *, model: nn.Module | None = None, data=None,
                  metrics=None, unsafe_pickle: bool = False, **plan):
        """The ``Evaluator`` of ``checkpoint`` by this recipe, recording it and the checkpoint.

        Args:
            checkpoint: the checkpoint file.
            model: a module of the checkpoint's architecture (a copy receives the weights), instead of
                the model the recipe names.
            data: a ``TensorData``/``BatchData`` to evaluate instead of loading the recipe's (cut to
                ``subset`` all the same; its name and split are recorded).
            metrics: metric names or callables (``None``: accuracy for classification, none otherwise).
            unsafe_pickle: see ``load_checkpoint``.
            plan: how it runs: the fields of ``Plan`` (``device``, ``threads``, ...).
        """


        given = data
        data = self.load_data() if given is None else subset(given, self.subset, seed=self.seed)
        if model is None:
            net = self.build_model(checkpoint, data, unsafe_pickle=unsafe_pickle)
        else:
            net = copy.deepcopy(model)
            net.load_state_dict(load_checkpoint(checkpoint, net, unsafe_pickle=unsafe_pickle))
        recipe = self if model is None else dataclasses.replace(self, model=None, model_kwargs={})
        if given is not None and getattr(given, "split", None):  # the data given says what it is
            recipe = dataclasses.replace(recipe, data=given.name, split=given.split)
        return Evaluator(net, self.loss_for(data), data, bn=self.bn, metrics=metrics, units=self.units,
                         target_key=self.target_key, output_key=self.output_key, plan=plan, recipe=recipe,
                         checkpoint=checkpoint)
