"""Run by tests/landscape/test_surface_distributed.py under torchrun: one rank of a shared grid.

Usage: python -m torch.distributed.run --nproc_per_node=2 --standalone _surface_worker.py FILE OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from losslens.core.evaluator import Evaluator
from losslens.landscape.directions import random_directions
from losslens.landscape.surface import init_distributed_from_env, surface_1d, surface_2d

X_COORDS = np.linspace(-1.0, 1.0, 5)
Y_COORDS = np.linspace(-0.5, 1.0, 4)
META = {"model": {"name": "tiny-mlp"}, "data": {"name": "random", "split": "test"}}


def setup():
    """The same tiny MLP, data, evaluator and directions on every process (fixed seeds)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 4, generator=g), torch.randint(0, 3, (64,), generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    ev = Evaluator(model, "cross_entropy", (x, y), device="cpu")
    return ev, random_directions(ev.space, ev.w0, n=2, seed=0)


class Counting:
    """The evaluator, counting the grid points this rank is asked for."""

    def __init__(self, evaluator):
        self._ev, self.points = evaluator, 0

    def __getattr__(self, name):
        return getattr(self._ev, name)

    def evaluate_affine(self, w0, D, coeffs):
        self.points += len(coeffs)
        return self._ev.evaluate_affine(w0, D, coeffs)


def main(path: str, out_dir: str) -> None:
    assert init_distributed_from_env(), "expected a process group of more than one process"
    rank = torch.distributed.get_rank()
    ev, dirs = setup()
    counting = Counting(ev)
    s = surface_2d(counting, ev.w0, dirs, X_COORDS, Y_COORDS, path=path, chunk=3, progress=False, meta=META)
    np.save(Path(out_dir) / f"rank{rank}.npy", s.loss)
    (Path(out_dir) / f"points{rank}.txt").write_text(str(counting.points))
    # every rank must share the grid: directions seeded by rank are refused on all ranks together
    other = random_directions(ev.space, ev.w0, n=1, seed=rank)
    try:
        surface_1d(ev, ev.w0, other, X_COORDS, progress=False)
    except ValueError as err:
        (Path(out_dir) / f"mismatch{rank}.txt").write_text(str(err))
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:3])
