"""``losslens multiscale``: wavelet energy per scale and roughness of a saved surface.

Writes ``OUT/multiscale.json`` (``levels`` with ``level``, ``energy_h``, ``energy_v``, ``energy_d``,
level 1 the finest; ``energy_approx``; ``energy_total`` of the array decomposed; ``roughness``),
``OUT/multiscale.h5`` (the ``Multiscale`` result), ``OUT/multiscale_coefficients.png`` and
``OUT/multiscale_energy.png``; ``OUT`` defaults to the surface file's directory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from losslens.cli._common import int_at_least, say_written, write_json
from losslens.landscape.wavelets import DETRENDS, MODE, PRESETS, WAVELET


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "multiscale",
        help="wavelet energy per scale and roughness of a saved surface",
        usage="losslens multiscale SURFACE.h5 [--out DIR] [--wavelet W] [--level L] [--mode M] "
        "[--detrend {none,quadratic}] [--preset book] [--fill-nonfinite]",
        description="Discrete wavelet decomposition of a surface (a losslens file or the older loss-landscape "
        "tool's), after removing its best quadratic: energy per level (level 1 the finest) and orientation, "
        "and the roughness (detail energy over total). Sides that are not multiples of 2**level are extended "
        "by symmetric reflection, so the energies add up (Parseval).",
    )
    parser.add_argument("surface", metavar="SURFACE.h5", help="the surface file")
    parser.add_argument("--out", metavar="DIR", help="output directory (default: the surface file's directory)")
    parser.add_argument("--wavelet", help=f"a discrete pywt wavelet (default: {WAVELET}, or the preset's)")
    parser.add_argument("--level", type=int_at_least(1), metavar="L",
                        help="levels (default: the largest keeping >= 4 coarse samples per side, or the preset's)")
    parser.add_argument("--mode", metavar="M", help=f"pywt signal extension mode (default: {MODE}, or the preset's)")
    parser.add_argument("--detrend", choices=DETRENDS, help="remove the best quadratic first (default: quadratic, "
                        "or the preset's)")
    parser.add_argument("--preset", choices=tuple(PRESETS), help="book: haar, level 2, mode symmetric, no detrending")
    parser.add_argument("--fill-nonfinite", action="store_true",
                        help="fill NaN/inf points with the largest of their finite neighbours instead of refusing")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from losslens.landscape.surface import Surface
    from losslens.landscape.wavelets import multiscale
    from losslens.plot.render import render

    path = Path(args.surface)
    result = multiscale(Surface.load(path), wavelet=args.wavelet, level=args.level, mode=args.mode,
                        detrend=args.detrend, preset=args.preset,
                        nonfinite="fill" if args.fill_nonfinite else "raise")
    for warning in result.meta["warnings"]:
        print(f"losslens: warning: {warning}", file=sys.stderr)
    m = result.meta
    print(f"{m['wavelet']} wavelet, mode {m['mode']}, {result.level} levels (level 1 the finest), detrend "
          f"{m['detrend']}, decomposed shape {m['decomposed_shape']}: roughness {result.roughness:.4g}")
    if m["extension"]:
        print(f"  {m['extension']}")
    for row in result.levels:
        print(f"  level {row['level']}: detail energy {row['energy']:.4g} ({row['roughness']:.1%} of the total)")
    print(f"  approximation: energy {result.energy_approx:.4g}; total {result.energy_total:.4g}")
    out = Path(args.out) if args.out else path.parent
    write_json(out / "multiscale.json", result.to_json())
    print(f"wrote {result.save(out / 'multiscale.h5')}")
    say_written(render(result, out, "multiscale"))
    return 0
