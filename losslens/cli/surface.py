"""``losslens surface``: the loss on a plane (or a line) through a checkpoint, saved and drawn.

Computes ``OUT/surface.h5`` (resumable: running the same command again finishes an interrupted
grid, or finds nothing left to compute), then draws ``OUT/surface_contour.png`` and
``OUT/surface_3d.png`` (a plane) or ``OUT/surface_1d.png`` (a line), and ``OUT/surface.html``.

The grid can be shared among processes with torchrun; only rank 0 writes files and prints::

    torchrun --nproc_per_node=4 --no-python losslens surface model.safetensors --out big
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from losslens.cli._common import (
    add_default_checkpoint_arg, add_landscape_args, checked_range, default_run, describe, evaluators, finite_float,
    int_at_least,
    is_main_process, say_written, set_distributed_run,
)
from losslens.errors import ConfigError
from losslens.landscape.directions import IGNORES, NORMALIZATIONS

DIRECTION_KINDS: tuple[str, ...] = ("random", "hessian", "pca")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "surface",
        help="loss surface on a plane (or line) through a checkpoint",
        usage="losslens surface [CHECKPOINT] [--dirs random|hessian|pca] [--range A B] [--steps N] [--1d] [options]",
        description="Evaluate the loss on the grid w0 + x d1 + y d2 around a checkpoint (Li et al. 2018), on the "
        "training split by default, save it to OUT/surface.h5 (rerunning resumes it) and draw it. Without a "
        "CHECKPOINT, a small default model is trained into OUT/default-model first. Under torchrun the grid is "
        "shared among the processes: torchrun --nproc_per_node=N --no-python losslens surface ...",
    )
    add_default_checkpoint_arg(parser)
    add_landscape_args(parser)
    add_plane_args(parser, steps=41)
    parser.add_argument("--1d", dest="one_d", action="store_true", help="a line along one direction instead of a plane")
    parser.add_argument("--log", action="store_true", help="draw the loss on a logarithmic scale")
    set_distributed_run(parser, _run)


def add_plane_args(parser, steps: int) -> None:
    """The flags of a grid on a plane (directions, ranges, grid points), shared by ``surface`` and
    ``curvature-map``; ``steps`` is the default number of grid points per axis."""
    parser.add_argument("--dirs", default="random", choices=DIRECTION_KINDS,
                        help="random (filter-normalized Gaussian), hessian (top eigenvectors) or pca (of a "
                        "trajectory, --checkpoints); hessian and pca directions have unit norm, so their --range is a "
                        "distance in weight space (default: random)")
    parser.add_argument("--range", nargs=2, type=finite_float, default=(-1.0, 1.0), metavar=("A", "B"),
                        help="coordinates along the first direction, A < B (default: -1 1)")
    parser.add_argument("--yrange", nargs=2, type=finite_float, metavar=("A", "B"), help="along the second (default: --range)")
    parser.add_argument("--steps", type=int_at_least(2), default=steps, help=f"grid points along x (default: {steps})")
    parser.add_argument("--ysteps", type=int_at_least(2), metavar="N", help="grid points along y (default: --steps)")
    parser.add_argument("--norm", choices=NORMALIZATIONS, help="normalization of random directions (default: filter)")
    parser.add_argument("--ignore", choices=IGNORES,
                        help="biasbn: random directions leave biases and BatchNorm parameters alone (default: biasbn)")
    parser.add_argument("--checkpoints", nargs="+", metavar="FILE",
                        help="the trajectory for --dirs pca, in training order (default: the default model's run)")


def _run(args: argparse.Namespace) -> int:
    from losslens.landscape.grid_file import points_done
    from losslens.landscape.surface import surface_1d, surface_2d
    from losslens.plot.render import render

    main = is_main_process()
    _check_combinations(args)
    x = np.linspace(*checked_range(args.range, "--range"), args.steps)
    y = None if args.one_d else np.linspace(*checked_range(args.yrange or args.range, "--yrange"),
                                            args.ysteps or args.steps)
    trajectory = args.checkpoints
    checkpoint = args.checkpoint
    if checkpoint is None:
        run_ = default_run(args)
        checkpoint = str(run_.checkpoints[-1])
        trajectory = trajectory or [str(p) for p in run_.checkpoints]
    evs = evaluators(args, checkpoint)
    if main:
        for ev in evs:
            print(describe(ev))
    directions = _directions(args, evs[0], 1 if args.one_d else 2, trajectory)

    out = Path(args.out)
    path = out / "surface.h5"
    before = points_done(path) if main else 0
    progress = not args.no_progress
    if args.one_d:
        surface = surface_1d(evs, evs[0].w0, directions, x, path=path, progress=progress)
    else:
        surface = surface_2d(evs, evs[0].w0, directions, x, y, path=path, progress=progress)
    if not main:
        return 0
    n = surface.meta["n_points"]
    if before == n:
        print(f"nothing to compute: {path} already holds all {n} points")
    else:
        print(f"wrote {path}" + (f" (resumed: {before} of {n} points were already computed)" if before else ""))
    print(_summary(surface))
    say_written(render(surface, out, "surface", log=args.log))
    return 0


def _summary(surface) -> str:
    """The loss at the origin when the grid holds it, the lowest and highest, the time."""
    origin = surface.origin_index
    where = f"loss at the origin {surface.loss[origin]:.6g}, " if origin is not None else \
        "the grid does not hold the origin w0; "
    finite = surface.loss[np.isfinite(surface.loss)]
    span = f"lowest {finite.min():.6g}, highest {finite.max():.6g}" if finite.size else "no finite loss"
    bad = surface.meta["n_nonfinite"]
    return (f"{where}{span} ({surface.meta['n_points']} points, {surface.meta['seconds']:.1f} s"
            + (f"; {bad} points diverged to NaN/inf" if bad else "") + ")")


def _check_combinations(args: argparse.Namespace) -> None:
    """Refuse flags that would be ignored with the others given."""
    unused = {
        "--checkpoints": args.checkpoints and args.dirs != "pca",
        "--norm": args.norm and args.dirs != "random",
        "--ignore": args.ignore and args.dirs != "random",
    }
    for flag, ignored in unused.items():
        if ignored:
            raise ConfigError(f"{flag} applies only to --dirs {'pca' if flag == '--checkpoints' else 'random'}, "
                              f"not to --dirs {args.dirs}")
    if args.one_d and (args.yrange or args.ysteps):
        raise ConfigError("--yrange and --ysteps describe the second axis of a plane; a --1d line has none")


def _directions(args: argparse.Namespace, ev, n: int, trajectory: list[str] | None):
    from losslens.landscape.directions import hessian_directions, random_directions
    from losslens.trajectories import CheckpointSeries, pca_directions

    if args.dirs == "random":
        return random_directions(ev.space, ev.w0, n, normalization=args.norm or "filter",
                                 ignore=args.ignore or "biasbn", seed=args.seed)
    if args.dirs == "hessian":
        return hessian_directions(ev, k=n, seed=args.seed)
    if not trajectory:
        raise ConfigError("--dirs pca needs the training trajectory: --checkpoints FILE FILE ...")
    series = CheckpointSeries.from_paths(trajectory, ev.module_at(ev.w0), order="given", space=ev.space,
                                         unsafe_pickle=args.unsafe_pickle)
    return pca_directions(series, n)
