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
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from scipy.optimize import least_squares, minimize

from losslens import _io
from losslens.checks import check_choice, check_int, refuse
from losslens.core import NONNEGATIVE_LOSSES
from losslens.errors import ConfigError
from losslens.landscape._grid_values import check_increasing
from losslens.results import ResultDisplay

MODELS: tuple[str, ...] = ("gaussian", "rotated", "mixture", "quadratic")
CRITERIA: tuple[str, ...] = ("bic", "aic")
_TOL = {"ftol": 1e-12, "xtol": 1e-12, "gtol": 1e-12}  # tight: a well's bottom at 0 is reached to ~1e-8


# -- the models, in torch ------------------------------------------------------------------------


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
class SurfaceFit(ResultDisplay):
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

    model: str
    names: tuple[str, ...]
    params: np.ndarray
    stderr: np.ndarray
    x: np.ndarray
    y: np.ndarray | None
    data: np.ndarray
    fitted: np.ndarray
    minimum: np.ndarray
    minimum_value: float
    hessian: np.ndarray
    surface_eigenvalues: np.ndarray | None
    meta: dict
    warnings: tuple[str, ...] = ()

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

    def save(self, path: str | Path) -> Path:
        """Write to an HDF5 file (kind ``fit``)."""
        arrays = {"params": self.params, "stderr": self.stderr, "x": self.x, "y": self.y, "data": self.data,
                  "fitted": self.fitted, "minimum": self.minimum, "hessian": self.hessian,
                  "surface_eigenvalues": self.surface_eigenvalues}
        header = {"model": self.model, "names": list(self.names), "minimum_value": self.minimum_value,
                  "warnings": list(self.warnings)}
        return _io.write_h5(path, self.KIND, arrays, {**header, "meta": self.meta})

    @classmethod
    def load(cls, path: str | Path) -> "SurfaceFit":
        """Read a file written by ``save``."""
        return _io.load(path, cls.KIND, cls._unpack, _io.grid_shapes("data", "fitted"))

    @classmethod
    def _unpack(cls, a: dict, m: dict) -> "SurfaceFit":
        return cls(m["model"], tuple(m["names"]), a["params"], a["stderr"], a["x"], a.get("y"), a["data"],
                   a["fitted"], a["minimum"], float(m["minimum_value"]), a["hessian"], a.get("surface_eigenvalues"),
                   m["meta"], tuple(m.get("warnings", ())))


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


def _fit(model, pts, z, fixed, x, y, components, criterion, max_components, nonneg):
    """``(theta, free mask, least-squares info, extra meta)`` of the chosen model."""
    if model == "quadratic":
        design = _jacobian(model, torch.zeros(len(_names(model, pts.shape[1])), dtype=torch.float64), pts)
        theta = np.linalg.lstsq(design.numpy(), z, rcond=None)[0]
        return theta, np.ones(len(theta), bool), {"method": "linear least squares"}, {}
    if model != "mixture":
        theta0, lo, hi = _initial(model, pts, z, fixed, x, y)
        theta, free, ls, _ = _solve(model, pts, z, theta0, lo, hi, fixed is not None, nonneg)
        return theta, free, ls, {}
    runs = _grow_mixture(pts, z, fixed, components or max_components, x, y, nonneg)
    if components is not None:
        return (*runs[components - 1][:3], {})
    scores = {name: {str(k): _criteria(r[3], len(z), int(r[1].sum()))[name] for k, r in enumerate(runs, 1)}
              for name in CRITERIA}
    best = int(min(scores[criterion], key=scores[criterion].get))
    return (*runs[best - 1][:3], {"criterion": {"name": criterion, "chosen": best, **scores}})


def _is_nonnegative(nonnegative: bool | None, meta: dict, z: np.ndarray) -> bool:
    """Whether the fit is held >= 0: as asked, else when the surface's loss is a built-in one (all are
    non-negative) or its values are all >= 0."""
    if nonnegative is None:
        return meta.get("loss") in NONNEGATIVE_LOSSES or bool(z.min() >= 0)
    if nonnegative and z.min() < -1e-6 * max(1.0, float(np.abs(z).max())):
        raise ConfigError(f"nonnegative=True, but the surface has values down to {z.min():.4g}")
    return bool(nonnegative)


def _n_free(model: str, ndim: int, k: int, offset_fixed: bool) -> int:
    return len(_names(model, ndim, k)) - int(offset_fixed and model != "quadratic")


