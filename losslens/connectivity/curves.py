"""Paths from ``A = w(0)`` to ``B = w(1)`` through a bend ``theta`` (Garipov et al. 2018, "Loss Surfaces, Mode
Connectivity, and Fast Ensembling of DNNs"; their code: timgaripov/dnn-mode-connectivity).

Each path is a combination of its three control points with coefficients ``c(t) = (c_A, c_theta, c_B)``
summing to 1, :math:`w(t) = c_A(t) A + c_\\theta(t) \\theta + c_B(t) B`:

- ``Line``: :math:`w(t) = (1 - t) A + t B` (the bend is unused, :math:`c_\\theta = 0`); the line is defined
  for every real ``t``, so it may extrapolate beyond ``[0, 1]``;
- ``Bezier``, the quadratic Bezier curve: :math:`w(t) = (1 - t)^2 A + 2 t (1 - t) \\theta + t^2 B`; with
  :math:`\\theta = (A + B) / 2` it is the line;
- ``Polychain``, two segments A -> theta -> B, theta at ``t = 1/2``:
  :math:`w(t) = (1 - 2t) A + 2t \\theta` for :math:`t \\le 1/2`, :math:`(2 - 2t) \\theta + (2t - 1) B` after.

The curves are defined on ``[0, 1]`` only: a ``t`` outside is refused with a ``ConfigError``.
"""

from __future__ import annotations

import torch

from losslens.errors import ConfigError


class Line:
    """The line :math:`w(t) = (1 - t) A + t B`, for every real ``t`` (extrapolates outside ``[0, 1]``).

    Args:
        w_a, w_b: ``(P,)`` the endpoints. bend: ``(P,)`` kept only so that every path has three control
            points (default: the midpoint); it has no effect on the line.
    """

    name = "line"
    bounded = False  # defined outside [0, 1]

    def __init__(self, w_a: torch.Tensor, w_b: torch.Tensor, bend: torch.Tensor | None = None):
        if w_a.shape != w_b.shape or w_a.dim() != 1:
            raise ConfigError(f"the endpoints must be two vectors of one length, found shapes {list(w_a.shape)} and "
                              f"{list(w_b.shape)}")
        self.w_a, self.w_b = w_a, w_b
        self.bend = (w_a + w_b) / 2 if bend is None else bend
        if self.bend.shape != w_a.shape:
            raise ConfigError(f"the bend must have the endpoints' shape {list(w_a.shape)}, found {list(self.bend.shape)}")

    def _coefficients(self, t: torch.Tensor) -> torch.Tensor:
        return torch.stack([1 - t, torch.zeros_like(t), t], dim=1)

    def coefficients(self, t) -> torch.Tensor:
        """``(n, 3)`` float64 coefficients :math:`(c_A, c_\\theta, c_B)` at the ``n`` values of ``t``.

        Raises:
            ConfigError: ``t`` not one-dimensional, not finite, or (for a curve) outside ``[0, 1]``.
        """
        return self._coefficients(self._checked(t))

    def points(self, t, bend: torch.Tensor | None = None) -> torch.Tensor:
        """``(n, P)`` the points :math:`w(t)` (with ``bend`` in place of the curve's own, when given)."""
        c = self.coefficients(t).to(self.w_a.dtype).to(self.w_a.device)
        theta = self.bend if bend is None else bend
        return c[:, :1] * self.w_a + c[:, 1:2] * theta + c[:, 2:] * self.w_b

    def with_bend(self, bend: torch.Tensor):
        """The same kind of path between the same endpoints, through ``bend``."""
        return type(self)(self.w_a, self.w_b, bend)

    def _checked(self, t) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.float64).detach().cpu()
        if t.dim() == 0:
            t = t[None]
        if t.dim() != 1 or not bool(torch.isfinite(t).all()):
            raise ConfigError(f"t must be a one-dimensional array of finite numbers, found shape {list(t.shape)}")
        if self.bounded and len(t) and not bool(((t >= 0) & (t <= 1)).all()):
            bad = t[(t < 0) | (t > 1)][0].item()
            raise ConfigError(f"t must be in [0, 1] for a {self.name} curve, which is not defined outside (got {bad:g})")
        return t


class Bezier(Line):
    """The quadratic Bezier curve :math:`w(t) = (1 - t)^2 A + 2 t (1 - t) \\theta + t^2 B`, ``t`` in ``[0, 1]``."""

    name = "bezier"
    bounded = True

    def _coefficients(self, t: torch.Tensor) -> torch.Tensor:
        return torch.stack([(1 - t) ** 2, 2 * t * (1 - t), t ** 2], dim=1)


class Polychain(Line):
    """Two segments A -> theta -> B, theta at ``t = 1/2``: :math:`(1 - 2t) A + 2t \\theta` for
    :math:`t \\le 1/2`, :math:`(2 - 2t) \\theta + (2t - 1) B` after; ``t`` in ``[0, 1]``."""

    name = "polychain"
    bounded = True

    def _coefficients(self, t: torch.Tensor) -> torch.Tensor:
        first = t <= 0.5
        zero = torch.zeros_like(t)
        return torch.stack([torch.where(first, 1 - 2 * t, zero), torch.where(first, 2 * t, 2 - 2 * t),
                            torch.where(first, zero, 2 * t - 1)], dim=1)
