"""The book's chapter 5 with losslens: a Gaussian bowl fitted to a Hessian-eigenvector plane of a digits MLP,
and SGD, momentum and Adam replayed on the fit and on the true loss in that plane.

The chapter trains an MLP on digits, computes the loss on the plane of the top two Hessian eigenvectors
(unit norm, so coordinates are distances in weight space), fits one Gaussian bowl
``z = offset - A exp(-((x-x0)^2/(2 s1^2) + (y-y0)^2/(2 s2^2)))`` with the offset fixed at the largest value,
and replays SGD (lr 0.1), momentum SGD (lr 0.05, its momentum ``v = 0.8 v + 0.2 g``: losslens's
``book-momentum``) and Adam (lr 0.1) for 100 steps from (-1, 1) on the fit. Here the same workflow runs,
with the corrections beside the book's settings:

- the fit's goodness (R^2, RMSE) and a free offset, which the book does not report or allow;
- the fitted curvature at the fitted minimum next to the Hessian's eigenvalues, which the fit understates or
  overstates, and the stability limit 2/lambda_max of gradient descent against SGD's lr 0.1 (the book's own
  published fit has 2/lambda_max = 0.038, so its SGD at 0.1 is unstable: it leaves the basin);
- a single Gaussian is not convex: the share of the plane where the fit's Hessian is indefinite;
- the replays on the true loss in the plane, L(w0 + x d1 + y d2), where the picture stops being a cartoon.

    python examples/book_chapter5.py --out book5                                  # full size
    python examples/book_chapter5.py --out /tmp/b5 --epochs 2 --grid 9 --steps 40  # what the tests run

Writes into OUT: ``hessian_plane.h5`` (the surface), ``comparison.json`` (every number printed),
``hessian_plane.png``, ``fit_book_3d.png``, ``fit_book_residuals.png``, ``fit_free_residuals.png``,
``replay.png`` (the paths on the book-style fit and on the true loss, side by side), ``replay_published.png``,
``replay_convergence.png``, ``replay_true.html`` (the paths on the true loss, animated) and the replays,
``replay_published.h5``, ``replay_fit.h5`` and ``replay_true.h5``.
"""

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from losslens import Recipe, fit_surface, hessian_directions, surface_2d, train
from losslens.landscape.fit import model_function
from losslens.plot import (
    animate_paths, plot_contour, plot_convergence, plot_fit, plot_replay_paths, plot_residuals, write_html,
)
from losslens.trajectories.objectives import PlaneLoss, ReplayObjective, fit_objective
from losslens.trajectories.replay import OptimizerSpec, replay

START = (-1.0, 1.0)
RANGE = (-2.0, 2.0)
OPTIMIZERS = (  # the book's three, at its settings
    OptimizerSpec("sgd", 0.1, label="SGD"),
    OptimizerSpec("book-momentum", 0.05, label="momentum 0.8 (book)"),
    OptimizerSpec("adam", 0.1, label="Adam"),
)
# The book's published fit of its own plane (its offset is not published and does not move a path).
PUBLISHED = {"A": 29.27164346, "x0": -0.0488573, "y0": -0.06687705, "s1": 0.7469189, "s2": 0.94904458}


def published_fit() -> ReplayObjective:
    """The book's published Gaussian as an objective (offset = A: minimum value 0)."""
    f = model_function("gaussian", {"offset": PUBLISHED["A"], **PUBLISHED})
    return ReplayObjective(f, name="the book's published fit", domain=(RANGE, RANGE),
                     minimum=(PUBLISHED["x0"], PUBLISHED["y0"]), min_value=0.0)


