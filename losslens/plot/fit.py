"""Figures of surface fits: the fit against the data, and the residual map.

For a plane, ``plot_fit`` draws the fitted surface in 3D with the data as points over it, and
``plot_residuals`` the map of ``data - fit`` on a colour scale centred at zero (grey where a point
was excluded, its loss NaN or inf), the fitted minimum marked. For a line, both are curves.

Orientation: ``fit.data[iy, ix]`` is at ``(x[ix], y[iy])``, as ``np.meshgrid(x, y)`` and
matplotlib's ``pcolormesh(x, y, z)`` take it.
"""

from __future__ import annotations

import numpy as np

from losslens.landscape.fit import SurfaceFit
from losslens.plot._base import new_axes


def plot_fit(fit: SurfaceFit, *, ax=None):
    """The fitted function against the data: a 3D surface with the data as points (plane), or two
    curves (line). The title gives the model, R^2 and RMSE.

    Args:
        fit: a ``SurfaceFit``.
        ax: axes to draw on (3D for a plane; default: a new figure).

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    _check(fit, "plot_fit")
    if fit.ndim == 1:
        fig, ax = new_axes(ax)
        ax.plot(fit.x, fit.data, "o", markersize=3, color="black", label="data")
        ax.plot(fit.x, fit.fitted, "-", color="C1", label=f"{fit.model} fit")
        ax.axvline(fit.minimum[0], color="C3", linestyle=":", label="fitted minimum")
        ax.set_xlabel("x")
        ax.set_ylabel("loss")
        ax.legend(loc="best", fontsize="small")
    else:
        fig, ax = new_axes(ax, projection="3d")
        X, Y = np.meshgrid(fit.x, fit.y)
        ax.plot_surface(X, Y, fit.fitted, cmap="viridis", alpha=0.6, linewidth=0, antialiased=True)
        keep = fit.included
        ax.scatter(X[keep], Y[keep], fit.data[keep], s=4, color="black", depthshade=False, label="data")
        ax.scatter(*fit.minimum, fit.minimum_value, s=60, color="red", marker="*", label="fitted minimum")
        ax.set_xlabel("x", fontsize="small")
        ax.set_ylabel("y", fontsize="small")
        ax.set_zlabel("loss")
        ax.legend(loc="upper left", fontsize="small")
    ax.set_title(_title(fit), fontsize="medium")
    return fig


def plot_residuals(fit: SurfaceFit, *, ax=None):
    """The residuals ``data - fit``: a map centred at zero (plane) or a curve (line).

    Args:
        fit: a ``SurfaceFit``.
        ax: axes to draw on (default: a new figure).

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    from matplotlib.colors import TwoSlopeNorm

    _check(fit, "plot_residuals")
    fig, ax = new_axes(ax)
    r = fit.residuals
    if fit.ndim == 1:
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.plot(fit.x, r, ".-", color="C0")
        ax.set_xlabel("x")
        ax.set_ylabel("residual (data - fit)")
    else:
        bound = float(np.nanmax(np.abs(r))) if np.isfinite(r).any() else 1.0
        bound = bound or 1.0
        ax.set_facecolor("lightgrey")  # excluded points stay grey
        mesh = ax.pcolormesh(fit.x, fit.y, np.ma.masked_invalid(r), shading="nearest", cmap="RdBu_r",
                             norm=TwoSlopeNorm(0.0, -bound, bound))
        fig.colorbar(mesh, ax=ax, label="residual (data - fit)")
        ax.plot(*fit.minimum, "*", color="black", markersize=12, markeredgecolor="white", label="fitted minimum")
        ax.legend(loc="upper right", fontsize="small")
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    ax.set_title(_title(fit) + (f", {fit.n_excluded} points excluded" if fit.n_excluded else ""), fontsize="medium")
    return fig


def _title(fit: SurfaceFit) -> str:
    return f"{fit.model} fit: R² = {fit.r2:.4f}, RMSE = {fit.rmse:.3g}"


def _check(fit, caller: str) -> None:
    if not isinstance(fit, SurfaceFit):
        raise ValueError(f"{caller} draws a SurfaceFit, not a {type(fit).__name__}")
