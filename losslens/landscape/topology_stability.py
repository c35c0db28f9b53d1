"""How the topology of several surfaces (e.g. one per random-direction seed) spreads: ``topology_stability``."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar, Literal

import numpy as np

from losslens.checks import check_number
from losslens.landscape.diagram_distances import bottleneck
from losslens.landscape.topology import HEADLINE, THRESHOLD_FRACTION, topology
from losslens.results import Group, Result, array, attr, stored


@dataclass(frozen=True, repr=False)
class TopologyStability(Result):
    """How the topology of surfaces from several random-direction seeds spreads.

    Attributes:
        names: one name per surface.
        figures: ``{figure: (n,) values}``, one per ``HEADLINE`` figure.
        bottleneck_h0: ``(n, n)`` pairwise bottleneck distances of the :math:`H_0` diagrams.
        meta: ``threshold`` (the one applied to every surface), ``threshold_rule``, ``construction``,
            ``normalize``, ``warnings`` (each surface's, prefixed by its name), ``sources``.
    """

    KIND: ClassVar[str] = "topology_stability"

    names: tuple[str, ...] = attr(tuple)
    figures: dict[str, np.ndarray] = stored(Group(HEADLINE))
    bottleneck_h0: np.ndarray = array()
    meta: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """``{figure: {"mean", "std", "min", "max"}}`` for each headline figure and for the pairwise
        ``bottleneck_h0`` distances (``std`` with ``n - 1`` in the denominator; ``None`` for one value)."""
        pairs = self.bottleneck_h0[np.triu_indices(len(self.names), k=1)]
        return {name: _spread(v) for name, v in {**self.figures, "bottleneck_h0": pairs}.items()}


def topology_stability(
    surfaces,
    *,
    names=None,
    construction: Literal["vertices", "cells"] = "vertices",
    threshold: float | None = None,
    normalize: bool = False,
) -> TopologyStability:
    """The spread of the topology's headline figures over surfaces (e.g. one per direction seed).

    One threshold applies to every surface, so that ``n_basins`` counts the same thing in each: the
    given one, or ``THRESHOLD_FRACTION`` of the mean of their value ranges (after normalising, when asked).

    Args:
        surfaces: two or more surfaces.
        names: one per surface (default ``"0"``, ``"1"``, ...).
        construction: ``"vertices"`` (4-connectivity, default) or ``"cells"`` (8-connectivity).
        threshold: the persistence above which a class counts, in the units analysed; default
            ``THRESHOLD_FRACTION`` of the mean of the surfaces' value ranges.
        normalize: analyse each :math:`(Z - \\min Z)/(\\max Z - \\min Z)` instead of the loss.

    Raises:
        ValueError: fewer than two surfaces, names that do not match them, or an invalid option.
    """
    surfaces = list(surfaces)
    if len(surfaces) < 2:
        raise ValueError(f"topology_stability needs at least 2 surfaces, found {len(surfaces)}")
    names = tuple(str(n) for n in names) if names is not None else tuple(str(i) for i in range(len(surfaces)))
    if len(names) != len(surfaces):
        raise ValueError(f"{len(names)} names for {len(surfaces)} surfaces")
    check_number("threshold", threshold, minimum=0, none=True)
    results = [topology(s, construction=construction, threshold=threshold, normalize=normalize) for s in surfaces]
    rule = "given"
    if threshold is None:
        threshold = THRESHOLD_FRACTION * float(np.mean([np.ptp(r.values) for r in results]))
        rule = f"{THRESHOLD_FRACTION} x mean value range of the surfaces"
        results = [replace(r, threshold=threshold, meta={**r.meta, "threshold_rule": rule}) for r in results]
    summaries = [r.summary() for r in results]
    figures = {k: np.array([float(s[k]) for s in summaries]) for k in HEADLINE}
    distances = np.zeros((len(results), len(results)))
    for i, j in zip(*np.triu_indices(len(results), k=1)):
        distances[i, j] = distances[j, i] = bottleneck(results[i], results[j])
    meta = {"threshold": threshold, "threshold_rule": rule, "construction": construction, "normalize": normalize,
            "warnings": [f"{n}: {w}" for n, r in zip(names, results) for w in r.meta["warnings"]],
            "sources": [r.meta["source"] for r in results]}
    return TopologyStability(names, figures, distances, meta)


def _spread(values: np.ndarray) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else None,
            "min": float(v.min()), "max": float(v.max())}
