"""Train an MLP on scikit-learn's digits, then look at the loss landscape around it, from Python.

The same objects the CLI writes to disk: a surface along filter-normalized random directions (on the
training loss, as Li et al. 2018 show it), the line from the initialization to the trained weights
with its barriers, and the Hessian's top eigenvalues and trace.

    python examples/digits_landscape.py --out digits-example            # 41x41 plane, about 15 s
    python examples/digits_landscape.py --out /tmp/ex --steps 7 --epochs 2   # what the tests run
"""

import argparse
from pathlib import Path

import numpy as np

from losslens import (
    HessianOperator, Recipe, eigenpairs, interpolate, line_barriers, load_checkpoint, random_directions,
    surface_2d, trace, train,
)
from losslens.plot import plot_1d, plot_contour


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="digits-example", help="output directory")
    parser.add_argument("--steps", type=int, default=41, help="grid points per axis")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args(argv)
    out = Path(args.out)

    run = train("mlp", "digits", optimizer="adam", lr=3e-3, epochs=args.epochs, out=out / "run", progress=False)
    # the model, its data and split come from the checkpoint's metadata; the evaluator records them
    ev = Recipe.from_checkpoint(run.checkpoints[-1], split="train").evaluator(run.checkpoints[-1])
    dirs = random_directions(ev.space, ev.w0, 2, normalization="filter", seed=0)
    axis = np.linspace(-1, 1, args.steps)
    surface = surface_2d(ev, ev.w0, dirs, axis, axis, path=out / "surface.h5", progress=False)
    plot_contour(surface).savefig(out / "surface_contour.png")

    w_init = ev.space.flatten(load_checkpoint(run.checkpoints[0]))
    line = interpolate(ev, w_init, ev.w0, steps=args.steps, names=("initialization", "trained"))
    plot_1d(line).savefig(out / "interpolation.png")

    H = HessianOperator(ev)
    top = eigenpairs(H, k=2)
    tr = trace(H, method="hutch++", n_matvec=30)
    print(f"loss at the trained weights {surface.loss[surface.origin_index]:.4f}, "
          f"highest on the plane {np.nanmax(surface.loss):.4f}")
    found = line_barriers(line)
    print("from initialization to trained weights: " + ", ".join(f"{name} {found[name]:.4f}"
                                                                 for name in ("barrier", "barrier_mean", "barrier_max")))
    print(f"top Hessian eigenvalues {top.values.tolist()}, trace {tr.value:.3f} ± {tr.stderr:.3f}")
    print(f"wrote {out / 'surface.h5'}, {out / 'surface_contour.png'}, {out / 'interpolation.png'}")
    return surface, line, top, tr


if __name__ == "__main__":
    main()
