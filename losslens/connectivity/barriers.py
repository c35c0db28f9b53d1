"""The height of the way between two minima along a path w(t), t in [0, 1], w(0) = A, w(1) = B, under the three
definitions of the literature (each named by the key it is stored under):

- ``barrier`` (Frankle et al. 2020, "Linear Mode Connectivity and the Lottery Ticket Hypothesis"; Entezari et al.
  2022): :math:`\\max_t \\, L(w(t)) - ((1 - t) L(A) + t L(B))`, the rise above the chord between the endpoints;
- ``barrier_mean`` (Ainsworth et al. 2023, "Git Re-Basin"): :math:`\\max_t L(w(t)) - (L(A) + L(B)) / 2`;
- ``barrier_max``: :math:`\\max_t L(w(t)) - \\max(L(A), L(B))`, the rise above the higher endpoint.

The maximum is taken over the points of ``[0, 1]`` sampled (points outside, e.g. of an extrapolated line, are left
out). Applied to the error ``1 - accuracy`` the same three give the error rise. A NaN loss in ``[0, 1]`` gives NaN.
"""

from __future__ import annotations

import numpy as np

from losslens.errors import ConfigError
from losslens.landscape.surface import Surface

NAMES: tuple[str, ...] = ("barrier", "barrier_mean", "barrier_max")
DEFINITIONS: dict[str, str] = {
    "barrier": "max_t L(w(t)) - ((1-t) L(A) + t L(B)) (Frankle et al. 2020; Entezari et al. 2022)",
    "barrier_mean": "max_t L(w(t)) - (L(A) + L(B))/2 (Ainsworth et al. 2023)",
    "barrier_max": "max_t L(w(t)) - max(L(A), L(B))",
}


def barriers(t, values) -> dict[str, float]:
    """``{"barrier", "barrier_mean", "barrier_max"}`` of ``values`` sampled at ``t`` (see the module docstring).

    Args:
        t: ``(n,)`` path coordinates holding 0 and 1 exactly and at least one point strictly between.
        values: ``(n,)`` losses (or errors) at ``t``.

    Raises:
        ConfigError: ``t`` and ``values`` of different shapes, ``t`` missing 0 or 1, or no point between them.
    """
    t, values = np.asarray(t, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if t.ndim != 1 or t.shape != values.shape:
        raise ConfigError(f"t and values must be one-dimensional and of one length, found shapes "
                          f"{list(t.shape)} and {list(values.shape)}")
    ends = [np.flatnonzero(t == v) for v in (0.0, 1.0)]
    if any(len(e) == 0 for e in ends):
        raise ConfigError("a barrier needs the endpoints t=0 and t=1 among the points, and one is missing")
    inside = (t >= 0.0) & (t <= 1.0)
    if inside.sum() < 3:
        raise ConfigError("a barrier needs points strictly between t=0 and t=1: sample the path more finely")
    a, b = values[ends[0][0]], values[ends[1][0]]
    top, ti = values[inside], t[inside]
    return {"barrier": float(np.max(top - ((1.0 - ti) * a + ti * b))),
            "barrier_mean": float(np.max(top) - (a + b) / 2.0),
            "barrier_max": float(np.max(top) - max(a, b))}


def line_barriers(line: Surface) -> dict[str, float]:
    """The three barriers of the loss along a line between two points (a 1-D ``Surface`` of ``interpolate``),
    and of the error :math:`1 - \\mathrm{accuracy}` when the line has an accuracy metric.

    Args:
        line: a 1-D ``Surface`` whose grid holds ``t = 0``, ``t = 1`` and a point between them.

    Returns:
        ``{"barrier", "barrier_mean", "barrier_max"}`` of the loss on the line's own split (see the module
        docstring), and ``"error_barrier"``, ``"error_barrier_mean"``, ``"error_barrier_max"`` of the error
        when the line has ``accuracy``.

    Raises:
        TypeError: ``line`` is not a ``Surface``.
        ConfigError: a plane, or a grid missing ``t = 0``, ``t = 1`` or a point between them.
    """
    if not isinstance(line, Surface):
        raise TypeError(f"line_barriers needs the Surface of a line (from interpolate), got {type(line).__name__}")
    if line.ndim != 1:
        raise ConfigError("barriers are defined on a line (a 1-D surface), not on a plane")
    found = barriers(line.x, line.loss)
    accuracy = line.metrics.get("accuracy")
    if accuracy is not None:
        found |= {f"error_{name}": value for name, value in barriers(line.x, 1.0 - accuracy).items()}
    return found
