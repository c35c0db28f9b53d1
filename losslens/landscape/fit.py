"""Closed-form fits of a loss line or plane: a Gaussian bowl, a rotated one, a Gaussian mixture, a quadratic.

Models, for a plane (a line drops ``y``; ``q_k`` is the scaled squared distance to centre ``k``):

- ``gaussian``: :math:`z = c - A \\exp\\big(-\\tfrac{(x-x_0)^2}{2 s_1^2} - \\tfrac{(y-y_0)^2}{2 s_2^2}\\big)`,
  the bowl that the book chapter this project grows from fits to a Hessian-eigenvector plane
  (parameters ``offset, A, x0, y0, s1, s2``). The book fixes the offset at the largest value; here it is
  free unless ``offset`` says otherwise (``"max"`` for the book's choice, or a number).
- ``rotated``: the same with axes turned by ``theta``: :math:`(u, v) = R(\\theta)(x - x_0, y - y_0)` replaces
  :math:`(x - x_0, y - y_0)` (``offset, A, x0, y0, s1, s2, theta``; planes only).
- ``mixture``: :math:`z = c - \\sum_{k=1}^K A_k e^{-q_k}` with axis-aligned components
  (``offset, A_1, x0_1, y0_1, s1_1, s2_1, A_2, ...``), ``K`` given, or chosen in ``1..max_components`` by
  the information criterion of a least-squares fit with Gaussian residuals,
  :math:`\\mathrm{AIC} = n \\ln(\\mathrm{RSS}/n) + 2p`, :math:`\\mathrm{BIC} = n \\ln(\\mathrm{RSS}/n) + p \\ln n`
  (``p`` free parameters, ``n`` points; the smallest wins).
- ``quadratic``: :math:`z = c + b^T p + \\tfrac12 p^T H p` (``c, bx, by, hxx, hxy, hyy``), linear in its
  parameters, so solved exactly by linear least squares.

A single Gaussian is not convex: its Hessian is positive definite only within about one width of the
centre, so curvature read off a Gaussian fit holds at its minimum only.

The nonlinear models are fitted by ``scipy.optimize.least_squares`` (trust region reflective, with
bounds) with exact Jacobians in closed form, from initial guesses read off the data:
the offset at the largest value, the depth ``A`` down to the smallest, the centre at the smallest,
the widths (and the angle) from the second moments of the depth :math:`\\max(c - z, 0)` about it.
Bounds: ``A >= 0`` (a well), widths in :math:`[h/2, 10 L]` (``h`` the finest grid spacing, ``L`` the
grid's extent: nothing narrower than the grid resolves, nothing much wider than it is determined),
centres within one extent of the grid, ``theta`` in :math:`[-\\pi/2, \\pi/2]`. A mixture grows one
component at a time: each new one starts where the data lies deepest below the previous fit.

A non-negative loss (a surface whose ``meta["loss"]`` names a built-in loss, all of which are
non-negative, or else whose values are all >= 0; ``nonnegative`` overrides the rule) gets a fit
that stays >= 0: the Gaussian models are fitted in the coordinates ``(m, A_1, ..., A_K, ...)`` with the
depths :math:`A_k = c\\,a_k` with :math:`c \\ge 0` and :math:`a_k \\in [0, 1]` (box bounds): each well
bottoms out at or above 0, which for one Gaussian is exactly :math:`z \\ge 0` everywhere. A mixture's
components can add up below 0 where they overlap; its lowest point lies in the grid's box (its centres
do, and the wells only deepen towards them), so when that point is below 0 the offset is raised by
the difference (``meta["least_squares"]["lifted"]``, flagged when it matters). A quadratic is not held: one
below 0 on the grid is flagged.

A fit needs more points than free parameters (one more at least, for the standard errors); a
mixture's K is refused (given) or capped (chosen) at what the points support. A fit is *degenerate*
(``SurfaceFit.degenerate``, the reasons in ``SurfaceFit.warnings``) when a free parameter ends at one
of its bounds (a well's bottom held at 0 included; ``theta``'s bounds are one orientation, so not counted),
a standard error is not finite or larger than its value (offset, depths, widths) or than the grid's
extent (centres), the fitted minimum of a non-negative loss is below 0 or was lifted to 0, or the solver stopped
before converging.

Points where the loss is NaN or inf are left out (and counted). The fit reports its parameters with
standard errors :math:`\\sqrt{\\mathrm{diag}\\, s^2 (J^T J)^{-1}}`, :math:`s^2 = \\mathrm{RSS}/(n - p)`;
:math:`R^2 = 1 - \\mathrm{RSS}/\\mathrm{TSS}`; the RMSE :math:`\\sqrt{\\mathrm{RSS}/n}`; the residual map; the
lowest point of the fitted function on the grid's box and the eigenvalues of its Hessian there (the
fitted curvature). Next to them stand the surface's Hessian eigenvalues along its directions, when the
surface was made on Hessian eigenvectors: they are read from ``surface.directions.meta["eigenvalues"]``,
the first one per axis. Those hold at
the plane's origin ``w0``, the fitted curvature at the fitted minimum; on unit eigenvector directions
both are second derivatives along the same axes. (On the digits MLP of the book the Gaussian's
curvatures were 8.06 and 6.32 where the Hessian's were 12.95 and 10.74.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from losslens.checks import check_choice, check_int, refuse
from losslens.core import NONNEGATIVE_LOSSES
from losslens.errors import ConfigError
from losslens.landscape.fit_least_squares import (
    CRITERIA, _criteria, _fit, _grid, _minimum, _on_grid, _scales, _stderr, _supported_components, _warnings,
)
from losslens.landscape.fit_models import FittedFunction, _evaluate, _names
from losslens.results import Result, array, attr, grid

MODELS: tuple[str, ...] = ("gaussian", "rotated", "mixture", "quadratic")


# -- a model as a function (the models in torch: ``fit_models.py``) ---------------------------------


def model_function(model: str, parameters: dict[str, float], *, ndim: int = 2) -> FittedFunction:
    """The torch function of ``model`` with the named ``parameters`` (e.g. a published fit).

    A mixture's component count comes from the names (``A_1``, ``A_2``, ...).

    Args:
        model: ``"gaussian"``, ``"rotated"``, ``"mixture"`` or ``"quadratic"``.
        parameters: ``{name: value}`` of every parameter of the model (the names of ``SurfaceFit.names``).
        ndim: 1 for a function of a line, 2 of a plane.

    Raises:
        ConfigError: an unknown model, or names that are not the model's (expected ones listed).
    """
    _check_model(model, ndim)
    k = sum(1 for n in parameters if n.startswith("A_")) if model == "mixture" else 1
    names = _names(model, ndim, k)
    if set(parameters) != set(names):
        raise ConfigError(f"a {ndim}-D {model} has the parameters {', '.join(names)}; got {', '.join(parameters)}")
    return FittedFunction(model, [float(parameters[n]) for n in names], ndim)


# -- the result ----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class SurfaceFit(Result):
    """A closed-form fit of a loss line or plane, with its goodness of fit and fitted curvature.

    Attributes:
        model: ``"gaussian"``, ``"rotated"``, ``"mixture"`` or ``"quadratic"``.
        names: the parameters' names.
        params: ``(p,)`` their values.
        stderr: ``(p,)`` their standard errors (0 for a fixed offset, NaN when there are no more points
            than parameters).
        x: ``(nx,)`` the surface's first coordinates.
        y: ``(ny,)`` its second coordinates, or ``None`` for a line.
        data: the surface's loss, ``(ny, nx)`` (``data[iy, ix]`` at ``(x[ix], y[iy])``) or ``(nx,)``.
        fitted: the fitted function on the same grid.
        minimum: ``(d,)`` the lowest point of the fitted function on the grid's box.
        minimum_value: the fitted function's value there.
        hessian: ``(d, d)`` the fitted function's Hessian at ``minimum``.
        surface_eigenvalues: ``(d,)`` the surface's Hessian eigenvalues along its directions, when known.
        meta: ``source`` (the surface's meta), ``options`` (``nonnegative`` among them: whether the fit
            was held >= 0), ``least_squares`` (status, nfev, cost), ``aic``, ``bic``, ``minimum_on_boundary``
            and, for a mixture with K chosen, ``criterion``.
        warnings: why the fit is degenerate, one sentence each naming the parameter (empty: it is not).
    """

    KIND: ClassVar[str] = "fit"

    model: str = attr()
    names: tuple[str, ...] = attr(tuple)
    params: np.ndarray = array()
    stderr: np.ndarray = array()
    x: np.ndarray = array(("nx",))
    y: np.ndarray | None = array(("ny",), optional=True)
    data: np.ndarray = grid()
    fitted: np.ndarray = grid()
    minimum: np.ndarray = array()
    minimum_value: float = attr(float)
    hessian: np.ndarray = array()
    surface_eigenvalues: np.ndarray | None = array(optional=True)
    meta: dict = attr()
    warnings: tuple[str, ...] = attr(tuple, missing=(), default=())

    @property
    def ndim(self) -> int:
        return 1 if self.y is None else 2

    @property
    def degenerate(self) -> bool:
        """Whether the fit is degenerate (see the module docstring; ``warnings`` says why)."""
        return bool(self.warnings)

    @property
    def parameters(self) -> dict[str, float]:
        """``{name: value}`` in model order."""
        return {n: float(v) for n, v in zip(self.names, self.params)}

    @property
    def included(self) -> np.ndarray:
        """Bool mask of the grid points fitted (those with a finite loss)."""
        return np.isfinite(self.data)

    @property
    def n_points(self) -> int:
        return int(self.included.sum())

    @property
    def n_excluded(self) -> int:
        """Grid points left out because their loss is NaN or inf."""
        return int(self.data.size - self.n_points)

    @property
    def residuals(self) -> np.ndarray:
        """``data - fitted``, the grid's shape, NaN where excluded."""
        return np.where(self.included, self.data - self.fitted, np.nan)

    @property
    def rss(self) -> float:
        return float(np.nansum(self.residuals**2))

    @property
    def r2(self) -> float:
        """:math:`1 - \\mathrm{RSS}/\\mathrm{TSS}` over the included points."""
        z = self.data[self.included]
        tss = float(((z - z.mean()) ** 2).sum())
        return 1.0 - self.rss / tss if tss > 0 else math.nan

    @property
    def rmse(self) -> float:
        return math.sqrt(self.rss / self.n_points)

    @property
    def curvature(self) -> np.ndarray:
        """``(d,)`` eigenvalues of the fitted Hessian at the minimum, largest first."""
        return np.linalg.eigvalsh(self.hessian)[::-1].copy()

    @property
    def stable_lr(self) -> float:
        """:math:`2/\\lambda_{max}` of the fitted curvature: gradient descent near the minimum is stable
        below it (``inf`` when no curvature is positive)."""
        top = float(self.curvature[0])
        return 2.0 / top if top > 0 else math.inf

    def function(self) -> FittedFunction:
        """The fitted surface as a torch module: ``(K, d)`` points -> ``(K,)`` values, with autograd."""
        return FittedFunction(self.model, self.params, self.ndim)

    def to_dict(self) -> dict:
        """Everything but the arrays of the grid, as JSON-compatible values."""
        return {
            "format": "losslens-fit",
            "model": self.model,
            "parameters": self.parameters,
            "stderr": {n: float(s) for n, s in zip(self.names, self.stderr)},
            "r2": self.r2, "rmse": self.rmse, "rss": self.rss,
            "n_points": self.n_points, "n_excluded": self.n_excluded,
            "minimum": self.minimum.tolist(), "minimum_value": self.minimum_value,
            "fitted_hessian": self.hessian.tolist(), "fitted_curvature": self.curvature.tolist(),
            "surface_eigenvalues": None if self.surface_eigenvalues is None else self.surface_eigenvalues.tolist(),
            "stable_lr": self.stable_lr,
            "degenerate": self.degenerate, "warnings": list(self.warnings),
            "meta": self.meta,
        }

    def summary(self) -> str:
        """A few lines: parameters with standard errors, R^2, RMSE, minimum, curvature against the surface's."""
        lines = [f"{self.model} fit of {self.n_points} points ({self.n_excluded} excluded: NaN/inf): "
                 f"R^2 {self.r2:.6f}, RMSE {self.rmse:.4g}"]
        lines += [f"  {n:>8} = {v:.8g} ± {s:.2g}" for n, v, s in zip(self.names, self.params, self.stderr)]
        at = ", ".join(f"{v:.4g}" for v in self.minimum)
        lines.append(f"fitted minimum {self.minimum_value:.6g} at ({at})"
                     + (" on the edge of the grid" if self.meta.get("minimum_on_boundary") else ""))
        lines.append("fitted curvature (Hessian eigenvalues there): " + ", ".join(f"{v:.4g}" for v in self.curvature)
                     + (f"; gradient descent is stable for lr < 2/lambda_max = {self.stable_lr:.4g}"
                        if math.isfinite(self.stable_lr) else ""))
        if self.surface_eigenvalues is not None:
            lines.append("surface's Hessian eigenvalues along its directions (at w0): "
                         + ", ".join(f"{v:.4g}" for v in self.surface_eigenvalues))
        lines += [f"degenerate fit: {w}" for w in self.warnings]
        return "\n".join(lines)


