"""``losslens hessian``: top eigenvalues, trace and (optionally) eigenvalue density of the Hessian.

Writes the result files ``OUT/eigenpairs.h5`` and ``OUT/trace.h5`` (and with ``--density``
``OUT/spectrum.h5``), a summary ``OUT/hessian.json`` (eigenvalues with their residual norms, the trace
with its standard error and whether it is resolved (error smaller than value; else the printed line says
"not resolved"), lambda_max, the condition number when the density is computed, and the provenance),
``OUT/hessian_eigenvalues.png`` and with ``--density`` ``OUT/hessian_density.png``.
"""

from __future__ import annotations

import argparse
import math
import warnings
from pathlib import Path

from losslens.cli._common import (
    add_default_checkpoint_arg, add_landscape_args, default_run, describe, evaluators, int_at_least, say_written,
    write_json,
)
from losslens.curvature.hessian import BACKENDS


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "hessian",
        help="Hessian eigenvalues, trace and eigenvalue density at a checkpoint",
        usage="losslens hessian [CHECKPOINT] [--top-k K] [--trace-samples N] [--density] [--backend B] [options]",
        description="The top eigenvalues of the Hessian of the loss (Lanczos, or PyHessian's power iteration), its "
        "trace (Hutch++ or Hutchinson) with a standard error, and with --density its eigenvalue density "
        "(stochastic Lanczos quadrature). Without a CHECKPOINT, the default model (trained into "
        "OUT/default-model).",
    )
    add_default_checkpoint_arg(parser)
    add_landscape_args(parser, bn=False, both=False)
    parser.add_argument("--top-k", type=int_at_least(1), default=2, metavar="K", help="eigenvalues to find (default: 2)")
    parser.add_argument("--trace-samples", type=int_at_least(2), default=100, metavar="N",
                        help="Hessian-vector products of the trace estimate (default: 100)")
    parser.add_argument("--trace-method", choices=("hutch++", "hutchinson"),
                        help="trace estimator (default: hutch++, or hutchinson with --backend pyhessian)")
    parser.add_argument("--density", action="store_true", help="also estimate the eigenvalue density")
    parser.add_argument("--density-vectors", type=int_at_least(1), default=4, metavar="N",
                        help="start vectors of the density estimate (default: 4)")
    parser.add_argument("--lanczos-steps", type=int_at_least(1), default=80, metavar="M",
                        help="Lanczos steps per start vector of the density estimate (default: 80)")
    parser.add_argument("--backend", default="losslens", choices=BACKENDS,
                        help="losslens (Lanczos by scipy eigsh, Hutch++, SLQ) or pyhessian (PyHessian 0.1's power "
                        "iteration, Hutchinson and SLQ; an optional extra, GPL-3) (default: losslens)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from losslens.curvature.hessian import eigenpairs
    from losslens.curvature.operator import HessianOperator
    from losslens.curvature.trace_estimation import trace
    from losslens.plot.render import render

    checkpoint = args.checkpoint or str(default_run(args).checkpoints[-1])
    (ev,) = evaluators(args, checkpoint)
    print(describe(ev))
    H = HessianOperator(ev)
    method = args.trace_method or ("hutch++" if args.backend == "losslens" else "hutchinson")
    print(f"Hessian of the {ev.loss_name} loss over {ev.space.size} parameters")
    pairs = eigenpairs(H, k=args.top_k, seed=args.seed, backend=args.backend)
    tr = trace(H, method=method, n_matvec=args.trace_samples, seed=args.seed, backend=args.backend)
    values = [float(v) for v in pairs.values]
    print("eigenvalues " + ", ".join(f"{v:.6g}" for v in values)
          + " (residuals " + ", ".join(f"{r:.2g}" for r in pairs.meta["residual_norms"]) + ")")
    print(f"trace {tr.value:.6g} ± {tr.stderr:.2g} ({method}, {tr.n_matvec} Hessian-vector products)"
          + ("" if tr.resolved else ": not resolved, the error is larger than the value (raise --trace-samples)"))

    out = Path(args.out)
    written = [pairs.save(out / "eigenpairs.h5"), tr.save(out / "trace.h5")]
    spectrum = _density(args, H, values) if args.density else None
    if spectrum is not None:
        written.append(spectrum.save(out / "spectrum.h5"))
    say_written(written)
    write_json(out / "hessian.json", _summary(args, ev, pairs, tr, spectrum))
    for result in (pairs, spectrum):
        if result is not None:
            say_written(render(result, out, "hessian"))
    return 0


def _density(args: argparse.Namespace, H, values: list[float]):
    """The spectral density (stochastic Lanczos quadrature), its range and condition number said."""
    from losslens.curvature.spectrum import density

    with warnings.catch_warnings():  # recorded in the spectrum, printed below
        warnings.filterwarnings("ignore", message="losslens: (only|the density's support)")
        spectrum = density(H, n_vectors=args.density_vectors, n_lanczos=min(args.lanczos_steps, H.evaluator.space.size),
                           seed=args.seed, backend=args.backend, known_eigenvalues=values)
    condition = _condition(spectrum)
    print(f"density: eigenvalues in [{spectrum.lambda_min:.6g}, {spectrum.lambda_max:.6g}], condition number "
          + (f"{condition:.6g}" if condition is not None else "undefined (the Hessian is not positive definite here)"))
    for note in spectrum.warnings:
        print(f"warning: {note}")
    return spectrum


def _condition(spectrum) -> float | None:
    """lambda_max / lambda_min of the density's extreme Ritz values; None where the Hessian is not positive
    definite (or without a density)."""
    if spectrum is None or not (spectrum.lambda_min > 0 and math.isfinite(spectrum.condition)):
        return None
    return spectrum.condition


def _summary(args: argparse.Namespace, ev, pairs, tr, spectrum) -> dict:
    """The content of ``hessian.json``."""
    values = [float(v) for v in pairs.values]
    return {
        "format": "losslens-hessian",
        "eigenvalues": values,
        "residual_norms": pairs.meta["residual_norms"],
        "backend": args.backend,
        "lambda_max": values[0],
        "trace": {"value": tr.value, "stderr": tr.stderr, "method": tr.method, "n_matvec": tr.n_matvec,
                  "resolved": tr.resolved},
        "trace_note": "resolved: false when the standard error is not smaller than |value| (even the sign is "
        "uncertain)",
        "condition": _condition(spectrum),
        "condition_note": "lambda_max / lambda_min from the density's extreme Ritz values; null without --density "
        "or when lambda_min <= 0 (an indefinite or singular Hessian, where it is undefined or infinite)",
        "density": None if spectrum is None else {
            "file": "spectrum.h5", "lambda_min": spectrum.lambda_min, "lambda_max": spectrum.lambda_max,
            "sigma": spectrum.sigma, "n_vectors": args.density_vectors, "n_lanczos": spectrum.meta["n_lanczos"],
            "warnings": list(spectrum.warnings),
        },
        "files": {"eigenpairs": "eigenpairs.h5", "trace": "trace.h5"},
        "seed": args.seed,
        "evaluator": ev.meta(),
    }
