"""``losslens compare``: optimizers trained from one seeded initialization, on one joint PCA plane.

Trains each optimizer (default: sgd, momentum, nesterov, adam, adamw, rmsprop, adagrad, and lion when
pytorch-optimizer is installed) into ``OUT/runs/NAME`` (finished runs of the same recipe are reused),
or takes the given run directories, then writes to ``--out``: ``comparison.csv`` (one row per optimizer:
``optimizer, final_train_loss, final_test_loss, final_train_acc, final_test_acc, path_length,
distance_from_init, max_rel_residual, n_untrusted, n_checkpoints, epochs, lr, run``), ``paths.csv``
(one row per checkpoint, the initializations included), ``comparison.h5``, ``comparison_surface.h5``
(the loss over the plane), ``comparison.png``, ``comparison_losses.png``, ``comparison_final_losses.png``
and ``comparison.html`` (the figures of ``losslens.plot.render``), and the matrix of line barriers between the
runs' final checkpoints, before and after weight matching (``losslens.trajectories.run_barriers``):
``barriers.csv`` (header ``alignment, barrier, run, <runs>``: one row per matrix and run), ``barriers.h5`` and
the heat maps ``barriers.png``.

Under torchrun, each process trains every W-th optimizer and the plane's grid is shared::

    torchrun --nproc_per_node=4 --no-python losslens compare
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from losslens.cli._common import (
    DEFAULT_DATA, DEFAULT_MODEL, add_landscape_args, int_at_least, is_main_process, parse_key_values,
    say_written, set_distributed_run,
)
from losslens.cli._trajectories import add_plane_args, plane, runs_evaluator, summary, write_paths
from losslens.errors import ConfigError
from losslens.trajectories.optimizer_comparison import COMPARISON_COLUMNS, DEFAULT_LRS

DEFAULT_EPOCHS = 10


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare optimizers on one joint PCA plane (trains them, or takes run directories)",
        usage="losslens compare [RUN_DIR ...] [--optimizers NAME ...] [--lr NAME=VALUE ...] [--epochs N] [options]",
        description="Train each optimizer from the same seeded initialization on the same data (or take finished "
        "runs), draw all paths on their joint PCA plane over one contour, and write a table per optimizer. "
        "Under torchrun each process trains every W-th optimizer.",
    )
    parser.add_argument("runs", metavar="RUN_DIR", nargs="*", help="finished run directories to compare instead")
    add_landscape_args(parser, both=False)
    add_plane_args(parser)
    parser.add_argument("--optimizers", nargs="+", metavar="NAME",
                        help="optimizers to train, separated by spaces or commas (as in replay): presets (sgd, momentum, nesterov, book-momentum), any torch.optim "
                        "class, pytorch-optimizer names (default: sgd momentum nesterov adam adamw rmsprop adagrad, "
                        "and lion when pytorch-optimizer is installed)")
    parser.add_argument("--lr", nargs="+", action="extend", default=[], metavar="NAME=VALUE",
                        help="learning rates by optimizer, separated by spaces or commas (defaults for digits: "
                        + ", ".join(f"{k}={v:g}" for k, v in DEFAULT_LRS.items()) + ")")
    parser.add_argument("--epochs", type=int_at_least(1), help=f"epochs of each run (default: {DEFAULT_EPOCHS})")
    parser.add_argument("--batch-size", type=int_at_least(1), default=64, help="samples per step (default: 64)")
    set_distributed_run(parser, _run)


def _run(args: argparse.Namespace) -> int:
    from losslens.trajectories.optimizer_comparison import compare_runs, train_optimizers

    main = is_main_process()
    out = Path(args.out)
    if args.runs:
        given = [flag for flag, value in (("--optimizers", args.optimizers), ("--lr", args.lr),
                                          ("--epochs", args.epochs)) if value]
        if given:
            raise ConfigError(f"{', '.join(given)} describe runs to train; with RUN_DIRs the runs are given")
        run_dirs = [Path(r) for r in args.runs]
    else:
        lrs = {k: _float(k, v) for k, v in parse_key_values(listed(args.lr), "--lr").items()}
        run_dirs, _ = train_optimizers(  # a skipped optimizer is said once, as a warning
            args.optimizers and listed(args.optimizers), out=out, lrs=lrs, model=args.model or DEFAULT_MODEL, data=args.data or DEFAULT_DATA,
            epochs=args.epochs or DEFAULT_EPOCHS, batch_size=args.batch_size, seed=args.seed,
            model_kwargs=parse_key_values(args.model_arg, "--model-arg"), device=args.device,
            progress=not args.no_progress)
    ev = runs_evaluator(args, run_dirs)
    provenance = {"runs": [str(d) for d in run_dirs]}
    surface_path = out / "comparison_surface.h5"
    comparison, surface = plane(
        lambda: compare_runs(run_dirs, ev, origin=0, threshold=args.threshold, steps=args.steps, margin=args.margin,
                             surface_path=surface_path, progress=not args.no_progress, meta=provenance),
        surface_path)
    if not main:
        return 0
    print(summary(comparison.paths))
    print(format_table(comparison.table))
    print(f"wrote {comparison.to_csv(out / 'comparison.csv')}")
    print(f"wrote {comparison.save(out / 'comparison.h5')}")
    print(f"wrote {surface_path}")
    write_paths(comparison, surface, out, "comparison", log=args.log)
    _barriers(run_dirs, ev, out)
    return 0


def _barriers(run_dirs: list[Path], evaluator, out: Path) -> None:
    """The barrier matrices of the runs' final checkpoints: printed, and written as ``barriers.*``."""
    from losslens.plot.render import render
    from losslens.trajectories.run_barriers import run_barriers, write_barriers_csv

    matrix = run_barriers(run_dirs, evaluator)
    print(f"line barriers between the final checkpoints ({matrix.meta['definition']}):")
    width = max(len(label) for label in matrix.labels)
    for how, values in matrix.matrices().items():
        print(f"  alignment {how}:")
        print("  " + " " * width + "".join(f"  {label:>9.9}" for label in matrix.labels))
        for label, row in zip(matrix.labels, values):
            print(f"  {label:<{width}}" + "".join(f"  {v:9.4g}" for v in row))
    if "note" in matrix.meta:
        print(f"  weight matching skipped: {matrix.meta['note']}")
    say_written([write_barriers_csv(matrix, out / "barriers.csv"), matrix.save(out / "barriers.h5"),
                 *render(matrix, out, "barriers")])


def listed(values: list[str]) -> list[str]:
    """The items of a list flag given as ``a b``, ``a,b`` or both (``--optimizers sgd,adam`` as in replay)."""
    return [item for value in values for item in value.split(",") if item]


def _float(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"--lr {name}={value!r}: the learning rate must be a finite number")
    return float(value)


def format_table(table) -> str:
    """The comparison table as aligned text with the full column names of ``comparison.csv`` (numbers to
    4 significant digits, ``-`` for none), then the folder of each optimizer's run."""
    shown = [c for c in COMPARISON_COLUMNS if c not in ("n_checkpoints", "run")]
    cells = [[f"{row[c]:.4g}" if isinstance(row[c], float) else "-" if row[c] is None else str(row[c])
              for c in shown] for row in table]
    widths = [max(len(c), *(len(r[k]) for r in cells)) for k, c in enumerate(shown)]
    lines = ["  ".join(v.ljust(w) if k == 0 else v.rjust(w) for k, (v, w) in enumerate(zip(r, widths)))
             for r in [shown, *cells]]
    width = max(len(row["optimizer"]) for row in table)
    lines += ["runs (checkpoints and run.json):"] + [f"  {row['optimizer']:<{width}}  {row['run']}" for row in table]
    return "\n".join(lines)
