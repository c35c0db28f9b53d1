"""``losslens topology``: basins, loops and persistence diagrams of a saved surface.

Writes ``OUT/topology.json`` (``basins``, each with ``x``, ``y``, ``value``, ``persistence``, ``saddle``;
``n_basins``; ``diagram_h0`` and ``diagram_h1`` as ``[birth, death]``, death ``null`` for a class that
never dies; ``threshold``, the ``--min-persistence`` below which a class is noise), ``OUT/topology.h5`` (the ``Topology`` result), ``OUT/topology_diagrams.png``,
``OUT/topology_barcode.png`` and ``OUT/topology_basins.png``; ``OUT`` defaults to the surface file's
directory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from losslens.cli._common import finite_float, say_written, write_json
from losslens.landscape.topology import CONSTRUCTIONS, THRESHOLD_FRACTION


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "topology",
        help="basins, loops and persistence diagrams of a saved surface",
        usage="losslens topology SURFACE.h5 [--out DIR] [--min-persistence T] [--construction {vertices,cells}] "
        "[--normalize]",
        description="Sublevel-set persistent homology of a surface (a losslens file or the older loss-landscape "
        "tool's) on gudhi's cubical complex: its basins (minimum, depth, merge saddle) and loops above a noise "
        "threshold, and the H0 and H1 persistence diagrams, in loss units. NaN and inf points are filled so "
        "that they create no class, and counted.",
    )
    parser.add_argument("surface", metavar="SURFACE.h5", help="the surface file")
    parser.add_argument("--out", metavar="DIR", help="output directory (default: the surface file's directory)")
    parser.add_argument("--min-persistence", dest="threshold", type=finite_float, metavar="T",
                        help=f"noise threshold on persistence (default: {THRESHOLD_FRACTION} of the value range)")
    parser.add_argument("--construction", default="vertices", choices=CONSTRUCTIONS,
                        help="vertices: grid values as vertices, 4-connectivity; cells: as pixels, 8-connectivity "
                        "(default: vertices)")
    parser.add_argument("--normalize", action="store_true", help="analyse (L - min) / (max - min) instead of L")
    parser.set_defaults(func=run)


PRINTED_BASINS = 20  # a noisy surface has thousands: the terminal gets the first ones, the JSON all


def run(args: argparse.Namespace) -> int:
    from losslens.landscape.surface import Surface
    from losslens.landscape.topology import topology
    from losslens.plot.render import render

    path = Path(args.surface)
    result = topology(Surface.load(path), construction=args.construction, threshold=args.threshold,
                      normalize=args.normalize)
    for warning in result.meta["warnings"]:
        print(f"losslens: warning: {warning}", file=sys.stderr)
    basins = result.basins
    print(f"{'one basin' if len(basins) == 1 else f'{len(basins)} basins'} and {result.n_loops} loop"
          f"{'' if result.n_loops == 1 else 's'} with persistence above {result.threshold:.4g} "
          f"({result.meta['units']}, {result.meta['construction']} construction)")
    for k, b in enumerate(basins[:PRINTED_BASINS], start=1):
        where = f"x={b.x:.4g}" + ("" if b.y is None else f", y={b.y:.4g}")
        merge = "global minimum" if b.saddle is None else f"merges at {b.saddle['value']:.4g}"
        print(f"  basin {k}: minimum {b.value:.4g} at {where}, depth {b.depth:.4g}, {merge}")
    out = Path(args.out) if args.out else path.parent
    if len(basins) > PRINTED_BASINS:
        print(f"  ... and {len(basins) - PRINTED_BASINS} more basins: every one is in {out / 'topology.json'}")
    write_json(out / "topology.json", result.to_json())
    print(f"wrote {result.save(out / 'topology.h5')}")
    say_written(render(result, out, "topology"))
    return 0