def indefinite_share(fit, x, y) -> float:
    """Share of the grid ``(x, y)`` where the fitted function's Hessian has a negative eigenvalue: where
    the fit is not convex (a Gaussian bowl is convex only within about one width of its centre)."""
    X, Y = np.meshgrid(x, y)
    _, _, H = fit_objective(fit).value_grad_hessian(torch.as_tensor(np.stack([X.ravel(), Y.ravel()], axis=1)))
    return float((torch.linalg.eigvalsh(H)[:, 0] < 0).double().mean())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="book5", help="output directory")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs of the MLP")
    parser.add_argument("--grid", type=int, default=41, help="grid points per axis of the plane")
    parser.add_argument("--steps", type=int, default=100, help="steps of each replay")
    args = parser.parse_args(argv)
    out = Path(args.out)

    # 1. the default MLP on digits, and the plane of its top two Hessian eigenvectors (unit norm)
    run = train("mlp", "digits", optimizer="adam", lr=3e-3, epochs=args.epochs, out=out / "run", overwrite=True,
                progress=False)
    ev = Recipe.from_checkpoint(run.checkpoints[-1], split="train").evaluator(run.checkpoints[-1])
    dirs = hessian_directions(ev, k=2, seed=0)
    axis = np.linspace(*RANGE, args.grid)
    surface = surface_2d(ev, ev.w0, dirs, axis, axis, progress=False)
    surface.save(out / "hessian_plane.h5")

    # 2. the book's Gaussian (offset fixed at the largest loss) and losslens's (offset free)
    fits = {"book": fit_surface(surface, "gaussian", offset="max"), "free": fit_surface(surface, "gaussian")}

    # 3. the true loss in the plane: its Hessian there, from Hessian-vector products of the evaluator
    plane = PlaneLoss(ev, surface=surface)
    at = torch.tensor([[0.0, 0.0], fits["book"].minimum.tolist()], dtype=torch.float64)
    _, _, H = plane.value_grad_hessian(at)
    true_curvature = torch.linalg.eigvalsh(H).flip(-1).numpy()  # (2, 2): at w0, at the book fit's minimum

    # 4. the book's three optimizers, 100 steps from (-1, 1): on the published fit, the book-style fit of
    #    this plane, and the true loss in it (one batched evaluation of the three points per step)
    objectives = {"published": published_fit(), "fit": fit_objective(fits["book"]), "true": plane}
    replays = {k: replay(obj, OPTIMIZERS, start=START, steps=args.steps) for k, obj in objectives.items()}

    comparison = compare(ev, dirs, surface, fits, true_curvature, replays, args)
    print(report(comparison))
    (out / "comparison.json").write_text(json.dumps(comparison, indent=2) + "\n")
    draw(out, surface, fits, replays)
    return {"run": run, "evaluator": ev, "directions": dirs, "surface": surface, "fits": fits, "plane": plane,
            "true_curvature": true_curvature, "replays": replays, "comparison": comparison}


def compare(ev, dirs, surface, fits, true_curvature, replays, args) -> dict:
    """Every number of the comparison, JSON-compatible."""
    fit_rows = {}
    for name, fit in fits.items():
        fit_rows[name] = {
            "offset": fit.parameters["offset"], "offset_stderr": float(fit.stderr[0]), "r2": fit.r2, "rmse": fit.rmse,
            "parameters": fit.parameters, "minimum": fit.minimum.tolist(), "minimum_value": fit.minimum_value,
            "curvature": fit.curvature.tolist(), "stable_lr": fit.stable_lr,
            "indefinite_share": indefinite_share(fit, surface.x, surface.y),
        }
    runs = {}
    for where, r in replays.items():
        target = r.meta["minimum"]
        runs[where] = {row["optimizer"]: {
            "lr": row["lr"], "final": [row["final_x"], row["final_y"]], "final_loss": row["final_loss"],
            "distance_to_minimum": math.dist((row["final_x"], row["final_y"]), target) if target else None,
            "max_abs_x": float(np.abs(r.path(row["optimizer"])["x"]).max()), "status": row["status"],
            "lambda_max_minimum": row["lambda_max_minimum"],
            "lr_above_2_over_lambda_minimum": row["lr_above_2_over_lambda_minimum"],
        } for row in r.summary_rows()}
        runs[where]["minimum"] = target
    origin = surface.origin_index
    return {
        "setup": {"epochs": args.epochs, "grid": args.grid, "range": list(RANGE), "steps": args.steps,
                  "start": list(START), "n_samples": ev.n_samples, "n_params": ev.space.size},
        "loss_at_w0": float(surface.loss[origin]) if origin is not None else None,
        "hessian_eigenvalues": dirs.meta["eigenvalues"],
        "true_curvature_at_w0": true_curvature[0].tolist(),
        "true_curvature_at_fit_minimum": true_curvature[1].tolist(),
        "fits": fit_rows,
        "published_fit": {"parameters": PUBLISHED, "curvature": [PUBLISHED["A"] / PUBLISHED["s1"] ** 2,
                                                                 PUBLISHED["A"] / PUBLISHED["s2"] ** 2]},
        "replays": runs,
    }


