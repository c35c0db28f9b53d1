"""The evaluation set as the evaluator holds it: placed on its device, cut into batches, identified.

Inputs and targets are materialized once (``as_tensors``); floating inputs take the evaluator's
dtype. On CUDA a set under 1 GiB is kept on the GPU, a larger one is moved batch by batch. The
set's identity (name, split, subset, a content hash of the tensors) goes into every result's
provenance and into the fingerprint a resumed grid must match.
"""

from __future__ import annotations

from typing import Iterator

import torch

from losslens.core.data import TensorData, as_tensors
from losslens.core.provenance import fingerprint

_RESIDENT_BYTES = {"cuda": 1 << 30}  # larger sets are streamed to the GPU batch by batch


class EvalData:
    """Inputs ``x`` and targets ``y`` of the evaluation set, and what they are.

    Args:
        data: ``TensorData``, a pair of tensors, a ``Dataset`` or a ``DataLoader`` (see ``as_tensors``).
        device, dtype: where the model runs, and the dtype floating inputs take.
        split: the split of data given as plain tensors (a ``TensorData`` knows its own).
    """

    def __init__(self, data, *, device: torch.device, dtype: torch.dtype, split: str | None = None):
        x, y = as_tensors(data)
        if isinstance(data, TensorData):
            if split is not None and split != data.split:
                raise ValueError(f"split={split!r} was given for data whose split is {data.split!r}")
            self.description = data.describe()
        else:
            self.description = {"name": None, "split": split, "n_samples": len(x), "subset": None, "seed": None}
        self.description["fingerprint"] = fingerprint([x, y])
        self.device = device
        self.x = self._place(x.to(dtype) if x.is_floating_point() else x)
        self.y = self._place(y.to(dtype) if y.is_floating_point() else y)
        self.n = len(self.x)

    @property
    def split(self) -> str | None:
        return self.description["split"]

    def batches(self, size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(x, y)`` batches of ``size`` samples (the last may be smaller), on the device."""
        for i in range(0, self.n, size):
            yield self.x[i : i + size].to(self.device), self.y[i : i + size].to(self.device)

    def to_layout(self, channels_last: bool) -> None:
        """Keep 4-D inputs in channels_last (NHWC) memory format."""
        if channels_last and self.x.dim() == 4:
            self.x = self.x.contiguous(memory_format=torch.channels_last)

    def _place(self, t: torch.Tensor) -> torch.Tensor:
        limit = _RESIDENT_BYTES.get(self.device.type, 1 << 62)
        return t.to(self.device) if t.numel() * t.element_size() <= limit else t
