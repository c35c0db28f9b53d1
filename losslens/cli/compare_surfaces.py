"""``losslens compare-surfaces``: figures of several saved surfaces and the distances between them.

Prints the tables and writes ``OUT/compare_surfaces.csv`` (one row per surface: shape, min, max, range,
basins, threshold, loops, roughness, sharpness), ``OUT/distances.csv`` (one row per pair: bottleneck and
Wasserstein distances of the H0 and H1 diagrams, classes that never die matched among themselves and the
count of those left over in ``essential_count_difference_h0``/``_h1``, and the value distances on a common
grid) and
``OUT/compare_surfaces.json``; ``OUT`` defaults to the folder holding all the files.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

from losslens._io import atomic
from losslens.cli._common import write_json


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare-surfaces",
        help="figures of several saved surfaces and the distances between them",
        usage="losslens compare-surfaces A.h5 B.h5 [...] [--names NAME ...] [--out DIR]",
        description="Compare two or more surfaces (losslens files or the older loss-landscape tool's): per surface "
        "its loss range, basins and loops (topology), roughness (multiscale) and sharpness when its metadata "
        "holds Hessian figures; per pair the bottleneck and Wasserstein distances of their persistence diagrams "
        "(classes that never die matched among themselves, how many are left over in its own column), "
        "and on a common grid the largest and the root mean square difference of their values.",
    )
    parser.add_argument("surfaces", metavar="SURFACE.h5", nargs="+", help="two or more surface files")
    parser.add_argument("--names", nargs="+", metavar="NAME",
                        help="one name per file (default: each file's path below the folder holding them all)")
    parser.add_argument("--out", metavar="DIR", help="output directory (default: the folder holding all the files)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from losslens.landscape.surface_comparison import DISTANCE_COLUMNS, TABLE_COLUMNS, compare_surfaces
    from losslens.landscape.surface import Surface

    paths = [Path(p) for p in args.surfaces]
    if len(paths) < 2:
        raise ValueError(f"compare-surfaces needs at least 2 surface files, found {len(paths)}")
    if args.names is not None and len(args.names) != len(paths):
        raise ValueError(f"--names gives {len(args.names)} names for {len(paths)} files")
    common = Path(os.path.commonpath([p.resolve().parent for p in paths]))
    names = args.names or [str(p.resolve().relative_to(common).with_suffix("")) for p in paths]
    result = compare_surfaces([Surface.load(p) for p in paths], names=names)
    for warning in result.meta["warnings"]:
        print(f"losslens: warning: {warning}", file=sys.stderr)
    print(result.format_table())
    out = Path(args.out) if args.out else common
    _write_csv(out / "compare_surfaces.csv", result.rows, TABLE_COLUMNS)
    _write_csv(out / "distances.csv", result.distances, DISTANCE_COLUMNS)
    write_json(out / "compare_surfaces.json", result.to_json())
    return 0


def _write_csv(path: Path, rows, columns) -> Path:
    with atomic(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_csv_cell(row.get(c)) for c in columns])
    print(f"wrote {path}")
    return path


def _csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "x".join(str(v) for v in value)
    return str(value)
