"""Replay optimizers on a loss of two coordinates, side by side, one batched evaluation per step.

Each optimizer moves its own 2-parameter tensor :math:`p = (x, y)`, by any ``torch.optim`` class, a
preset or a ``pytorch-optimizer`` class (``losslens.core.optimizers``: ``sgd``, ``momentum``,
``nesterov``, ``book-momentum``, ``adam``, ``lion``, ``sophiah``, ...). At every step the points of all
the optimizers still running go to the objective together, as one ``(K, 2)`` tensor
(``ReplayObjective.value_and_grad``); each optimizer then takes its gradient and steps:

.. math::  g \\leftarrow \\nabla f(p) + \\sigma \\xi_t,\\quad
           g \\leftarrow g \\min(1, c / \\lVert g \\rVert),\\quad p \\leftarrow \\mathrm{step}(p, g, \\eta_t)

with gradient noise :math:`\\xi_t \\sim N(0, I_2)` of scale :math:`\\sigma` (``noise``; one draw per step
from a generator seeded by ``seed``, the same draw for every optimizer, so that their comparison is
paired), norm clipping at ``c`` (``clip``), and the learning rate :math:`\\eta_t` of the schedule:
``constant``, ``cosine`` (``CosineAnnealingLR`` over the steps after the warmup) or ``step``
(``StepLR``: times ``gamma`` every ``step_size`` steps), each after an optional linear warmup
(``LinearLR`` from :math:`\\eta/(w+1)` to :math:`\\eta` over ``warmup`` steps). Optimizers that
estimate curvature through the gradient's graph (``NEEDS_HESSIAN``: SophiaH, AdaHessian) are given a
gradient whose graph is the exact local model :math:`g + H (p - p_t)`, with the Hessian from the same
batched call (``value_grad_hessian``), so their Hessian-vector products are exact.

Each path records, per step, ``x, y, loss, grad_norm, lr``: step 0 is the start point, step ``t`` the
point after ``t`` updates; ``grad_norm`` is :math:`\\lVert\\nabla f\\rVert` before noise and clipping,
``lr`` the rate of the update taken from that point. A path stops early, reported and never raised,
when its loss or gradient is not finite (``diverged``: that point is the last row) or when an
update would leave a strict objective's domain (``left the domain``: the point outside is not
evaluated; it is kept in ``meta["stops"]``).

Summary figures per optimizer (``Replay.summary_rows``): the final loss; the first step at which the
loss is within ``tol`` of the objective's minimum value (or, when that is unknown, of the lowest loss
any optimizer reached); the path length :math:`\\sum_t \\lVert p_{t+1} - p_t \\rVert`; the oscillation,
the number of steps that turn back, :math:`(p_{t+1} - p_t) \\cdot (p_t - p_{t-1}) < 0`; and whether
the learning rate exceeds :math:`2/\\lambda_{max}`, the stability limit of gradient descent on a
quadratic of top curvature :math:`\\lambda_{max}`, both at the start point and at the objective's
minimum (where a path must settle; a single Gaussian's curvature is far larger there than on its
flanks). :math:`\\lambda_{max}` is the top eigenvalue of the objective's 2 x 2 Hessian by autograd (or
``lambda_max`` when given). The limit is that of plain gradient descent; momentum and adaptive methods
have others, but the comparison still shows how far a rate is from the curvature's scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

from losslens.checks import check_choice, check_int, check_number, check_seed, refuse
from losslens.core.optimizers import make_optimizer
from losslens.errors import ConfigError
from losslens.trajectories.objectives import ReplayObjective, as_objective
from losslens.trajectories.replay_result import Replay
from losslens.trajectories.replay_steps import _checked, _scheduler, _top_curvature, _update

SCHEDULES: tuple[str, ...] = ("constant", "cosine", "step")
NEEDS_HESSIAN: tuple[str, ...] = ("SophiaH", "AdaHessian")  # classes that call autograd.grad on p.grad
BACKGROUND_POINTS = 121  # per axis, for the contour behind the paths


@dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer of a replay: its name (as ``losslens.core.optimizers`` resolves it), learning rate,
    options, and the label it gets in tables and legends (default: the name, with the rate if two
    optimizers share a name).

    Attributes:
        name: the optimizer's name, as ``losslens.core.optimizers`` resolves it.
        lr: its learning rate (``None``: the replay's ``lr``).
        options: its options (``{"betas": [0.9, 0.99]}``).
        label: its name in tables and legends (default: the name, with the rate if two optimizers share a name).
    """

    name: str
    lr: float | None = None
    options: dict | None = None
    label: str | None = None


