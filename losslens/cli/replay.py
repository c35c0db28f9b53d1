"""``losslens replay``: optimizers side by side on a test function, a fitted surface, a measured grid or
the true loss in a plane of weight space.

Writes ``OUT/paths.csv`` (columns ``optimizer, step, x, y, loss, grad_norm, lr``; step 0 is the start,
step t the point after t updates), ``OUT/summary.csv`` (one row per optimizer: final loss, steps to the
tolerance, path length, oscillation, the learning rate against 2/lambda_max), ``OUT/replay.h5`` (the
``Replay``), ``OUT/replay_paths.png``, ``OUT/replay_convergence.png`` and ``OUT/replay.html`` (the
paths animated). On a fit the values are the fit's, not the model's loss: the columns, the printout and the
pictures call them ``fitted loss`` (``fitted_loss``, ``final_fitted_loss``).

What is descended: ``--function NAME`` (a test function); a FILE that is a fit (``losslens fit``'s
``fit.h5``: the fitted function); a FILE that is a surface (its bicubic grid interpolant, which a path
may not leave; or, with ``--fit MODEL``, a fit of it); ``--true-loss [CHECKPOINT]`` (the model's own loss
:math:`L(w_0 + x d_1 + y d_2)` on the plane through the checkpoint, default the default model's, along
``--dirs``: unit Hessian eigenvectors, so coordinates are distances in weight space, or filter-normalized
random directions; every step evaluates all the optimizers' points in one batched call of the evaluator;
the plane's loss on a ``--steps`` x ``--steps`` grid over ``--range`` is computed first into
``OUT/true_plane.h5``, resumably, and drawn behind the paths, which may leave it); with none of these,
the ``quadratic`` of condition number ``--condition`` (default 10).

Learning rates: ``--lr 0.1`` sets every optimizer's; ``--lr sgd=0.1,adam=0.01`` sets them by name, and a
bare number among them (``--lr 0.05,adam=0.01``) those not named; unset ones get ``DEFAULT_LR``.
Options: ``--option adam.betas=[0.9,0.99]`` (NAME.KEY=VALUE, VALUE in JSON; repeatable). Each optimizer
makes ``--updates`` updates; ``--steps`` is, as in the other commands, grid points per axis. A default
optimizer whose package is missing (lion without pytorch-optimizer) is left out with a warning.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from losslens.cli._common import (
    DEFAULT_SUBSET, add_landscape_args, checked_range, finite_float, int_at_least, say_written,
)
from losslens.errors import ConfigError
from losslens.landscape.fit import MODELS
from losslens.landscape.functions import FUNCTIONS
from losslens.trajectories.replay import SCHEDULES

DEFAULT_OPTIMIZERS = ("sgd", "momentum", "adam", "lion")  # lion only where pytorch-optimizer is installed
DEFAULT_LR = 0.05
DEFAULT_FUNCTION = "quadratic"
TRUE_LOSS_DIRS: tuple[str, ...] = ("hessian", "random")
DEFAULT_RANGES = {"hessian": (-2.0, 2.0), "random": (-1.0, 1.0)}  # the book's plane; Li et al.'s
DEFAULT_GRID = 41
DEFAULT_CHECKPOINT = ""  # --true-loss without a file: the default model


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="replay optimizers on a test function, a fitted surface, a measured grid or the true loss in a plane",
        usage="losslens replay [FILE.h5 | --function NAME | --true-loss [CHECKPOINT]] "
        "[--optimizers sgd,momentum,adam,lion] [--updates N] [--lr SPEC] [--start X Y] [options]",
        description="Run several optimizers side by side from one start point, one batched evaluation per step, and "
        "record their paths (x, y, loss, gradient norm, learning rate). FILE.h5 is a fit (losslens fit) or a surface "
        "(its bicubic interpolant, or a fit of it with --fit). --true-loss descends the model's own loss on the plane "
        "of --dirs through CHECKPOINT (default: the default model), computing that plane's grid first into "
        "OUT/true_plane.h5 for the picture. Without FILE, --function or --true-loss: the quadratic "
        "(x^2 + kappa y^2)/2 with kappa = --condition.",
    )
    parser.add_argument("file", metavar="FILE.h5", nargs="?", help="a fit file or a surface file")
    parser.add_argument("--function", choices=tuple(FUNCTIONS), metavar="NAME",
                        help=f"a test function: {', '.join(FUNCTIONS)}")
    parser.add_argument("--condition", type=finite_float, metavar="KAPPA",
                        help="the quadratic's condition number (default: 10)")
    parser.add_argument("--fit", choices=MODELS, metavar="MODEL",
                        help=f"replay on a fit of the surface FILE instead of its grid: {', '.join(MODELS)}")
    parser.add_argument("--true-loss", nargs="?", const=DEFAULT_CHECKPOINT, metavar="CHECKPOINT",
                        help="replay on the model's own loss in a plane through CHECKPOINT (.safetensors, .pt, ...; "
                        "without it, the default model, trained into OUT/default-model first)")
    parser.add_argument("--dirs", choices=TRUE_LOSS_DIRS,
                        help="--true-loss: the plane's directions, hessian (the top two eigenvectors, unit norm: "
                        "coordinates are distances in weight space) or random (filter-normalized) (default: hessian)")
    parser.add_argument("--range", nargs=2, type=finite_float, metavar=("A", "B"),
                        help="coordinates along both directions of the grid drawn behind the paths, [A, B]^2 (--true-loss; "
                        "default: -2 2 for "
                        "hessian directions, -1 1 for random ones); the paths may leave it")
    parser.add_argument("--steps", type=int_at_least(4), metavar="N",
                        help=f"grid points per axis of that grid (--true-loss) (default: {DEFAULT_GRID})")
    parser.add_argument("--optimizers", metavar="LIST",
                        help="comma-separated names: presets (sgd, momentum, nesterov, book-momentum), torch.optim "
                        "classes (adam, rmsprop, ...), pytorch-optimizer's (lion, sophiah, soap, ...) "
                        f"(default: {','.join(DEFAULT_OPTIMIZERS)})")
    parser.add_argument("--lr", default=str(DEFAULT_LR), metavar="SPEC",
                        help=f"learning rate of all (0.1), or by name (sgd=0.1,adam=0.01), a bare number setting the "
                        f"unnamed ones (default: {DEFAULT_LR})")
    parser.add_argument("--option", action="append", default=[], metavar="NAME.KEY=VALUE",
                        help="an optimizer option, VALUE in JSON (--option momentum.momentum=0.8); repeatable")
    parser.add_argument("--updates", type=int_at_least(1), default=200, metavar="N",
                        help="updates per optimizer (default: 200)")
    parser.add_argument("--start", nargs=2, type=finite_float, metavar=("X", "Y"),
                        help="start point (default: the function's, or halfway to the grid's upper-left corner)")
    parser.add_argument("--schedule", default="constant", choices=SCHEDULES, help="learning-rate schedule")
    parser.add_argument("--warmup", type=int_at_least(0), default=0, metavar="N", help="steps of linear warmup")
    parser.add_argument("--step-size", type=int_at_least(1), metavar="N", help="period of --schedule step")
    parser.add_argument("--gamma", type=finite_float, default=0.1, help="factor of --schedule step (default: 0.1)")
    parser.add_argument("--clip", type=finite_float, metavar="C", help="clip each gradient's norm at C")
    parser.add_argument("--noise", type=finite_float, default=0.0, metavar="SIGMA",
                        help="scale of Gaussian gradient noise (default: 0)")
    parser.add_argument("--tol", type=finite_float, default=1e-3, help="loss tolerance of steps-to-tolerance (default: 1e-3)")
    add_landscape_args(parser, both=False)  # --seed also seeds the noise and random optimizers
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from losslens.plot.render import render
    from losslens.trajectories.replay import replay

    objective = _objective(args)
    names = _optimizers(args.optimizers)
    result = replay(objective, names, lr=parse_lr(args.lr, names), start=args.start, steps=args.updates,
                    options=parse_options(args.option, names), schedule=args.schedule, warmup=args.warmup,
                    step_size=args.step_size, gamma=args.gamma, clip=args.clip, noise=args.noise, seed=args.seed,
                    tol=args.tol)
    print(result.summary())
    out = Path(args.out)
    for table, name in (("paths", "paths.csv"), ("summary", "summary.csv")):
        print(f"wrote {result.to_csv(out / name, table)}")
    print(f"wrote {result.save(out / 'replay.h5')}")
    say_written(render(result, out, "replay"))
    return 0


def _objective(args: argparse.Namespace):
    from losslens.trajectories.objectives import fit_objective, function_objective, grid_objective

    given = [what for what, value in (("a FILE", args.file), ("--function", args.function),
                                      ("--true-loss", args.true_loss is not None)) if value]
    if len(given) > 1:
        raise ConfigError(f"give one of a FILE, --function or --true-loss, not {' and '.join(given)}")
    if args.fit and not args.file:
        raise ConfigError("--fit fits the surface FILE; there is no FILE")
    if args.true_loss is not None:
        return _true_loss(args)
    _refuse_true_loss_flags(args)
    name = args.function or (None if args.file else DEFAULT_FUNCTION)
    if args.condition is not None and name != "quadratic":
        raise ConfigError(f"--condition is the quadratic's condition number; it does not apply to "
                          f"{name or 'a file'}")
    if name:
        return function_objective(name, **({"kappa": args.condition} if args.condition is not None else {}))
    from losslens._vet import open_h5

    with open_h5(Path(args.file)) as f:
        kind = f.attrs.get("losslens_kind")
    if kind == "fit":
        from losslens.landscape.fit import SurfaceFit

        if args.fit:
            raise ConfigError(f"{args.file} is already a fit; --fit applies to a surface file")
        return fit_objective(SurfaceFit.load(args.file))
    from losslens.cli._common import load_surface

    surface = load_surface(args.file)
    if args.fit:
        from losslens.landscape.fit import fit_surface

        fit = fit_surface(surface, args.fit)
        print(fit.summary())
        return fit_objective(fit)
    return grid_objective(surface)


def _true_loss(args: argparse.Namespace):
    """The true loss in the plane of ``--dirs`` through the checkpoint, with its grid computed (or resumed)
    into ``OUT/true_plane.h5``."""
    import numpy as np

    from losslens.cli._common import default_run, describe, evaluators
    from losslens.landscape.grid_file import points_done
    from losslens.landscape.surface import surface_2d
    from losslens.trajectories.objectives import PlaneLoss

    if args.condition is not None:
        raise ConfigError("--condition is the quadratic's condition number; it does not apply to --true-loss")
    if args.bn == "recalibrate":
        raise ConfigError("--bn recalibrate re-estimates the statistics at every point, which has no gradient; "
                          "the true loss needs --bn eval or --bn batch")
    kind = args.dirs or "hessian"
    lo, hi = checked_range(args.range or DEFAULT_RANGES[kind], "--range")
    n = args.steps or DEFAULT_GRID
    checkpoint = args.true_loss or str(default_run(args).checkpoints[-1])
    (ev,) = evaluators(args, checkpoint)
    print(describe(ev))
    path = Path(args.out) / "true_plane.h5"
    directions = _directions(path, ev, kind, args.seed)
    print(f"the true loss in the plane of {kind} directions; the picture's grid, {n} x {n} points on "
          f"[{lo:g}, {hi:g}]^2, into {path}")
    x = np.linspace(lo, hi, n)
    before = points_done(path)
    surface = surface_2d(ev, ev.w0, directions, x, x, path=path, progress=not args.no_progress)
    print(f"nothing to compute: {path} already holds all {n * n} points" if before == n * n else
          f"wrote {path}" + (f" (resumed: {before} of {n * n} points were already computed)" if before else ""))
    return PlaneLoss(ev, surface=surface)


def _plane_directions(ev, kind: str, seed: int):
    from losslens.landscape.directions import hessian_directions, random_directions

    if kind == "hessian":
        return hessian_directions(ev, k=2, seed=seed)
    return random_directions(ev.space, ev.w0, 2, normalization="filter", seed=seed)


def _directions(path: Path, ev, kind: str, seed: int):
    """The plane's directions: those of the grid an earlier run left at ``path`` when their request (the
    call ``_plane_directions(ev, kind, seed)``, kept in their metadata) answers this one, so that a rerun
    resumes the grid with them rather than recomputing them (the reuse rule, ``core.reuse``); else new ones,
    their request in their metadata. ``surface_2d`` checks the rest (the grid) and refuses a file of
    another grid."""
    from losslens.core import reuse
    from losslens.errors import LosslensError
    from losslens.landscape.directions import Directions
    from losslens.landscape.surface import Surface

    asked = reuse.request(_plane_directions, ev, kind, seed)
    try:
        stored = Surface.load(path).directions if path.exists() else None
    except LosslensError:
        stored = None
    if stored is not None and reuse.answers(stored.meta.get("request"), asked):
        return stored
    made = _plane_directions(ev, kind, seed)
    return Directions(made.vectors, made.kind, {**made.meta, "request": asked})


def _refuse_true_loss_flags(args: argparse.Namespace) -> None:
    """Flags of the true loss (its plane, model and data) would be ignored without --true-loss."""
    given = {"--dirs": args.dirs, "--range": args.range, "--steps": args.steps, "--model": args.model,
             "--model-arg": args.model_arg, "--data": args.data, "--unsafe-pickle": args.unsafe_pickle,
             "--split": args.split != "train", "--subset": args.subset != DEFAULT_SUBSET, "--bn": args.bn != "eval",
             "--device": args.device != "auto", "--threads": args.threads != "auto"}
    flags = [flag for flag, value in given.items() if value]
    if flags:
        raise ConfigError(f"{', '.join(flags)} appl{'ies' if len(flags) == 1 else 'y'} to --true-loss only")


def _optimizers(text: str | None) -> list[str]:
    from losslens.core.optimizers import installed

    if text is None:
        return installed(DEFAULT_OPTIMIZERS)
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"--optimizers lists no optimizer: {text!r}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"--optimizers lists {', '.join(repeated)} twice")
    return names


def parse_lr(text: str, names: list[str]) -> dict[str, float]:
    """``{name: lr}`` from ``"0.1"``, ``"sgd=0.1,adam=0.01"`` or ``"0.05,adam=0.01"`` (see the module doc).

    Raises:
        ConfigError: a value that is not a positive number, a name not among ``names``, or two bare numbers.
    """
    default, named = DEFAULT_LR, {}
    bare = 0
    for item in (i.strip() for i in text.split(",")):
        key, sep, value = item.rpartition("=")
        number = _positive(value, f"--lr {item!r}")
        if not sep:
            bare += 1
            default = number
        elif key not in names:
            raise ConfigError(f"--lr names {key!r}, which is not among the optimizers ({', '.join(names)})")
        else:
            named[key] = number
    if bare > 1:
        raise ConfigError(f"--lr has more than one rate for all optimizers: {text!r}")
    return {n: named.get(n, default) for n in names}


def parse_options(items: list[str], names: list[str]) -> dict[str, dict]:
    """``{name: {key: value}}`` from ``["adam.betas=[0.9,0.99]", ...]`` (values in JSON, else strings).

    Raises:
        ConfigError: an item without ``NAME.KEY=VALUE``, or a name not among ``names``.
    """
    out: dict[str, dict] = {}
    for item in items:
        target, sep, value = item.partition("=")
        name, dot, key = target.partition(".")
        if not (sep and dot and name and key):
            raise ConfigError(f"--option expects NAME.KEY=VALUE, got {item!r}")
        if name not in names:
            raise ConfigError(f"--option names {name!r}, which is not among the optimizers ({', '.join(names)})")
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        out.setdefault(name, {})[key] = parsed
    return out


def _positive(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{what}: expected a positive number, got {text!r}")
    return value
