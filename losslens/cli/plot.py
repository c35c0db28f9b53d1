"""``losslens plot``: redraw any saved result file into PNGs (matplotlib) and HTML pages (plotly).

The pictures are those of the registry ``losslens.plot.render``, through which every command draws, so
a redrawn file gives the same pictures under the same names (``STEM<name>``, STEM the file's name without
``.h5``). Paths (``trajectory.h5``, ``comparison.h5``) are drawn over the plane's surface when its file
``STEM_surface.h5`` lies beside them, as ``trajectory`` and ``compare`` write it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from losslens.cli._common import load_surface, say_written

PATH_KINDS = ("trajectory", "optimizer_comparison")  # drawn over the plane's surface, when found


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "plot",
        help="redraw any saved result file (surface, Hessian, topology, fit, replay, trajectory, ...)",
        usage="losslens plot FILE.h5 [--log] [--out DIR]",
        description="Redraw a result file written by losslens, of any kind (read from the file: a surface or "
        "line, a curvature map, directions, Hessian eigenpairs, trace or spectrum, a multiscale or topology "
        "analysis, a comparison of surfaces, a fit, a replay, a trajectory and its PCA and embeddings, a comparison "
        "of optimizers, training dynamics) into PNGs and, where there is one, an interactive HTML page. The "
        "reference loss-landscape tool's surface files are read too.",
    )
    parser.add_argument("file", metavar="FILE.h5", help="the result file")
    parser.add_argument("--log", action="store_true", help="logarithmic loss scale (surfaces, lines and paths)")
    parser.add_argument("--out", metavar="DIR", help="output directory (default: the file's directory)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from losslens.plot.render import render
    from losslens.results import load_result

    path = Path(args.file)
    result = load_result(path)
    plane = path.with_name(f"{path.stem}_surface.h5")
    surface = load_surface(plane) if result.KIND in PATH_KINDS and plane.is_file() else None
    say_written(render(result, Path(args.out) if args.out else path.parent, path.stem, log=args.log, surface=surface))
    return 0
