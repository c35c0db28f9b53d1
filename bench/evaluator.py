"""Evaluator core vs the point-by-point way, on a 41x41 plane of an MLP and of two small CNNs, on an
idle machine and with one core kept busy by a second process.

In this one process, side by side, in interleaved blocks of the plane (so all ways see the same
machine state):

- ``loop``: the point-by-point way of the older tools (weights copied into the model in place, data
  in batches of 128, torch's default threads) on every ``stride``-th grid point;
- ``core``: ``Evaluator.evaluate_affine`` with its default execution plan (threads and compile
  decided by the evaluator) on every point;
- ``core-1t``: the same with ``threads=1`` forced, on every point.

Each model runs twice: ``idle``, and ``busy``, with a second process spinning on one core from before
the evaluators are built (so their plans are made under the load) to the end. Printed per model and
load: points/second of each way, the core's ratio to the loop, the default plan's time over the
forced single thread's (must stay under 1.25), the largest relative loss difference, the plans, and
the fraction of the float32 matmul peak (measured here, idle).

Usage: ``python bench/evaluator.py [--quick] [--steps 41] [--device cpu] [--load idle,busy]``.
Last line: ``mlp_speedup=... cnn_speedup=... worst_default_over_1t=... max_rel_diff=...``.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (  # noqa: E402
    cnn_28, cnn_strided_28, forward_flops, images_28, matmul_peak, mlp_784, point_by_point, timed,
)
from losslens.core.evaluator import Evaluator  # noqa: E402
from losslens.core.plan import Plan
from losslens.landscape.directions import random_directions  # noqa: E402

_BLOCKS = 8
_SPIN = "import time\nwhile True:\n    sum(range(10000))\n"


@contextlib.contextmanager
def load(kind: str):
    """``busy``: a second process keeps one core busy for the duration of the block."""
    proc = subprocess.Popen([sys.executable, "-c", _SPIN]) if kind == "busy" else None
    try:
        yield
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()


def bench_model(name, build, x, y, *, steps, stride, device, peak, kind):
    model = build()
    with load(kind):
        cores = {
            "core": Evaluator(model, "cross_entropy", (x, y), metrics=(), plan=Plan(device=device)),
            "core-1t": Evaluator(model, "cross_entropy", (x, y), metrics=(), plan=Plan(device=device, threads=1)),
        }
        ev = cores["core"]
        dirs = random_directions(ev.space, ev.w0, 2, seed=0)
        D = dirs.vectors.to(ev.device, ev.dtype)
        axis = torch.linspace(-1, 1, steps)
        coeffs = torch.cartesian_prod(axis, axis).to(ev.device)
        common = torch.arange(0, len(coeffs), stride)
        model_dev, xd, yd = model.to(ev.device), x.to(ev.device), y.to(ev.device)
        for core in cores.values():
            core.expect(len(coeffs))
        losses = {k: [] for k in cores}
        refs, seconds = [], {"loop": 0.0} | {k: 0.0 for k in cores}
        for block in torch.arange(len(coeffs)).tensor_split(_BLOCKS):
            for key, core in cores.items():
                res, dt = timed(core.evaluate_affine, core.w0, D, coeffs[block])
                losses[key].append(res.loss)
                seconds[key] += dt
            mine = common[(common >= block[0]) & (common <= block[-1])]
            ref, dt = timed(point_by_point, model_dev, xd, yd, ev.w0, D, coeffs[mine])
            refs.append(ref)
            seconds["loop"] += dt
    ref = torch.cat(refs)
    loss = torch.cat(losses["core"])
    rel = max(float(((torch.cat(v)[common] - ref).abs() / ref.abs()).max()) for v in losses.values())
    flops = forward_flops(model_dev, x.to(ev.device))
    rates = {"loop": len(common) / seconds["loop"]} | {k: len(coeffs) / seconds[k] for k in cores}
    print(f"\n{name}, {kind}: {ev.space.size:,} parameters, {len(x)} samples, {steps}x{steps} plane, "
          f"{flops / 1e9:.2f} GFLOP per point (plain forward)")
    print(f"  {'way':<44}{'points':>7}{'seconds':>9}{'points/s':>10}{'% peak':>8}")
    for key, n in (("loop", len(common)), ("core", len(coeffs)), ("core-1t", len(coeffs))):
        plan = "" if key == "loop" else _plan_label(cores[key])
        label = {"loop": "point-by-point (in place, bs 128)", "core": "core, default plan",
                 "core-1t": "core, 1 thread forced"}[key] + plan
        print(f"  {label:<44}{n:>7}{seconds[key]:>9.2f}{rates[key]:>10.1f}{100 * rates[key] * flops / peak:>7.1f}%")
    speedup = rates["core"] / rates["loop"]
    default_over_1t = rates["core-1t"] / rates["core"]
    print(f"  core/loop {speedup:.2f}x   default plan's time / 1 thread's {default_over_1t:.2f}   "
          f"max relative loss difference {rel:.2e} (on {len(common)} common points)")
    assert torch.isfinite(loss).all()
    return speedup, default_over_1t, rel


def _plan_label(ev: Evaluator) -> str:
    p = ev.plan
    parts = [f"{p.threads}t", "compiled" if p.compile else "eager"] + (["NHWC"] if p.channels_last else [])
    if p.fallbacks:
        parts.append(f"{len(p.fallbacks)} fallback(s)")
    return f" [{', '.join(parts)}]"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 15x15 plane, a few minutes in all")
    parser.add_argument("--steps", type=int, help="points per axis (default 41, 15 with --quick)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    parser.add_argument("--load", default="idle,busy", help="idle, busy or both (default: idle,busy)")
    parser.add_argument("--models", default="mlp,cnn,cnn-strided", help="which models (default: all three)")
    args = parser.parse_args(argv)
    steps = args.steps or (15 if args.quick else 41)
    stride = max(1, steps * steps // (12 if args.quick else 40))
    peak = matmul_peak() if args.device == "cpu" else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads by default, device {args.device}; "
          f"measured float32 matmul peak {peak / 1e9:.0f} GFLOP/s (idle)")
    x, y = images_28(2048)
    builders = {"mlp": mlp_784, "cnn": cnn_28, "cnn-strided": cnn_strided_28}
    results = {}
    for kind in args.load.split(","):
        for name in args.models.split(","):
            results[(name, kind)] = bench_model(name, builders[name], x, y, steps=steps, stride=stride,
                                                device=args.device, peak=peak, kind=kind)
    speed = {f"{n}_{k}_speedup": r[0] for (n, k), r in results.items()}
    worst = max(r[1] for r in results.values())
    max_rel = max(r[2] for r in results.values())
    print("\n" + " ".join(f"{k}={v:.2f}" for k, v in speed.items())
          + f" worst_default_over_1t={worst:.2f} max_rel_diff={max_rel:.2e}")


if __name__ == "__main__":
    main()
