"""What a replay descends: a loss of two coordinates, evaluated at every optimizer's point at once.

An ``Objective`` takes the ``(K, 2)`` tensor of the K optimizers' current points and returns their
``(K,)`` losses and ``(K, 2)`` gradients in ONE call (``value_and_grad``), so that an expensive loss
(the true model loss in the plane, evaluated by a batched evaluator) costs one evaluation per step
whatever the number of optimizers. Optimizers that need curvature (SophiaH, AdaHessian) get the
``(K, 2, 2)`` Hessians from ``value_grad_hessian``, again in one call.

The objectives here are torch functions differentiated by autograd (``Objective(fn)``):

- ``function_objective``: an analytic test function (``losslens.landscape.functions``);
- ``fit_objective``: a fitted surface (``SurfaceFit.function()``);
- ``grid_objective``: the measured grid itself, through the bicubic interpolating spline of
  ``scipy.interpolate.RectBivariateSpline`` (``s=0``: it passes through every grid value), wrapped in
  ``torch.autograd.Function`` with its exact first and second derivatives. It is defined on the grid's
  box only: a replay stops a path that would leave it (``strict``) instead of extrapolating.

An objective whose gradients come from elsewhere subclasses ``Objective`` without ``fn`` and overrides
``value_and_grad`` (and ``value_grad_hessian`` when it can, which enables SophiaH and the curvature at
the start point; otherwise those are refused or must be given).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from losslens.errors import ConfigError
from losslens.landscape.functions import AnalyticFunction, get_function

Box = tuple[tuple[float, float], tuple[float, float]]


class Objective:
    """A loss of two coordinates for replays.

    Args:
        fn: ``(K, 2)`` tensor -> ``(K,)`` tensor, differentiable twice by autograd; ``None`` in a
            subclass that overrides ``value_and_grad``.
        name: what it is, for titles and metadata.
        domain: ``((x_min, x_max), (y_min, y_max))``: where it is defined when ``strict``, else a box
            for pictures.
        strict: a path that leaves ``domain`` stops there (the objective is undefined outside).
        minimum: its minimum ``(x, y)`` when known; min_value: its value there when known.
        start: a default start point.
        meta: provenance (JSON-compatible).
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor] | None = None, *, name: str = "objective",
                 domain: Box | None = None, strict: bool = False, minimum: tuple[float, float] | None = None,
                 min_value: float | None = None, start: tuple[float, float] | None = None, meta: dict | None = None):
        if strict and domain is None:
            raise ValueError("a strict objective needs its domain")
        self.fn, self.name, self.domain, self.strict = fn, name, domain, strict
        self.minimum, self.min_value, self.start = minimum, min_value, start
        self.meta = {"name": name, **(meta or {})}

    @property
    def has_hessian(self) -> bool:
        """Whether ``value_grad_hessian`` works: autograd through ``fn``, or a subclass's own."""
        return self.fn is not None or type(self).value_grad_hessian is not Objective.value_grad_hessian

    def value_and_grad(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss (K,), grad (K, 2))`` at the ``(K, 2)`` points, detached."""
        loss, grad, _ = self._autograd(points, hessian=False)
        return loss, grad

    def value_grad_hessian(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(loss (K,), grad (K, 2), hessian (K, 2, 2))`` at the ``(K, 2)`` points, detached."""
        return self._autograd(points, hessian=True)

    def inside(self, points: torch.Tensor) -> torch.Tensor:
        """``(K,)`` bool: which points lie where the objective is defined (all unless ``strict``)."""
        if not self.strict:
            return torch.ones(len(points), dtype=torch.bool)
        (x0, x1), (y0, y1) = self.domain
        x, y = points[:, 0], points[:, 1]
        return (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)

    def sample(self, x: np.ndarray, y: np.ndarray) -> np.ndarray | None:
        """The values on the grid ``(x, y)`` as ``(ny, nx)`` (``[iy, ix]`` at ``(x[ix], y[iy])``), for
        pictures; ``None`` for an objective without ``fn`` (a subclass may compute its own)."""
        if self.fn is None:
            return None
        X, Y = np.meshgrid(x, y)
        pts = torch.as_tensor(np.stack([X.ravel(), Y.ravel()], axis=1))
        with torch.no_grad():
            return self.fn(pts).numpy().reshape(X.shape)

    def _autograd(self, points: torch.Tensor, hessian: bool):
        if self.fn is None:
            raise ConfigError(f"objective {self.name!r} has no autograd function: it must implement value_and_grad"
                              + (" and value_grad_hessian" if hessian else ""))
        with torch.enable_grad():
            p = points.detach().to(torch.float64).requires_grad_(True)
            loss = self.fn(p)
            (grad,) = torch.autograd.grad(loss.sum(), p, create_graph=hessian)
            if not hessian:
                return loss.detach(), grad.detach(), None
            rows = [torch.autograd.grad(grad[:, j].sum(), p, retain_graph=True, allow_unused=True)[0]
                    if grad.requires_grad else None for j in range(2)]
            H = torch.stack([torch.zeros_like(p) if r is None else r for r in rows], dim=1)
        return loss.detach(), grad.detach(), H.detach()


