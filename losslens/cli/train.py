"""``losslens train``: train a model and save its trajectory (checkpoints and run.json)."""

from __future__ import annotations

import argparse
import signal
import sys

from losslens.cli._common import (
    DEFAULT_DATA, DEFAULT_MODEL, add_model_data_args, finite_float, int_at_least, parse_key_values,
)
from losslens.cli._signals import EXIT_STATUS, Terminated, stop_message
from losslens.core.losses import TRAINING_LOSSES
from losslens.core.train import DYNAMICS_FILE, RUN_FILE
from losslens.trajectories.training import DYNAMICS_CSV, train_with_dynamics


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model, saving seeded checkpoints and run.json",
        description="Train a model with any torch.optim optimizer; saves step_*.safetensors checkpoints "
        "(the initialization, every epoch, every --save-every-steps steps) and run.json to --out.",
    )
    add_model_data_args(parser)
    parser.add_argument("--optimizer", default="adam", help="any torch.optim optimizer, any case (default: adam)")
    parser.add_argument("--lr", type=finite_float, default=1e-3, help="learning rate (default: 1e-3)")
    parser.add_argument(
        "--optimizer-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="optimizer option, VALUE in JSON (--optimizer-arg momentum=0.9); repeatable",
    )
    parser.add_argument("--weight-decay", type=finite_float, default=0.0, help="weight decay (default: 0)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs, passes over the training set (default: 10)")
    parser.add_argument("--batch-size", type=int, default=64, help="samples per step (default: 64)")
    parser.add_argument("--loss", help=f"{' or '.join(TRAINING_LOSSES)} (default: by the data's task)")
    parser.add_argument("--out", required=True, metavar="DIR", help="run directory to write (required: a run is a "
                        "directory of its own)")
    parser.add_argument("--save-every-steps", type=int, metavar="N", help="also save a checkpoint every N steps")
    parser.add_argument("--dynamics-every", type=int_at_least(1), metavar="N",
                        help="record the training dynamics every N steps (default: the last step of each epoch); "
                        "written to dynamics.csv and dynamics.h5")
    parser.add_argument("--sharpness-samples", type=int_at_least(1), metavar="N",
                        help="also record the top Hessian eigenvalue on N training samples against 2/lr")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        result = _train(args)
    except KeyboardInterrupt as stop:  # a run does not resume: say so, not main's "rerun to resume"
        signum = signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT
        print(stop_message(signum, f"training does not resume: the incomplete run in {args.out} is kept; rerun "
                                   "with --overwrite to train from the start"), file=sys.stderr)
        return EXIT_STATUS[signum]
    last = result.history[-1]
    scores = ", ".join(f"{k} {v:.4f}" for k, v in last.items() if k not in ("epoch", "step"))
    print(f"epoch {last['epoch']}: {scores}")
    print(f"wrote {len(result.checkpoints)} checkpoints to {result.out}: "
          f"{result.checkpoints[0].name} ... {result.checkpoints[-1].name}")
    print(f"wrote {result.out / RUN_FILE}")
    print(f"wrote {result.out / DYNAMICS_CSV} and {result.out / DYNAMICS_FILE}")
    return 0


def _train(args: argparse.Namespace):
    return train_with_dynamics(
        args.model or DEFAULT_MODEL,
        args.data or DEFAULT_DATA,
        optimizer=args.optimizer,
        lr=args.lr,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        out=args.out,
        save_every_steps=args.save_every_steps,
        optimizer_kwargs=parse_key_values(args.optimizer_arg, "--optimizer-arg"),
        loss=args.loss,
        weight_decay=args.weight_decay,
        model_kwargs=parse_key_values(args.model_arg, "--model-arg"),
        device=args.device,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        dynamics_every_steps=args.dynamics_every,
        sharpness_samples=args.sharpness_samples,
    )
