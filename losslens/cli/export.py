"""``losslens export``: write a saved surface for other software (a ParaView ``.vtp`` file)."""

from __future__ import annotations

import argparse
from pathlib import Path

from losslens.cli._common import say_written


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write a saved surface as a ParaView .vtp file",
        usage="losslens export SURFACE.h5 --vtp [--log] [--out DIR]",
        description="Write a plane of a surface file (losslens' or the reference loss-landscape tool's) as a "
        "VTK XML PolyData file for ParaView, as the reference tool's h52vtp.py does: the grid's points "
        "(x, y, z = loss), its quads, and the loss and metrics as point data.",
    )
    parser.add_argument("file", metavar="SURFACE.h5", help="the surface file (a plane)")
    parser.add_argument("--vtp", action="store_true", required=True, help="write a ParaView .vtp file")
    parser.add_argument("--log", action="store_true", help="logarithmic heights: z = ln(loss + 0.1), the reference tool's log scale")
    parser.add_argument("--out", metavar="DIR", help="the directory to write SURFACE.vtp (SURFACE_log.vtp with --log) "
                        "into (default: the surface file's directory)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from losslens.plot.export import write_vtp

    path = Path(args.file)
    out = (Path(args.out) if args.out else path.parent) / (path.stem + ("_log" if args.log else "") + ".vtp")
    say_written([write_vtp(path, out, log=args.log)])
    return 0