def _supported_components(model, ndim, n, offset_fixed, components, max_components) -> int:
    """``max_components`` capped at the largest K whose free parameters are fewer than the ``n`` points.

    Raises:
        ConfigError: the model (with ``components``, or one component) has no fewer parameters than points.
    """
    k = components or 1
    p = _n_free(model, ndim, k, offset_fixed)
    if p >= n:
        what = f"a {ndim}-D {model}" + (f" of {k} components" if model == "mixture" else "")
        raise ConfigError(f"{what} has {p} free parameters, and a fit with standard errors needs more points than "
                          f"parameters: this surface has {n} finite points (use a finer grid"
                          + (" or fewer --components)" if model == "mixture" else ")"))
    while model == "mixture" and components is None and max_components > 1 \
            and _n_free(model, ndim, max_components, offset_fixed) >= n:
        max_components -= 1
    return max_components


def _check_model(model: str, ndim: int) -> None:
    check_choice("model", model, MODELS)
    if model == "rotated" and ndim != 2:
        raise ConfigError("the rotated Gaussian fits a plane; a line has no rotation: use gaussian")


def _grid(surface) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    x = np.asarray(surface.x, dtype=np.float64)
    y = None if surface.y is None else np.asarray(surface.y, dtype=np.float64)
    data = np.asarray(surface.loss, dtype=np.float64)
    shape = (len(x),) if y is None else (len(y), len(x))
    if data.shape != shape:
        raise ValueError(f"the surface's loss has shape {list(data.shape)}, expected {list(shape)} "
                         "(ny, nx) from its x and y")
    check_increasing(x, "x")
    if y is not None:
        check_increasing(y, "y")
    return x, y, data


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


def _scales(x, y) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """``(h, lows, highs, spans)``: the finest spacing and each axis's range."""
    axes = [x] if y is None else [x, y]
    steps = [np.diff(np.unique(a)) for a in axes]
    if any(len(s) == 0 for s in steps):
        raise ValueError("a fit needs at least two distinct coordinates along each axis")
    lows, highs = np.array([a.min() for a in axes]), np.array([a.max() for a in axes])
    return float(min(s.min() for s in steps)), lows, highs, highs - lows


def _initial(model, pts, z, fixed, x, y):
    """``(theta0, lower, upper)`` of a Gaussian or rotated model, read off the data."""
    h, lows, highs, spans = _scales(x, y)
    p = pts.numpy()
    c = float(z.max()) if fixed is None else fixed
    depth = np.clip(c - z, 0, None)
    w = depth if depth.sum() > 0 else np.ones_like(z)
    centre = p[np.argmin(z)]
    d = p - centre
    cov = (w[:, None, None] * d[:, :, None] * d[:, None, :]).sum(0) / w.sum()
    s_lo, s_hi = h / 2, 10 * float(spans.max())
    A = max(float(c - z.min()), 1e-12)
    if model == "rotated":
        values, vectors = np.linalg.eigh(cov)
        axis = vectors[:, 1]  # the major axis
        theta = math.atan2(axis[1], axis[0])
        theta = theta - math.pi if theta > math.pi / 2 else theta + math.pi if theta < -math.pi / 2 else theta
        widths = np.sqrt(np.clip(values[::-1], 0, None))
        tail, tail_lo, tail_hi = [theta], [-math.pi / 2], [math.pi / 2]
    else:
        widths = np.sqrt(np.clip(np.diag(cov), 0, None))
        tail, tail_lo, tail_hi = [], [], []
    widths = np.clip(widths, s_lo * 1.01, s_hi * 0.99)
    theta0 = [c, A, *centre, *widths, *tail]
    lower = [-np.inf, 0.0, *(lows - spans), *[s_lo] * len(widths), *tail_lo]
    upper = [np.inf, np.inf, *(highs + spans), *[s_hi] * len(widths), *tail_hi]
    return np.array(theta0), np.array(lower), np.array(upper)