# long: the documented arguments of a replay's 15 options; the body is 13 lines
def replay(
    objective,
    optimizers: Sequence[str | OptimizerSpec] = ("sgd", "momentum", "adam"),
    *,
    lr: float | Mapping[str, float] = 0.01,
    start: tuple[float, float] | None = None,
    steps: int = 100,
    options: Mapping[str, dict] | None = None,
    schedule: str = "constant",
    warmup: int = 0,
    step_size: int | None = None,
    gamma: float = 0.1,
    clip: float | None = None,
    noise: float = 0.0,
    seed: int = 0,
    tol: float = 1e-3,
    lambda_max: float | None = None,
) -> Replay:
    """Run each optimizer for ``steps`` updates from ``start`` on ``objective``.

    Args:
        objective: a ``ReplayObjective``, a test function's name, a ``SurfaceFit``, a surface (its grid
            interpolant) or a callable ``(K, 2) -> (K,)`` (see ``objectives.as_objective``).
        optimizers: names or ``OptimizerSpec``; one name given twice gets its rate in its label
            (``sgd lr=0.1``), or give specs their own labels.
        lr: the learning rate of every optimizer, or ``{name: lr}`` for each one listed by name (a spec's
            own ``lr`` comes first).
        start: ``(x, y)``; default the objective's ``start``.
        steps: updates per optimizer.
        options: ``{name: {option: value}}`` for optimizers listed by name (momentum, betas, ...).
        schedule: ``"constant"``, ``"cosine"`` or ``"step"``.
        warmup: steps of linear warmup of the learning rate from 0.
        step_size: the ``step`` schedule's period, in updates.
        gamma: the ``step`` schedule's factor: the rate is multiplied by it every ``step_size`` updates.
        clip: clip each gradient's norm at this value (``None``: no clipping).
        noise: scale :math:`\\sigma` of the Gaussian noise added to the gradients.
        seed: seeds the noise and any randomness of the optimizers (SophiaH's Hutchinson vectors);
            the global RNG is left as it was.
        tol: absolute loss tolerance of ``steps_to_tol``.
        lambda_max: the top Hessian eigenvalue at the start, when the objective cannot give it.

    Returns:
        A ``Replay``.

    Raises:
        ConfigError: an invalid option, an unknown optimizer, LBFGS (it needs a closure that evaluates
            several times per step), or SophiaH/AdaHessian on an objective without Hessians.
    """
    obj = as_objective(objective)
    seed = check_seed(seed)
    _check_options(steps, schedule, warmup, step_size, gamma, clip, noise, tol, lambda_max)
    specs = _specs(optimizers, lr, options)
    start = _start(obj, start)
    params = [torch.nn.Parameter(torch.tensor(start, dtype=torch.float64)) for _ in specs]
    opts, resolved = _optimizers(specs, params)
    needs_h = _needs_hessian(obj, specs, opts)
    schedulers = [_scheduler(o, schedule, steps, warmup, step_size, gamma) for o in opts]
    lam = {"start": lambda_max if lambda_max is not None else _top_curvature(obj, start),
           "minimum": _top_curvature(obj, obj.minimum) if obj.minimum is not None else None}
    rows, status, stops = _race(obj, specs, params, opts, schedulers, needs_h, steps, noise, clip, seed)
    paths = tuple(np.asarray(r, dtype=np.float64) for r in rows)
    meta = {
        "objective": obj.meta, "optimizers": resolved, "start": list(start), "steps": steps,
        "schedule": {"name": schedule, "warmup": warmup, "step_size": step_size, "gamma": gamma},
        "clip": clip, "noise": noise, "seed": seed, "tol": tol, "min_value": obj.min_value,
        "minimum": None if obj.minimum is None else list(obj.minimum), "lambda_max": lam, "stops": stops,
        "versions": _versions(resolved),
    }
    return Replay(tuple(s.label for s in specs), paths, tuple(status), _background(obj, paths, status), meta)


def _optimizers(specs: list[OptimizerSpec], params: list) -> tuple[list, list[dict]]:
    """One optimizer per spec on its own parameter, and what each resolved to (class, lr, options)."""
    opts, resolved = [], []
    for spec, p in zip(specs, params):
        if spec.name.lower() == "lbfgs":
            raise ConfigError("LBFGS re-evaluates the loss several times per step through a closure; a replay "
                              "evaluates every optimizer once per step: choose another optimizer")
        opt, kwargs = make_optimizer(spec.name, [p], spec.lr, spec.options)
        opts.append(opt)
        resolved.append({"label": spec.label, "name": spec.name, "class": type(opt).__name__, "lr": spec.lr,
                         "options": kwargs})
    return opts, resolved


