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

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Mapping, Sequence

import numpy as np
import torch

from losslens import _io
from losslens.checks import check_choice, check_int, check_number, check_seed, refuse
from losslens.core.optimizers import make_optimizer
from losslens.errors import ConfigError
from losslens.results import ResultDisplay, to_dataframe
from losslens.trajectories.objectives import ReplayObjective, as_objective

SCHEDULES: tuple[str, ...] = ("constant", "cosine", "step")
NEEDS_HESSIAN: tuple[str, ...] = ("SophiaH", "AdaHessian")  # classes that call autograd.grad on p.grad
PATH_COLUMNS: tuple[str, ...] = ("optimizer", "step", "x", "y", "loss", "grad_norm", "lr")
SUMMARY_COLUMNS: tuple[str, ...] = (
    "optimizer", "name", "lr", "status", "steps", "final_x", "final_y", "final_loss", "steps_to_tol", "path_length",
    "oscillation", "lambda_max_start", "lr_above_2_over_lambda_start", "lambda_max_minimum",
    "lr_above_2_over_lambda_minimum",
)
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


@dataclass(frozen=True, eq=False, repr=False)
class Replay(ResultDisplay):
    """The paths of several optimizers on one objective.

    Attributes:
        labels: one per optimizer, unique.
        paths: one ``(T_k + 1, 6)`` array per optimizer, columns ``step, x, y, loss, grad_norm, lr``.
        status: per optimizer ``"completed"``, ``"diverged"`` or ``"left the domain"``.
        background: ``(x (nx,), y (ny,), z (ny, nx))`` the objective around the paths, for contours;
            ``None`` when the objective cannot be sampled.
        meta: the objective's ``meta`` (under ``objective``), ``optimizers`` (label, name, class, lr,
            options), ``start``, ``steps``, ``schedule``, ``clip``, ``noise``, ``seed``, ``tol``,
            ``min_value``, ``minimum``, ``lambda_max`` (``start``, ``minimum``), ``stops``, ``versions``.
    """

    KIND: ClassVar[str] = "replay"

    labels: tuple[str, ...]
    paths: tuple[np.ndarray, ...]
    status: tuple[str, ...]
    background: tuple[np.ndarray, np.ndarray, np.ndarray] | None
    meta: dict

    @property
    def value_name(self) -> str:
        """What the ``loss`` column holds: ``"fitted loss"`` on a fit (the fit's value, not the model's
        loss), else ``"loss"``."""
        objective = self.meta.get("objective") or {}
        return objective.get("value_name") or ("fitted loss" if objective.get("kind") == "fit" else "loss")

    def columns(self, table: str = "paths") -> tuple[str, ...]:
        """The CSV columns of ``table`` (``PATH_COLUMNS`` or ``SUMMARY_COLUMNS``), ``loss`` named by
        ``value_name`` (``fitted_loss``, ``final_fitted_loss`` on a fit).

        Raises:
            ValueError: an unknown table.
        """
        check_choice("table", table, ("paths", "summary"))
        name = self.value_name.replace(" ", "_")
        return tuple(c.replace("loss", name) for c in (PATH_COLUMNS if table == "paths" else SUMMARY_COLUMNS))

    def path(self, label: str) -> dict[str, np.ndarray]:
        """The columns of one optimizer's path: ``step, x, y, loss, grad_norm, lr``.

        Raises:
            KeyError: an unknown label (the labels are listed).
        """
        if label not in self.labels:
            raise KeyError(f"no optimizer labelled {label!r}; labels: {', '.join(self.labels)}")
        p = self.paths[self.labels.index(label)]
        return {c: (p[:, i].astype(int) if c == "step" else p[:, i]) for i, c in enumerate(PATH_COLUMNS[1:])}

    @property
    def target(self) -> float:
        """The loss the tolerance is measured from: the objective's minimum value, else the lowest reached."""
        if self.meta.get("min_value") is not None:
            return float(self.meta["min_value"])
        losses = np.concatenate([p[:, 3] for p in self.paths])
        losses = losses[np.isfinite(losses)]
        return float(losses.min()) if len(losses) else math.nan

    def summary_rows(self) -> list[dict]:
        """One dict per optimizer with the ``SUMMARY_COLUMNS`` (see the module doc); on a fit ``final_loss``
        is the fitted loss (``value_name``)."""
        lam = self.meta.get("lambda_max") or {}
        target, tol = self.target, float(self.meta["tol"])
        rows = []
        for label, p, status, opt in zip(self.labels, self.paths, self.status, self.meta["optimizers"]):
            loss = p[:, 3]
            reached = np.flatnonzero(loss <= target + tol)
            moves = np.diff(p[:, 1:3], axis=0)
            moves = moves[np.isfinite(moves).all(axis=1)]
            lr = float(opt["lr"])
            rows.append({
                "optimizer": label, "name": opt["name"], "lr": lr, "status": status, "steps": int(p[-1, 0]),
                "final_x": float(p[-1, 1]), "final_y": float(p[-1, 2]), "final_loss": float(loss[-1]),
                "steps_to_tol": int(p[reached[0], 0]) if len(reached) else None,
                "path_length": _length(moves),
                "oscillation": int(((moves[1:] * moves[:-1]).sum(axis=1) < 0).sum()),
                "lambda_max_start": lam.get("start"), "lr_above_2_over_lambda_start": _above(lr, lam.get("start")),
                "lambda_max_minimum": lam.get("minimum"),
                "lr_above_2_over_lambda_minimum": _above(lr, lam.get("minimum")),
            })
        return rows

    def summary(self) -> str:
        """A table of the summary figures, with the stability limits spelled out."""
        m = self.meta
        lam = m.get("lambda_max") or {}
        value = self.value_name
        head = [f"replay on {m['objective'].get('name', 'objective')} from ({m['start'][0]:.4g}, {m['start'][1]:.4g}), "
                f"{m['steps']} steps; tolerance {m['tol']:g} above {self.target:.6g}"
                + (f"; values are the {value} (the fit's, not the model's loss)" if value != "loss" else "")]
        for where in ("start", "minimum"):
            v = lam.get(where)
            if v is not None:
                limit = f"2/lambda_max = {2 / v:.4g}" if v > 0 else "no limit (no positive curvature)"
                head.append(f"lambda_max at the {where} {v:.4g}: gradient descent is stable for lr < {limit}")
        rows = self.summary_rows()
        width = max(len(r["optimizer"]) for r in rows)
        head.append(f"{'optimizer':<{width}}  {'lr':>8}  {'final ' + value:>11}  {'to tol':>6}  {'length':>8}  "
                    f"{'turns':>5}  status")
        for r in rows:
            where = [w for w in ("start", "minimum") if r[f"lr_above_2_over_lambda_{w}"]]
            flag = f" (lr > 2/lambda_max at the {' and the '.join(where)})" if where else ""
            head.append(f"{r['optimizer']:<{width}}  {r['lr']:>8.3g}  {r['final_loss']:>11.5g}  "
                        f"{'-' if r['steps_to_tol'] is None else r['steps_to_tol']:>6}  {r['path_length']:>8.4g}  "
                        f"{r['oscillation']:>5}  {r['status']} after {r['steps']} steps{flag}")
        return "\n".join(head)

    def to_csv(self, path: str | Path, table: str = "paths") -> Path:
        """Write ``table``: ``"paths"`` (columns ``PATH_COLUMNS``, one row per optimizer and step) or
        ``"summary"`` (``SUMMARY_COLUMNS``, one row per optimizer; an empty cell for none), the loss's
        columns named by ``value_name`` (``columns``).

        Raises:
            ValueError: an unknown table.
        """
        rows, columns = self._table(table)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows([["" if v is None else v for v in row] for row in rows])
        return path

    def to_pandas(self, table: str = "paths"):
        """``table`` (as in ``to_csv``) as a ``pandas.DataFrame`` (pandas is needed); ``None`` where a
        value does not apply.

        Raises:
            ValueError: an unknown table.
        """
        return to_dataframe(*self._table(table))

    def _table(self, table: str) -> tuple[list[list], tuple[str, ...]]:
        """``(rows, columns)`` of ``"paths"`` or ``"summary"``, the columns as ``columns`` names them."""
        columns = self.columns(table)
        if table == "paths":
            return [[label, int(r[0]), *map(float, r[1:])] for label, p in zip(self.labels, self.paths) for r in p], columns
        return [[r[c] for c in SUMMARY_COLUMNS] for r in self.summary_rows()], columns

    def save(self, path: str | Path) -> Path:
        """Write to an HDF5 file (kind ``replay``)."""
        arrays = {f"paths/{i}": p for i, p in enumerate(self.paths)}
        if self.background is not None:
            arrays.update(zip(("background/x", "background/y", "background/z"), self.background))
        header = {"labels": list(self.labels), "status": list(self.status)}
        return _io.write_h5(path, self.KIND, arrays, {**header, "meta": self.meta})

    @classmethod
    def load(cls, path: str | Path) -> "Replay":
        """Read a file written by ``save``."""
        return _io.load(path, cls.KIND, cls._unpack)

    @classmethod
    def _unpack(cls, a: dict, m: dict) -> "Replay":
        paths = tuple(a[f"paths/{i}"] for i in range(len(m["labels"])))
        bg = tuple(a[f"background/{k}"] for k in "xyz") if "background/z" in a else None
        return cls(tuple(m["labels"]), paths, tuple(m["status"]), bg, m["meta"])


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


