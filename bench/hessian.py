"""Benchmark: top-2 Hessian eigenpairs by Lanczos (scipy ``eigsh``) against PyHessian's power iteration.

A small MLP on the digits data is trained by full-batch gradient descent with momentum (through the
evaluator's gradient), then at the trained point:

- the dense Hessian of the test loss is built in float64 as ``H @ I`` (column blocks of Hessian-vector
  products), and ``torch.linalg.eigh`` of it is the truth;
- ``eigenpairs(H, 2)`` with ``backend="losslens"`` (Lanczos, tol 1e-6) and ``backend="pyhessian"`` (its default
  tol 1e-3, power iteration with deflation) are timed in the bench dtype (float32 by default).

For each: wall time (best of ``repeats``), Hessian-vector products, relative error of both eigenvalues,
``|cos|`` between the eigenvectors and the true ones, and the largest residual ``||Hv - lambda v||``.

Usage: ``python bench/hessian.py [--quick] [--dtype float32|float64]``; ``run(quick)`` returns the
figures as a dict (``bench/surface.py`` calls it).
"""

from __future__ import annotations

import argparse
import time

import torch

from losslens.core.data import load_dataset
from losslens.core.evaluator import Evaluator
from losslens.core.plan import Plan
from losslens.core.models import build_model
from losslens.curvature.hessian import eigenpairs
from losslens.curvature.operator import HessianOperator

METHODS = (("losslens", 1e-6), ("pyhessian", 1e-3))
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def run(quick: bool = False, *, dtype: str = "float32", seed: int = 0) -> dict:
    """Time both backends against the dense truth; returns the figures (see the module docstring)."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    hidden, steps, repeats = ((16,), 100, 1) if quick else ((32, 16), 200, 3)
    model = build_model("mlp", input_shape=(1, 8, 8), hidden=hidden, seed=seed)
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")

    w, train_loss = _trained_point(Evaluator(model, "cross_entropy", train, plan=Plan(dtype=torch.float64)), steps)
    truth_ev = Evaluator(model, "cross_entropy", test, plan=Plan(dtype=torch.float64, vectorize=True))
    P = truth_ev.space.size
    start = time.perf_counter()
    dense = _dense(HessianOperator(truth_ev, w))
    dense_s = time.perf_counter() - start
    lam, U = torch.linalg.eigh(dense)
    top, top_vectors = lam[[-1, -2]], U[:, [-1, -2]].T

    op = HessianOperator(Evaluator(model, "cross_entropy", test, plan=Plan(dtype=DTYPES[dtype])), w)
    op @ torch.ones(P)  # warm-up of torch.func, outside the timings
    results = {}
    for backend, tol in METHODS:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            pairs = eigenpairs(op, 2, backend=backend, tol=tol, seed=seed)
            times.append(time.perf_counter() - start)
        results[backend] = {
            "tol": tol,
            "time_s": min(times),
            "n_matvec": pairs.n_matvec,
            "values": pairs.values.tolist(),
            "rel_err": ((pairs.values - top).abs() / top.abs()).tolist(),
            "abs_cos": (pairs.vectors * top_vectors).sum(dim=1).abs().tolist(),
            "max_residual": max(pairs.meta["residual_norms"]),
        }
    return {
        "quick": quick,
        "dtype": dtype,
        "n_params": P,
        "hidden": list(hidden),
        "train_loss": train_loss,
        "test_samples": truth_ev.n_samples,
        "true_top2": top.tolist(),
        "dense_hessian_s": dense_s,
        "repeats": repeats,
        "methods": results,
    }


def _trained_point(ev: Evaluator, steps: int) -> tuple[torch.Tensor, float]:
    """Full-batch gradient descent with heavy-ball momentum (lr 0.1, momentum 0.9) from the model's weights."""
    w = ev.w0.double().clone()
    velocity = torch.zeros_like(w)
    for _ in range(steps):
        velocity = 0.9 * velocity + ev.gradient(w)
        w -= 0.1 * velocity
    return w, float(ev.evaluate(w).loss[0])


def _dense(op: HessianOperator, block: int = 256) -> torch.Tensor:
    """``H @ I`` by column blocks, symmetrized."""
    P = op.shape[0]
    eye = torch.eye(P, dtype=op.dtype, device=op.device)
    H = torch.cat([op @ eye[:, i : i + block] for i in range(0, P, block)], dim=1).cpu()
    return (H + H.T) / 2


def report(r: dict) -> str:
    """The figures as a table and a last summary line."""
    lines = [
        f"top-2 Hessian eigenpairs: MLP hidden={r['hidden']} (P={r['n_params']}) on digits test "
        f"({r['test_samples']} samples), trained to train loss {r['train_loss']:.4f}; bench dtype {r['dtype']}",
        f"truth: dense float64 Hessian (H @ I, {r['dense_hessian_s']:.2f} s) + eigh: "
        f"lambda1={r['true_top2'][0]:.6g}, lambda2={r['true_top2'][1]:.6g}; times are best of {r['repeats']}",
        "",
        f"{'method':<10} {'tol':>6} {'time_s':>8} {'HVPs':>5} {'rel_err_1':>10} {'rel_err_2':>10} "
        f"{'|cos|_1':>9} {'|cos|_2':>9} {'max_resid':>10}",
    ]
    for name, m in r["methods"].items():
        lines.append(
            f"{name:<10} {m['tol']:>6.0e} {m['time_s']:>8.3f} {m['n_matvec']:>5d} {m['rel_err'][0]:>10.2e} "
            f"{m['rel_err'][1]:>10.2e} {m['abs_cos'][0]:>9.6f} {m['abs_cos'][1]:>9.6f} {m['max_residual']:>10.2e}"
        )
    lz, ph = r["methods"]["losslens"], r["methods"]["pyhessian"]
    lines.append("")
    lines.append(
        f"summary: losslens (Lanczos) {lz['time_s']:.3f} s, max rel err {max(lz['rel_err']):.1e}, min |cos| "
        f"{min(lz['abs_cos']):.6f} | pyhessian {ph['time_s']:.3f} s, max rel err {max(ph['rel_err']):.1e}, "
        f"min |cos| {min(ph['abs_cos']):.6f} | time ratio pyhessian/losslens {ph['time_s'] / lz['time_s']:.2f}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller model, fewer steps, one repeat")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="dtype of the timed runs")
    args = parser.parse_args(argv)
    result = run(args.quick, dtype=args.dtype)
    print(report(result))
    return result


if __name__ == "__main__":
    main()