def _solve(model, pts, z, theta0, lower, upper, offset_fixed: bool, nonneg: bool):
    """Least squares from ``theta0``; the offset (entry 0) held when ``offset_fixed``.

    The solver's coordinates ``u`` are the free parameters, except for a non-negative loss
    (``nonneg``): there each depth is :math:`A_k = c\\,a_k`, :math:`c \\ge 0`, :math:`a_k \\in [0, 1]`.

    Returns:
        ``(theta, free mask, least-squares info, RSS)``; the info names the parameters ending at a
        bound (``at_bound``: ``[index, bound]`` pairs; ``theta``'s bounds are one orientation and not
        counted; none when the fit is exact, its RMSE within 1e-6 of the data's range).
    """
    p, d = len(theta0), pts.shape[1]
    depths = np.arange(1, p, 1 + 2 * d) if model == "mixture" else np.array([1])
    free = np.ones(p, bool)
    free[0] = not offset_fixed
    index = np.flatnonzero(free)
    u0, lo, hi = theta0[free].copy(), lower[free].copy(), upper[free].copy()
    slots = np.searchsorted(index, depths)  # the depths' places in u
    c0 = max(float(theta0[0]), 0.0)
    if nonneg and not offset_fixed:
        lo[0] = 0.0
    if nonneg:
        u0[slots], lo[slots], hi[slots] = (theta0[depths] / c0 if c0 > 0 else 0.0), 0.0, 1.0
        if not offset_fixed:
            u0[0] = c0

    def theta_of(u: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's parameters at ``u`` and their ``(p, f)`` derivatives by ``u``."""
        theta, D = theta0.copy(), np.eye(p)[:, free]
        theta[free] = u
        if nonneg:
            c = theta[0]
            theta[depths] = c * u[slots]
            D[depths, slots] = c
            if not offset_fixed:
                D[depths, 0] = u[slots]
        return torch.as_tensor(theta), torch.as_tensor(D)

    def residual(u):
        return (_evaluate(model, theta_of(u)[0], pts) - torch.as_tensor(z)).numpy()

    def jac(u):
        theta, D = theta_of(u)
        return (_jacobian(model, theta, pts) @ D).numpy()

    result = least_squares(residual, np.clip(u0, lo, hi), jac=jac, bounds=(lo, hi),
                           method="trf", x_scale="jac", max_nfev=200 * (1 + int(free.sum())), **_TOL)
    theta = theta_of(result.x)[0].numpy()
    depth_like = np.isin(index, [0, *depths])
    scale = np.where(depth_like, max(float(np.ptp(z)), 1e-12), max(float(np.ptp(pts.numpy(), axis=0).max()), 1e-12))
    units = np.ones(len(index))  # a bound of a_k in A_k's units
    if nonneg:
        scale[slots], units[slots] = 1.0, theta[0]
    exact = math.sqrt(2 * result.cost / len(z)) <= 1e-6 * max(float(np.ptp(z)), 1e-300)  # nothing held it back
    at_bound = [[int(index[i]), float(b * units[i])] for i in range(len(index)) for b in (lo[i], hi[i])
                if np.isfinite(b) and abs(result.x[i] - b) <= 1e-6 * max(abs(b), scale[i])
                and not (model == "rotated" and index[i] == 6) and not exact]
    info = {"method": "scipy least_squares (trf)", "status": int(result.status), "message": result.message,
            "nfev": int(result.nfev), "cost": float(result.cost), "at_bound": at_bound}
    return theta, free, info, float(2 * result.cost)


def _grow_mixture(pts, z, fixed, k_max: int, x, y, nonneg: bool) -> list:
    """Mixtures of 1..k_max components, each started from the previous one plus a component where the
    data lies deepest below it (``_solve``'s results, one per K)."""
    h, lows, highs, spans = _scales(x, y)
    theta0, lower, upper = _initial("gaussian", pts, z, fixed, x, y)
    d = pts.shape[1]
    per_lo = np.concatenate([[0.0], lows, [h / 2] * d])  # a component's (A, centre, widths) bounds
    per_hi = np.concatenate([[np.inf], highs, [10 * float(spans.max())] * d])
    lower = np.concatenate([lower[:1], per_lo])
    upper = np.concatenate([upper[:1], per_hi])
    theta0 = np.clip(theta0, lower, upper)

    def solve(start):
        """``_solve``, the offset then raised by what the mixture dips below 0 (non-negative loss, free offset)."""
        theta, free, info, rss = _solve("mixture", pts, z, start, lower, upper, fixed is not None, nonneg)
        low = _minimum("mixture", torch.as_tensor(theta), pts, z, x, y)[1] if nonneg and fixed is None else 0.0
        if low < 0:
            theta[0] -= low
            info["lifted"] = -low
            rss = float(((_evaluate("mixture", torch.as_tensor(theta), pts).numpy() - z) ** 2).sum())
        return theta, free, info, rss

    runs = [solve(theta0)]
    for _ in range(1, k_max):
        theta = runs[-1][0]
        below = z - _evaluate("mixture", torch.as_tensor(theta), pts).numpy()
        i = int(np.argmin(below))
        new = np.concatenate([[max(-below[i], 1e-12)], pts[i].numpy(), np.clip(0.1 * spans, h, None)])
        lower, upper = np.concatenate([lower, per_lo]), np.concatenate([upper, per_hi])
        runs.append(solve(np.clip(np.concatenate([theta, new]), lower, upper)))
    return runs


def _warnings(names, theta, stderr, free, ls: dict, nonneg: bool, min_value: float, spans) -> tuple[str, ...]:
    """Why a fit is degenerate (see the module docstring), one sentence each."""
    out = [f"{names[i]} = {theta[i]:.4g} is held at the offset: the well's bottom is at 0, the least a "
           "non-negative loss takes" if names[i].startswith("A") and b > 0 else
           f"{names[i]} = {theta[i]:.4g} is at its bound {b:g}" for i, b in ls.get("at_bound", [])]
    if ls.get("lifted", 0.0) > 1e-6 * max(abs(theta[0]), 1e-12):
        out.append(f"offset was raised by {ls['lifted']:.3g} from its least-squares value: the overlapping "
                   "components dipped below 0")
    extent = float(spans.max())
    for i in np.flatnonzero(free):
        name, v, s = names[i], theta[i], stderr[i]
        kind = name.split("_")[0]
        if not np.isfinite(s):
            out.append(f"{name} has a non-finite standard error ({s})")
        elif kind in ("offset", "A", "s1", "s2") and s > abs(v):
            out.append(f"{name} = {v:.4g} ± {s:.2g}: the standard error exceeds the value")
        elif kind in ("x0", "y0") and s > extent:
            out.append(f"{name} = {v:.4g} ± {s:.2g}: the standard error exceeds the grid's extent {extent:.3g}")
    if nonneg and min_value < 0:
        out.append(f"the fitted minimum {min_value:.4g} is below 0, which this non-negative loss never reaches")
    if ls.get("status") == 0:
        out.append("the solver stopped at its evaluation limit before converging")
    return tuple(out)


def _criteria(rss: float, n: int, p: int) -> dict[str, float]:
    fit = n * math.log(max(rss / n, 1e-300))
    return {"aic": fit + 2 * p, "bic": fit + p * math.log(n)}


def _stderr(model, theta: torch.Tensor, pts, free: np.ndarray, rss: float) -> np.ndarray:
    """:math:`\\sqrt{\\mathrm{diag}\\, s^2 (J^TJ)^{-1}}` over the free parameters (0 for fixed ones);
    inf for a parameter the points do not determine (in the null space of a rank-deficient :math:`J`,
    e.g. a well's centre and widths when its depth is 0), even where the fit is exact (RSS 0)."""
    n, p = len(pts), int(free.sum())
    out = np.zeros(len(theta))
    if n <= p:
        out[free] = np.nan
        return out
    J = _jacobian(model, theta, pts).numpy()[:, free]
    cov = rss / (n - p) * np.linalg.pinv(J.T @ J)
    err = np.sqrt(np.clip(np.diag(cov), 0, None))
    _, sv, vt = np.linalg.svd(J, full_matrices=True)
    null = vt[np.count_nonzero(sv > sv.max(initial=0.0) * max(J.shape) * np.finfo(J.dtype).eps):]
    err[np.any(np.abs(null) > 1e-8, axis=0)] = np.inf
    out[free] = err
    return out


def _on_grid(model, theta: torch.Tensor, x, y) -> np.ndarray:
    coords = [x] if y is None else np.meshgrid(x, y)
    pts = torch.as_tensor(np.stack([c.ravel() for c in coords], axis=1))
    return _evaluate(model, theta, pts).numpy().reshape(coords[0].shape)


def _minimum(model, theta: torch.Tensor, pts, z, x, y) -> tuple[np.ndarray, float, bool]:
    """The lowest point of the fitted function on the grid's box, by L-BFGS-B from the model's own
    candidates (the centres; the quadratic's stationary point), the data's lowest point and the fit's
    lowest grid point."""
    _, lows, highs, _ = _scales(x, y)
    d = len(lows)
    candidates = [pts[int(np.argmin(z))].numpy(), pts[int(torch.argmin(_evaluate(model, theta, pts)))].numpy()]
    if model in ("gaussian", "mixture"):
        candidates += list(theta[1:].reshape(-1, 1 + 2 * d)[:, 1:1 + d].numpy())
    elif model == "rotated":
        candidates.append(theta[2:4].numpy())
    else:
        H = theta[1 + d:].numpy()
        H = H.reshape(1, 1) if d == 1 else np.array([[H[0], H[1]], [H[1], H[2]]])
        if abs(np.linalg.det(H)) > 0:
            candidates.append(np.linalg.solve(H, -theta[1:1 + d].numpy()))

    def value_grad(p):
        t = torch.as_tensor(p).requires_grad_(True)
        v = _evaluate(model, theta, t[None])[0]
        (g,) = torch.autograd.grad(v, t)
        return float(v.detach()), g.numpy()

    best = None
    for c in candidates:
        r = minimize(value_grad, np.clip(c, lows, highs), jac=True, method="L-BFGS-B", bounds=list(zip(lows, highs)))
        if best is None or r.fun < best.fun:
            best = r
    on_edge = bool(np.any(np.isclose(best.x, lows) | np.isclose(best.x, highs)))
    return best.x, float(best.fun), on_edge


def _plane_eigenvalues(surface, ndim: int) -> np.ndarray | None:
    """The surface's Hessian eigenvalues along its directions, when it records them (see the module doc)."""
    directions = getattr(surface, "directions", None)
    values = None if directions is None else directions.meta.get("eigenvalues")
    if values is None or len(values) < ndim:
        return None
    return np.asarray(values[:ndim], dtype=np.float64)
