"""Evaluation and training data: built-in datasets, user datasets by import string, fixed subsets.

Built-in data sets need no network: ``digits`` is scikit-learn's copy of the UCI handwritten digits
(shipped inside the package), the synthetic ones are generated from a seed.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from losslens._imports import is_import_string, resolve_import_string
from losslens.checks import check_choice, check_seed
from losslens.errors import ConfigError

DATASET_NAMES: tuple[str, ...] = ("digits", "synthetic-classification", "synthetic-regression")
SPLITS: tuple[str, ...] = ("train", "test")
Split = Literal["train", "test"]
Task = Literal["classification", "regression"]

_TEST_SIZE = 0.25  # of every built-in data set, split with random_state=0
_SYNTHETIC_SAMPLES = 1000


@dataclass(frozen=True, eq=False)
class TensorData:
    """A data set held whole as two tensors, with what it is.

    Attributes:
        x: inputs, ``(N, *input_shape)``.
        y: targets, ``(N,)`` int64 class indices for classification, ``(N, T)`` floats for regression.
        name: the data set's name or import string.
        split: ``"train"`` or ``"test"``.
        task: ``"classification"`` or ``"regression"``.
        num_classes: number of classes; ``None`` for regression.
        input_shape: shape of one sample, without the sample dimension.
        subset_seed: the seed of ``subset`` when this is a random subset, else ``None``.
        full_size: the size of the set it is a subset of (``len(self)`` when it is no subset).
        seed: the seed the data set was generated from (synthetic sets), else ``None``.
    """

    x: torch.Tensor
    y: torch.Tensor
    name: str
    split: str
    task: Task
    num_classes: int | None
    input_shape: tuple[int, ...]
    subset_seed: int | None = None
    full_size: int | None = None
    seed: int | None = None

    def __len__(self) -> int:
        return len(self.x)

    @property
    def num_outputs(self) -> int:
        """Outputs a model needs: ``num_classes``, or the number of regression targets."""
        if self.num_classes is not None:
            return self.num_classes
        return int(self.y.shape[1]) if self.y.dim() > 1 else 1

    def describe(self) -> dict:
        """What this data is, for provenance: ``name``, ``split``, ``n_samples``, and ``subset``
        (``{"of": N, "seed": s}``) or ``None``, and the generation ``seed`` of a synthetic set."""
        subset = None if self.subset_seed is None else {"of": self.full_size, "seed": self.subset_seed}
        return {"name": self.name, "split": self.split, "n_samples": len(self), "subset": subset, "seed": self.seed}

    def __repr__(self) -> str:
        return (
            f"TensorData(name={self.name!r}, split={self.split!r}, task={self.task!r}, n={len(self)}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes})"
        )


@dataclass(frozen=True, eq=False)
class BatchData:
    """An evaluation set given as batches of any structure: a ``DataLoader`` (its ``collate_fn`` kept,
    so sequences padded per batch work) or a ``Dataset`` of ``(inputs, target)`` items or of dicts
    holding the target (see ``losslens.core._batches``). The evaluator reads it; the trainer does not.

    Attributes:
        source: the DataLoader or Dataset.
        name, split: what it is (an import string, ``"train"``/``"test"``).
        subset_seed: the seed of ``subset`` when this is a random subset, else ``None``.
        full_size: the size of the set it is a subset of, when it is a subset.
    """

    source: object
    name: str | None = None
    split: str | None = None
    subset_seed: int | None = None
    full_size: int | None = None

    def __len__(self) -> int:
        dataset = self.source.dataset if isinstance(self.source, DataLoader) else self.source
        return len(dataset)

    def describe(self) -> dict:
        """As ``TensorData.describe``."""
        subset = None if self.subset_seed is None else {"of": self.full_size, "seed": self.subset_seed}
        return {"name": self.name, "split": self.split, "n_samples": len(self), "subset": subset, "seed": None}


def as_tensors(data) -> tuple[torch.Tensor, torch.Tensor]:
    """Materialize ``data`` as one ``(inputs, targets)`` pair of tensors with samples on dim 0.

    Accepts a ``TensorData``, a pair of tensors, a ``Dataset`` of ``(x, y)`` items, or a
    ``DataLoader`` yielding ``(x, y)`` batches. Evaluation sets are fixed, so the evaluator holds
    them whole and picks its own batch size.

    Args:
        data: a ``TensorData``, a pair ``(inputs, targets)`` of tensors, a ``Dataset`` of ``(x, y)`` items or a
            ``DataLoader`` of ``(x, y)`` batches.
    """
    if isinstance(data, TensorData):
        x, y = data.x, data.y
    elif isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        x, y = data
    elif isinstance(data, DataLoader):
        with torch.random.fork_rng(devices=[]):  # a shuffling sampler draws from the global RNG
            batches = list(data)
        x = torch.cat([b[0] for b in batches])
        y = torch.cat([torch.as_tensor(b[1]) for b in batches])
    elif isinstance(data, Dataset):
        items = [data[i] for i in range(len(data))]
        x = torch.stack([torch.as_tensor(it[0]) for it in items])
        y = torch.stack([torch.as_tensor(it[1]) for it in items])
    else:
        raise ConfigError(
            f"cannot use {type(data).__name__} as data: give a (inputs, targets) pair of tensors, "
            "a Dataset of (x, y) items or a DataLoader"
        )
    if len(x) != len(y):
        raise ConfigError(f"inputs and targets differ in length: {len(x)} inputs, {len(y)} targets")
    if len(x) == 0:
        raise ConfigError("the data set is empty")
    return x, y


def load_dataset(name: str, split: Split = "test", *, seed: int = 0) -> TensorData | BatchData:
    """Load a built-in data set by name, or a user data set by import string.

    Built-in (``DATASET_NAMES``), each split 75/25 into train/test by a fixed split
    (``train_test_split(test_size=0.25, random_state=0)``, stratified for classification):

    - ``digits``: scikit-learn's 1797 8x8 handwritten digits, pixels scaled to ``[0, 1]`` (``/16``),
      ``x`` float32 ``(N, 1, 8, 8)``, ``y`` int64, 10 classes; 1347 train and 450 test samples.
    - ``synthetic-classification``: ``make_classification`` with 1000 samples of 20 features
      (10 informative), 4 classes, standardized; ``x`` float32 ``(N, 20)``.
    - ``synthetic-regression``: ``y = x @ w + 0.1 * noise`` with ``x, w, noise ~ N(0, 1)``,
      1000 samples of 10 features; ``x`` float32 ``(N, 10)``, ``y`` float32 ``(N, 1)``, for MSE.

    A user data set is an import string ``package.module:function``. The function is called with
    ``split=split`` if it has a ``split`` parameter, otherwise with no arguments, and returns a
    ``Dataset``, a ``DataLoader`` or an ``(inputs, targets)`` pair of tensors. Plain pairs of tensors
    give a ``TensorData``: integer targets make a classification set (``num_classes = max + 1``),
    floating-point ones a regression set (1-D float targets become ``(N, 1)``, the shape of a
    one-output model). Batches of another structure (dicts in the Hugging Face style, several inputs,
    sequences padded by a ``collate_fn``) give a ``BatchData``, which the evaluator reads as batches.

    Args:
        name: a built-in name or an import string.
        split: ``"train"`` or ``"test"``.
        seed: seed of the synthetic data sets' generation (the digits, and every split, are fixed).

    Raises:
        ConfigError: an unknown name or split, a bad import string or an unusable return value.
    """
    check_choice("split", split, SPLITS)
    if name in _BUILTIN:
        x, y, task = _BUILTIN[name](seed)
        part = _split_arrays(x, y, stratify=task == "classification")[0 if split == "train" else 1]
        data = _tensor_data(torch.from_numpy(part[0]), torch.from_numpy(part[1]), name, split)
        return data if name == "digits" else dataclasses.replace(data, seed=seed)
    if is_import_string(name):
        return _user_dataset(name, split)
    raise ConfigError(
        f"unknown data set {name!r}; valid: {', '.join(DATASET_NAMES)}, "
        "or an import string package.module:function"
    )


def subset(data: TensorData | BatchData, n: int | None, *, seed: int = 0) -> TensorData | BatchData:
    """A fixed random subset of ``n`` samples of ``data``, kept in their original order.

    The samples are the first ``n`` of a permutation drawn from ``torch.Generator`` seeded with
    ``seed``; ``n=None`` or ``n >= len(data)`` gives all of ``data``. The subset of a ``DataLoader``
    is a new loader over ``torch.utils.data.Subset`` of its dataset, with its batch size and
    ``collate_fn``, not shuffled.

    Args:
        data: a ``TensorData`` or ``BatchData``.
        n: the number of samples, or ``None`` for all.
        seed: the seed of the permutation.

    Raises:
        ConfigError: ``n`` is not positive, or the data is an iterable loader (no indices to draw).
    """
    seed = check_seed(seed)
    if n is None or n >= len(data):
        return data
    if n < 1:
        raise ConfigError(f"a subset needs at least one sample; got n={n}")
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(data), generator=generator)[:n].sort().values
    if isinstance(data, TensorData):
        return dataclasses.replace(data, x=data.x[index], y=data.y[index], subset_seed=seed, full_size=len(data))
    source = data.source
    dataset = source.dataset if isinstance(source, DataLoader) else source
    if isinstance(dataset, torch.utils.data.IterableDataset):
        raise ConfigError("cannot take a seeded subset of an iterable data set (no indices): use all of it "
                          "(--subset all) or make it map-style")
    part = torch.utils.data.Subset(dataset, index.tolist())
    if isinstance(source, DataLoader):
        part = DataLoader(part, batch_size=source.batch_size, collate_fn=source.collate_fn)
    return dataclasses.replace(data, source=part, subset_seed=seed, full_size=len(data))


def _tensor_data(x: torch.Tensor, y: torch.Tensor, name: str, split: str) -> TensorData:
    if y.is_floating_point():
        task, num_classes = "regression", None
        if y.dim() == 1:
            y = y[:, None]
    elif y.dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        task, num_classes = "classification", int(y.max()) + 1
        y = y.long()
    else:
        raise ConfigError(f"data set {name!r}: targets of dtype {y.dtype} are neither class indices nor floats")
    return TensorData(x, y, name, split, task, num_classes, tuple(x.shape[1:]))


def _user_dataset(spec: str, split: str) -> TensorData | BatchData:
    function = resolve_import_string(spec, what="data set function")
    if not callable(function):
        raise ConfigError(f"data set function {spec!r} is not callable (type {type(function).__name__})")
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # builtins and some C functions have no signature
        signature = None
    kwargs = {"split": split} if signature is not None and "split" in signature.parameters else {}
    if signature is not None:
        try:
            signature.bind(**kwargs)
        except TypeError as e:
            how = "split=" if kwargs else "no arguments"
            raise ConfigError(f"data set function {spec!r} cannot be called with {how} ({e}): "
                              "it must take no required argument other than split") from None
    result = function(**kwargs)
    if isinstance(result, (DataLoader, Dataset)) and not _plain_pairs(result):
        return BatchData(result, spec, split)
    try:
        x, y = as_tensors(result)
    except ConfigError as e:
        raise ConfigError(f"data set function {spec!r} returned unusable data: {e}") from e
    return _tensor_data(x, y, spec, split)


def _plain_pairs(source) -> bool:
    """Whether a loader or data set yields plain ``(tensor, tensor)`` pairs of one shape (joinable)."""
    if isinstance(source, DataLoader):
        with torch.random.fork_rng(devices=[]):
            first = next(iter(source), None)
        plain = isinstance(first, (tuple, list)) and len(first) == 2 and all(isinstance(t, torch.Tensor) for t in first)
        return plain and source.collate_fn is torch.utils.data.default_collate
    first = source[0] if len(source) else None
    return isinstance(first, (tuple, list)) and len(first) == 2 and all(
        isinstance(t, (torch.Tensor, int, float, np.ndarray)) for t in first)


def _split_arrays(x: np.ndarray, y: np.ndarray, *, stratify: bool):
    from sklearn.model_selection import train_test_split

    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=_TEST_SIZE, random_state=0, stratify=y if stratify else None
    )
    return (x_train, y_train), (x_test, y_test)


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray, Task]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    return x, bunch.target.astype(np.int64), "classification"


@functools.lru_cache(maxsize=4)
def _synthetic_classification(seed: int) -> tuple[np.ndarray, np.ndarray, Task]:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=_SYNTHETIC_SAMPLES,
        n_features=20,
        n_informative=10,
        n_redundant=4,
        n_classes=4,
        random_state=seed,
    )
    x = (x - x.mean(axis=0)) / x.std(axis=0)  # redundant features reach |x| > 10 otherwise
    return x.astype(np.float32), y.astype(np.int64), "classification"


@functools.lru_cache(maxsize=4)
def _synthetic_regression(seed: int) -> tuple[np.ndarray, np.ndarray, Task]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((_SYNTHETIC_SAMPLES, 10))
    w = rng.standard_normal((10, 1))
    y = x @ w + 0.1 * rng.standard_normal((_SYNTHETIC_SAMPLES, 1))
    return x.astype(np.float32), y.astype(np.float32), "regression"


_BUILTIN = {
    "digits": lambda seed: _digits(),  # fixed: the seed only drives the synthetic sets
    "synthetic-classification": _synthetic_classification,
    "synthetic-regression": _synthetic_regression,
}
