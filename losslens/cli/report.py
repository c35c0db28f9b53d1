"""``losslens report``: every analysis of a checkpoint or a training run, in one self-contained HTML page.

Writes the result file of each analysis into ``OUT`` (``surface.h5``, ``interpolation.h5``,
``eigenpairs.h5``, ``trace.h5``, ``spectrum.h5``, ``multiscale.h5``, ``topology.h5``,
``hessian_plane.h5``, ``fit.h5``, ``replay.h5``, ``trajectory_pca.h5``, ``trajectory.h5``,
``trajectory_surface.h5``, ``embedding_pca.h5``, ``embedding_tsne.h5``, ``dynamics.h5``,
``compare_surfaces.h5``; with several inputs, into ``OUT/NAME/``, and ``OUT/connect-A-B.h5`` per pair),
reusing those already there that answer the same request. A file another command wrote there (``losslens
surface``, ``hessian``, the ``dynamics.h5`` of ``train``) is reused when it answers, and never replaced: the
report's own result goes beside it as ``report-NAME.h5``. Then ``OUT/report.html`` (opens offline) and
``OUT/report.json`` (its tables and warnings as data). Without an input, the default model is trained into
``OUT/default-model`` first. The exit status is 1 when an analysis failed (the page says which, and why).

The grids can be shared among processes with torchrun; only rank 0 writes the other files::

    torchrun --nproc_per_node=4 --no-python losslens report run/ --out big
"""

from __future__ import annotations

import argparse

from losslens.cli._common import (
    add_landscape_args, default_run, finite_float, int_at_least, parse_key_values, set_distributed_run,
)
from losslens.errors import ConfigError
from losslens.landscape.fit import MODELS
from losslens.report.options import SECTIONS, ReportOptions


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help="every analysis of a checkpoint or a run in one self-contained HTML page",
        usage="losslens report [CHECKPOINT | RUN_DIR ...] [--out DIR] [--sections NAME ...] [--skip NAME ...] "
        "[options]",
        description="Run the analyses of a checkpoint (or of a training run, at its last checkpoint): the 2D "
        "surface, the line from the initialization, the Hessian's eigenvalues, trace and density, multiscale "
        "roughness, topology, a fit of the Hessian-eigenvector plane, optimizers replayed on it, the trajectory "
        "and the training dynamics, a comparison of the planes, and with two or more inputs the paths between "
        "them (line and Bezier curve, raw and weight-matched, with their barriers); reuse the result files already in OUT; and "
        "write OUT/report.html, one page that opens offline. Without an input, a small default model is trained "
        "into OUT/default-model first. Under torchrun the grids are shared among the processes.",
    )
    parser.add_argument("inputs", metavar="CHECKPOINT|RUN_DIR", nargs="*",
                        help="checkpoint files or run directories (losslens train); default: the default model's run")
    add_landscape_args(parser, both=False)
    parser.add_argument("--sections", nargs="+", metavar="NAME",
                        help=f"the sections to show, by name or comma-separated: {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--skip", nargs="+", metavar="NAME", default=[], help="sections to leave out")
    parser.add_argument("--names", nargs="+", metavar="NAME", help="one name per input, its label")
    parser.add_argument("--title", help="the page's title")
    _add_grid_args(parser)
    _add_path_args(parser)
    _add_connect_args(parser)
    set_distributed_run(parser, _run)


def _add_grid_args(parser: argparse.ArgumentParser) -> None:
    """The flags of the surface, the line from the initialization and the Hessian."""
    surface = parser.add_argument_group("2D surface (random filter-normalized directions)")
    surface.add_argument("--steps", type=int_at_least(2), default=41, help="grid points per axis (default: 41)")
    surface.add_argument("--range", nargs=2, type=finite_float, default=(-1.0, 1.0), metavar=("A", "B"),
                         help="coordinates along both directions (default: -1 1)")
    line = parser.add_argument_group("line from the initialization (runs)")
    line.add_argument("--interpolation-steps", type=int_at_least(2), default=41, metavar="N",
                      help="points of the line (default: 41)")
    line.add_argument("--extrapolate", type=finite_float, default=0.5,
                      help="how far the line goes beyond each end, in units of |w - w_init| (default: 0.5)")
    hessian = parser.add_argument_group("Hessian")
    hessian.add_argument("--top-k", type=int_at_least(2), default=2, metavar="K",
                         help="top eigenvalues, at least 2 (their first two eigenvectors span the fit's plane) "
                         "(default: 2)")
    hessian.add_argument("--trace-samples", type=int_at_least(4), default=100, metavar="N",
                         help="Hessian-vector products of the Hutch++ trace (default: 100)")
    hessian.add_argument("--no-density", action="store_true", help="no eigenvalue density")
    hessian.add_argument("--density-vectors", type=int_at_least(1), default=4, metavar="N",
                         help="start vectors of the density (default: 4)")
    hessian.add_argument("--lanczos-steps", type=int_at_least(1), default=80, metavar="M",
                         help="Lanczos steps per start vector of the density (default: 80)")


