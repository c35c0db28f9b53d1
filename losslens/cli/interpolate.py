"""``losslens interpolate``: the loss on the line through two checkpoints, and the barriers between them.

Writes ``OUT/interpolation.h5`` (a 1-D surface, resumable), ``OUT/interpolation.png`` and
``OUT/interpolation.html`` (Goodfellow et al. 2015) and prints the three barriers of
``connectivity.barriers`` (``barrier``, ``barrier_mean``, ``barrier_max``), one line each with its definition,
and the same three of the error ``1 - accuracy`` when there is an accuracy. Without checkpoints: the default
model's initialization and its final weights.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from losslens.cli._common import (
    add_landscape_args, default_run, describe, evaluators, finite_float, int_at_least, say_written,
)
from losslens.errors import ConfigError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "interpolate",
        help="loss along the line between two checkpoints, and its barriers",
        usage="losslens interpolate [A B] [--steps N] [--extrapolate E] [--out DIR] [options]",
        description="Evaluate the loss at w_A + t (w_B - w_A) for t from -E to 1 + E, on the training split by "
        "default, save it to OUT/interpolation.h5 (rerunning resumes it), draw it and print the three barriers "
        "between A and B (barrier, barrier_mean, barrier_max, each with its definition). Without A and B: the initialization and the final checkpoint of the default model "
        "(trained into OUT/default-model).",
    )
    parser.add_argument("endpoints", metavar="A B", nargs="*", help="two checkpoint files (t = 0 and t = 1)")
    add_landscape_args(parser)
    parser.add_argument("--steps", type=int_at_least(2), default=41, help="grid points on the line, at least 2 (default: 41)")
    parser.add_argument("--extrapolate", type=finite_float, default=0.5,
                        help="how far the grid goes beyond each endpoint, in units of |w_B - w_A| (default: 0.5)")
    parser.add_argument("--log", action="store_true", help="draw the loss on a logarithmic scale")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from losslens.core.checkpoints import load_checkpoint
    from losslens.connectivity.barriers import line_barriers
    from losslens.landscape.interpolation import interpolate
    from losslens.plot.render import render

    if len(args.endpoints) not in (0, 2):
        raise ConfigError(f"interpolate takes two checkpoints A B (or none, for the default model), got {len(args.endpoints)}")
    if args.endpoints:
        a, b = args.endpoints
    else:
        run_ = default_run(args)
        a, b = str(run_.checkpoints[0]), str(run_.checkpoints[-1])
    evs = evaluators(args, a)
    for ev in evs:
        print(describe(ev))
    w_b = evs[0].space.flatten(load_checkpoint(b, evs[0].module_at(evs[0].w0), unsafe_pickle=args.unsafe_pickle))
    out = Path(args.out)
    line = interpolate(evs, evs[0].w0, w_b, steps=args.steps, extrapolate=args.extrapolate, names=(a, b),
                       path=out / "interpolation.h5", progress=not args.no_progress, meta={"endpoints": [a, b]})
    print(f"wrote {out / 'interpolation.h5'}")
    ends = [line.loss[line.x == t][0] for t in (0.0, 1.0)]
    print(f"loss {ends[0]:.6g} at A = {a}, {ends[1]:.6g} at B = {b}, distance |B - A| = "
          f"{line.directions.meta['norm']:.6g}")
    _print_barriers(line_barriers(line))
    say_written(render(line, out, "interpolation", log=args.log))
    return 0


def _print_barriers(found: dict) -> None:
    """One line per barrier of the loss, named with its definition, and one of the error's when there is one."""
    from losslens.connectivity.barriers import DEFINITIONS, NAMES

    for name in NAMES:
        print(f"{name} {found[name]:.6g} ({DEFINITIONS[name]})")
    if "error_barrier" in found:
        print("error (1 - accuracy) " + ", ".join(f"{name} {found['error_' + name]:.6g}" for name in NAMES))