def report(c: dict) -> str:
    """The comparison as a few aligned lines: the book's settings, then losslens's corrections."""
    s, book, free = c["setup"], c["fits"]["book"], c["fits"]["free"]

    def pair(v):
        return ", ".join(f"{x:.4g}" for x in v)

    def row(name, a, b):
        return f"  {name:<32}{a:<32}{b}"

    published = c["published_fit"]["curvature"]
    lines = [
        f"the book's chapter 5 with losslens: mlp on digits ({s['n_samples']} samples, {s['n_params']} parameters, "
        f"{s['epochs']} epochs); plane of the top two Hessian eigenvectors (unit norm), {s['grid']} x {s['grid']} "
        f"on [{s['range'][0]:g}, {s['range'][1]:g}]^2; loss at the trained weights {c['loss_at_w0']:.4g}",
        f"{'Gaussian fit':<34}{'the book: offset at the max':<32}losslens: offset free",
        row("offset", f"{book['offset']:.4g}", f"{free['offset']:.4g} ± {free['offset_stderr']:.2g}"),
        row("R^2, RMSE", f"{book['r2']:.4f}, {book['rmse']:.3g} (not reported)",
            f"{free['r2']:.4f}, {free['rmse']:.3g}"),
        row("fitted minimum (at)", f"{book['minimum_value']:.4g} ({pair(book['minimum'])})",
            f"{free['minimum_value']:.4g} ({pair(free['minimum'])}); the trained weights: "
            f"{c['loss_at_w0']:.4g} (0, 0)"),
        row("fitted curvature at the minimum", pair(book["curvature"]), pair(free["curvature"])),
        row("2/lambda_max of the fit", f"{book['stable_lr']:.4g}", f"{free['stable_lr']:.4g}  (SGD's lr: 0.1)"),
        row("not convex (Hessian indefinite)", f"on {book['indefinite_share']:.0%} of the plane",
            f"on {free['indefinite_share']:.0%} of the plane (a Gaussian is convex only near its centre)"),
        f"true loss in the plane: Hessian eigenvalues {pair(c['hessian_eigenvalues'])} at w0 (Lanczos), "
        f"{pair(c['true_curvature_at_w0'])} from the in-plane Hessian-vector products; "
        f"{pair(c['true_curvature_at_fit_minimum'])} at the book fit's minimum",
        f"the book's published fit: curvature {pair(published)}, 2/lambda_max {2 / published[0]:.3g} < SGD's lr 0.1",
        f"replays, {s['steps']} steps from ({s['start'][0]:g}, {s['start'][1]:g}): end point, final loss "
        "(! lr > 2/lambda_max at the minimum, gradient descent's limit; ^ visits |x| > 1.5)",
    ]
    headers = {"published": "on the book's published fit", "fit": "on the book-style fit here",
               "true": "on the true loss in the plane"}
    lines.append(" " * 22 + "".join(f"{h:<36}" for h in headers.values()))
    for label in (o.label for o in OPTIMIZERS):
        cells = []
        for where in headers:
            r = c["replays"][where][label]
            flags = ("!" if r["lr_above_2_over_lambda_minimum"] else "") + ("^" if r["max_abs_x"] > 1.5 else "")
            cells.append(f"({r['final'][0]:.3f}, {r['final'][1]:.3f}) {r['final_loss']:.4g} {flags}")
        lines.append(f"  {label:<20}" + "".join(f"{cell:<36}" for cell in cells))
    return "\n".join(lines)


def draw(out: Path, surface, fits, replays) -> None:
    """The pictures (see the module doc)."""
    from matplotlib.figure import Figure

    plot_contour(surface).savefig(out / "hessian_plane.png", dpi=120)
    plot_fit(fits["book"]).savefig(out / "fit_book_3d.png", dpi=120)
    plot_residuals(fits["book"]).savefig(out / "fit_book_residuals.png", dpi=120)
    plot_residuals(fits["free"]).savefig(out / "fit_free_residuals.png", dpi=120)
    plot_replay_paths(replays["published"]).savefig(out / "replay_published.png", dpi=120)
    panels = {"fit": "the book's way: one Gaussian fitted to the plane", "true": "losslens: the true loss in the plane"}
    for name, plot in (("replay.png", plot_replay_paths), ("replay_convergence.png", plot_convergence)):
        fig = Figure(figsize=(13.0, 6.4), layout="constrained")
        for ax, (where, title) in zip(fig.subplots(1, 2), panels.items()):
            plot(replays[where], ax=ax)
            ax.set_title(f"{title}\n{ax.get_title()}", fontsize="medium")
            for line in ax.get_lines():  # SGD's first jump lies under momentum's first steps: draw it on top
                if line.get_label().startswith("SGD"):
                    line.set_zorder(4)
        fig.savefig(out / name, dpi=100)
    write_html(animate_paths(replays["true"]), out / "replay_true.html", title="the book's replay on the true loss")
    for where, r in replays.items():
        r.save(out / f"replay_{where}.h5")
    print(f"wrote {out / 'hessian_plane.h5'}, {out / 'comparison.json'}, the replays and the pictures in {out}")


if __name__ == "__main__":
    main()