# -- fitting -------------------------------------------------------------------------------------


def fit_surface(
    surface,
    model: str = "gaussian",
    *,
    offset: float | str | None = None,
    components: int | None = None,
    criterion: str = "bic",
    max_components: int = 4,
    nonnegative: bool | None = None,
) -> SurfaceFit:
    """Fit ``model`` to a surface by least squares.

    Args:
        surface: anything with ``x`` ``(nx,)``, ``y`` ``(ny,)`` or ``None``, ``loss`` ``(ny, nx)`` (or
            ``(nx,)``) with ``loss[iy, ix]`` at ``(x[ix], y[iy])``, and ``meta`` (a dict).
        model: ``"gaussian"``, ``"rotated"`` (planes only), ``"mixture"`` or ``"quadratic"``.
        offset: the Gaussian models' constant: ``None`` free, ``"max"`` fixed at the largest loss
            (the book's choice), or a number to fix it at.
        components: a mixture's K; ``None`` chooses it in ``1..max_components`` by ``criterion``.
        criterion: ``"bic"`` or ``"aic"``.
        max_components: the largest K tried when ``components`` is ``None`` (capped at what the
            points support).
        nonnegative: hold the fit >= 0 (see the module docstring); ``None``: when the surface's
            ``meta["loss"]`` is a built-in loss or every value is >= 0.

    Raises:
        ConfigError: an invalid option (the valid ones are listed), or no more points than parameters.
        ValueError: a loss whose shape does not match ``x`` and ``y``, or too few finite points.
    """
    if not all(hasattr(surface, a) for a in ("x", "y", "loss")):
        raise TypeError(f"fit_surface needs a Surface (load_result reads one from a file), got {type(surface).__name__}")
    ndim = 1 if surface.y is None else 2
    _check_options(model, ndim, offset, components, criterion, max_components)
    x, y, data = _grid(surface)
    pts, z = _points(x, y, data)
    fixed = _offset_value(offset, z)
    nonneg = _is_nonnegative(nonnegative, getattr(surface, "meta", None) or {}, z)
    if nonneg and fixed is not None and fixed < 0:
        raise ConfigError(f"offset {fixed:g} is below 0, which a non-negative loss never reaches")
    max_components = _supported_components(model, ndim, len(z), fixed is not None, components, max_components)

    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):  # small dense problems: threads only oversubscribe
        theta, free, ls, info = _fit(model, pts, z, fixed, x, y, components, criterion, max_components, nonneg)
    k = (len(theta) - 1) // (1 + 2 * ndim) if model == "mixture" else 1
    options = {"model": model, "offset": offset, "components": k if model == "mixture" else None,
               "criterion": criterion if model == "mixture" and components is None else None,
               "max_components": max_components if model == "mixture" and components is None else None,
               "nonnegative": nonneg}
    return _surface_fit(surface, (x, y, data), (pts, z), model, k, (theta, free, ls, info), options)


