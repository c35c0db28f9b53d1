"""``losslens trajectory``: runs' checkpoints on their joint PCA plane, honestly, and 2D embeddings.

Writes to ``--out``: ``paths.csv`` (one row per checkpoint: ``run, step, epoch, pc1, pc2, residual,
rel_residual, true_loss, plane_loss, checkpoint``), ``trajectory.h5`` (the paths), ``trajectory_pca.h5``,
``trajectory_surface.h5`` (the loss over the plane), ``embedding_pca.h5``, ``embedding_tsne.h5`` (and
``embedding_phate.h5`` with ``--phate``), ``embeddings.csv``, ``trajectory.png``, ``trajectory_losses.png``,
``trajectory_embeddings.png``, ``trajectory.html`` (the figures of ``losslens.plot.render``), and per run
``projection_RUN.h5``, a projection file of the older loss-landscape tool (``plot_2D.plot_contour_trajectory``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from losslens.cli._common import (
    add_landscape_args, default_run, finite_float, int_at_least, is_main_process, set_distributed_run,
)
from losslens.cli._trajectories import add_plane_args, plane, runs_evaluator, summary, write_paths


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "trajectory",
        help="training paths on the joint PCA plane (with residuals), PCA and t-SNE embeddings",
        usage="losslens trajectory [RUN_DIR ...] [--threshold T] [--perplexity P] [--phate] [options]",
        description="Project the checkpoints of one or several runs (directories written by losslens train) on "
        "their joint PCA plane, with each checkpoint's residual off the plane, its true loss and the loss at its "
        "projection, over the loss surface of the plane; and embed them with PCA and t-SNE, each scored by its "
        "trustworthiness. Without RUN_DIR, a small default model is trained into OUT/default-model first.",
    )
    parser.add_argument("runs", metavar="RUN_DIR", nargs="*", help="run directories (default: the default model's run)")
    add_landscape_args(parser, both=False)
    add_plane_args(parser)
    parser.add_argument("--perplexity", type=finite_float, help="t-SNE perplexity, below the number of checkpoints "
                        "(default: min(30, (T - 1) / 3))")
    parser.add_argument("--max-iter", type=int_at_least(250), default=1000, help="t-SNE iterations (default: 1000)")
    parser.add_argument("--phate", action="store_true", help="also a PHATE embedding (needs the GPL-2 phate package)")
    set_distributed_run(parser, _run)


def _run(args: argparse.Namespace) -> int:
    from losslens.trajectories import embed, plane_surface, run_series, trajectory_paths, trajectory_pca
    from losslens.trajectories.table import write_csv
    from losslens.trajectories.embeddings import EMBEDDING_COLUMNS

    main = is_main_process()
    run_dirs = [Path(r) for r in args.runs] or [default_run(args).out]
    ev = runs_evaluator(args, run_dirs)
    provenance = {"runs": [str(d) for d in run_dirs]}
    series = [run_series(d, ev) for d in run_dirs]
    pca = trajectory_pca(series, 2)
    paths = trajectory_paths(ev, series, pca, threshold=args.threshold, meta=provenance)
    out = Path(args.out)
    surface_path = out / "trajectory_surface.h5"
    surface = plane(lambda: plane_surface(ev, pca, paths, steps=args.steps, margin=args.margin, path=surface_path,
                                          progress=not args.no_progress, meta=provenance), surface_path)
    methods = ["pca", "tsne"] + (["phate"] if args.phate else [])
    embeddings = [embed(pca, m, perplexity=args.perplexity, max_iter=args.max_iter, seed=args.seed) for m in methods]
    if not main:
        return 0
    print(summary(paths))
    print("trustworthiness: " + ", ".join(f"{e.method} {e.trustworthiness:.3f}" for e in embeddings)
          + f" (k={embeddings[0].meta['n_neighbors']})")
    for name, result in (("trajectory.h5", paths), ("trajectory_pca.h5", pca)):
        print(f"wrote {result.save(out / name)}")
    print(f"wrote {surface_path}")
    for e in embeddings:
        print(f"wrote {e.save(out / f'embedding_{e.method}.h5')}")
    rows = [row for e in embeddings for row in e.table()]
    print(f"wrote {write_csv(out / 'embeddings.csv', rows, EMBEDDING_COLUMNS)}")
    for r in paths.runs:
        print(f"wrote {paths.save_projection(out / f'projection_{r}.h5', r)}")
    write_paths(paths, surface, out, "trajectory", log=args.log, embeddings=embeddings)
    return 0