def function_objective(function: str | AnalyticFunction, **options) -> Objective:
    """A test function of ``losslens.landscape.functions`` (by name, with its options) as an objective."""
    f = get_function(function, **options) if isinstance(function, str) else function
    return Objective(f, name=f.name, domain=f.domain, minimum=f.minima[0] if f.minima else None,
                     min_value=f.min_value, start=f.start,
                     meta={"kind": "function", "function": f.name, "options": f.options})


def fit_objective(fit) -> Objective:
    """A fitted plane (a ``SurfaceFit``) as an objective, defined everywhere; its box is the grid's.

    Raises:
        ConfigError: a fit of a line.
    """
    if fit.ndim != 2:
        raise ConfigError("a replay moves two coordinates; this fit is of a line")
    box = ((float(fit.x.min()), float(fit.x.max())), (float(fit.y.min()), float(fit.y.max())))
    return Objective(fit.function(), name=f"{fit.model} fit", domain=box, minimum=tuple(map(float, fit.minimum)),
                     min_value=fit.minimum_value, start=_default_start(box),
                     meta={"kind": "fit", "model": fit.model, "parameters": fit.parameters, "source": fit.meta})


def grid_objective(surface) -> Objective:
    """The measured plane as an objective: its bicubic interpolating spline, strict to the grid's box.

    Args:
        surface: ``x`` ``(nx,)``, ``y`` ``(ny,)``, ``loss`` ``(ny, nx)`` (``loss[iy, ix]`` at
            ``(x[ix], y[iy])``), ``meta``; at least 4 points per axis, every value finite.

    Raises:
        ConfigError: a line, a grid too small for a cubic, or non-finite values (a fit handles those).
        ValueError: a loss whose shape does not match ``x`` and ``y``.
    """
    if surface.y is None:
        raise ConfigError("a replay moves two coordinates; this surface is a line")
    spline = _BicubicGrid(surface.x, surface.y, surface.loss)
    box = ((float(spline.x[0]), float(spline.x[-1])), (float(spline.y[0]), float(spline.y[-1])))
    i = np.unravel_index(np.argmin(spline.z), spline.z.shape)  # (iy, ix)
    return Objective(spline, name="grid (bicubic spline)", domain=box, strict=True,
                     minimum=(float(spline.x[i[1]]), float(spline.y[i[0]])), min_value=float(spline.z[i]),
                     start=_default_start(box), meta={"kind": "grid", "source": dict(surface.meta or {})})


