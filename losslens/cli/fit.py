"""``losslens fit``: a closed-form fit of a loss surface (Gaussian bowl, rotated, mixture, quadratic).

Writes ``OUT/fit.json`` (parameters with standard errors, R^2, RMSE, the fitted minimum and curvature,
the surface's Hessian eigenvalues along its directions when known, the stability limit 2/lambda_max,
``degenerate`` and its ``warnings``, also printed),
``OUT/fit.h5`` (the ``SurfaceFit``, which ``losslens replay OUT/fit.h5`` descends),
``OUT/fit_3d.png`` (``fit_1d.png`` for a line) and ``OUT/fit_residuals.png``.

Without a SURFACE file: the default model's Hessian-eigenvector plane (the book chapter's picture),
``DEFAULT_STEPS`` x ``DEFAULT_STEPS`` points on ``[-1, 1]^2``, computed into ``OUT/hessian_plane.h5`` (the
default model trained into ``OUT/default-model`` first, as the other commands do).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from losslens.cli._common import DEFAULT_OUT, int_at_least, say_written, write_json
from losslens.errors import ConfigError
from losslens.landscape.fit import MODELS
from losslens.landscape.fit_least_squares import CRITERIA

DEFAULT_STEPS = 21


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "fit",
        help="fit a Gaussian bowl, a rotated one, a Gaussian mixture or a quadratic to a loss surface",
        usage="losslens fit [SURFACE.h5] [--fit-model gaussian|rotated|mixture|quadratic] [--components K] [options]",
        description="Least-squares fit of a closed form to a loss surface (a line or a plane), with R^2, RMSE, the "
        "residual map, and the fitted curvature at the fitted minimum next to the surface's Hessian eigenvalues "
        "along its directions. Without SURFACE.h5, the default model's Hessian-eigenvector plane is computed first "
        "(into OUT/hessian_plane.h5).",
    )
    parser.add_argument("surface", metavar="SURFACE.h5", nargs="?",
                        help="surface file (losslens, or xcoordinates/ycoordinates/train_loss); default: the default "
                        "model's Hessian plane")
    parser.add_argument("--fit-model", default="gaussian", choices=MODELS,
                        help="the closed form (default: gaussian)")
    parser.add_argument("--components", type=int_at_least(1), metavar="K",
                        help="components of a mixture (default: chosen by --criterion up to --max-components)")
    parser.add_argument("--criterion", default="bic", choices=CRITERIA,
                        help="how a mixture's K is chosen (default: bic)")
    parser.add_argument("--max-components", type=int_at_least(1), default=4, metavar="N",
                        help="the largest K tried (default: 4)")
    parser.add_argument("--offset", default="free", metavar="free|max|VALUE",
                        help="the Gaussians' constant: free (default), max (fixed at the largest loss, as the book "
                        "does) or a number")
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"output directory (default: {DEFAULT_OUT})")
    parser.add_argument("--device", default="auto", help="for the default surface: auto, cpu, cuda, ...")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from losslens.cli._common import load_surface
    from losslens.landscape.fit import fit_surface
    from losslens.plot.render import render

    if args.fit_model != "mixture" and (args.components is not None):
        raise ConfigError(f"--components applies to --fit-model mixture, not to --fit-model {args.fit_model}")
    out = Path(args.out)
    surface = load_surface(args.surface) if args.surface else _default_surface(args)
    fit = fit_surface(surface, args.fit_model, offset=_offset(args.offset, args.fit_model),
                      components=args.components, criterion=args.criterion, max_components=args.max_components)
    print(fit.summary())
    write_json(out / "fit.json", fit.to_dict())
    path = fit.save(out / "fit.h5")
    print(f"wrote {path}")
    say_written(render(fit, out, "fit"))
    return 0


def _offset(text: str, model: str):
    if text == "free":
        return None
    if model == "quadratic":
        raise ConfigError("--offset applies to the Gaussian models, not to --fit-model quadratic")
    if text == "max":
        return "max"
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"--offset must be free, max or a number, got {text!r}") from None


def _default_surface(args: argparse.Namespace):
    """The default model's Hessian-eigenvector plane on [-1, 1]^2, computed (or resumed) into OUT/hessian_plane.h5."""
    import numpy as np

    from losslens.cli._common import describe, train_default
    from losslens.core.recipe import Recipe
    from losslens.landscape.directions import hessian_directions
    from losslens.landscape.surface import surface_2d

    recipe = Recipe.from_checkpoint(None)  # the default model on all of the default data's train split
    run = train_default(recipe, Path(args.out), device=args.device, progress=not args.no_progress)
    checkpoint = run.checkpoints[-1]
    ev = recipe.evaluator(checkpoint, device=args.device)
    print(describe(ev))
    directions = hessian_directions(ev, k=2, seed=0)
    x = np.linspace(-1.0, 1.0, DEFAULT_STEPS)
    path = Path(args.out) / "hessian_plane.h5"
    print(f"no surface given: the default model's Hessian plane, {DEFAULT_STEPS} x {DEFAULT_STEPS} points, into {path}")
    return surface_2d(ev, ev.w0, directions, x, x, path=path, progress=not args.no_progress)
