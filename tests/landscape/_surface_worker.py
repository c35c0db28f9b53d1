"""Run by tests/landscape/test_surface_distributed.py under torchrun: one rank of a shared grid.

Usage: python -m torch.distributed.run --nproc_per_node=2 --standalone _surface_worker.py FILE OUT_DIR [hang]

With ``hang``, rank 1 stops answering (sleeps) before the grid, and the group's timeout is 5 s.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from losslens.core.evaluator import Evaluator
from losslens.core.plan import Plan
from losslens.landscape.directions import random_directions
from losslens._distributed import init_distributed_from_env
from losslens.landscape.surface import surface_1d, surface_2d

X_COORDS = np.linspace(-1.0, 1.0, 5)
Y_COORDS = np.linspace(-0.5, 1.0, 4)
META = {"note": "tiny-mlp on random data"}


def setup():
    """The same tiny MLP, data, evaluator and directions on every process (fixed seeds)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 4, generator=g), torch.randint(0, 3, (64,), generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    ev = Evaluator(model, "cross_entropy", (x, y), plan=Plan(device="cpu"))
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


def main(path: str, out_dir: str, mode: str = "") -> None:
    assert init_distributed_from_env(timeout=5 if mode == "hang" else 300), "expected a process group"
    rank = torch.distributed.get_rank()
    ev, dirs = setup()
    if mode == "hang":
        if rank == 1:
            time.sleep(120)  # stopped answering: killed by torchrun when rank 0 gives up
        try:
            surface_2d(ev, ev.w0, dirs, X_COORDS, Y_COORDS, path=path, progress=False)
        except Exception as err:  # noqa: BLE001 - the message is the result
            (Path(out_dir) / "timeout.txt").write_text(f"{type(err).__name__}: {err}")
            raise SystemExit(3)
        return
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
    torch.distributed.barrier()  # leave together: a rank leaving early breaks the others' last collective
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:4])
