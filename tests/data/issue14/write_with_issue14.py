"""How the files here were written: with the issue-14 code on the path (``git worktree add /tmp/old 23be0ba``),
``PYTHONPATH=/tmp/old python write_with_issue14.py OUT``; ``dynamics.h5`` is ``losslens train --epochs 2 --out run``'s, and
``read_by_issue14.json`` is ``tests/test_old_files.summary`` of each file as that code loaded it."""

import sys
import numpy as np, torch
from torch import nn
from losslens import Evaluator, random_directions, surface_2d
from losslens import HessianOperator, eigenpairs, density, fit_surface, multiscale, topology

out = sys.argv[1]
g = torch.Generator().manual_seed(0)
X, y = torch.randn(40, 3, generator=g, dtype=torch.float64), torch.randn(40, 1, generator=g, dtype=torch.float64)
model = nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 1)).double()
torch.manual_seed(0); [p.data.normal_(0, 0.5) for p in model.parameters()]
kw = dict(device="cpu", dtype=torch.float64, threads=1)
try:
    ev = Evaluator(model, "mse", (X, y), metrics=(), **kw)
except TypeError:
    from losslens import Plan
    ev = Evaluator(model, "mse", (X, y), metrics=(), plan=Plan(**kw))
dirs = random_directions(ev.space, ev.w0, 2, seed=0)
x = np.linspace(-1, 1, 6)
s = surface_2d(ev, ev.w0, dirs, x, x, path=f"{out}/surface.h5", progress=False)
H = HessianOperator(ev)
eigenpairs(H, k=2, seed=0).save(f"{out}/eigenpairs.h5")
density(H, n_vectors=2, n_lanczos=5, seed=0).save(f"{out}/spectrum.h5")
fit_surface(s, "quadratic").save(f"{out}/fit.h5")
multiscale(s).save(f"{out}/multiscale.h5")
topology(s).save(f"{out}/topology.h5")
