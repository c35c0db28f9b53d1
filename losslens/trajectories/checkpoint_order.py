"""The training order of checkpoint files that no ``run.json`` lists, and each file's step and epoch.

Order (``order="auto"``), for files not listed by a ``run.json``:

1. the ``step`` of every file's safetensors metadata, if every file has one; else
2. the ``epoch`` of every file's metadata, if every file has one; else
3. the numbers in the file names, compared as numbers, never as text (``epoch_2`` before
   ``epoch_10``). A name is split into text and integer pieces (``"seed1_epoch10.pt"`` ->
   ``("seed", 1, "_epoch", 10, ".pt")``) and names are compared piece by piece: with several numbers,
   the first one that differs decides, so ``seed1_epoch10`` comes after ``seed1_epoch9`` and before
   ``seed2_epoch1``. Every name must hold a number.

Two files with the same key are refused (a glob that caught two runs), as is a name without any
number: ``order="given"`` keeps the files in the order passed instead.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Sequence

from losslens.core.checkpoints import load_metadata
from losslens.errors import CheckpointError, ConfigError

_PIECES = re.compile(r"(\d+)")
_NAMED = {"step": re.compile(r"step[_-]?(\d+)", re.I), "epoch": re.compile(r"epoch[_-]?(\d+)", re.I)}


def training_order(paths: Sequence[Path], order: str = "auto") -> tuple[list[int], list, list]:
    """``(positions, steps, epochs)``: the positions of ``paths`` in training order (``order="auto"``, see
    the module docstring; ``"given"``: as they are), and each file's step and epoch (its metadata's, else
    the number after ``step``/``epoch`` in its name, else ``None``).

    Raises:
        CheckpointError: a missing file. ConfigError: the order cannot be decided (see ``sort_order``).
    """
    metas = [_safetensors_metadata(p) for p in paths]
    meta_steps = [_number(m.get("step"), int) for m in metas]
    meta_epochs = [_number(m.get("epoch"), float) for m in metas]
    positions = sort_order(paths, meta_steps, meta_epochs) if order == "auto" else list(range(len(paths)))
    steps = [s if s is not None else _named(p, "step") for s, p in zip(meta_steps, paths)]
    epochs = [e if e is not None else _named(p, "epoch") for e, p in zip(meta_epochs, paths)]
    return positions, steps, epochs


def sort_order(paths: Sequence[Path], steps: Sequence[int | None], epochs: Sequence[float | None]) -> list[int]:
    """Positions of ``paths`` in training order: by ``steps`` if all are known, else by ``epochs`` if all
    are known, else by the numbers in the file names (see the module docstring).

    Raises:
        ConfigError: a name without a number (when names decide), or two files with the same key.
    """
    if all(s is not None for s in steps):
        keys, what = list(steps), "step (from the files' metadata)"
    elif all(e is not None for e in epochs):
        keys, what = list(epochs), "epoch (from the files' metadata)"
    else:
        bare = [p.name for p in paths if not _PIECES.search(p.name)]
        if bare:
            raise ConfigError(
                f"cannot order checkpoints by the numbers in their names: {', '.join(bare[:5])} hold no number "
                "(and the files have no step/epoch metadata); pass the files in training order with order='given'"
            )
        keys, what = [natural_key(p.name) for p in paths], "the numbers in the file names"
    order = sorted(range(len(paths)), key=lambda i: keys[i])
    for a, b in zip(order, order[1:]):
        if keys[a] == keys[b]:
            raise ConfigError(
                f"cannot order checkpoints: {paths[a]} and {paths[b]} have the same {what}; "
                "give the files of one run only, or pass them in training order with order='given'"
            )
    return order


def natural_key(name: str) -> tuple:
    """``name`` split into text and integer pieces, integers compared by value: ``"epoch_10.pt"`` ->
    ``("epoch_", 10, ".pt")``. Text pieces sit at even positions and integers at odd ones, so any two
    keys compare without mixing types."""
    parts = _PIECES.split(name)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def _safetensors_metadata(path: Path) -> dict[str, str]:
    if not path.exists():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        return load_metadata(path)
    except CheckpointError:  # not a safetensors file: no metadata
        return {}


def _number(text: str | None, kind):
    if text is None:
        return None
    try:
        value = kind(float(text))
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _named(path: Path, what: str):
    """The number after ``step``/``epoch`` in a file name (``step_000220``), or ``None``."""
    m = _NAMED[what].search(path.stem)
    if m is None:
        return None
    return int(m.group(1)) if what == "step" else float(m.group(1))