def _check_options(model: str, ndim: int, offset, components, criterion: str, max_components) -> None:
    """Refuse an unknown model or criterion, a count below 1, or an option the model does not take."""
    _check_model(model, ndim)
    check_choice("criterion", criterion, CRITERIA)
    check_int("components", components, minimum=1, none=True)
    check_int("max_components", max_components, minimum=1)
    if model != "mixture" and components not in (None, 1):
        raise ConfigError(f"components applies to the mixture model, not to {model!r}")
    if model == "quadratic" and offset is not None:
        raise ConfigError("offset applies to the Gaussian models; the quadratic's constant c is always free")


def _surface_fit(surface, grid: tuple, points: tuple, model: str, k: int, solution: tuple,
                 options: dict) -> SurfaceFit:
    """The ``SurfaceFit`` of the ``solution`` ``(theta, free, least-squares info, extra meta)`` of ``_fit`` on
    the finite ``points`` ``(pts, z)`` of the ``grid`` ``(x, y, data)``: standard errors, the fitted minimum and
    its Hessian, the criteria, warnings."""
    (x, y, data), (pts, z), (theta, free, ls, info) = grid, points, solution
    ndim = 1 if y is None else 2
    nonneg = options["nonnegative"]
    t = torch.as_tensor(theta)
    fitted = _on_grid(model, t, x, y)
    residual = _evaluate(model, t, pts).numpy() - z
    rss = float((residual**2).sum())
    stderr = _stderr(model, t, pts, free, rss)
    minimum, min_value, on_edge = _minimum(model, t, pts, z, x, y)
    f = FittedFunction(model, theta, ndim)
    hess = torch.autograd.functional.hessian(lambda p: f(p[None])[0], torch.as_tensor(minimum)).numpy()
    names = _names(model, ndim, k)
    meta = {
        "source": dict(getattr(surface, "meta", None) or {}),
        "options": options,
        "least_squares": ls,
        **_criteria(rss, len(z), int(free.sum())),
        "minimum_on_boundary": on_edge,
        **info,
    }
    warnings = _warnings(names, np.asarray(theta, float), stderr, free, ls, nonneg, float(min_value),
                         _scales(x, y)[3])
    return SurfaceFit(model, names, np.asarray(theta, float), stderr, x, y, data, fitted,
                      np.asarray(minimum, float), float(min_value), hess, _plane_eigenvalues(surface, ndim), meta,
                      warnings)


