"""Provenance: what a result was computed from, and how to tell two such things apart.

This module owns:

- the checkpoint metadata schema, ``CheckpointMeta``: what the trainer writes into every
  safetensors checkpoint (model name and options, data, split, step, epoch, optimizer, seed) and
  what the loaders read back;
- ``checkpoint_info``: a checkpoint file's identity (path, SHA-256 of its bytes, its metadata);
- ``model_identity`` and ``fingerprint``: an architecture hash of a module and a content hash of
  tensors, which ``Evaluator.meta()`` records and a resumed grid must match.

Names read from a file never import code: ``trusted_name`` accepts a model or data name from
metadata only when it is built in, and refuses an import string (a downloaded file could otherwise
make losslens import a module and call any function in it).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch import nn

from losslens.errors import ConfigError

CHECKPOINT_FORMAT = "losslens-train-checkpoint"
_HASH_CHARS = 16  # hex characters kept of a SHA-256 digest (64 bits) where a short id is enough


@dataclass(frozen=True)
class CheckpointMeta:
    """The metadata of a losslens training checkpoint (every field optional for foreign files).

    Attributes:
        model: the built-in model name or import string the model was built from.
        model_kwargs: options of a built-in model.
        model_class: ``module.QualName`` of the model's class.
        data: the data set's name or import string; split: the split trained on.
        step: optimizer steps taken; epoch: ``step / steps_per_epoch``.
        optimizer: the optimizer's class name; optimizer_kwargs: its options; lr: learning rate.
        seed: seed of the initialization and the shuffling.

    The run directory is not recorded (the same training gives the same bytes wherever it is saved);
    ``checkpoint_label`` names a checkpoint with its directory.
    """

    model: str | None = None
    model_kwargs: dict = field(default_factory=dict)
    model_class: str | None = None
    data: str | None = None
    split: str | None = None
    step: int | None = None
    epoch: float | None = None
    optimizer: str | None = None
    optimizer_kwargs: dict = field(default_factory=dict)
    lr: float | None = None
    seed: int | None = None

    def to_metadata(self) -> dict[str, str]:
        """The string-to-string metadata of a safetensors file (``None`` fields left out)."""
        out = {"format": CHECKPOINT_FORMAT}
        for key, value in asdict(self).items():
            if value is None:
                continue
            out[key] = json.dumps(value, sort_keys=True) if isinstance(value, dict) else str(value)
        return out

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> "CheckpointMeta":
        """Parse safetensors metadata; unknown keys are ignored, unparsable values read as ``None``."""
        parsers = {"step": int, "epoch": float, "lr": float, "seed": int,
                   "model_kwargs": _json_dict, "optimizer_kwargs": _json_dict}
        values = {}
        for name in cls.__dataclass_fields__:
            raw = meta.get(name)
            if raw in (None, ""):
                continue
            try:
                values[name] = parsers.get(name, str)(raw)
            except (ValueError, TypeError):
                continue
        return cls(**values)

    @classmethod
    def read(cls, path: str | os.PathLike) -> "CheckpointMeta":
        """The metadata of a checkpoint file; empty for files without any (pickles, foreign files)."""
        from losslens.core.checkpoints import load_metadata
        from losslens.errors import CheckpointError

        try:
            return cls.from_metadata(load_metadata(path))
        except CheckpointError:
            return cls()

    def as_dict(self) -> dict:
        """The fields that are set, as JSON-compatible values."""
        return {k: v for k, v in asdict(self).items() if v not in (None, {})}


def _json_dict(text: str) -> dict:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def trusted_name(value: str | None, builtins: Iterable[str], *, what: str, flag: str,
                 source: str = "the checkpoint's metadata") -> str | None:
    """A model or data name read from a file (``source``: a checkpoint's metadata, a run's ``run.json``),
    accepted only when it is built in.

    Raises:
        ConfigError: ``value`` is not a built-in name (an import string, say): losslens does not
            import code a file names; the user must pass it explicitly with ``flag``.
    """
    if value is None or value in tuple(builtins):
        return value
    raise ConfigError(
        f"{source} names the {what} {value!r}, which is not built in; losslens never imports "
        f"code named by a file: if you trust it, pass {flag} {value} explicitly"
    )


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_info(path: str | os.PathLike) -> dict:
    """A checkpoint's identity: ``path``, ``label`` (run directory / file), ``sha256``, and its metadata."""
    from losslens.core.checkpoints import _check_file

    path = Path(path)
    _check_file(path)
    info = {"path": str(path), "label": checkpoint_label(path), "sha256": file_sha256(path)}
    return info | CheckpointMeta.read(path).as_dict()


def checkpoint_label(path: str | os.PathLike) -> str:
    """``parent/file``: two runs' ``step_000220.safetensors`` stay apart."""
    path = Path(path)
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def fingerprint(tensors: Iterable[torch.Tensor | np.ndarray]) -> str:
    """A content hash of tensors: their dtypes, shapes and bytes (SHA-256, shortened)."""
    digest = hashlib.sha256()
    for t in tensors:
        a = t.detach().cpu().contiguous().numpy() if isinstance(t, torch.Tensor) else np.ascontiguousarray(t)
        digest.update(f"{a.dtype}{a.shape}".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()[:_HASH_CHARS]


def model_identity(module: nn.Module, name: str | None = None, kwargs: dict | None = None) -> dict:
    """What a model is: its name and options (when built by name), class and architecture hash.

    The architecture hash covers every submodule's name, class and ``extra_repr`` (so ``resnet`` and
    ``resnet-noskip``, whose parameters have the same names and shapes, differ), the names, shapes
    and dtypes of its parameters and buffers, and the source of ``forward`` of classes outside
    ``torch`` (a user's model whose forward changed gets another hash).
    """
    digest = hashlib.sha256()
    for sub_name, sub in module.named_modules():
        cls = type(sub)
        digest.update(f"{sub_name}|{cls.__module__}.{cls.__qualname__}|{sub.extra_repr()}\n".encode())
        if not cls.__module__.startswith("torch."):
            try:
                digest.update(inspect.getsource(cls.forward).encode())
            except (OSError, TypeError):
                pass
    for kind, tensors in (("p", module.named_parameters(remove_duplicate=False)), ("b", module.named_buffers())):
        for t_name, t in tensors:
            digest.update(f"{kind}|{t_name}|{tuple(t.shape)}|{t.dtype}\n".encode())
    cls = type(module)
    return {
        "name": name,
        "kwargs": dict(kwargs or {}),
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "architecture": digest.hexdigest()[:_HASH_CHARS],
    }
