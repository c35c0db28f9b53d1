"""Read checkpoints of every common kind as a plain state dict, safely; write them as safetensors.

Reading never runs code from the file unless asked: pickled checkpoints are opened with
``torch.load(weights_only=True)``, which only rebuilds tensors and plain containers. A file that
holds other Python objects (a pickled model, an ``argparse.Namespace``, or a payload whose
``__reduce__`` runs a command) is refused with an error that names the objects; ``unsafe_pickle=True``
loads it with the full unpickler, which should be done only for a trusted file.
"""

from __future__ import annotations

import json
import os
import pickle
import pickletools
import shutil
import stat
import warnings
import zipfile
from pathlib import Path
from typing import Mapping

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from losslens._io import atomic
from losslens.core._checks import nonfinite_tensors
from losslens.core._state_fit import fit_state, listing, tied_names
from losslens.errors import CheckpointError, ConfigError

WRAPPER_KEYS: tuple[str, ...] = ("state_dict", "model_state_dict", "model", "net")
WRAPPER_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.")  # DataParallel/DDP, torch.compile


def load_checkpoint(
    path: str | os.PathLike, model: nn.Module | None = None, *, unsafe_pickle: bool = False
) -> dict[str, torch.Tensor]:
    """Read a checkpoint file as a plain state dict on the CPU.

    Reads a ``.safetensors`` file, or a ``torch.save`` file holding a state dict, a dict holding one
    under one of ``WRAPPER_KEYS`` (``state_dict``, ``model_state_dict``, ``model``, ``net``; a
    PyTorch Lightning ``.ckpt`` keeps it under ``state_dict``), or, with ``unsafe_pickle``, a pickled
    ``nn.Module``. The ``module.`` (DataParallel/DDP) and ``_orig_mod.`` (``torch.compile``)
    prefixes are removed where they lead a key, and ``_orig_mod.`` anywhere in a key.

    With a ``model``, the result is checked against ``model.state_dict()`` and returned in its key
    order: if the keys do not match as they are, the keys under one leading component (a
    LightningModule's attribute, ``model.``) are tried; tied parameters that the file holds once
    are filled in under both names. The model itself is only read: nothing is loaded into it.

    Args:
        path: the checkpoint file.
        model: the model the checkpoint must fit, or ``None`` to skip the check.
        unsafe_pickle: load pickles with ``weights_only=False``. It can run arbitrary code from
            the file: use it only for a file you trust.

    Returns:
        ``{name: tensor}``.

    Raises:
        CheckpointError: the file is missing, is not a checkpoint (garbage, truncated, another
            format, no tensors), holds arbitrary Python objects and ``unsafe_pickle`` is off, or does
            not fit ``model`` (missing and unexpected keys, shape mismatches, all named).
    """
    path = Path(path)
    _check_file(path)
    if _is_safetensors(path):
        try:
            state = load_file(str(path), device="cpu")
        except Exception as e:  # safetensors raises its own error types for damaged files
            raise CheckpointError(f"{path}: not a valid safetensors file ({_reason(e)})") from e
        if not state:
            raise CheckpointError(f"{path}: the safetensors file holds no tensors")
    else:
        state = _state_dict_of(_torch_load(path, unsafe_pickle), path)
    state = _strip_prefixes(state, path)
    bad = nonfinite_tensors(state)
    if bad:
        warnings.warn(f"losslens: {path}: tensors holding NaN or inf: {listing(bad)}", stacklevel=2)
    if model is not None:
        state = fit_state(state, model, path)
    return state


def load_model(
    path: str | os.PathLike,
    name: str,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    unsafe_pickle: bool = False,
    **model_kwargs,
) -> nn.Module:
    """A new model built by ``build_model(name, ...)`` holding the weights of checkpoint ``path``.

    Args:
        path: the checkpoint file (``.safetensors``, ``.pt``, ``.pth``, ``.ckpt``).
        name: a built-in model name or an import string ``package.module:factory``.
        input_shape: the shape of one input sample, without the batch dimension.
        num_classes: the number of outputs.
        unsafe_pickle: load pickles holding arbitrary Python objects, which can run code from the file (only for
            files you trust).
        model_kwargs: options of the model (``hidden=[128, 64]``).

    Raises:
        CheckpointError: the file is missing or unreadable, or does not fit the model (see
            ``load_checkpoint``). ConfigError: an unknown model name or option.
    """
    from losslens.core.models import build_model

    model = build_model(name, input_shape=input_shape, num_classes=num_classes, **model_kwargs)
    model.load_state_dict(load_checkpoint(path, model, unsafe_pickle=unsafe_pickle))
    return model


