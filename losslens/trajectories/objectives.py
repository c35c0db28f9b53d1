"""What a replay descends: a loss of two coordinates, evaluated at every optimizer's point at once.

A ``ReplayObjective`` takes the ``(K, 2)`` tensor of the K optimizers' current points and returns their
``(K,)`` losses and ``(K, 2)`` gradients in ONE call (``value_and_grad``), so that an expensive loss
(the true model loss in the plane, evaluated by a batched evaluator) costs one evaluation per step
whatever the number of optimizers. Optimizers that need curvature (SophiaH, AdaHessian) get the
``(K, 2, 2)`` Hessians from ``value_grad_hessian``, again in one call.

The objectives here are torch functions differentiated by autograd (``ReplayObjective(fn)``):

- ``function_objective``: an analytic test function (``losslens.landscape.functions``);
- ``fit_objective``: a fitted surface (``SurfaceFit.function()``): its values are the fit's, so they are
  named ``"fitted loss"`` (``ReplayObjective.value_name``), never the loss;
- ``grid_objective``: the measured grid itself, through the bicubic interpolating spline of
  ``scipy.interpolate.RectBivariateSpline`` (``s=0``: it passes through every grid value), wrapped in
  ``torch.autograd.Function`` with its exact first and second derivatives. It is defined on the grid's
  box only: a replay stops a path that would leave it (``strict``) instead of extrapolating.

An objective whose gradients come from elsewhere subclasses ``ReplayObjective`` without ``fn`` and overrides
``value_and_grad`` (and ``value_grad_hessian`` when it can, which enables SophiaH and the curvature at
the start point; otherwise those are refused or must be given). ``PlaneLoss`` is one: the true model
loss restricted to a plane of weight space, its values and derivatives from the evaluator core.
"""

from __future__ import annotations

import json
from typing import Callable

import numpy as np
import torch

from losslens.errors import ConfigError
from losslens.landscape.functions import AnalyticFunction, get_function
from losslens.trajectories.bicubic import BicubicGrid

Box = tuple[tuple[float, float], tuple[float, float]]


class ReplayObjective:
    """A loss of two coordinates for replays.
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor] | None = None, *, name: str = "objective",
                 domain: Box | None = None, strict: bool = False, minimum: tuple[float, float] | None = None,
                 min_value: float | None = None, start: tuple[float, float] | None = None, meta: dict | None = None,
                 value_name: str = "loss"):
        """A loss of two coordinates.

        Args:
            fn: ``(K, 2)`` tensor -> ``(K,)`` tensor, differentiable twice by autograd; ``None`` in a
                subclass that overrides ``value_and_grad``.
            name: what it is, for titles and metadata.
            domain: ``((x_min, x_max), (y_min, y_max))``: where it is defined when ``strict``, else a box
                for pictures.
            strict: a path that leaves ``domain`` stops there (the objective is undefined outside).
            minimum: its minimum ``(x, y)`` when known.
            min_value: its value there when known.
            start: a default start point.
            meta: provenance (JSON-compatible).
            value_name: what its values are, for tables and axes: ``"loss"``, or ``"fitted loss"`` for a
                fit (the fit's value, not the model's loss); kept in ``meta["value_name"]``.
        """
        if strict and domain is None:
            raise ValueError("a strict objective needs its domain")
        self.fn, self.name, self.domain, self.strict = fn, name, domain, strict
        self.minimum, self.min_value, self.start, self.value_name = minimum, min_value, start, value_name
        self.meta = {"name": name, "value_name": value_name, **(meta or {})}

    @property
    def has_hessian(self) -> bool:
        """Whether ``value_grad_hessian`` works: autograd through ``fn``, or a subclass's own."""
        return self.fn is not None or type(self).value_grad_hessian is not ReplayObjective.value_grad_hessian

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


def function_objective(function: str | AnalyticFunction, **options) -> ReplayObjective:
    """A test function of ``losslens.landscape.functions`` (by name, with its options) as an objective.

    Args:
        function: a test function or its name (``losslens.landscape.functions.FUNCTIONS``).
        options: keyword options of the function made by name (e.g. ``kappa``).
    """
    f = get_function(function, **options) if isinstance(function, str) else function
    return ReplayObjective(f, name=f.name, domain=f.domain, minimum=f.minima[0] if f.minima else None,
                     min_value=f.min_value, start=f.start,
                     meta={"kind": "function", "function": f.name, "options": f.options})