def _add_path_args(parser: argparse.ArgumentParser) -> None:
    """The flags of the fit and the replay, the trajectory and the dynamics."""
    fit = parser.add_argument_group("fit of the Hessian-eigenvector plane, and replay")
    fit.add_argument("--plane-steps", type=int_at_least(4), default=21, metavar="N",
                     help="grid points per axis of the plane, on [-1, 1] (default: 21)")
    fit.add_argument("--fit-model", default="gaussian", choices=MODELS, help="the closed form (default: gaussian)")
    fit.add_argument("--optimizers", metavar="LIST",
                     help="comma-separated optimizers replayed (default: sgd,momentum,adam, and lion when installed)")
    fit.add_argument("--replay-lr", type=finite_float, default=0.05, metavar="LR", help="their learning rate (default: 0.05)")
    fit.add_argument("--replay-updates", dest="replay_steps", type=int_at_least(1), default=200, metavar="N",
                     help="updates per optimizer (default: 200)")
    trajectory = parser.add_argument_group("trajectory and dynamics (runs)")
    trajectory.add_argument("--trajectory-steps", type=int_at_least(2), default=41, metavar="N",
                            help="grid points per axis of the PCA plane (default: 41)")
    trajectory.add_argument("--threshold", type=finite_float, default=0.1,
                            help="largest relative residual off the PCA plane of a trusted point (default: 0.1)")
    trajectory.add_argument("--perplexity", type=finite_float, help="t-SNE perplexity (default: min(30, (T - 1) / 3))")
    trajectory.add_argument("--max-iter", type=int_at_least(250), default=1000, help="t-SNE iterations (default: 1000)")
    trajectory.add_argument("--sharpness", action=argparse.BooleanOptionalAction, default=None,
                            help="the top Hessian eigenvalue at every checkpoint (dynamics): by default when its "
                            "bounded cost allows; --sharpness forces it, --no-sharpness leaves it out")


def _add_connect_args(parser: argparse.ArgumentParser) -> None:
    """The flags of the connectivity section (two or more inputs), with the defaults of ``losslens connect``."""
    from losslens.connectivity.connect import PATHS

    connect = parser.add_argument_group("connectivity (two or more inputs, as losslens connect)")
    connect.add_argument("--connect-paths", nargs="+", default=["line", "bezier"], choices=tuple(PATHS),
                         metavar="PATH", help=f"paths between each pair, any of {', '.join(PATHS)} (default: line bezier)")
    connect.add_argument("--connect-points", type=int_at_least(3), default=61, metavar="N",
                         help="values of t along each path, both ends included (default: 61)")
    connect.add_argument("--bend-updates", type=int_at_least(1), default=200, metavar="N",
                         help="optimizer updates of each curve's bend (default: 200)")
    connect.add_argument("--bend-lr", type=finite_float, default=0.05, metavar="LR",
                         help="learning rate of the bend's optimizer (default: 0.05)")


def _run(args: argparse.Namespace) -> int:
    from losslens.report import build_report
    from losslens.report.options import check_sections

    skip = check_sections(args.skip) if args.skip else ()
    sections = [s for s in check_sections(args.sections) if s not in skip]
    if not sections:
        raise ConfigError("--skip leaves no section to show")
    optimizers = None if args.optimizers is None else tuple(n.strip() for n in args.optimizers.split(",") if n.strip())
    options = ReportOptions(
        model=args.model, model_kwargs=parse_key_values(args.model_arg, "--model-arg") or None, data=args.data,
        split=args.split, subset=args.subset, seed=args.seed, device=args.device, bn=args.bn, threads=args.threads,
        unsafe_pickle=args.unsafe_pickle, steps=args.steps, range=tuple(args.range),
        interpolation_steps=args.interpolation_steps, extrapolate=args.extrapolate, top_k=args.top_k,
        trace_samples=args.trace_samples, density=not args.no_density, density_vectors=args.density_vectors,
        lanczos_steps=args.lanczos_steps, plane_steps=args.plane_steps, fit_model=args.fit_model,
        optimizers=optimizers,
        replay_lr=args.replay_lr, replay_steps=args.replay_steps, trajectory_steps=args.trajectory_steps,
        threshold=args.threshold, perplexity=args.perplexity, tsne_max_iter=args.max_iter, sharpness=args.sharpness,
        connect_paths=tuple(args.connect_paths), connect_points=args.connect_points, bend_updates=args.bend_updates,
        bend_lr=args.bend_lr,
    )
    inputs = args.inputs or [str(default_run(args).out)]
    invocation = {"command": "losslens report", **{k: v for k, v in vars(args).items() if k != "func"}}
    report = build_report(inputs, args.out, sections=sections, options=options, names=args.names, title=args.title,
                          progress=not args.no_progress, invocation=invocation)
    return 1 if report is not None and any(s.error for s in report.sections) else 0