def _needs_hessian(obj: ReplayObjective, specs: list[OptimizerSpec], opts: list) -> list[bool]:
    """Which optimizers take Hessian-vector products; a ConfigError when the objective gives none."""
    needs_h = [type(o).__name__ in NEEDS_HESSIAN for o in opts]
    if any(needs_h) and not obj.has_hessian:
        names = ", ".join(s.label for s, n in zip(specs, needs_h) if n)
        raise ConfigError(f"{names} need Hessian-vector products, which objective {obj.name!r} does not provide "
                          "(it has no value_grad_hessian)")
    return needs_h


def _race(obj: ReplayObjective, specs, params, opts, schedulers, needs_h, steps: int, noise: float, clip, seed: int):
    """Step every optimizer ``steps`` times, or until it diverges or leaves the domain; returns ``(rows,
    status, stops)``: per optimizer its rows ``[t, x, y, loss, grad_norm, lr]``, how it ended, and where it
    stopped (``None`` when it completed). Each step's gradient noise is one draw shared by all."""
    K = len(specs)
    rows: list[list] = [[] for _ in specs]
    status = ["completed"] * K
    stops: list[dict | None] = [None] * K
    active = list(range(K))
    noise_gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for t in range(steps + 1):
            if not active:
                break
            running, grad, hess = _record(obj, t, params, opts, needs_h, active, rows, status, stops)
            active = [k for _, k in running]
            if t == steps:
                break
            xi = torch.randn(2, generator=noise_gen, dtype=torch.float64) if noise > 0 else None
            for i, k in running:
                try:
                    _update(params[k], opts[k], schedulers[k], grad[i], None if hess is None else hess[i],
                            needs_h[k], xi, noise, clip)
                except (RuntimeError, ValueError, TypeError) as err:  # the optimizer refuses this problem
                    raise ConfigError(f"optimizer {specs[k].label!r} ({type(opts[k]).__name__}) failed at step {t}: "
                                      f"{err}") from err
            active = _still_inside(obj, t, params, active, status, stops)
    return rows, status, stops


def _record(obj: ReplayObjective, t: int, params, opts, needs_h, active: list[int], rows, status, stops):
    """Evaluate the ``active`` optimizers' points at step ``t``, append their rows and mark those whose loss
    or gradient is not finite as diverged; returns ``(running, grad, hess)``, ``running`` the ``(i, k)``
    (index among ``active``, optimizer) of the others."""
    points = torch.stack([params[k].detach() for k in active])
    if any(needs_h[k] for k in active):
        loss, grad, hess = _checked(obj, obj.value_grad_hessian(points), len(active))
    else:
        loss, grad, hess = _checked(obj, (*obj.value_and_grad(points), None), len(active))
    running = []
    for i, k in enumerate(active):
        rows[k].append([t, *points[i].tolist(), float(loss[i]), float(grad[i].norm()),
                        float(opts[k].param_groups[0]["lr"])])
        if torch.isfinite(loss[i]) and torch.isfinite(grad[i]).all():
            running.append((i, k))
        else:
            status[k], stops[k] = "diverged", {"step": t, "reason": "non-finite loss or gradient"}
    return running, grad, hess


def _still_inside(obj: ReplayObjective, t: int, params, active: list[int], status, stops) -> list[int]:
    """The ``active`` optimizers whose point after step ``t`` is finite and inside the domain; the others are
    marked as diverged or as having left the domain."""
    if not active:
        return active
    moved = torch.stack([params[k].detach() for k in active])
    finite, inside = torch.isfinite(moved).all(dim=1), obj.inside(moved)
    kept = []
    for j, k in enumerate(active):
        if finite[j] and inside[j]:
            kept.append(k)
        else:
            status[k] = "diverged" if not finite[j] else "left the domain"
            stops[k] = {"step": t + 1, "reason": status[k], "point": moved[j].tolist()}
    return kept


# -- options -------------------------------------------------------------------------------------