def _is_nonnegative(nonnegative: bool | None, meta: dict, z: np.ndarray) -> bool:
    """Whether the fit is held >= 0: as asked, else when the surface's loss is a built-in one (all are
    non-negative) or its values are all >= 0."""
    if nonnegative is None:
        return meta.get("loss") in NONNEGATIVE_LOSSES or bool(z.min() >= 0)
    if nonnegative and z.min() < -1e-6 * max(1.0, float(np.abs(z).max())):
        raise ConfigError(f"nonnegative=True, but the surface has values down to {z.min():.4g}")
    return bool(nonnegative)


def _check_model(model: str, ndim: int) -> None:
    check_choice("model", model, MODELS)
    if model == "rotated" and ndim != 2:
        raise ConfigError("the rotated Gaussian fits a plane; a line has no rotation: use gaussian")


def _points(x, y, data) -> tuple[torch.Tensor, np.ndarray]:
    """The finite grid points as ``(N, d)`` coordinates and ``(N,)`` values."""
    coords = [x] if y is None else np.meshgrid(x, y)  # (ny, nx), like data
    keep = np.isfinite(data)
    if keep.sum() < 2:
        raise ValueError(f"a fit needs finite loss values; this surface has {int(keep.sum())} of {data.size}")
    pts = np.stack([c[keep] for c in coords], axis=1)
    return torch.as_tensor(pts), data[keep]


def _offset_value(offset, z: np.ndarray) -> float | None:
    if offset is None:
        return None
    if offset == "max":
        return float(z.max())
    if isinstance(offset, (int, float)) and not isinstance(offset, bool) and math.isfinite(offset):
        return float(offset)
    raise refuse("offset", "None (free), 'max' or a finite number", offset)


def _plane_eigenvalues(surface, ndim: int) -> np.ndarray | None:
    """The surface's Hessian eigenvalues along its directions, when it records them (see the module doc)."""
    directions = getattr(surface, "directions", None)
    values = None if directions is None else directions.meta.get("eigenvalues")
    if values is None or len(values) < ndim:
        return None
    return np.asarray(values[:ndim], dtype=np.float64)
