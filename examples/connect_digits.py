"""Are two minima connected? Two digits MLPs from different seeds, the line and a trained Bezier curve between
them, before and after permuting B's hidden units to match A's (weight matching), from Python.

The same objects ``losslens connect A B --paths line bezier --align none weights`` writes: the loss and accuracy
along each path on the training split, the three barriers of each (``barrier`` = max_t L(w(t)) - ((1-t) L(A) +
t L(B))), ``connect.h5``, ``connect.json`` and the figures ``connect.png`` and ``connect_plane.png``.

    python examples/connect_digits.py --out connect-example       # 64-512-512-10, 20 epochs
    python examples/connect_digits.py --out /tmp/ex --hidden 32 --epochs 3 --points 7 --bend-updates 20
                                                                   # what the tests run
"""

import argparse
import json
from pathlib import Path

from losslens import Recipe, align, connect, load_checkpoint, train
from losslens.connectivity.connection import merge
from losslens.plot.render import render

PATHS = ["line", "bezier"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="connect-example", help="output directory")
    parser.add_argument("--hidden", type=int, nargs="+", default=[512, 512], help="hidden widths of the MLP")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--points", type=int, default=61, help="values of t along each path")
    parser.add_argument("--bend-updates", type=int, default=200, help="SGD updates of each Bezier curve's bend")
    args = parser.parse_args(argv)
    out = Path(args.out)

    # two minima: one architecture, SGD with momentum 0.9 at lr 0.05, initialized and shuffled from seeds 1 and 2
    a, b = (train("mlp", "digits", optimizer="momentum", lr=0.05, epochs=args.epochs, seed=seed,
                  model_kwargs={"hidden": args.hidden}, out=out / f"seed{seed}", overwrite=True,
                  progress=False).checkpoints[-1] for seed in (1, 2))
    ev = Recipe.from_checkpoint(a, split="train").evaluator(a)
    w_a = ev.w0
    w_b = ev.space.flatten(load_checkpoint(b, ev.module_at(w_a)))

    # B's hidden units permuted to match A's: the same function (output_change at rounding level), other weights
    alignment = align(ev.module_at(w_a), ev.module_at(w_b), method="weights", data=ev.data.x)
    w_b_aligned = ev.space.flatten(alignment.apply(ev.module_at(w_b)), dtype=ev.dtype)

    options = dict(path=PATHS, points=args.points, steps=args.bend_updates, lr=0.05, seed=0)
    result = merge([connect(ev, w_a, w_b, align="none", **options),
                    connect(ev, w_a, w_b_aligned, align="weights", **options)],
                   {"weights": {"output_change": alignment.output_change,
                                "objective": [float(v) for v in alignment.objective]}},
                   {"endpoints": [str(a), str(b)]})

    result.save(out / "connect.h5")
    (out / "connect.json").write_text(json.dumps(result.as_json(), indent=1))
    figures = render(result, out, "connect")
    print(f"weight matching changed B's outputs by {alignment.output_change:.2g} (relative)")
    for i, p in enumerate(result.paths):
        found = p["barriers"]["train"]["loss"]
        print(f"{result.label(i)}: barrier {found['barrier']:.4f}, barrier_mean {found['barrier_mean']:.4f}, "
              f"barrier_max {found['barrier_max']:.4f}")
    print(f"wrote {out / 'connect.h5'}, {out / 'connect.json'}, " + ", ".join(str(f) for f in figures))
    return result, alignment


if __name__ == "__main__":
    main()