def save_checkpoint(
    state_dict_or_model: nn.Module | Mapping[str, torch.Tensor],
    path: str | os.PathLike,
    *,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write a state dict (or a model's) as a safetensors file, with string ``metadata`` inside.

    Tensors are written as contiguous CPU tensors with their dtypes (integer buffers such as
    ``num_batches_tracked`` included). Tied tensors (several names for the same tensor, as GPT-2's
    ``lm_head.weight`` and ``transformer.wte.weight``) are written once, under the first of their
    names in sorted order, as safetensors' ``save_model`` writes them: ``load_checkpoint(path, model)``,
    ``safetensors.torch.load_model`` and Hugging Face restore the other names from the model's ties.
    Other tensors that share memory (overlapping views) are written each as its own copy, because
    safetensors refuses shared storage.

    Args:
        state_dict_or_model: a ``{name: tensor}`` state dict, or a module whose ``state_dict()`` is written.
        path: the ``.safetensors`` file to write.
        metadata: ``{str: str}`` stored in the file's header (``None``: none).

    Returns:
        The path written (its parent directories are created).

    Raises:
        CheckpointError: a value of the state dict is not a tensor, or the metadata is not
            ``{str: str}``.
    """
    state = state_dict_or_model.state_dict() if isinstance(state_dict_or_model, nn.Module) else state_dict_or_model
    if not isinstance(state, Mapping):
        raise ConfigError(f"save_checkpoint needs a model or a state dict, got {type(state_dict_or_model).__name__}")
    for name, t in state.items():
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"cannot save {name!r} to {path}: it is a {type(t).__name__}, not a tensor")
    tied = {n for names in tied_names(state) for n in sorted(names)[1:]}
    tensors: dict[str, torch.Tensor] = {}
    storages: set[int] = set()
    for name, t in state.items():
        if name in tied:
            continue
        t = t.detach().to("cpu").contiguous()
        if t.numel() and t.untyped_storage().data_ptr() in storages:
            t = t.clone()
        storages.add(t.untyped_storage().data_ptr())
        tensors[name] = t
    meta = dict(metadata or {})
    bad = [k for k, v in meta.items() if not (isinstance(k, str) and isinstance(v, str))]
    if bad:
        raise CheckpointError(f"checkpoint metadata must map strings to strings; not so for {bad}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic(path) as tmp:  # a crash never leaves half a checkpoint under its name
        save_file(tensors, str(tmp), metadata=meta)
        _sort_metadata(tmp)
    return path


def _sort_metadata(path: Path) -> None:
    """Write the metadata of a safetensors header in sorted key order.

    safetensors writes it in hash-map order, which changes from process to process; sorted, the
    same tensors and metadata always give the same bytes. The tensor entries (whose offsets count
    from the end of the header) are kept as they are.
    """
    with open(path, "r+b") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        meta = header.pop("__metadata__", None)
        if not meta:
            return
        text = json.dumps(
            {"__metadata__": dict(sorted(meta.items())), **header}, separators=(",", ":"), ensure_ascii=False
        ).encode()
        if len(text) <= n:  # the same JSON reordered: it fits, padded with spaces as safetensors pads
            f.seek(8)
            f.write(text + b" " * (n - len(text)))
            return
        text += b" " * (-(8 + len(text)) % 8)
        with atomic(path) as tmp, open(tmp, "wb") as g:
            g.write(len(text).to_bytes(8, "little") + text)
            shutil.copyfileobj(f, g)


def load_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata stored in a safetensors file (``{}`` if it has none).

    Args:
        path: a ``.safetensors`` file.

    Raises:
        CheckpointError: the file is missing or is not a safetensors file.
    """
    path = Path(path)
    _check_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(sorted((f.metadata() or {}).items()))
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: not a safetensors file, so it has no metadata ({_reason(e)})") from e


def _check_file(path: Path) -> None:
    """A checkpoint must be a regular file: a directory is refused, and a FIFO or device would block."""
    if not path.exists():
        raise CheckpointError(f"checkpoint {path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path}: is a directory, not a file")
    if not stat.S_ISREG(path.stat().st_mode):
        raise CheckpointError(f"checkpoint {path}: not a regular file (a pipe, socket or device)")


def _is_safetensors(path: Path) -> bool:
    """By name, or by content: an 8-byte little-endian header length, then a JSON header."""
    if path.suffix == ".safetensors":
        return True
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    return head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= path.stat().st_size


def _torch_load(path: Path, unsafe_pickle: bool):
    try:
        with warnings.catch_warnings():  # plain pickles of protocol > 2 make torch warn before refusing
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=not unsafe_pickle)
    except pickle.UnpicklingError as e:
        objects = None if unsafe_pickle else _python_objects(path)
        if objects:
            raise CheckpointError(
                f"{path}: the file holds arbitrary Python objects ({', '.join(objects[:5])}) and loading "
                "it could run code from it, so it was not loaded; pass unsafe_pickle=True "
                "(--unsafe-pickle on the command line) only if you trust the file"
            ) from e
        raise CheckpointError(
            f"{path}: not a checkpoint: neither a safetensors file nor a readable torch.save file "
            "(garbage, truncated, or another format)"
        ) from e
    except Exception as e:  # torch.load raises RuntimeError, EOFError, ... for damaged files
        raise CheckpointError(
            f"{path}: not a checkpoint, or a damaged or truncated one ({_reason(e)})"
        ) from e


def _python_objects(path: Path) -> list[str]:
    """Names of the Python objects a pickled checkpoint would import, read without running it."""
    if zipfile.is_zipfile(path):
        try:
            return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        except Exception:  # a damaged archive: not a question of unsafe objects
            return []
    names = _pickle_globals(path)
    return [n for n in names if not n.startswith(("torch.", "collections."))] or names


def _pickle_globals(path: Path) -> list[str]:
    """Globals named by the pickles at the start of a file (legacy ``torch.save`` or plain pickle).

    Reads the opcodes with ``pickletools.genops``, which executes nothing; stops at the first
    bytes that are not a complete pickle.
    """
    names: list[str] = []
    size = path.stat().st_size
    with open(path, "rb") as f:
        while f.tell() < size:
            found, strings = [], []
            try:
                for op, arg, _ in pickletools.genops(f):
                    if op.name in ("GLOBAL", "INST"):
                        found.append(str(arg).replace(" ", "."))
                    elif op.name == "STACK_GLOBAL":
                        found.append(".".join(strings[-2:]))
                    elif isinstance(arg, str):
                        strings.append(arg)
            except Exception:  # not (or no longer) a pickle: raw tensor bytes or garbage
                break
            names += [n for n in found if n not in names]
    return names


def _state_dict_of(obj, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    if _is_state_dict(obj):
        return _tensors_of(obj)
    for key in WRAPPER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, nn.Module):
            return inner.state_dict()
        if isinstance(inner, Mapping) and _is_state_dict(inner):
            return _tensors_of(inner)
    keys = [str(k) for k in obj]
    raise CheckpointError(
        f"{path}: holds no state dict: a dict with keys {listing(keys)} and no dict of tensors "
        f"under {', '.join(repr(k) for k in WRAPPER_KEYS)}"
    )


def _is_state_dict(m: Mapping) -> bool:
    """A non-empty ``{str: Tensor}`` (``_extra_state`` entries of any type allowed)."""
    tensors = 0
    for k, v in m.items():
        if not isinstance(k, str):
            return False
        if isinstance(v, torch.Tensor):
            tensors += 1
        elif not k.endswith("_extra_state"):
            return False
    return tensors > 0


def _tensors_of(m: Mapping) -> dict[str, torch.Tensor]:
    return {k: v for k, v in m.items() if isinstance(v, torch.Tensor)}


def _strip_prefixes(state: Mapping[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key, value in state.items():
        new = key
        while new.startswith(WRAPPER_PREFIXES):
            new = new.partition(".")[2]
        new = new.replace("._orig_mod.", ".")
        if new in out:
            raise CheckpointError(
                f"{path}: keys {origin[new]!r} and {key!r} are the same once the wrapper prefixes "
                f"{', '.join(WRAPPER_PREFIXES)} are removed"
            )
        out[new], origin[new] = value, key
    return out


def _reason(e: Exception) -> str:
    """The first sentence of an exception's message, prefixed with its type."""
    text = str(e).strip().split("\n")[0].split(". ")[0].rstrip(".")
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
