"""What the trajectory commands (trajectory, compare, dynamics) share: their flags, the evaluator of a
set of runs, the plane's surface file, and the path files and pictures."""

from __future__ import annotations

import argparse
from pathlib import Path

from losslens.cli._common import describe, evaluators, finite_float, int_at_least, is_main_process, say_written


def add_plane_args(parser: argparse.ArgumentParser) -> None:
    """``--threshold``, ``--steps``, ``--margin`` and ``--log``."""
    parser.add_argument("--threshold", type=finite_float, default=0.1,
                        help="largest relative residual (the share of a checkpoint's displacement from the origin "
                        "that lies off the plane) of a point drawn as trusted (default: 0.1)")
    parser.add_argument("--steps", type=int_at_least(2), default=41, help="grid points per axis of the plane (default: 41)")
    parser.add_argument("--margin", type=finite_float, default=0.1,
                        help="the plane's grid extends this fraction of the paths' span beyond them (default: 0.1)")
    parser.add_argument("--log", action="store_true", help="draw the loss on a logarithmic scale")


def runs_evaluator(args: argparse.Namespace, run_dirs: list[Path]):
    """The evaluator of the first run's last checkpoint on the data and split of the flags (it records
    the model, the data and the checkpoint); ``run_series`` reads the runs with its architecture."""
    from losslens.core.train import TrainRun

    (ev,) = evaluators(args, str(TrainRun.load(run_dirs[0]).checkpoints[-1]))
    if is_main_process():
        print(describe(ev))
    return ev


def plane(compute, path: Path):
    """``compute()`` of a plane whose surface is written to ``path``; a file holding the plane of other
    checkpoints (an earlier command on other runs) is replaced, a matching one resumed. Only an error
    that names the file (the grid file's refusal to resume) leads to the replacement."""
    try:
        return compute()
    except ValueError as err:
        if not path.exists() or str(path) not in str(err):
            raise
        if is_main_process():
            print(f"replacing {path}: {err}")
            path.unlink()
        return compute()


def write_paths(result, surface, out: Path, stem: str, *, log: bool, embeddings=()) -> None:
    """``paths.csv`` and the figures of ``result`` (the paths, or an optimizer comparison holding them) over
    the plane's ``surface``: ``STEM.png`` (paths over the contour, true vs plane loss), ``STEM.html``, ..."""
    from losslens.plot.render import render

    paths = result.paths if result.KIND == "optimizer_comparison" else result
    print(f"wrote {paths.to_csv(out / 'paths.csv')}")
    say_written(render(result, out, stem, log=log, surface=surface, embeddings=embeddings))


def summary(paths) -> str:
    """One line per run: its checkpoints, the largest relative residual and the untrusted points."""
    lines = []
    for run in paths.runs:
        index = paths.of_run(run)
        rel = paths.rel_residual[index]
        lines.append(f"  {run}: {len(index)} checkpoints, largest relative residual {rel.max():.3f}, "
                     f"{int((rel > paths.threshold).sum())} above the threshold {paths.threshold:g}")
    ratio = paths.meta["pca"]["explained_variance_ratio"]
    head = f"PCA plane: {ratio[0]:.1%} + {ratio[1]:.1%} of the variance"
    return "\n".join([head, *lines])
