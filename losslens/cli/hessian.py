"""``losslens hessian``: top eigenvalues, trace and (optionally) eigenvalue density of the Hessian.

Writes ``OUT/hessian.json`` (eigenvalues with their residual norms, the trace with its standard
error, lambda_max, the condition number when the density is computed, and the metadata),
``OUT/hessian_eigenvalues.png``, and with ``--density`` also ``OUT/spectrum.h5`` and
``OUT/hessian_density.png``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from losslens.cli._common import (
    add_default_checkpoint_arg,
    add_landscape_args,
    default_run,
    int_at_least,
    landscape_evaluator,
    write_json,
)
from losslens.landscape.hessian import EIGEN_BACKENDS as BACKENDS


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
    add_landscape_args(parser, bn=False)
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
    parser.add_argument("--backend", default="lanczos", choices=BACKENDS,
                        help="lanczos (losslens: scipy eigsh, Hutch++, SLQ) or pyhessian (PyHessian 0.1) "
                        "(default: lanczos)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from losslens.cli.plot import draw
    from losslens.landscape.hessian import HessianOperator, eigenpairs
    from losslens.landscape.spectrum import density, trace

    if args.checkpoint is None:
        args.checkpoint = str(default_run(args).checkpoints[-1])
    ev, _, provenance = landscape_evaluator(args)
    H = HessianOperator(ev)
    estimator_backend = "losslens" if args.backend == "lanczos" else "pyhessian"
    method = args.trace_method or ("hutch++" if args.backend == "lanczos" else "hutchinson")
    print(f"Hessian of the {ev.loss_name} loss over {ev.space.size} parameters, {ev.n_samples} samples")
    pairs = eigenpairs(H, k=args.top_k, seed=args.seed, backend=args.backend)
    tr = trace(H, method=method, n_matvec=args.trace_samples, seed=args.seed, backend=estimator_backend)
    values = [float(v) for v in pairs.values]
    print("eigenvalues " + ", ".join(f"{v:.6g}" for v in values)
          + " (residuals " + ", ".join(f"{r:.2g}" for r in pairs.meta["residual_norms"]) + ")")
    print(f"trace {tr.value:.6g} ± {tr.stderr:.2g} ({method}, {tr.n_matvec} Hessian-vector products)")

    out = Path(args.out)
    spectrum, condition = None, None
    if args.density:
        spectrum = density(H, n_vectors=args.density_vectors, n_lanczos=min(args.lanczos_steps, ev.space.size),
                           seed=args.seed, backend=estimator_backend)
        definite = spectrum.lambda_min > 0 and math.isfinite(spectrum.condition)
        condition = spectrum.condition if definite else None
        print(f"density: eigenvalues in [{spectrum.lambda_min:.6g}, {spectrum.lambda_max:.6g}], condition number "
              + (f"{condition:.6g}" if definite else "undefined (the Hessian is not positive definite here)"))
        path = spectrum.save(out / "spectrum.h5")
        print(f"wrote {path}")
    write_json(out / "hessian.json", {
        "format": "losslens-hessian",
        **provenance,
        "eigenvalues": values,
        "residual_norms": pairs.meta["residual_norms"],
        "eigen_backend": args.backend,
        "lambda_max": values[0],
        "trace": {"value": tr.value, "stderr": tr.stderr, "method": method, "n_matvec": tr.n_matvec,
                  "backend": estimator_backend},
        "condition": condition,
        "condition_note": "lambda_max / lambda_min from the density's extreme Ritz values; null without --density "
        "or when lambda_min <= 0 (an indefinite or singular Hessian, where it is undefined or infinite)",
        "density": None if spectrum is None else {
            "file": "spectrum.h5", "lambda_min": spectrum.lambda_min, "lambda_max": spectrum.lambda_max,
            "sigma": spectrum.sigma, "n_vectors": args.density_vectors, "n_lanczos": spectrum.meta["n_lanczos"],
        },
        "seed": args.seed,
        "evaluator": ev.meta(),
    })
    draw(pairs, out, "hessian")
    if spectrum is not None:
        draw(spectrum, out, "hessian")
    return 0
