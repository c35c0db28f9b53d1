"""The least-squares fit of one model of ``fit.py``: starting points read off the data, the bounded solve
(``scipy.optimize.least_squares``, or linear least squares for the quadratic), a mixture grown one
component at a time and chosen by an information criterion (``CRITERIA``), standard errors, the warnings of a
degenerate fit, the fitted function's lowest point on the grid's box, and how many parameters the points
support."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import least_squares, minimize

from losslens.errors import ConfigError
from losslens.landscape._grid_values import check_increasing
from losslens.landscape.fit_models import _evaluate, _jacobian, _names

CRITERIA: tuple[str, ...] = ("bic", "aic")
_TOL = {"ftol": 1e-12, "xtol": 1e-12, "gtol": 1e-12}  # tight: a well's bottom at 0 is reached to ~1e-8


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
