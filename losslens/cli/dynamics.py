"""``losslens dynamics``: per-checkpoint training dynamics of a run, recomputed through the evaluator.

Writes to ``--out``: ``dynamics.csv`` (``kind, step, epoch, loss, loss_improvement, grad_norm,
weight_norm, change_since_previous, change_since_init, lr, sharpness, stability_threshold``),
``dynamics.h5`` and the panel ``dynamics.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from losslens.cli._common import add_landscape_args, default_run, say_written
from losslens.cli._trajectories import runs_evaluator


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "dynamics",
        help="loss, gradient norm, weight movement and sharpness at each checkpoint of a run",
        usage="losslens dynamics [RUN_DIR] [--no-sharpness] [options]",
        description="For each checkpoint of a run (a directory written by losslens train): the loss over the "
        "data, the full-batch gradient norm, the weight norm, the change since the previous checkpoint and since "
        "the initialization, and the top Hessian eigenvalue (a bounded Lanczos run) against the optimizer's edge "
        "of stability (2/lr for gradient descent, 2(1+beta)/lr for momentum, ...). Without RUN_DIR, a small default model is trained into OUT/default-model first.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", nargs="?", help="run directory (default: the default model's run)")
    add_landscape_args(parser, bn=False, both=False)
    parser.add_argument("--sharpness", action=argparse.BooleanOptionalAction, default=None,
                        help="the top Hessian eigenvalue per checkpoint (Lanczos, a bounded number of Hessian-vector "
                        "products): by default computed unless the model and data are too large for the default "
                        "budget (the panel says so); --sharpness forces it, --no-sharpness leaves it out")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from losslens.plot.render import render
    from losslens.trajectories.dynamics import dynamics_of_run

    run_dir = Path(args.run_dir) if args.run_dir else default_run(args).out
    ev = runs_evaluator(args, [run_dir])
    provenance = {"runs": [str(run_dir)]}
    dynamics = dynamics_of_run(run_dir, ev, sharpness=args.sharpness, seed=args.seed, meta=provenance)
    last, limit = dynamics.rows()[-1], dynamics.meta["stability"]
    print(f"{len(dynamics)} checkpoints of {run_dir}; last: loss {last['loss']:.4g}, gradient norm "
          f"{last['grad_norm']:.4g}, change since init {last['change_since_init']:.4g}")
    sharp = f"sharpness {last['sharpness']:.4g}" if dynamics.meta["sharpness"] else "sharpness not computed"
    edge = f"edge of stability {limit['formula']} = {limit['value']:.4g}" if limit["formula"] else limit["note"]
    print(f"  {sharp} ({dynamics.meta['sharpness_note']}); {edge}")
    out = Path(args.out)
    print(f"wrote {dynamics.to_csv(out / 'dynamics.csv')}")
    print(f"wrote {dynamics.save(out / 'dynamics.h5')}")
    say_written(render(dynamics, out, "dynamics"))
    return 0
