"""Analytic test functions of two variables, for replaying optimizers where the answer is known.

Each function maps a ``(K, 2)`` tensor of points ``(x, y)`` to the ``(K,)`` tensor of its values, in
torch, so autograd gives gradients and Hessian-vector products (any dtype and device; replays use
float64). Each is an ``AnalyticFunction`` that knows its minima, its value there, a domain for plots
and a start point that shows something:

================  ======================================================  ==========================
name              f(x, y)                                                 minima (value)
================  ======================================================  ==========================
quadratic         (x^2 + kappa y^2) / 2, condition number kappa           (0, 0) (0)
rosenbrock        (1 - x)^2 + 100 (y - x^2)^2 (Rosenbrock 1960)            (1, 1) (0)
beale             (1.5 - x + xy)^2 + (2.25 - x + xy^2)^2                  (3, 0.5) (0)
                  + (2.625 - x + xy^3)^2
himmelblau        (x^2 + y - 11)^2 + (x + y^2 - 7)^2 (Himmelblau 1972)    (3, 2), (-2.805, 3.131),
                                                                          (-3.779, -3.283),
                                                                          (3.584, -1.848) (all 0)
rastrigin         20 + x^2 + y^2 - 10 (cos 2 pi x + cos 2 pi y)           (0, 0) (0), global; a local
                                                                          minimum near every integer
                                                                          point
saddle            (x^2 - y^2) / 2                                         none: a saddle at (0, 0),
                                                                          unbounded below
gaussian-mixture  -exp(-|p - a|^2 / (2 * 0.5^2))                          a = (-1.5, -0.5) (-1),
                  - 0.6 exp(-|p - b|^2 / (2 * 0.5^2))                     global; b = (1.5, 0.8)
                                                                          (-0.6), local
================  ======================================================  ==========================

The Gaussian mixture's wells are far apart (3.3, six and a half widths), so each minimum sits at
its centre to within 1e-8. Only ``quadratic`` takes an option (``kappa > 0``, default 10): its Hessian
is ``diag(1, kappa)``, so gradient descent is stable for ``lr < 2 / kappa`` and its iterates are
:math:`x_t = (1 - \\eta)^t x_0`, :math:`y_t = (1 - \\eta \\kappa)^t y_0`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from losslens.checks import check_choice, check_number
from losslens.errors import ConfigError

Box = tuple[tuple[float, float], tuple[float, float]]


@dataclass(frozen=True)
class AnalyticFunction:
    """A test function of two variables with what is known about it.

    Attributes:
        name: its name in ``FUNCTIONS``.
        fn: ``(K, 2)`` tensor -> ``(K,)`` tensor, differentiable by autograd.
        minima: the minima ``(x, y)``, the global one first (empty for the saddle).
        min_value: the value at the global minimum (``None`` when unbounded below).
        domain: ``((x_min, x_max), (y_min, y_max))`` a box for plots, holding the minima and ``start``.
        start: a start point for replays.
        options: the options it was made with (``{"kappa": 10.0}`` for ``quadratic``).
    """

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    minima: tuple[tuple[float, float], ...]
    min_value: float | None
    domain: Box
    start: tuple[float, float]
    options: dict = field(default_factory=dict)

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        """The values at ``points``, a ``(K, 2)`` tensor.

        Raises:
            ValueError: ``points`` is not ``(K, 2)``.
        """
        if points.dim() != 2 or points.shape[1] != 2:
            raise ValueError(f"{self.name} takes a (K, 2) tensor of points, got shape {list(points.shape)}")
        return self.fn(points)


def quadratic(kappa: float = 10.0) -> AnalyticFunction:
    """:math:`f = (x^2 + \\kappa y^2)/2`: Hessian ``diag(1, kappa)``, minimum 0 at the origin.

    Raises:
        ConfigError: ``kappa`` is not a positive number.
    """
    kappa = check_number("kappa", kappa, positive=True)
    return AnalyticFunction("quadratic", lambda p: (p[:, 0] ** 2 + kappa * p[:, 1] ** 2) / 2, ((0.0, 0.0),), 0.0,
                            ((-1.5, 1.5), (-1.5, 1.5)), (-1.0, 1.0), {"kappa": kappa})


def rosenbrock() -> AnalyticFunction:
    """:math:`f = (1 - x)^2 + 100 (y - x^2)^2`, a curved valley; minimum 0 at (1, 1).

    A budget for replays: Adam at lr 0.05 from the start (-1.2, 1) is within 1e-3 of the minimum
    after 2000 steps (it gets there at step 1803 and stays).
    """
    return AnalyticFunction("rosenbrock", lambda p: (1 - p[:, 0]) ** 2 + 100 * (p[:, 1] - p[:, 0] ** 2) ** 2,
                            ((1.0, 1.0),), 0.0, ((-2.0, 2.0), (-1.0, 3.0)), (-1.2, 1.0))


def beale() -> AnalyticFunction:
    """:math:`f = (1.5 - x + xy)^2 + (2.25 - x + xy^2)^2 + (2.625 - x + xy^3)^2`; minimum 0 at (3, 0.5)."""

    def fn(p):
        x, y = p[:, 0], p[:, 1]
        return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2

    return AnalyticFunction("beale", fn, ((3.0, 0.5),), 0.0, ((-4.5, 4.5), (-4.5, 4.5)), (1.0, 1.5))


def himmelblau() -> AnalyticFunction:
    """:math:`f = (x^2 + y - 11)^2 + (x + y^2 - 7)^2`: four minima of value 0 (and a maximum near
    (-0.271, -0.923))."""
    minima = ((3.0, 2.0), (-2.805118086952745, 3.131312518250573), (-3.779310253377747, -3.2831859912861696),
              (3.5844283403304917, -1.8481265269644036))
    return AnalyticFunction("himmelblau", lambda p: (p[:, 0] ** 2 + p[:, 1] - 11) ** 2 + (p[:, 0] + p[:, 1] ** 2 - 7) ** 2,
                            minima, 0.0, ((-5.0, 5.0), (-5.0, 5.0)), (0.0, 0.0))


def rastrigin() -> AnalyticFunction:
    """:math:`f = 20 + x^2 + y^2 - 10(\\cos 2\\pi x + \\cos 2\\pi y)`: global minimum 0 at the origin,
    a local minimum near every integer point."""

    def fn(p):
        return 20 + (p**2).sum(dim=1) - 10 * torch.cos(2 * math.pi * p).sum(dim=1)

    return AnalyticFunction("rastrigin", fn, ((0.0, 0.0),), 0.0, ((-5.12, 5.12), (-5.12, 5.12)), (2.5, -1.5))


def saddle() -> AnalyticFunction:
    """:math:`f = (x^2 - y^2)/2`: no minimum (unbounded below); a saddle at the origin, whose stable
    direction is ``x``. The start point is just off the stable line, so descent escapes along ``y``."""
    return AnalyticFunction("saddle", lambda p: (p[:, 0] ** 2 - p[:, 1] ** 2) / 2, (), None,
                            ((-2.0, 2.0), (-2.0, 2.0)), (-1.5, 0.01))


_WELLS = ((1.0, (-1.5, -0.5), 0.5), (0.6, (1.5, 0.8), 0.5))  # (depth, centre, width)


def gaussian_mixture() -> AnalyticFunction:
    """:math:`f = -\\sum_k a_k \\exp(-\\lVert p - c_k \\rVert^2 / (2 s_k^2))`, two wells: the global
    minimum near (-1.5, -0.5) (value -1, width 0.5) and a local one near (1.5, 0.8) (-0.6, width 0.5),
    with a plateau between them where the gradient vanishes."""

    def fn(p):
        return -sum(a * torch.exp(-((p - p.new_tensor(c)) ** 2).sum(dim=1) / (2 * s**2)) for a, c, s in _WELLS)

    return AnalyticFunction("gaussian-mixture", fn, tuple(c for _, c, _ in _WELLS), -_WELLS[0][0],
                            ((-3.0, 3.0), (-2.5, 2.5)), (0.2, -1.5))


FUNCTIONS: dict[str, Callable[..., AnalyticFunction]] = {
    "quadratic": quadratic, "rosenbrock": rosenbrock, "beale": beale, "himmelblau": himmelblau,
    "rastrigin": rastrigin, "saddle": saddle, "gaussian-mixture": gaussian_mixture,
}


def get_function(name: str, **options) -> AnalyticFunction:
    """The test function called ``name`` (case-insensitive), made with ``options``.

    Args:
        name: the function's name, case-insensitive (``FUNCTIONS`` lists them).
        options: keyword options of that function (e.g. ``kappa`` of the quadratic).

    Raises:
        ConfigError: an unknown name (the valid ones are listed), or options it does not take.
    """
    key = name.lower() if isinstance(name, str) else name
    check_choice("the test function", key, FUNCTIONS)
    accepted = ("kappa",) if key == "quadratic" else ()
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(f"test function {key!r} takes no option {', '.join(unknown)}; its options: "
                          f"{', '.join(accepted) or 'none'}")
    return FUNCTIONS[key](**options)
