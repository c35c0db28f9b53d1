"""``losslens plot``: redraw a saved result file into PNGs (matplotlib) and an HTML page (plotly).

``draw`` is also what ``surface``, ``interpolate`` and ``hessian`` call after computing, so a
redrawn file gives the same pictures under the same names.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from losslens.cli._common import save_figure
from losslens.errors import ConfigError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "plot",
        help="redraw a saved surface, interpolation or spectrum",
        usage="losslens plot FILE.h5 [--log] [--out DIR]",
        description="Redraw a result file written by losslens (a surface, an interpolation, a Hessian spectrum "
        "or eigenpairs; the kind is read from the file) into PNGs and, for surfaces and interpolations, an "
        "interactive HTML page. Files of the older loss-landscape tool's surfaces are read too.",
    )
    parser.add_argument("file", metavar="FILE.h5", help="the result file")
    parser.add_argument("--log", action="store_true", help="logarithmic loss scale")
    parser.add_argument("--out", metavar="DIR", help="output directory (default: the file's directory)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from losslens.plot import load_result

    path = Path(args.file)
    result = load_result(path)
    if args.log and not hasattr(result, "loss"):
        raise ConfigError(f"--log applies to loss surfaces and lines; {path} holds a {type(result).__name__} "
                          "(its density is drawn on a log scale already)")
    draw(result, Path(args.out) if args.out else path.parent, path.stem, log=args.log)
    return 0


def draw(result, out: Path, stem: str, *, log: bool = False) -> list[Path]:
    """Draw a result into ``out``: files named ``stem`` plus a suffix per picture, each path printed.

    - 2D ``Surface``: ``STEM_contour.png`` (filled contours), ``STEM_3d.png``, ``STEM.html``;
    - 1D ``Surface``: ``STEM_1d.png``, ``STEM.html``;
    - ``Interpolation``: ``STEM.png``, ``STEM.html``;
    - ``Spectrum``: ``STEM_density.png``; ``Eigenpairs``: ``STEM_eigenvalues.png``.
    """
    from losslens.landscape.hessian import Eigenpairs
    from losslens.landscape.interpolation import Interpolation
    from losslens.landscape.spectrum import Spectrum
    from losslens.landscape.surface import Surface
    from losslens.plot import (plot_1d, plot_3d, plot_contour, plot_density, plot_eigenvalues, plotly_figure,
                               write_html)

    out = Path(out)
    if isinstance(result, Surface) and result.ndim == 2:
        pictures = {"_contour.png": lambda: plot_contour(result, filled=True, log=log),
                    "_3d.png": lambda: plot_3d(result, log=log)}
    elif isinstance(result, Surface):
        pictures = {"_1d.png": lambda: plot_1d(result, log=log)}
    elif isinstance(result, Interpolation):
        pictures = {".png": lambda: plot_1d(result, log=log)}
    elif isinstance(result, Spectrum):
        pictures = {"_density.png": lambda: plot_density(result)}
    elif isinstance(result, Eigenpairs):
        pictures = {"_eigenvalues.png": lambda: plot_eigenvalues(result)}
    else:
        raise ValueError(f"cannot draw a {type(result).__name__}; drawable: Surface, Interpolation, Spectrum, Eigenpairs")
    written = [save_figure(make(), out / f"{stem}{suffix}") for suffix, make in pictures.items()]
    if isinstance(result, (Surface, Interpolation)):
        html = write_html(plotly_figure(result, log=log), out / f"{stem}.html", title=f"losslens {stem}")
        print(f"wrote {html}")
        written.append(html)
    return written
