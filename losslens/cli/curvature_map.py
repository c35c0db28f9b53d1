"""``losslens curvature-map``: the Hessian's extreme eigenvalues over a plane (the reference tool's
``plot_hessian_eigen.py``), saved and drawn.

Computes ``OUT/curvature_map.h5`` (resumable: running the same command again finishes an interrupted
map), then draws ``OUT/curvature_map_ratio.png`` (:math:`|\\lambda_{min}/\\lambda_{max}|`, the convexity
map), ``OUT/curvature_map_max_eigenvalue.png`` and ``OUT/curvature_map_min_eigenvalue.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from losslens.cli._common import (
    add_default_checkpoint_arg, add_landscape_args, checked_range, default_run, describe, evaluators, finite_float,
    int_at_least, say_written,
)
from losslens.cli.surface import _check_combinations, _directions, add_plane_args

FILE = "curvature_map.h5"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "curvature-map",
        help="the Hessian's min/max eigenvalue ratio over a plane (convexity map)",
        usage="losslens curvature-map [CHECKPOINT] [--dirs random|hessian|pca] [--range A B] [--steps N] "
        "[--maxiter M] [--lanczos-tol T] [options]",
        description="At every point of the plane w0 + x d1 + y d2 around a checkpoint, the largest and the smallest "
        "eigenvalue of the Hessian of the loss (Lanczos on Hessian-vector products) and |lambda_min / lambda_max|, "
        "small where the loss is locally convex (Li et al. 2018, the reference tool's plot_hessian_eigen.py). Saved "
        f"to OUT/{FILE} (rerunning resumes it) and drawn as filled contours. Each point costs two Lanczos runs: "
        "keep the grid small.",
    )
    add_default_checkpoint_arg(parser)
    add_landscape_args(parser, both=False)
    add_plane_args(parser, steps=11)
    parser.add_argument("--maxiter", type=int_at_least(1), default=100, metavar="M",
                        help="Lanczos restarts per eigenvalue at most, which bounds the cost of a point (default: 100)")
    parser.add_argument("--lanczos-tol", type=finite_float, default=1e-4, metavar="T",
                        help="Lanczos' relative accuracy of each eigenvalue (default: 1e-4)")
    parser.set_defaults(func=run, one_d=False)


def run(args: argparse.Namespace) -> int:
    from losslens.errors import ConfigError
    from losslens.landscape.curvature import curvature_map
    from losslens.plot.render import render

    _check_combinations(args)
    if not args.lanczos_tol >= 0:
        raise ConfigError(f"--lanczos-tol must be >= 0, got {args.lanczos_tol}")
    x = np.linspace(*checked_range(args.range, "--range"), args.steps)
    y = np.linspace(*checked_range(args.yrange or args.range, "--yrange"), args.ysteps or args.steps)
    trajectory = args.checkpoints
    checkpoint = args.checkpoint
    if checkpoint is None:
        run_ = default_run(args)
        checkpoint = str(run_.checkpoints[-1])
        trajectory = trajectory or [str(p) for p in run_.checkpoints]
    (ev,) = evaluators(args, checkpoint)
    print(describe(ev))
    directions = _directions(args, ev, 2, trajectory)
    out = Path(args.out)
    result = curvature_map(ev, ev.w0, directions, x, y, path=out / FILE, tol=args.lanczos_tol, maxiter=args.maxiter,
                           seed=args.seed, progress=not args.no_progress)
    print(f"wrote {out / FILE}")
    print(_summary(result))
    say_written(render(result, out, "curvature_map"))
    return 0


def _summary(result) -> str:
    """The eigenvalues at the origin when the grid holds it, and the range of the ratio."""
    origin = result.origin_index
    at = "" if origin is None else (f"at the origin lambda_max {result.max_eigenvalue[origin]:.6g}, "
                                    f"lambda_min {result.min_eigenvalue[origin]:.6g}; ")
    ratio = result.eigenvalue_ratio[np.isfinite(result.eigenvalue_ratio)]
    span = f"|lambda_min / lambda_max| from {ratio.min():.4g} to {ratio.max():.4g}" if ratio.size else "no finite ratio"
    return f"{at}{span} ({result.meta['n_points']} points, {result.meta['seconds']:.1f} s)"