def as_objective(thing) -> Objective:
    """An ``Objective`` from an objective, a test function (or its name), a ``SurfaceFit``, a surface
    (``x``, ``y``, ``loss``: its grid), or a callable ``(K, 2) -> (K,)``.

    Raises:
        ConfigError: none of these.
    """
    from losslens.landscape.fit import SurfaceFit

    if isinstance(thing, Objective):
        return thing
    if isinstance(thing, (str, AnalyticFunction)):
        return function_objective(thing)
    if isinstance(thing, SurfaceFit):
        return fit_objective(thing)
    if all(hasattr(thing, a) for a in ("x", "y", "loss")):
        return grid_objective(thing)
    if callable(thing):
        return Objective(thing, name=getattr(thing, "__name__", type(thing).__name__), meta={"kind": "callable"})
    raise ConfigError(f"cannot replay on a {type(thing).__name__}: give an Objective, a test function name, "
                      "a SurfaceFit, a surface or a callable (K, 2) -> (K,)")


def _default_start(box: Box) -> tuple[float, float]:
    """Halfway from the box's centre to its upper-left corner (the book starts at (-1, 1) on [-2, 2]^2)."""
    (x0, x1), (y0, y1) = box
    return (x0 + (x1 - x0) / 4, y1 - (y1 - y0) / 4)


# -- the measured grid ----------------------------------------------------------------------------


class _BicubicGrid:
    """A grid's interpolating bicubic spline as a torch function of ``(K, 2)`` points, twice differentiable."""

    def __init__(self, x, y, loss):
        from scipy.interpolate import RectBivariateSpline

        x, y, z = (np.asarray(a, dtype=np.float64) for a in (x, y, loss))
        if z.shape != (len(y), len(x)):
            raise ValueError(f"the surface's loss has shape {list(z.shape)}, expected {[len(y), len(x)]} (ny, nx)")
        if min(len(x), len(y)) < 4:
            raise ConfigError(f"the grid interpolant is bicubic: it needs 4 points per axis, this grid is "
                              f"{len(x)} x {len(y)}")
        bad = int((~np.isfinite(z)).sum())
        if bad:
            raise ConfigError(f"the grid interpolant needs every value finite; {bad} of {z.size} are NaN or inf "
                              "(replay on a fit of the surface instead)")
        ix, iy = np.argsort(x), np.argsort(y)
        x, y, z = x[ix], y[iy], z[np.ix_(iy, ix)]
        if np.any(np.diff(x) == 0) or np.any(np.diff(y) == 0):
            raise ConfigError("the grid has repeated coordinates; a spline needs distinct ones")
        self.x, self.y, self.z = x, y, z
        self.spline = RectBivariateSpline(x, y, z.T, kx=3, ky=3, s=0)  # the spline wants z[ix, iy]

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        return _SplineValue.apply(points, self)

    def ev(self, points: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
        p = points.detach().cpu().numpy()
        return torch.as_tensor(self.spline.ev(p[:, 0], p[:, 1], dx=dx, dy=dy)).to(points)


class _SplineValue(torch.autograd.Function):
    @staticmethod
    def forward(ctx, points, grid):
        ctx.save_for_backward(points)
        ctx.grid = grid
        return grid.ev(points, 0, 0)

    @staticmethod
    def backward(ctx, out):
        (points,) = ctx.saved_tensors
        return out[:, None] * _SplineGrad.apply(points, ctx.grid), None


class _SplineGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, points, grid):
        ctx.save_for_backward(points)
        ctx.grid = grid
        return torch.stack([grid.ev(points, 1, 0), grid.ev(points, 0, 1)], dim=1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, out):
        (points,) = ctx.saved_tensors
        g = ctx.grid
        hxx, hxy, hyy = g.ev(points, 2, 0), g.ev(points, 1, 1), g.ev(points, 0, 2)
        return torch.stack([out[:, 0] * hxx + out[:, 1] * hxy, out[:, 0] * hxy + out[:, 1] * hyy], dim=1), None
