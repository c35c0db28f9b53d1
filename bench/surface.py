"""Benchmark: a loss plane by losslens, by the point-by-point loop, and by the PyPI ``loss-landscapes``.

A 41x41 plane (filter-normalized random directions, coordinates in [-1, 1]) of the MLP 784-256-128-10
on 2048 ``images_28`` samples, cross-entropy, in this one process, side by side:

- losslens: ``Evaluator`` + ``surface_2d`` (progress off) on the whole plane;
- the point-by-point loop of the older tools (``bench/_common.point_by_point``: weights copied into
  the model in place, data in batches of 128) on every ``stride``-th grid point, for its rate and for
  the largest relative loss difference against losslens on those common points;
- ``loss_landscapes.random_plane(..., normalization="filter", deepcopy_model=True)`` with a
  ``loss_landscapes.metrics.Loss`` metric, on a smaller ``steps x steps`` lattice, for its rate only:
  its lattice is not this grid (shifted by half a step, zig-zagging over columns, U[0,1) directions,
  a ``distance`` that shrinks the region), so its values are not compared.

Then the Hessian part, ``bench/hessian.py``'s ``run(quick)``: top-2 eigenpairs by Lanczos and by
PyHessian against the dense truth.

Usage: ``python bench/surface.py [--quick]`` (``--quick``: a 21x21 plane, fewer baseline points, the
quick Hessian bench; under a minute). Last line:
``surface_speedup=X loss_landscapes_speedup=Y max_rel_diff=Z``, the speedups being losslens's
points/second over the point-by-point loop's and over loss-landscapes'.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import hessian as hessian_bench  # noqa: E402
from bench._common import images_28, mlp_784, point_by_point, timed  # noqa: E402
from losslens.core.evaluator import Evaluator  # noqa: E402
from losslens.core.plan import Plan
from losslens.landscape.directions import random_directions  # noqa: E402
from losslens.landscape.surface import surface_2d  # noqa: E402


def run(quick: bool = False) -> dict:
    """Time the three ways on the same model and data; returns the figures."""
    steps, stride, ll_steps = (21, 20, 5) if quick else (41, 10, 11)
    x, y = images_28(2048)
    model = mlp_784()
    axis = torch.linspace(-1, 1, steps, dtype=torch.float64)

    ev = Evaluator(model, "cross_entropy", (x, y), metrics=(), plan=Plan(device="cpu"))
    dirs = random_directions(ev.space, ev.w0, 2, normalization="filter", seed=0)
    surface, t_ll = timed(surface_2d, ev, ev.w0, dirs, axis, axis, progress=False)

    coeffs = torch.cartesian_prod(axis, axis).flip(1).float()  # (x, y) with x fastest, like surface.loss.reshape(-1)
    common = torch.arange(0, len(coeffs), stride)
    ref, t_ref = timed(point_by_point, copy.deepcopy(model), x, y, ev.w0, dirs.vectors.float(), coeffs[common])
    ours = torch.from_numpy(surface.loss.reshape(-1))[common]
    rel = float(((ours - ref).abs() / ref.abs()).max())

    import loss_landscapes
    import loss_landscapes.metrics

    metric = loss_landscapes.metrics.Loss(torch.nn.CrossEntropyLoss(), x, y)
    _, t_pkg = timed(loss_landscapes.random_plane, copy.deepcopy(model), metric, distance=1, steps=ll_steps,
                     normalization="filter", deepcopy_model=True)
    return {
        "quick": quick,
        "n_params": ev.space.size,
        "n_samples": len(x),
        "steps": steps,
        "rows": [
            ("losslens (Evaluator + surface_2d)", steps * steps, t_ll),
            (f"point-by-point (every {stride}th point)", len(common), t_ref),
            (f"loss-landscapes random_plane {ll_steps}x{ll_steps}", ll_steps * ll_steps, t_pkg),
        ],
        "max_rel_diff": rel,
        "n_common": len(common),
        "hessian": hessian_bench.run(quick),
    }


def report(r: dict) -> str:
    """The figures as tables and the last summary line."""
    rates = [n / t for _, n, t in r["rows"]]
    lines = [
        f"{r['steps']}x{r['steps']} plane, MLP 784-256-128-10 ({r['n_params']:,} parameters), {r['n_samples']} "
        f"samples, cross-entropy; torch {torch.__version__}, {torch.get_num_threads()} threads",
        "",
        f"{'method':<44}{'points':>7}{'seconds':>9}{'ms/point':>10}{'points/s':>10}{'vs loop':>9}",
    ]
    for (name, n, t), rate in zip(r["rows"], rates):
        lines.append(f"{name:<44}{n:>7}{t:>9.2f}{1e3 * t / n:>10.2f}{rate:>10.1f}{rate / rates[1]:>8.2f}x")
    lines += [
        "",
        f"max relative loss difference, losslens vs point-by-point, on {r['n_common']} common points: "
        f"{r['max_rel_diff']:.2e}",
        "loss-landscapes is timed only: its lattice is not the grid it claims (shifted by half a step, zig-zag "
        "over columns,",
        "U[0,1) directions, a larger distance gives a smaller region), so its values are not compared.",
        "",
        hessian_bench.report(r["hessian"]),
        "",
        f"surface_speedup={rates[0] / rates[1]:.2f} loss_landscapes_speedup={rates[0] / rates[2]:.2f} "
        f"max_rel_diff={r['max_rel_diff']:.2e}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 21x21 plane and the quick Hessian bench (under a minute)")
    args = parser.parse_args(argv)
    result = run(args.quick)
    print(report(result))
    return result


if __name__ == "__main__":
    main()
