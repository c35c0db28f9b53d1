"""Evaluator core vs the point-by-point way, on a 41x41 plane of an MLP and of two small CNNs.

Both run in this one process, side by side, in interleaved blocks of the plane: the point-by-point
loop of the older tools (weights copied into the model in place, data in batches of 128) on every
``stride``-th grid point, and the evaluator core (``Evaluator.evaluate_affine``) on every point. Printed per model: points/second, the ratio,
the largest relative loss difference on the common points, and the fraction of the float32 matmul
peak (measured here) that each reaches, counting a plain forward's FLOPs per point ("effective" for
the core, which skips most of the first layer's work).

The CNNs: ``cnn`` (conv, pool, conv, pool: point by point at about 16-20% of the matmul peak, like
the CNN of shared/notes/performance-facts.md) and ``cnn-strided`` (the same layers with strided
convolutions: point by point already at 45-60% of the peak, so no evaluator can gain much on it on a
CPU; shown for honesty).

Usage: ``python bench/evaluator.py [--quick] [--steps 41] [--device cpu] [--compile auto|on|off]``.
Last line: ``mlp_speedup=X cnn_speedup=Y cnn_strided_speedup=W max_rel_diff=Z``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (  # noqa: E402
    cnn_28, cnn_strided_28, forward_flops, images_28, matmul_peak, mlp_784, point_by_point, timed,
)
from losslens.core.evaluator import Evaluator  # noqa: E402
from losslens.landscape.directions import random_directions  # noqa: E402

COMPILE = {"auto": "auto", "on": True, "off": False}
_BLOCKS = 8


def bench_model(name, model, x, y, *, steps, stride, device, compile, peak):
    ev = Evaluator(model, "cross_entropy", (x, y), device=device, metrics=(), compile=compile)
    dirs = random_directions(ev.space, ev.w0, 2, seed=0)
    D = dirs.vectors.to(ev.device, ev.dtype)
    axis = torch.linspace(-1, 1, steps)
    coeffs = torch.cartesian_prod(axis, axis)  # row-major: point i*steps + j is (axis[i], axis[j])
    common = torch.arange(0, len(coeffs), stride)

    model_dev, xd, yd = model.to(ev.device), x.to(ev.device), y.to(ev.device)
    w0, Dd, cd = ev.w0, D, coeffs.to(ev.device)
    # Interleaved blocks: both ways see the same machine state (this 2-core VM's speed drifts by 20-40%
    # over minutes). The core's first block includes its compile, if it decides to compile.
    ev.plan(len(coeffs))
    losses, refs, t_core, t_ref = [], [], 0.0, 0.0
    for block in torch.arange(len(coeffs)).tensor_split(_BLOCKS):
        res, dt = timed(ev.evaluate_affine, w0, Dd, cd[block])
        losses.append(res.loss)
        t_core += dt
        mine = common[(common >= block[0]) & (common <= block[-1])]
        ref, dt = timed(point_by_point, model_dev, xd, yd, w0, Dd, cd[mine])
        refs.append(ref)
        t_ref += dt
    loss, ref = torch.cat(losses), torch.cat(refs)

    flops = forward_flops(model_dev, x.to(ev.device))
    rate_ref, rate_core = len(common) / t_ref, len(coeffs) / t_core
    rel = ((loss[common] - ref).abs() / ref.abs()).max().item()
    print(f"\n{name}: {ev.space.size:,} parameters, {len(x)} samples, {steps}x{steps} plane, "
          f"{flops / 1e9:.2f} GFLOP per point (plain forward)")
    print(f"  {'method':<34}{'points':>8}{'seconds':>10}{'points/s':>10}{'% peak':>9}")
    print(f"  {'point-by-point (in place, bs 128)':<34}{len(common):>8}{t_ref:>10.2f}{rate_ref:>10.1f}"
          f"{100 * rate_ref * flops / peak:>8.1f}%")
    label = f"losslens core ({'compiled' if ev._compiled else 'eager'}{', NHWC' if ev._channels_last else ''})"
    print(f"  {label:<34}{len(coeffs):>8}{t_core:>10.2f}{rate_core:>10.1f}"
          f"{100 * rate_core * flops / peak:>8.1f}% effective")
    print(f"  speedup {rate_core / rate_ref:.2f}x   max relative loss difference {rel:.2e} "
          f"(on {len(common)} common points)")
    return rate_core / rate_ref, rel


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 15x15 plane, done in under a minute")
    parser.add_argument("--steps", type=int, help="points per axis (default 41, 15 with --quick)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    parser.add_argument("--compile", default="auto", choices=COMPILE, help="torch.compile of the core (default auto)")
    args = parser.parse_args(argv)
    steps = args.steps or (15 if args.quick else 41)
    stride = max(1, steps * steps // (12 if args.quick else 40))

    peak = matmul_peak() if args.device == "cpu" else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}; "
          f"measured float32 matmul peak {peak / 1e9:.0f} GFLOP/s")
    x, y = images_28(2048)
    results = {}
    for name, build in (("mlp", mlp_784), ("cnn", cnn_28), ("cnn-strided", cnn_strided_28)):
        results[name] = bench_model(name, build(), x, y, steps=steps, stride=stride, device=args.device,
                                    compile=COMPILE[args.compile], peak=peak)
    max_rel = max(r[1] for r in results.values())
    print(f"\nmlp_speedup={results['mlp'][0]:.2f} cnn_speedup={results['cnn'][0]:.2f} "
          f"cnn_strided_speedup={results['cnn-strided'][0]:.2f} max_rel_diff={max_rel:.2e}")


if __name__ == "__main__":
    main()
