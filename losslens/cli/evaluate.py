"""``losslens evaluate``: loss and accuracy of one checkpoint, through the evaluator core; printed, and
written to ``OUT/evaluation.json`` when ``--out`` is given."""

from __future__ import annotations

import argparse
from pathlib import Path

from losslens.cli._common import (
    add_loss_args, add_model_data_args, add_split_args, add_unsafe_pickle_arg, describe, evaluators, write_json,
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="loss and accuracy of a checkpoint",
        description="Evaluate a checkpoint's loss (and accuracy, for classification) on the train and test "
        "splits (--split). --model and --data default to the built-in ones a losslens checkpoint records.",
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint file (.safetensors, .pt, .pth, .ckpt)")
    add_unsafe_pickle_arg(parser)
    add_model_data_args(parser)
    add_split_args(parser, default="both")
    add_loss_args(parser)
    parser.add_argument("--out", metavar="DIR",
                        help="output directory: also write the results, with their provenance, to DIR/evaluation.json "
                        "(default: none, only printed)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    results = {}
    for ev in evaluators(args, args.checkpoint):
        print(describe(ev))
        res = ev.evaluate(ev.w0)
        values = {"loss": float(res.loss[0])} | {m: float(v[0]) for m, v in res.metrics.items()}
        print(f"  {ev.data.split}: " + ", ".join(f"{k} {v:.6g}" for k, v in values.items()))
        results[ev.data.split] = values | {"evaluator": ev.meta()}
    if args.out:
        write_json(Path(args.out) / "evaluation.json", {"format": "losslens-evaluation", "checkpoint": str(args.checkpoint), "seed": args.seed,
                              "results": results})
    return 0
