# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The book's chapter 5 with losslens: a Gaussian bowl, three optimizers, and the true loss
#
# The chapter trains an MLP on the digits, looks at the loss on the plane of the two top Hessian
# eigenvectors, fits one Gaussian bowl to it and replays SGD, momentum and Adam on the fit to show how they
# move. This notebook runs that workflow with losslens, and puts next to each of the book's settings what
# losslens measures instead: the goodness of the fit, a free offset, the fitted curvature against the
# Hessian's, the stability limit of gradient descent, the (non-)convexity of a Gaussian, and the same
# optimizers on the true loss in the plane.
#
# Open it in Jupyter with `jupytext --to notebook examples/book_chapter5_notebook.py`, or run it as a script:
# `python examples/book_chapter5_notebook.py --out book5-notebook` (small: `--epochs 2 --grid 9 --steps 40`).
# `examples/book_chapter5.py` is the same workflow as a command with a compact printed comparison.

# %%
import argparse
from pathlib import Path

import numpy as np
import torch

from losslens import Recipe, fit_surface, hessian_directions, surface_2d, train
from losslens.landscape.fit import model_function
from losslens.plot import plot_contour, plot_fit, plot_replay_paths, plot_residuals
from losslens.trajectories.objectives import PlaneLoss, ReplayObjective, fit_objective
from losslens.trajectories.replay import OptimizerSpec, replay

parser = argparse.ArgumentParser(description="the book's chapter 5 with losslens, as a notebook")
parser.add_argument("--out", default="book5-notebook", help="output directory")
parser.add_argument("--epochs", type=int, default=10, help="training epochs of the MLP")
parser.add_argument("--grid", type=int, default=41, help="grid points per axis of the plane")
parser.add_argument("--steps", type=int, default=100, help="steps of each replay")
args, _ = parser.parse_known_args()  # in Jupyter, the kernel's own arguments are left alone
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. The default MLP on digits
#
# losslens's default model, trained with Adam (lr 3e-3) for 10 epochs. The evaluator reads the model, the data
# set and the split from the checkpoint, and every loss below comes from it (the training loss: the one the
# optimizer minimized).

# %%
run = train("mlp", "digits", optimizer="adam", lr=3e-3, epochs=args.epochs, out=out / "run", overwrite=True,
            progress=False)
ev = Recipe.from_checkpoint(run.checkpoints[-1], split="train").evaluator(run.checkpoints[-1])
print(f"{ev.space.size} parameters, {ev.n_samples} training samples")

# %% [markdown]
# ## 2. The plane of the top two Hessian eigenvectors
#
# `hessian_directions` gives unit eigenvectors (Lanczos on Hessian-vector products), so a coordinate is a
# distance in weight space, and the book's square [-2, 2]^2 is a region of radius 2 around the trained weights
# `w0`. The grid is `Z[iy, ix] = L(w0 + x[ix] d1 + y[iy] d2)`.

# %%
dirs = hessian_directions(ev, k=2, seed=0)
axis = np.linspace(-2.0, 2.0, args.grid)
surface = surface_2d(ev, ev.w0, dirs, axis, axis, progress=False)
surface.save(out / "hessian_plane.h5")
print("Hessian eigenvalues at w0:", [round(v, 4) for v in dirs.meta["eigenvalues"]])
fig = plot_contour(surface)
fig.savefig(out / "hessian_plane.png", dpi=120)
fig

# %% [markdown]
# ## 3. One Gaussian bowl: the book's fit, and losslens's
#
# The book fits `z = offset - A exp(-((x-x0)^2/(2 s1^2) + (y-y0)^2/(2 s2^2)))` with the offset fixed at the
# largest value, from all-ones, with no bounds and no goodness of fit. losslens fits from data-driven initial
# guesses with bounds, reports R^2, the RMSE and the residual map, and lets the offset be free.

# %%
book_fit = fit_surface(surface, "gaussian", offset="max")
free_fit = fit_surface(surface, "gaussian")
print(book_fit.summary(), free_fit.summary(), sep="\n\n")
fig = plot_residuals(book_fit)
fig.savefig(out / "fit_book_residuals.png", dpi=120)
fig

# %%
fig = plot_fit(book_fit)
fig.savefig(out / "fit_book_3d.png", dpi=120)
fig

# %% [markdown]
# ### The fitted curvature is not the Hessian's
#
# The fit's curvature holds at the fitted minimum; the Hessian eigenvalues at `w0`. The true loss restricted
# to the plane, `PlaneLoss`, gives its own 2 x 2 Hessian anywhere (two Hessian-vector products per point): at
# the origin it is `diag(lambda_1, lambda_2)`, the eigenvalues along the plane's own directions.

