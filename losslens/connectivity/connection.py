"""The result of ``connect``: paths between two minima, their losses and accuracies along ``t``, their barriers,
their coordinates on the plane through A, B and the bend, and the alignments of B to A that some were computed
after."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from losslens.results import Items, Result, attr, stored


@dataclass(frozen=True, eq=False, repr=False)
class Connection(Result):
    """Several paths between two checkpoints A (``t = 0``) and B (``t = 1``).

    Attributes:
        paths: one dict per path: ``path`` (``line``, ``bezier``, ``polychain``, ...), ``align`` (``none``,
            ``weights``, ``activations``: how B was permuted first), ``splits`` (the data splits, in the order of
            the columns), ``barriers`` (``{split: {"loss": {barrier, barrier_mean, barrier_max}, "error": {...}}}``,
            the error ``1 - accuracy``'s ``None`` without accuracy; see ``barriers.py``), ``training`` (the bend
            training's options and its first and last loss, ``None`` for an untrained path).
        curves: one ``(n, 3 + 2 S)`` array per path, columns ``t, x, y``, the loss on each of the ``S`` splits, the
            accuracy on each (NaN without accuracy); ``x, y``: the point's coordinates on the plane through A, B
            and the bend (orthonormal basis of ``{B - A, theta - A}``, A at the origin, B on the x axis).
        alignment: per method used (``weights``, ``activations``): ``output_change`` (the largest relative change
            of B's outputs by the permutation) and ``objective`` (the matching's objective per iteration).
        meta: provenance: the evaluator's meta (``evaluator``), ``endpoints``, ``seed``, ``bn`` (the BatchNorm
            mode of the evaluation along the paths), ``points``, ``barrier_definitions``.
    """

    KIND: ClassVar[str] = "connection"

    paths: tuple[dict, ...] = attr(tuple)
    curves: tuple[np.ndarray, ...] = stored(Items())
    alignment: dict = attr()
    meta: dict = attr()

    def key_figures(self) -> dict:
        return {f"{p['path']} ({p['align']})": p["barriers"][p["splits"][0]]["loss"]["barrier"] for p in self.paths}

    def columns(self, i: int) -> dict[str, np.ndarray]:
        """The arrays of path ``i``: ``t``, ``x``, ``y``, ``loss/<split>``, ``accuracy/<split>``."""
        splits = self.paths[i]["splits"]
        names = ["t", "x", "y"] + [f"loss/{s}" for s in splits] + [f"accuracy/{s}" for s in splits]
        return {name: self.curves[i][:, k] for k, name in enumerate(names)}

    def label(self, i: int) -> str:
        """``bezier`` or ``bezier, aligned by weights``."""
        p = self.paths[i]
        return p["path"] if p["align"] == "none" else f"{p['path']}, aligned by {p['align']}"

    def as_json(self) -> dict:
        """``{"paths": [...], "alignment": {...}}`` as ``connect.json`` holds it: per path ``path``, ``align``,
        ``t``, ``loss`` and ``accuracy`` (lists on the first split, ``{split: list}`` in ``by_split``), the three
        barriers of the loss and of the error (``error_barrier``, ...) on the first split, and ``barriers`` per
        split; NaN written as null."""
        out = []
        for i, p in enumerate(self.paths):
            cols, first = self.columns(i), p["splits"][0]
            loss, error = p["barriers"][first]["loss"], p["barriers"][first]["error"] or {}
            out.append({"path": p["path"], "align": p["align"], "split": first, "t": _list(cols["t"]),
                        "loss": _list(cols[f"loss/{first}"]), "accuracy": _list(cols[f"accuracy/{first}"]),
                        **loss, **{f"error_{k}": v for k, v in error.items()},
                        "by_split": {s: {"loss": _list(cols[f"loss/{s}"]), "accuracy": _list(cols[f"accuracy/{s}"])}
                                     for s in p["splits"]},
                        "barriers": p["barriers"], "training": p["training"]})
        return _nulls({"paths": out, "alignment": self.alignment})


def merge(results, alignment: dict | None = None, meta: dict | None = None) -> Connection:
    """One ``Connection`` of the paths of several, with the alignments given (and the first's meta updated by
    ``meta``)."""
    results = list(results)
    return Connection(tuple(p for r in results for p in r.paths), tuple(c for r in results for c in r.curves),
                      {k: v for r in results for k, v in r.alignment.items()} | (alignment or {}),
                      {**results[0].meta, **(meta or {})})


def _list(values: np.ndarray) -> list:
    return [float(v) for v in values]


def _nulls(obj):
    """``obj`` with every NaN float replaced by ``None`` (JSON has no NaN)."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nulls(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nulls(v) for v in obj]
    return obj