def _specs(optimizers, lr, options) -> list[OptimizerSpec]:
    """The optimizers as specs with a learning rate and a unique label each."""
    if isinstance(optimizers, (str, OptimizerSpec)):
        optimizers = [optimizers]
    items = [o if isinstance(o, OptimizerSpec) else OptimizerSpec(o) for o in optimizers]
    if not items:
        raise ConfigError("a replay needs at least one optimizer")
    bad = [o for o in items if not (isinstance(o.name, str) and o.name)]
    if bad:
        raise ConfigError(f"optimizer names must be non-empty strings, got {[o.name for o in bad]}")
    names = [o.name for o in items]
    by_name = isinstance(lr, Mapping)
    for what, table in (("lr", lr if by_name else {}), ("options", options or {})):
        unknown = sorted(set(table) - set(names))
        if unknown:
            raise ConfigError(f"{what} given for {', '.join(unknown)}, which are not among the optimizers "
                              f"({', '.join(names)})")
    specs = []
    for o in items:
        rate = o.lr if o.lr is not None else (lr.get(o.name) if by_name else lr)
        if rate is None:
            raise ConfigError(f"no learning rate for {o.name!r}: give lr={{..., {o.name!r}: value}} or a number")
        rate = check_number(f"the learning rate of {o.name!r}", rate, positive=True)
        opts = {**((options or {}).get(o.name) or {}), **(o.options or {})}
        specs.append(OptimizerSpec(o.name, rate, opts, o.label))
    counts = {n: names.count(n) for n in names}
    labels = [s.label or (s.name if counts[s.name] == 1 else f"{s.name} lr={s.lr:g}") for s in specs]
    labels = [lab if labels.count(lab) == 1 else f"{lab} #{i + 1}" for i, lab in enumerate(labels)]
    return [OptimizerSpec(s.name, s.lr, s.options, lab) for s, lab in zip(specs, labels)]


def _check_options(steps, schedule, warmup, step_size, gamma, clip, noise, tol, lambda_max) -> None:
    check_int("steps", steps, minimum=1)
    check_choice("schedule", schedule, SCHEDULES)
    check_int("warmup", warmup, minimum=0, maximum=steps - 1)
    if schedule == "step":
        check_int("step_size (the step schedule's period)", step_size, minimum=1)
    elif step_size is not None:
        raise ConfigError(f"step_size applies to the step schedule, not to {schedule!r}")
    check_number("gamma", gamma, positive=True)
    check_number("clip", clip, positive=True, none=True)
    check_number("noise", noise, minimum=0)
    check_number("tol", tol, positive=True)
    check_number("lambda_max", lambda_max, none=True)


def _start(obj: ReplayObjective, start) -> tuple[float, float]:
    start = obj.start if start is None else start
    if start is None:
        raise ConfigError(f"objective {obj.name!r} has no default start point: give start=(x, y)")
    try:
        point = tuple(float(v) for v in start)
    except (TypeError, ValueError):
        raise refuse("start", "two finite numbers (x, y)", start) from None
    if len(point) != 2 or not all(map(math.isfinite, point)):
        raise refuse("start", "two finite numbers (x, y)", start)
    if not bool(obj.inside(torch.tensor([point], dtype=torch.float64))[0]):
        raise ConfigError(f"start {point} lies outside the domain {obj.domain} of {obj.name!r}")
    return point


def _background(obj: ReplayObjective, paths, status) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The objective sampled on a box around its domain and the paths that did not diverge (a path that ran
    far away widens the box up to three times the domain's extent; a strict objective's box is its domain)."""
    kept = [p[:, 1:3] for p, s in zip(paths, status) if s != "diverged"]
    pts = np.concatenate(kept) if kept else np.zeros((0, 2))
    pts = pts[np.isfinite(pts).all(axis=1)]
    if obj.domain is None:
        if not len(pts):
            return None
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        pad = np.maximum((hi - lo) * 0.1, 0.1)
        lo, hi = lo - pad, hi + pad
    else:
        lo, hi = np.array([obj.domain[0][0], obj.domain[1][0]]), np.array([obj.domain[0][1], obj.domain[1][1]])
        if not obj.strict and len(pts):
            centre, span = (lo + hi) / 2, hi - lo
            pad = 0.05 * span
            lo = np.maximum(np.minimum(lo, pts.min(axis=0) - pad), centre - 1.5 * span)
            hi = np.minimum(np.maximum(hi, pts.max(axis=0) + pad), centre + 1.5 * span)
    x, y = np.linspace(lo[0], hi[0], BACKGROUND_POINTS), np.linspace(lo[1], hi[1], BACKGROUND_POINTS)
    z = obj.sample(x, y)
    return None if z is None else (x, y, np.asarray(z, dtype=np.float64))


def _versions(resolved: list[dict]) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"torch": torch.__version__}
    if any(not hasattr(torch.optim, r["class"]) for r in resolved):
        try:
            out["pytorch-optimizer"] = version("pytorch-optimizer")
        except PackageNotFoundError:
            pass
    return out
