"""``losslens evaluate``: loss and accuracy of one checkpoint, through the evaluator core."""

from __future__ import annotations

import argparse

from losslens.cli._common import (
    add_checkpoint_args,
    add_model_data_args,
    add_split_args,
    checkpoint_metadata,
    data_name,
    load_data,
    model_from_checkpoint,
    write_json,
)
from losslens.core.evaluator import Evaluator
from losslens.core.train import LOSS_NAMES, resolve_loss


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="loss and accuracy of a checkpoint",
        description="Evaluate a checkpoint's loss (and accuracy, for classification) on a data split. "
        "--model and --data default to the ones recorded in a losslens checkpoint.",
    )
    add_checkpoint_args(parser)
    add_model_data_args(parser)
    add_split_args(parser)
    parser.add_argument("--loss", help=f"{' or '.join(LOSS_NAMES)} (default: by the data's task)")
    parser.add_argument("--out", metavar="FILE.json", help="also write the results, with their metadata, here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    meta = checkpoint_metadata(args)
    data = load_data(args, meta)
    model, model_name, model_kwargs = model_from_checkpoint(args, data, meta)
    loss = resolve_loss(args.loss, data)
    metrics = ("accuracy",) if data.task == "classification" else ()
    ev = Evaluator(model, loss, data, device=args.device, metrics=metrics)
    res = ev.evaluate(ev.w0[None])
    values = {"loss": float(res.loss[0])} | {m: float(v[0]) for m, v in res.metrics.items()}
    print(f"{args.checkpoint} on {data.name} {data.split} ({len(data)} samples): "
          + ", ".join(f"{k} {v:.6g}" for k, v in values.items()))
    if args.out:
        write_json(args.out, {
            "format": "losslens-evaluation",
            "checkpoint": str(args.checkpoint),
            "checkpoint_metadata": meta,
            "model": model_name,
            "model_kwargs": model_kwargs,
            "data": data_name(args, meta),
            "split": data.split,
            "subset": args.subset,
            "seed": args.seed,
            **values,
            "evaluator": ev.meta(),
        })
    return 0
