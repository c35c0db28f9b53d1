"""``losslens connect A B``: are two minima connected? The loss along the line and along curves with a trained bend
(Garipov et al. 2018), before and after aligning B's hidden units to A's, with the barriers of each path.

Writes ``OUT/connect.h5`` (a ``connection`` result), ``OUT/connect.json`` (``"paths"``: per path ``path``,
``align``, ``t``, ``loss``, ``accuracy``, ``barrier``, ``barrier_mean``, ``barrier_max`` and ``error_barrier``, ...;
``"alignment"``: per method its ``output_change``), and the figures ``OUT/connect.png``, ``OUT/connect_plane.png``.
A model with BatchNorm is evaluated with statistics re-estimated at every point (``recalibrate``) and its bends
trained with batch statistics. The bend training is checkpointed under ``OUT/connect-training/``: a rerun resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from losslens.cli._common import (
    add_landscape_args, describe, evaluators, finite_float, int_at_least, recipe_of, say_written, write_json,
)
from losslens.connectivity.connect import ALIGN_LABELS, PATHS
from losslens.errors import CheckpointError, ConfigError

PATH_NAMES = tuple(PATHS)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "connect",
        help="are two minima connected? loss and barriers along the line and curves with a trained bend",
        usage="losslens connect A B [--paths line bezier polychain neb] [--align none weights activations] "
              "[--points N] [--out DIR] [options]",
        description="Evaluate the loss and accuracy along paths from checkpoint A (t = 0) to checkpoint B (t = 1): "
        "the line, a quadratic Bezier curve and a polychain whose bend is trained to minimise the mean loss along "
        "it, and the chain of pivots AutoNEB relaxes (neb); with --align, B's hidden units are first permuted to match A's (its function unchanged) and every "
        "path computed again. Writes OUT/connect.h5, OUT/connect.json and the figures; prints the barriers.",
    )
    parser.add_argument("endpoints", metavar="A B", nargs=2, help="two checkpoint files (t = 0 and t = 1)")
    parser.add_argument("--paths", nargs="+", default=["line", "bezier"], choices=PATH_NAMES, metavar="PATH",
                        help=f"the paths, any of {', '.join(PATH_NAMES)} (default: line bezier)")
    parser.add_argument("--align", nargs="+", default=["none"], choices=ALIGN_LABELS, metavar="METHOD",
                        help="B as it is (none) and/or permuted to A by weight or activation matching "
                        "(default: none)")
    parser.add_argument("--points", type=int_at_least(3), default=61,
                        help="values of t along each path, both ends included, at least 3 (default: 61)")
    parser.add_argument("--bend-updates", type=int_at_least(1), default=200,
                        help="optimizer updates of the bend of each curve, and NEB steps per AutoNEB cycle "
                        "(default: 200)")
    parser.add_argument("--lr", type=finite_float, default=0.05,
                        help="learning rate of the bend's optimizer (SGD with momentum 0.9) and NEB's step size "
                        "(default: 0.05)")
    add_landscape_args(parser, bn=False)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from losslens.connectivity.connect import connect_aligned, has_batchnorm
    from losslens.plot.render import render

    a, b = args.endpoints
    evs, trainer = _evaluators(args, a)
    for ev in evs:
        print(describe(ev))
    w_a, w_b = evs[0].w0, _weights_of(evs[0], a, b, args.unsafe_pickle)
    out = Path(args.out)
    # activation matching reads the evaluation inputs; both methods measure B's output change on them
    result = connect_aligned(evs, w_a, w_b, paths=args.paths, align=args.align, points=args.points,
                             steps=args.bend_updates, lr=args.lr, seed=args.seed, train_evaluator=trainer,
                             checkpoint_dir=out / "connect-training", progress=not args.no_progress)
    for method, found in result.alignment.items():
        change = found["output_change"]
        print(f"aligned B to A by {method} matching: B's outputs changed by {change if change is not None else '?'} "
              "(relative)")
    meta = {"endpoints": [a, b], "training_bn": None if trainer is None else trainer.bn,
            "batchnorm": has_batchnorm(evs[0])}
    result = dataclasses.replace(result, meta={**result.meta, **meta})
    print(f"wrote {result.save(out / 'connect.h5')}")
    write_json(out / "connect.json", result.as_json())
    say_written(render(result, out, "connect"))
    for i, p in enumerate(result.paths):
        split = p["splits"][0]
        print(f"{result.label(i)}: barrier {p['barriers'][split]['loss']['barrier']:.6g} on the {split} split "
              f"(max_t L(w(t)) - ((1-t) L(A) + t L(B)))")
    return 0


def _evaluators(args, a: str):
    """The evaluators along the paths (``recalibrate`` for a model with BatchNorm) and the bend training's
    (on the training split; ``batch`` statistics with BatchNorm), ``None`` when no path is trained."""
    from losslens.connectivity.connect import has_batchnorm

    evs = evaluators(args, a)
    if not has_batchnorm(evs[0]):
        trainer = evs[0] if evs[0].meta()["data"].get("split") == "train" else None
        bn = None
    else:
        bn = "recalibrate"
        args = argparse.Namespace(**{**vars(args), "bn": bn})
        evs = evaluators(args, a)
        trainer = None
    if trainer is None and set(args.paths) - {"line"}:
        recipe = dataclasses.replace(recipe_of(args, a).with_split("train"), bn="batch" if bn else "eval")
        trainer = recipe.evaluator(a, unsafe_pickle=args.unsafe_pickle, device=args.device, threads=args.threads)
    return evs, trainer


def _weights_of(ev, a: str, b: str, unsafe_pickle: bool):
    """B's flat weights in A's parameter space; a ConfigError naming both files when they do not fit."""
    from losslens.core.checkpoints import load_checkpoint

    try:
        return ev.space.flatten(load_checkpoint(b, ev.module_at(ev.w0), unsafe_pickle=unsafe_pickle))
    except CheckpointError as err:
        raise ConfigError(f"A ({a}) and B ({b}) are not of one architecture: {err}") from None