# %%
plane = PlaneLoss(ev, surface=surface)
points = torch.tensor([[0.0, 0.0], book_fit.minimum.tolist()], dtype=torch.float64)
_, _, H = plane.value_grad_hessian(points)
true_curvature = torch.linalg.eigvalsh(H).flip(-1).numpy()
print(f"fitted curvature at the fit's minimum {book_fit.curvature.round(3)} (book's fit), "
      f"{free_fit.curvature.round(3)} (free offset)")
print(f"true loss in the plane: {true_curvature[0].round(3)} at w0, {true_curvature[1].round(3)} at the fit's minimum")
print(f"stability limit of gradient descent on the fit, 2/lambda_max = {book_fit.stable_lr:.4g} (SGD's lr: 0.1)")

# %% [markdown]
# ### A single Gaussian is not convex
#
# The book calls the bowl convex. Its Hessian is positive definite only within about one width of the centre:
# here is the share of the plane where the fitted Hessian has a negative eigenvalue.

# %%
X, Y = np.meshgrid(surface.x, surface.y)
grid_points = torch.as_tensor(np.stack([X.ravel(), Y.ravel()], axis=1))
_, _, H_fit = fit_objective(book_fit).value_grad_hessian(grid_points)
indefinite = float((torch.linalg.eigvalsh(H_fit)[:, 0] < 0).double().mean())
print(f"the book's fit is not convex on {indefinite:.0%} of the plane")

# %% [markdown]
# ## 4. Replays: SGD, momentum and Adam, 100 steps from (-1, 1)
#
# The book's settings: SGD at lr 0.1, its momentum `v = 0.8 v + 0.2 g, w -= 0.05 v` (`book-momentum`:
# `torch.optim.SGD(momentum=0.8, dampening=0.8)`), Adam at lr 0.1. First on the fit:

# %%
optimizers = [OptimizerSpec("sgd", 0.1, label="SGD"), OptimizerSpec("book-momentum", 0.05, label="momentum 0.8 (book)"),
              OptimizerSpec("adam", 0.1, label="Adam")]
on_fit = replay(fit_objective(book_fit), optimizers, start=(-1.0, 1.0), steps=args.steps)
print(on_fit.summary())
fig = plot_replay_paths(on_fit)
fig.savefig(out / "replay_fit.png", dpi=120)
fig

# %% [markdown]
# Then on the true loss in the plane, `L(w0 + x d1 + y d2)`: at every step the three optimizers' points go to
# the evaluator together, in one batched call that returns their losses and gradients; the gradient in the
# plane is `D grad L`. The paths may leave the computed grid (the loss is defined everywhere); the contours
# are those of the grid.

# %%
on_true = replay(plane, optimizers, start=(-1.0, 1.0), steps=args.steps)
print(on_true.summary())
fig = plot_replay_paths(on_true)
fig.savefig(out / "replay_true.png", dpi=120)
fig

# %% [markdown]
# ## 5. The book's own fit: SGD at 0.1 is above the stability limit
#
# The book's published parameters (A 29.27, x0 -0.0489, y0 -0.0669, s1 0.747, s2 0.949) have the top curvature
# A/s1^2 = 52.5 at the minimum, so gradient descent is stable for lr < 2/52.5 = 0.038: its SGD at 0.1 is 2.6
# times above, and it leaves the basin.

# %%
published = {"A": 29.27164346, "x0": -0.0488573, "y0": -0.06687705, "s1": 0.7469189, "s2": 0.94904458}
book_objective = ReplayObjective(model_function("gaussian", {"offset": published["A"], **published}),
                           name="the book's published fit", domain=((-2.0, 2.0), (-2.0, 2.0)),
                           minimum=(published["x0"], published["y0"]), min_value=0.0)
on_published = replay(book_objective, optimizers, start=(-1.0, 1.0), steps=args.steps)
print(on_published.summary())
fig = plot_replay_paths(on_published)
fig.savefig(out / "replay_published.png", dpi=120)
fig

# %% [markdown]
# ## Summary
#
# Where each optimizer ends after the replays, on the fit and on the true loss.

# %%
for label in on_fit.labels:
    f, t = on_fit.path(label), on_true.path(label)
    print(f"{label:<20} fit: ({f['x'][-1]:+.3f}, {f['y'][-1]:+.3f}) loss {f['loss'][-1]:.4g}   "
          f"true loss: ({t['x'][-1]:+.3f}, {t['y'][-1]:+.3f}) loss {t['loss'][-1]:.4g}")
print(f"the fit's minimum: ({book_fit.minimum[0]:+.3f}, {book_fit.minimum[1]:+.3f}); the trained weights: (0, 0)")
