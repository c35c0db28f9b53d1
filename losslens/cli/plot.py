"""``losslens plot``: redraw a saved result file into PNGs (matplotlib) and an HTML page (plotly).

The pictures are those of ``losslens.plot.render``, which ``surface``, ``interpolate`` and
``hessian`` use too, so a redrawn file gives the same pictures under the same names.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from losslens.cli._common import say_written


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "plot",
        help="redraw a saved surface, line, Hessian result or curvature map",
        usage="losslens plot FILE.h5 [--log] [--out DIR]",
        description="Redraw a result file written by losslens (a surface or line, a Hessian spectrum or "
        "eigenpairs, a curvature map; the kind is read from the file) into PNGs and, for surfaces and lines, an interactive HTML "
        "page. The reference loss-landscape tool's surface files are read too.",
    )
    parser.add_argument("file", metavar="FILE.h5", help="the result file")
    parser.add_argument("--log", action="store_true", help="logarithmic loss scale")
    parser.add_argument("--out", metavar="DIR", help="output directory (default: the file's directory)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from losslens.plot.render import render
    from losslens.results import load_result

    path = Path(args.file)
    result = load_result(path)
    say_written(render(result, Path(args.out) if args.out else path.parent, path.stem, log=args.log))
    return 0