# -- steps ---------------------------------------------------------------------------------------


def _checked(obj: ReplayObjective, out, K: int):
    """The objective's ``(loss (K,), grad (K, 2), hessian (K, 2, 2) or None)``, float64 on the CPU, detached.

    Raises:
        ValueError: shapes that are not those (the objective is named).
    """
    expected = ((K,), (K, 2), (K, 2, 2))
    result = []
    for name, value, shape in zip(("loss", "gradient", "Hessian"), out, expected):
        if value is None:
            result.append(None)
            continue
        value = torch.as_tensor(value).detach().to(device="cpu", dtype=torch.float64)
        if tuple(value.shape) != shape:
            raise ValueError(f"objective {obj.name!r} returned a {name} of shape {list(value.shape)} for {K} points, "
                             f"expected {list(shape)}")
        result.append(value)
    return tuple(result)


def _update(p, opt, scheduler, grad, hess, needs_hessian: bool, xi, noise: float, clip: float | None) -> None:
    """One optimizer step from the batched gradient (noise, then clipping; see the module doc)."""
    g = grad.clone()
    if xi is not None:
        g = g + noise * xi
    if clip is not None:
        norm = float(g.norm())
        if norm > clip:
            g = g * (clip / norm)
    if needs_hessian:  # value g, derivative hess: exact Hessian-vector products through p.grad's graph
        g = g + hess @ (p - p.detach())
    p.grad = g
    opt.step()
    scheduler.step()


