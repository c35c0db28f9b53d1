"""A measured grid as a torch function of the plane: the bicubic interpolating spline of
``scipy.interpolate.RectBivariateSpline`` (``s=0``: it passes through every grid value), wrapped in
``torch.autograd.Function`` with its exact first and second derivatives (``grid_objective`` replays on it)."""

from __future__ import annotations

import numpy as np
import torch

from losslens.errors import ConfigError


class BicubicGrid:
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
