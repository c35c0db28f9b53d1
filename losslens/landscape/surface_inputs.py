"""What a surface is computed from, checked (evaluators, directions, coordinates), and the grid file's
spec and header built from it (``surface.py`` computes the surface; ``grid_file.py`` stores it)."""

from __future__ import annotations

import hashlib
import json
import warnings

import numpy as np
import torch

from losslens.landscape import grid_file as gf
from losslens.landscape._grid_values import check_increasing
from losslens.landscape.directions import Directions


_RUN_KEYS = ("ndim", "shape", "n_points", "n_done", "n_nonfinite", "seconds", "points_per_second", "world_size",
             "splits", "identity", "evaluations", "directions_kind")


_PARALLEL_COSINE = 0.99


def _split_key(split: str | None) -> str:
    return split or "unspecified"


def _header(evaluators, dirs: Directions, caller: dict | None, x, y, world: int, identity: dict) -> dict:
    """The file's metadata: the first evaluator's ``meta()``, the caller's, and the grid's."""
    caller = dict(caller or {})
    first = evaluators[0].meta()
    clash = sorted(set(caller) & (set(first) | set(_RUN_KEYS)))
    if clash:
        raise ValueError(f"meta keys {clash} are recorded by the surface itself; give them other names")
    shape = [len(x)] if y is None else [len(y), len(x)]
    return {
        **first, **caller,
        "splits": [ev.data.split for ev in evaluators],
        "evaluations": {_split_key(ev.data.split): ev.meta() for ev in evaluators[1:]},
        "identity": identity,
        "directions_kind": dirs.kind,
        "seed": caller.get("seed", dirs.meta.get("seed")),
        "ndim": len(shape), "shape": shape, "n_points": int(np.prod(shape)), "world_size": world,
    }


def _spec(x, y, w0, dirs: Directions | None, splits: tuple, metric_names: tuple[str, ...], identity: dict) -> gf.GridSpec:
    return gf.GridSpec(
        x=np.asarray(x, dtype=np.float64),
        y=None if y is None else np.asarray(y, dtype=np.float64),
        w0=None if w0 is None else np.asarray(w0),
        vectors=None if dirs is None else _numpy(dirs.vectors),
        directions_kind=None if dirs is None else dirs.kind,
        directions_meta={} if dirs is None else dirs.meta,
        splits=tuple(splits),
        metric_names=metric_names,
        identity=identity,
    )


def _fingerprint(spec: gf.GridSpec) -> dict[str, str]:
    """Digests of what every rank must share, for ``Group.check_same``."""

    def digest(a) -> str:
        return "none" if a is None else hashlib.sha256(np.ascontiguousarray(a, dtype=np.float64).tobytes()).hexdigest()

    return {
        "x coordinates": digest(spec.x),
        "y coordinates": digest(spec.y),
        "origin w0": digest(spec.w0),
        "direction vectors": digest(spec.vectors),
        "evaluator settings": json.dumps(spec.identity, sort_keys=True, default=str),
    }


def _as_evaluators(evaluators) -> list:
    evaluators = list(evaluators) if isinstance(evaluators, (list, tuple)) else [evaluators]
    if not evaluators:
        raise ValueError("a surface needs at least one evaluator")
    for ev in evaluators:
        if not hasattr(ev, "evaluate_affine"):  # an Evaluator, or a stand-in with its interface
            raise TypeError(f"a surface needs an Evaluator (or a list of them), got {type(ev).__name__}")
    splits = [ev.data.split for ev in evaluators]
    if len(set(splits)) != len(splits):
        raise ValueError(f"several evaluators must evaluate different data splits, found {splits}")
    sizes = {ev.space.size for ev in evaluators}
    metrics = {tuple(ev.metric_names) for ev in evaluators}
    if len(sizes) > 1 or len(metrics) > 1:
        raise ValueError("the evaluators of one surface must share the parameter space and the metrics")
    return evaluators


def _as_directions(directions, m: int, size: int) -> Directions:
    if not isinstance(directions, Directions):
        vectors = torch.as_tensor(directions).detach()
        if vectors.dim() == 1:
            vectors = vectors[None]
        directions = Directions(vectors.cpu(), "custom", {})
    if directions.vectors.shape != (m, size):
        raise ValueError(
            f"a {m}D surface needs {m} direction(s) of length {size} (the evaluator's parameters), found "
            f"vectors of shape {list(directions.vectors.shape)}; pick rows with e.g. directions.vectors[:{m}]"
        )
    norms = directions.vectors.double().norm(dim=1)
    for i, n in enumerate(norms.tolist()):
        if not np.isfinite(n):
            raise ValueError(f"direction {i + 1} holds NaN or infinite entries")
        if n == 0:
            raise ValueError(f"direction {i + 1} is zero (a model whose weights are all zero gets zero "
                             "filter-normalized directions; use normalization='none' or other weights)")
    if m == 2 and abs(float(directions.cosine()[0, 1])) > _PARALLEL_COSINE:
        warnings.warn(f"losslens: the two directions are nearly parallel (cosine {float(directions.cosine()[0, 1]):.4f}): "
                      "the plane is close to a line", stacklevel=4)
    return directions


def _coordinates(values, name: str) -> np.ndarray:
    a = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else values
    a = np.array(a, dtype=np.float64)
    if a.ndim != 1 or a.size == 0 or not np.isfinite(a).all():
        raise ValueError(f"{name} must be a non-empty 1-D array of finite coordinates, found shape {list(a.shape)}")
    check_increasing(a, name)
    return a


def _numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach().cpu()
    return (t if t.dtype == torch.float64 else t.float()).numpy()


def _held(dirs: Directions, grid: gf.GridFile) -> Directions:
    """``dirs`` as the grid file holds them: with the file's vectors when it was resumed (equal to ``dirs``
    to rounding), so that a surface is the same, and its request (``core.reuse``) too, computed or reused."""
    if grid.vectors is grid.spec.vectors:
        return dirs
    return Directions(torch.from_numpy(grid.vectors), dirs.kind, dirs.meta)
