"""A state dict fitted to a model: its keys matched (under one leading component if need be), tied tensors
filled in under every name, and every problem named at once (missing and unexpected keys, shapes, dtypes).
``load_checkpoint`` reads a file; this module fits what it read."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from losslens.errors import CheckpointError

_LISTED = 10  # names listed in an error before "and N more"


def fit_state(state: dict[str, torch.Tensor], model: nn.Module, path: Path) -> dict[str, torch.Tensor]:
    """``state`` renamed to fit ``model`` (in its key order), or an error listing every problem."""
    expected = model.state_dict()
    best, prefix = _match_names(state, set(expected), path)
    best = _tie(best, model)
    missing = [k for k in expected if k not in best]
    unexpected = [k for k in best if k not in expected]
    mismatched = [k for k in expected if k in best and best[k].shape != expected[k].shape]
    not_real = [k for k in expected if k in best and k not in mismatched and expected[k].is_floating_point()
                and not best[k].is_floating_point()]  # integers, booleans, complex: a cast would lose them silently
    if not (missing or unexpected or mismatched or not_real):
        return {k: best[k] for k in expected}
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {listing(unexpected)}")
    for k in mismatched[:_LISTED]:
        problems.append(
            f"shape mismatch for {k!r}: the model expects {list(expected[k].shape)}, "
            f"the checkpoint has {list(best[k].shape)}"
        )
    if len(mismatched) > _LISTED:
        problems.append(f"and {len(mismatched) - _LISTED} more shape mismatches")
    if not_real:
        problems.append(f"{len(not_real)} tensor(s) not of real floating point, as the model's are: "
                        + ", ".join(f"{k} ({best[k].dtype})" for k in not_real[:_LISTED])
                        + (" ..." if len(not_real) > _LISTED else ""))
    note = f" (keys read under the prefix {prefix!r})" if prefix else ""
    raise CheckpointError(
        f"{path}: does not fit the model {type(model).__name__}{note}: {'; '.join(problems)}"
    )


def _match_names(state: dict[str, torch.Tensor], expected: set[str], path: Path):
    """``(state, prefix)``: the keys as they are, or those under one leading component, stripped.

    The keys as they are win if they match; then a prefix that every key carries (a Lightning
    checkpoint of a module holding only the model); then the one prefix whose keys match exactly.
    When nothing matches, the candidate sharing the most keys with the model is returned.
    """
    if set(state) == expected:
        return state, ""
    heads = Counter(k.partition(".")[0] for k in state if "." in k)
    candidates = []
    for head, _ in heads.most_common():
        prefix = head + "."
        sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        candidates.append((prefix, sub))
        if len(sub) == len(state) and set(sub) == expected:
            return sub, prefix
    exact = [(p, sub) for p, sub in candidates if set(sub) == expected]
    if len(exact) > 1:
        raise CheckpointError(
            f"{path}: the keys under each of the prefixes {', '.join(repr(p) for p, _ in exact)} fit the "
            "model; cannot tell which one holds it"
        )
    if exact:
        return exact[0][1], exact[0][0]
    best, best_prefix, overlap = state, "", len(set(state) & expected)
    for prefix, sub in candidates:
        n = len(set(sub) & expected)
        if n > overlap:
            best, best_prefix, overlap = sub, prefix, n
    return best, best_prefix


def tied_names(state: Mapping[str, torch.Tensor]) -> list[list[str]]:
    """Groups of two or more names of the same tensor (same memory, shape, strides and dtype)."""
    groups: dict[tuple, list[str]] = {}
    for name, t in state.items():
        if t.numel() and t.device.type != "meta":  # meta tensors have no memory to share
            key = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), t.shape, t.stride(), t.dtype)
            groups.setdefault(key, []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def _tie(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Fill in tied tensors of ``model`` (one parameter or buffer under several names) held under
    only one of their names.

    A key missing from ``state`` is filled in only from a tie partner that ``state`` holds; any
    other missing key stays missing (and is reported by ``_fit``).
    """
    saved = set(model.state_dict())
    names_of: dict[int, list[str]] = {}
    for name, t in [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]:
        if name in saved:
            names_of.setdefault(id(t), []).append(name)
    state = dict(state)
    for names in names_of.values():
        present = [n for n in names if n in state]
        for n in names if present else ():
            state.setdefault(n, state[present[0]])
    return state


def listing(names: list[str]) -> str:
    """``names``, the first ``_LISTED`` of them and how many more."""
    shown = ", ".join(names[:_LISTED])
    return shown + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")