def _scheduler(opt, schedule: str, steps: int, warmup: int, step_size: int | None, gamma: float):
    from torch.optim import lr_scheduler as ls

    after = max(steps - warmup, 1)
    main = {
        "constant": lambda: ls.ConstantLR(opt, factor=1.0, total_iters=0),
        "cosine": lambda: ls.CosineAnnealingLR(opt, T_max=after),
        "step": lambda: ls.StepLR(opt, step_size=step_size, gamma=gamma),
    }[schedule]
    if warmup == 0:
        return main()
    warm = ls.LinearLR(opt, start_factor=1.0 / (warmup + 1), end_factor=1.0, total_iters=warmup)
    return ls.SequentialLR(opt, [warm, main()], milestones=[warmup])


def _top_curvature(obj: ReplayObjective, point) -> float | None:
    """The largest eigenvalue of the objective's Hessian at ``point``, when it has Hessians."""
    if not obj.has_hessian:
        return None
    _, _, H = obj.value_grad_hessian(torch.tensor([point], dtype=torch.float64))
    value = float(torch.linalg.eigvalsh(H[0]).max())
    return value if math.isfinite(value) else None


def _length(moves: np.ndarray) -> float:
    """:math:`\\sum_t \\lVert p_{t+1} - p_t \\rVert` (``inf`` for a path that ran off to overflow)."""
    with np.errstate(over="ignore"):
        return float(np.hypot(moves[:, 0], moves[:, 1]).sum())


def _above(lr: float, lam: float | None) -> bool | None:
    """Whether ``lr > 2 / lam`` (never when ``lam <= 0``); ``None`` when ``lam`` is unknown."""
    if lam is None:
        return None
    return bool(lam > 0 and lr > 2.0 / lam)


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