def fit_objective(fit) -> ReplayObjective:
    """A fitted plane (a ``SurfaceFit``) as an objective, defined everywhere; its box is the grid's.

    Args:
        fit: a ``SurfaceFit`` of a plane.

    Raises:
        ConfigError: a fit of a line.
    """
    if fit.ndim != 2:
        raise ConfigError("a replay moves two coordinates; this fit is of a line")
    box = ((float(fit.x.min()), float(fit.x.max())), (float(fit.y.min()), float(fit.y.max())))
    return ReplayObjective(fit.function(), name=f"{fit.model} fit", domain=box, minimum=tuple(map(float, fit.minimum)),
                     min_value=fit.minimum_value, start=_default_start(box), value_name="fitted loss",
                     meta={"kind": "fit", "model": fit.model, "parameters": fit.parameters, "source": fit.meta})


def grid_objective(surface) -> ReplayObjective:
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
    spline = BicubicGrid(surface.x, surface.y, surface.loss)
    box = ((float(spline.x[0]), float(spline.x[-1])), (float(spline.y[0]), float(spline.y[-1])))
    i = np.unravel_index(np.argmin(spline.z), spline.z.shape)  # (iy, ix)
    return ReplayObjective(spline, name="grid (bicubic spline)", domain=box, strict=True,
                     minimum=(float(spline.x[i[1]]), float(spline.y[i[0]])), min_value=float(spline.z[i]),
                     start=_default_start(box), meta={"kind": "grid", "source": dict(surface.meta or {})})


def as_objective(thing) -> ReplayObjective:
    """A ``ReplayObjective`` from an objective, a test function (or its name), a ``SurfaceFit``, a surface
    (``x``, ``y``, ``loss``: its grid), or a callable ``(K, 2) -> (K,)``.

    Args:
        thing: a ``ReplayObjective``, a test function or its name, a ``SurfaceFit``, a surface, or a callable
            ``(K, 2) -> (K,)``.

    Raises:
        ConfigError: none of these.
    """
    from losslens.landscape.fit import SurfaceFit

    if isinstance(thing, ReplayObjective):
        return thing
    if isinstance(thing, (str, AnalyticFunction)):
        return function_objective(thing)
    if isinstance(thing, SurfaceFit):
        return fit_objective(thing)
    if all(hasattr(thing, a) for a in ("x", "y", "loss")):
        return grid_objective(thing)
    if callable(thing):
        return ReplayObjective(thing, name=getattr(thing, "__name__", type(thing).__name__), meta={"kind": "callable"})
    raise ConfigError(f"cannot replay on a {type(thing).__name__}: give a ReplayObjective, a test function name, "
                      "a SurfaceFit, a surface or a callable (K, 2) -> (K,)")


