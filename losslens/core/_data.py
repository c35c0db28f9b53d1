"""The evaluation set as the evaluator holds it: batches on its device, and what the set is.

Two ways to hold it:

- as tensors (``TensorData``, a pair of tensors, a Dataset of equal-shaped items, or a DataLoader
  whose batches join into tensors): the inputs (a tensor, tuple or dict of tensors) and the targets
  with the samples on dim 0; the evaluator picks its own batch size;
- as the batches a DataLoader yields, when they cannot be joined (sequences padded per batch by
  its ``collate_fn``): they are used as they come. They are read once and kept, unless they hold more
  than ``_KEEP_BYTES``, in which case the loader is read again at every pass, its random number
  generation forked so that a shuffling sampler leaves the caller's RNG alone.

Floating inputs take the evaluator's dtype. On CUDA, a set of tensors under 1 GiB stays on the GPU;
batches move there one at a time. The set's identity (name, split, subset, a content hash of every
tensor) goes into the provenance of every result and into the fingerprint a resumed grid must match.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from losslens.core import _batches as bt
from losslens.core.data import BatchData, TensorData
from losslens.core.provenance import fingerprint
from losslens.errors import ConfigError

_RESIDENT_BYTES = {"cuda": 1 << 30}  # larger sets of tensors are moved to the GPU batch by batch
_KEEP_BYTES = 2 << 30  # loader batches above this are read again at each pass instead of kept


class EvalData:
    """The evaluation set: ``(inputs, target)`` batches on the device, and its description.

    Args:
        data: ``TensorData``, ``BatchData``, a pair of tensors ``(inputs, targets)``, a ``Dataset`` or
            a ``DataLoader`` (see the module docstring).
        device, dtype: where the model runs, and the dtype floating inputs take.
        split: the split of data given without one (``TensorData`` and ``BatchData`` know theirs).
        target_key: the key of the target in dict batches.

    Attributes:
        x, y: the inputs and targets as tensors (``None`` for batches that cannot be joined).
        n: the number of samples.
        description: name, split, samples, subset, generation seed and content fingerprint.
    """

    def __init__(self, data, *, device: torch.device, dtype: torch.dtype, split: str | None = None,
                 target_key: str = "labels"):
        self.device, self.dtype, self.target_key = device, dtype, target_key
        known = data.describe() if isinstance(data, (TensorData, BatchData)) else None
        if known is not None and split is not None and split != known["split"]:
            raise ValueError(f"split={split!r} was given for data whose split is {known['split']!r}")
        self._loader: DataLoader | None = None
        self._kept: list | None = None
        if isinstance(data, TensorData):
            x, y = data.x, data.y
        elif isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[1], torch.Tensor):
            x, y = bt.split_batch(data, target_key)
        else:
            x, y = self._read_batches(data.source if isinstance(data, BatchData) else data)
        if x is not None:
            if bt.length(x) != len(y):
                raise ConfigError(f"inputs and targets differ in length: {bt.length(x)} inputs, {len(y)} targets")
            self.x, self.y = self._place(self._typed(x)), self._place(y)
            self.n = len(y)
            digest = fingerprint([*bt.leaves(x), y])
        else:
            self.x = self.y = None
            digest = fingerprint([t for inputs, target in self._kept or [] for t in (*bt.leaves(inputs), target)]) \
                if self._kept is not None else self._fingerprint_stream()
        if self.n == 0:
            raise ConfigError("the data set is empty")
        self.description = dict(known) if known is not None else \
            {"name": None, "split": split, "n_samples": self.n, "subset": None, "seed": None}
        self.description["fingerprint"] = digest

    @property
    def split(self) -> str | None:
        return self.description["split"]

    @property
    def as_tensors(self) -> bool:
        """Whether the set is held as tensors (the evaluator then picks the batch size)."""
        return self.x is not None

    @property
    def loader_batch_size(self) -> int | None:
        return None if self._loader is None else self._loader.batch_size

    def batches(self, size: int | None) -> Iterator[tuple[object, torch.Tensor]]:
        """``(inputs, target)`` batches on the device: ``size`` samples each from tensors (the last
        may be smaller), or the loader's own batches."""
        if self.as_tensors:
            for i in range(0, self.n, size):
                yield bt.tree_map(lambda t: t[i : i + size].to(self.device), self.x), self.y[i : i + size].to(self.device)
            return
        for inputs, target in self._kept if self._kept is not None else self._stream():
            yield bt.tree_map(lambda t: t.to(self.device), self._typed(inputs)), target.to(self.device)

    def probe(self, n: int = 2) -> tuple[object, torch.Tensor]:
        """The first ``n`` samples as ``(inputs, target)`` on the device."""
        inputs, target = next(self.batches(n))
        return bt.tree_map(lambda t: t[:n], inputs), target[:n]

    def first_inputs(self, n: int, size: int | None) -> list:
        """Input batches holding the first ``n`` samples (for BatchNorm recalibration)."""
        out, seen = [], 0
        for inputs, _ in self.batches(size):
            if seen >= n:
                break
            take = min(n - seen, bt.length(inputs))
            out.append(bt.tree_map(lambda t: t[:take], inputs))
            seen += take
        return out

    def to_layout(self, channels_last: bool) -> None:
        """Keep 4-D tensor inputs in channels_last (NHWC) memory format."""
        if channels_last and isinstance(self.x, torch.Tensor) and self.x.dim() == 4:
            self.x = self.x.contiguous(memory_format=torch.channels_last)

    # -- reading ------------------------------------------------------------------------------------

    def _read_batches(self, source):
        """``(x, y)`` joined, or ``(None, None)`` with the batches kept (or streamed)."""
        if isinstance(source, DataLoader):
            self._loader = source
        elif isinstance(source, Dataset):
            items = [bt.split_batch(source[i], self.target_key) for i in range(len(source))]
            if not items:
                raise ConfigError("the data set is empty")
            x = bt.concatenate([bt.tree_map(lambda t: t[None], inputs) for inputs, _ in items])
            if x is None:
                raise ConfigError("the data set's items have different shapes: give a DataLoader whose collate_fn "
                                  "pads them into batches")
            return x, torch.stack([target for _, target in items])
        else:
            raise ConfigError(f"cannot use {type(source).__name__} as data: give a (inputs, targets) pair of tensors, a "
                              "Dataset or a DataLoader (of (inputs, target) pairs or of dicts holding the target)")
        batches, total = [], 0
        for batch in self._stream():
            batches.append(batch)
            total += bt.nbytes(batch[0]) + batch[1].numel() * batch[1].element_size()
            if total > _KEEP_BYTES:
                self.n = sum(bt.length(b[0]) for b in self._stream())
                return None, None  # streamed at every pass
        if not batches:
            raise ConfigError("the data loader yields no batch")
        x = bt.concatenate([inputs for inputs, _ in batches])
        y = bt.concatenate([target for _, target in batches])
        if x is not None and y is not None:
            return x, y
        self._kept = batches
        self.n = sum(bt.length(inputs) for inputs, _ in batches)
        return None, None

    def _stream(self) -> Iterator[tuple[object, torch.Tensor]]:
        """The loader's batches, each drawn under a forked RNG (a shuffling sampler draws from the global
        one), so that the caller's random numbers are the same whether or not the loader is read."""
        with torch.random.fork_rng(devices=[]):
            batches = iter(self._loader)
        while True:
            with torch.random.fork_rng(devices=[]):
                batch = next(batches, None)
            if batch is None:
                return
            yield bt.split_batch(batch, self.target_key)

    def _fingerprint_stream(self) -> str:
        return fingerprint([t for inputs, target in self._stream() for t in (*bt.leaves(inputs), target)])

    def _typed(self, inputs):
        return bt.tree_map(lambda t: t.to(self.dtype) if t.is_floating_point() else t, inputs)

    def _place(self, tree):
        limit = _RESIDENT_BYTES.get(self.device.type, 1 << 62)
        size = bt.nbytes(tree) if not isinstance(tree, torch.Tensor) else tree.numel() * tree.element_size()
        return bt.tree_map(lambda t: t.to(self.device), tree) if size <= limit else tree
