"""The fit models of ``fit.py`` in torch: their parameters' names, their values on points, their exact
Jacobians in closed form, and a fitted model as a torch module (``FittedFunction``)."""

from __future__ import annotations

import numpy as np
import torch


def _names(model: str, ndim: int, k: int = 1) -> tuple[str, ...]:
    axes = ("x0", "y0")[:ndim]
    widths = ("s1", "s2")[:ndim]
    if model == "quadratic":
        return ("c", "b", "h") if ndim == 1 else ("c", "bx", "by", "hxx", "hxy", "hyy")
    if model == "rotated":
        return ("offset", "A", "x0", "y0", "s1", "s2", "theta")
    if model == "gaussian":
        return ("offset", "A", *axes, *widths)
    return ("offset", *(f"{n}_{i + 1}" for i in range(k) for n in ("A", *axes, *widths)))


def _evaluate(model: str, theta: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """The model with parameters ``theta`` (in ``_names`` order) at ``pts`` ``(N, d)`` -> ``(N,)``."""
    d = pts.shape[1]
    if model == "quadratic":
        b = theta[1:1 + d]
        H = theta[1 + d:].reshape(1, 1) if d == 1 else torch.stack([theta[3:5], theta[4:6]])
        return theta[0] + pts @ b + 0.5 * ((pts @ H) * pts).sum(dim=1)
    if model == "rotated":
        c, A, x0, y0, s1, s2, th = theta
        dx, dy = pts[:, 0] - x0, pts[:, 1] - y0
        u, v = torch.cos(th) * dx + torch.sin(th) * dy, -torch.sin(th) * dx + torch.cos(th) * dy
        return c - A * torch.exp(-(u**2 / (2 * s1**2) + v**2 / (2 * s2**2)))
    comps = theta[1:].reshape(-1, 1 + 2 * d)  # gaussian and mixture: rows (A, centre, widths)
    A, centre, width = comps[:, 0], comps[:, 1:1 + d], comps[:, 1 + d:]
    q = (((pts[:, None, :] - centre[None]) / width[None]) ** 2).sum(dim=2) / 2
    return theta[0] - (A * torch.exp(-q)).sum(dim=1)


def _jacobian(model: str, theta: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """``(N, p)`` derivatives of ``_evaluate`` by the parameters, in closed form.

    Wells (:math:`r = (p - c)/s`, :math:`e = e^{-|r|^2/2}`): :math:`\\partial z/\\partial A_k = -e_k`,
    :math:`\\partial z/\\partial c_{kj} = -A_k e_k r_{kj}/s_{kj}`, :math:`\\partial z/\\partial s_{kj} = -A_k e_k
    r_{kj}^2/s_{kj}`. Rotated (:math:`\\partial u/\\partial\\theta = v`, :math:`\\partial v/\\partial\\theta = -u`):
    :math:`\\partial z/\\partial\\theta = A e\\, uv (1/s_1^2 - 1/s_2^2)`. Quadratic: the design matrix
    :math:`(1, x, y, x^2/2, xy, y^2/2)`.
    """
    n, d = pts.shape
    one = torch.ones(n, 1, dtype=pts.dtype)
    if model == "quadratic":
        x = pts[:, :1]
        if d == 1:
            return torch.cat([one, x, x * x / 2], dim=1)
        y = pts[:, 1:]
        return torch.cat([one, x, y, x * x / 2, x * y, y * y / 2], dim=1)
    if model == "rotated":
        _, A, x0, y0, s1, s2, th = theta
        c, s = torch.cos(th), torch.sin(th)
        dx, dy = pts[:, 0] - x0, pts[:, 1] - y0
        u, v = c * dx + s * dy, -s * dx + c * dy
        e = torch.exp(-(u**2 / (2 * s1**2) + v**2 / (2 * s2**2)))
        Ae = A * e
        cols = [-e, -Ae * (u * c / s1**2 - v * s / s2**2), -Ae * (u * s / s1**2 + v * c / s2**2),
                -Ae * u**2 / s1**3, -Ae * v**2 / s2**3, Ae * u * v * (1 / s1**2 - 1 / s2**2)]
        return torch.cat([one, torch.stack(cols, dim=1)], dim=1)
    comps = theta[1:].reshape(-1, 1 + 2 * d)
    A, centre, width = comps[:, 0], comps[:, 1:1 + d], comps[:, 1 + d:]
    r = (pts[:, None, :] - centre[None]) / width[None]  # (N, k, d)
    e = torch.exp(-(r**2).sum(dim=2) / 2)  # (N, k)
    Ae = (A * e)[:, :, None]
    per = torch.cat([-e[:, :, None], -Ae * r / width[None], -Ae * r**2 / width[None]], dim=2)  # (N, k, 1 + 2d)
    return torch.cat([one, per.reshape(n, -1)], dim=1)


class FittedFunction(torch.nn.Module):
    """A fitted model as a torch function: ``(K, d)`` points -> ``(K,)`` values, differentiable.

    The parameters are a float64 buffer, cast to the points' dtype and device at each call.
    """

    def __init__(self, model: str, theta, ndim: int):
        super().__init__()
        self.model, self.ndim = model, ndim
        self.register_buffer("theta", torch.as_tensor(np.asarray(theta, dtype=np.float64)))

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        if points.dim() != 2 or points.shape[1] != self.ndim:
            raise ValueError(f"this {self.model} fit takes a (K, {self.ndim}) tensor of points, "
                             f"got shape {list(points.shape)}")
        return _evaluate(self.model, self.theta.to(points), points)