class PlaneLoss(ReplayObjective):
    """The model's loss restricted to a plane of weight space, :math:`f(x, y) = L(w_0 + x d_1 + y d_2)`.

    With :math:`D = (d_1; d_2)` the ``(2, P)`` directions, the chain rule gives

    .. math::  \\nabla f = D \\nabla L(w), \\qquad \\nabla^2 f = D\\, \\nabla^2 L(w)\\, D^T
               = \\big(d_i^T H d_j\\big)_{ij}, \\qquad w = w_0 + (x, y) D.

    ``value_and_grad`` sends the K points of a step to the evaluator together, as ``W = w0 + points @ D``
    ``(K, P)``, in ONE ``Evaluator.values_and_gradients`` call (one pass over the data whatever K), and
    projects the gradients on the plane, ``grads @ D.T`` ``(K, 2)``. ``value_grad_hessian`` adds, per
    point, the two Hessian-vector products :math:`H d_1, H d_2` (``Evaluator.hvp``, forward-over-reverse),
    so SophiaH, AdaHessian and the stability limit :math:`2/\\lambda_{max}` work on the true loss. On unit
    Hessian eigenvectors at :math:`w_0` the plane's Hessian at the origin is
    :math:`\\mathrm{diag}(\\lambda_1, \\lambda_2)`.

    The loss is defined everywhere, so a path may leave the computed grid (the objective is not
    ``strict``). A ``surface`` of the same plane (``surface_2d`` of the same evaluator, origin and
    directions, which are checked) gives the pictures' background (``sample``: the grid's values,
    interpolated linearly between grid points, NaN outside the grid), the default box and start, and the
    ``minimum`` (its lowest grid point, as for ``grid_objective``). Coordinates are in units of the
    directions: weight-space distances for unit directions (Hessian eigenvectors), fractions of the
    weights' norms for filter-normalized random ones.

    Raises:
        ValueError: directions that are not two vectors of the evaluator's size, or a surface of another
            plane (origin or directions) or of another loss (evaluator settings), naming what differs.
    """

    NOTE = "contours: the computed grid; the paths follow the true loss, also beyond it"

    def __init__(self, evaluator, directions=None, *, w0=None, surface=None, domain: Box | None = None,
                 start: tuple[float, float] | None = None, name: str = "true loss in the plane"):
        """The loss of ``evaluator`` on the plane of ``directions`` through ``w0``.

        Args:
            evaluator: the ``Evaluator`` whose mean loss is descended (any dtype and device; values come
                back as float64 on the CPU).
            directions: ``Directions`` with two rows or a ``(2, P)`` tensor; default the surface's.
            w0: ``(P,)`` the plane's origin; default the surface's, else ``evaluator.w0``.
            surface: the loss on a grid of this plane (a ``Surface``), for pictures and defaults.
            domain: ``((x_min, x_max), (y_min, y_max))`` for pictures; default the surface's box.
            start: a default start point; default halfway from the box's centre to its upper-left corner.
            name: for titles.
        """
        from losslens.landscape.directions import Directions

        if directions is None:
            if surface is None or surface.directions is None:
                raise ValueError("PlaneLoss needs the plane's directions: give directions, or a surface holding them")
            directions = surface.directions
        kind = directions.kind if isinstance(directions, Directions) else "custom"
        dmeta = directions.meta if isinstance(directions, Directions) else {}
        vectors = torch.as_tensor(directions.vectors if isinstance(directions, Directions) else directions).detach()
        P = evaluator.space.size
        if tuple(vectors.shape) != (2, P):
            raise ValueError(f"PlaneLoss needs 2 directions of the evaluator's {P} parameters, found shape "
                             f"{list(vectors.shape)}")
        if w0 is None:
            w0 = surface.w0 if surface is not None and surface.w0 is not None else evaluator.w0
        w0 = torch.as_tensor(w0).detach()
        if tuple(w0.shape) != (P,):
            raise ValueError(f"w0 must have shape ({P},), found {list(w0.shape)}")
        minimum = min_value = None
        if surface is not None:
            _check_same_plane(surface, evaluator, w0, vectors)
            domain = domain or ((float(surface.x.min()), float(surface.x.max())),
                                (float(surface.y.min()), float(surface.y.max())))
            minimum, min_value = _lowest_point(surface)
        meta = {
            "kind": "true-loss",
            "evaluator": evaluator.meta(),
            "directions": {"kind": kind, **{k: dmeta[k] for k in ("eigenvalues", "normalization", "seed")
                                            if k in dmeta},
                           "norms": [float(v) for v in vectors.double().norm(dim=1)]},
            "minimum_is": "the lowest grid point" if minimum is not None else None,
            "note": PlaneLoss.NOTE if surface is not None else None,
            "source": dict(surface.meta or {}) if surface is not None else None,
        }
        super().__init__(None, name=name, domain=domain, strict=False, minimum=minimum, min_value=min_value,
                         start=start or (_default_start(domain) if domain is not None else None), meta=meta)
        dev, dtype = evaluator.device, evaluator.dtype
        self.evaluator, self.surface = evaluator, surface
        self.w0 = w0.to(device=dev, dtype=dtype)
        self.D = vectors.to(device=dev, dtype=dtype)
        self._D64 = vectors.to(device=dev, dtype=torch.float64)

    def weights(self, points: torch.Tensor) -> torch.Tensor:
        """``(K, P)`` the weights ``w0 + points @ D`` of the ``(K, 2)`` points, in the evaluator's dtype."""
        return self.w0 + torch.as_tensor(points).to(device=self.D.device, dtype=self.D.dtype) @ self.D

    def value_and_grad(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss (K,), grad (K, 2))`` at the ``(K, 2)`` points: one ``values_and_gradients`` call."""
        loss, grads = self.evaluator.values_and_gradients(self.weights(points))
        return loss.detach().cpu(), (grads.detach().double() @ self._D64.T).cpu()

    def value_grad_hessian(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(loss (K,), grad (K, 2), hessian (K, 2, 2))``: one ``values_and_gradients`` call for all the
        points, then two Hessian-vector products per point; the 2 x 2 Hessians symmetrized."""
        W = self.weights(points)
        loss, grads = self.evaluator.values_and_gradients(W)
        H = torch.stack([self._D64 @ self.evaluator.hvp(w, self.D).detach().double().T for w in W])
        H = (H + H.transpose(1, 2)) / 2
        return loss.detach().cpu(), (grads.detach().double() @ self._D64.T).cpu(), H.cpu()

    def sample(self, x: np.ndarray, y: np.ndarray) -> np.ndarray | None:
        """The surface's loss at the points of the grid ``(x, y)`` as ``(ny, nx)``: its values at its own
        grid points, linear between them, NaN outside its box; ``None`` without a surface (evaluating the
        true loss on a picture's grid is left to ``surface_2d``)."""
        if self.surface is None:
            return None
        from scipy.interpolate import RegularGridInterpolator

        s = self.surface
        ix, iy = np.argsort(s.x), np.argsort(s.y)
        interp = RegularGridInterpolator((s.y[iy], s.x[ix]), s.loss[np.ix_(iy, ix)], bounds_error=False,
                                         fill_value=np.nan)
        X, Y = np.meshgrid(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
        return interp(np.stack([Y.ravel(), X.ravel()], axis=1)).reshape(X.shape)


def _lowest_point(surface) -> tuple[tuple[float, float] | None, float | None]:
    """``((x, y), value)`` of the grid's lowest finite value, ``(None, None)`` when none is finite."""
    z = np.where(np.isfinite(surface.loss), surface.loss, np.nan)
    if np.isnan(z).all():
        return None, None
    iy, ix = np.unravel_index(np.nanargmin(z), z.shape)
    return (float(surface.x[ix]), float(surface.y[iy])), float(z[iy, ix])


def _check_same_plane(surface, evaluator, w0: torch.Tensor, vectors: torch.Tensor) -> None:
    """Refuse a surface of another plane (origin, directions) or another loss (the evaluator's identity)."""
    if surface.y is None:
        raise ValueError("PlaneLoss draws on a plane; this surface is a line")
    diffs = []
    for name, stored, now in (("origin w0", surface.w0, w0),
                              ("direction vectors", None if surface.directions is None else surface.directions.vectors,
                               vectors)):
        if stored is None:
            continue
        a = np.asarray(torch.as_tensor(stored).double().cpu())
        b = now.detach().double().cpu().numpy()
        if a.shape != b.shape or not np.allclose(a, b, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(b).max()))):
            diffs.append(f"{name} differ")
    identities = (surface.meta or {}).get("identity") or {}
    stored = identities.get(evaluator.data.split or "unspecified")
    if identities and stored is None:
        diffs.append(f"the surface evaluated the splits {sorted(identities)}, not {evaluator.data.split!r}")
    elif stored is not None:
        stored, now = (json.loads(json.dumps(i, default=str)) for i in (stored, evaluator.identity()))
        keys = sorted(k for k in set(stored) | set(now) if stored.get(k) != now.get(k))
        if keys:
            diffs.append(f"evaluator settings differ ({', '.join(keys)})")
    if diffs:
        raise ValueError(f"the surface is not of this plane and loss: {'; '.join(diffs)}")


def _default_start(box: Box) -> tuple[float, float]:
    """Halfway from the box's centre to its upper-left corner (the book starts at (-1, 1) on [-2, 2]^2)."""
    (x0, x1), (y0, y1) = box
    return (x0 + (x1 - x0) / 4, y1 - (y1 - y0) / 4)
