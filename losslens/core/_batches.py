"""Batches of any structure: what a data set yields, split into the model's inputs and the target.

A batch (or a Dataset item) is either ``(inputs, target)``, where ``inputs`` is a tensor, a tuple or
list of tensors (the model is called ``model(*inputs)``) or a dict of tensors (``model(**inputs)``);
or a dict in the Hugging Face style (``input_ids``, ``attention_mask``, ..., the target under
``target_key``, ``"labels"`` by default). Inputs are pytrees of tensors: these helpers map, slice,
move and measure them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Callable

import torch

from losslens.errors import ConfigError


def split_batch(batch, target_key: str = "labels"):
    """``(inputs, target)`` of a batch or item (see the module docstring).

    Raises:
        ConfigError: a dict without the target key, a batch of another structure, or inputs holding
            something other than tensors (named by key or position).
    """
    if isinstance(batch, Mapping):
        if target_key not in batch:
            raise ConfigError(f"a dict batch needs its target under {target_key!r} (target_key); its keys are "
                              f"{sorted(batch)}")
        inputs = {k: v for k, v in batch.items() if k != target_key}
        target = batch[target_key]
    elif isinstance(batch, (tuple, list)) and len(batch) == 2:
        inputs, target = batch
    else:
        raise ConfigError(f"cannot read a batch of type {type(batch).__name__}: give (inputs, target) pairs, or dicts "
                          f"holding the target under {target_key!r}")
    check_inputs(inputs)
    if not isinstance(target, torch.Tensor):
        target = torch.as_tensor(target)
    return inputs, target


def check_inputs(inputs) -> None:
    """Inputs must be a tensor, or a tuple/list/dict of tensors (a forward that needs other arguments
    varying per batch cannot be evaluated at many points)."""
    if isinstance(inputs, torch.Tensor):
        return
    items = inputs.items() if isinstance(inputs, Mapping) else enumerate(inputs) if isinstance(inputs, (tuple, list)) \
        else None
    if items is None:
        raise ConfigError(f"the model's inputs must be a tensor, or a tuple, list or dict of tensors; found a "
                          f"{type(inputs).__name__}")
    bad = [f"{k!r} ({type(v).__name__})" for k, v in items if not isinstance(v, torch.Tensor)]
    if bad:
        raise ConfigError(f"the batches hold inputs that are not tensors: {', '.join(bad)}; losslens passes only "
                          "tensors to the model (put fixed options in the model itself)")


def tree_map(fn: Callable[[torch.Tensor], torch.Tensor], tree):
    if isinstance(tree, torch.Tensor):
        return fn(tree)
    if isinstance(tree, Mapping):
        return {k: fn(v) for k, v in tree.items()}
    return type(tree)(fn(v) for v in tree)


def leaves(tree) -> list[torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return [tree]
    return list(tree.values()) if isinstance(tree, Mapping) else list(tree)


def length(tree) -> int:
    """The samples of a batch: the first dimension of its first tensor."""
    return len(leaves(tree)[0])


def nbytes(tree) -> int:
    return sum(t.numel() * t.element_size() for t in leaves(tree))


def call_args(inputs) -> tuple[tuple, dict]:
    """``(args, kwargs)`` of ``model(...)`` for the inputs."""
    if isinstance(inputs, torch.Tensor):
        return (inputs,), {}
    if isinstance(inputs, Mapping):
        return (), dict(inputs)
    return tuple(inputs), {}


def concatenate(parts: list) -> object | None:
    """The batches' pytrees joined along dim 0, or ``None`` when their shapes differ (padded per batch)."""
    first = parts[0]
    try:
        if isinstance(first, torch.Tensor):
            return torch.cat(parts)
        if isinstance(first, Mapping):
            if any(set(p) != set(first) for p in parts):
                return None
            return {k: torch.cat([p[k] for p in parts]) for k in first}
        return type(first)(torch.cat([p[i] for p in parts]) for i in range(len(first)))
    except RuntimeError:  # sizes differ beyond dim 0
        return None
