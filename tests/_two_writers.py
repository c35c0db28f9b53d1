"""Run by tests/test_io.py: one process computing a surface into FILE, slowly.

Usage: python _two_writers.py FILE STARTED GO — touches STARTED at its first evaluation (the output
is locked by then), then waits for GO to exist (at most 60 s) before the others.
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
from losslens.landscape.surface import surface_2d


class Slow:
    """The evaluator, saying when it starts and waiting for GO after its first chunk."""

    def __init__(self, evaluator, started: Path, go: Path):
        self._ev, self._started, self._go = evaluator, started, go

    def __getattr__(self, name):
        return getattr(self._ev, name)

    def evaluate_affine(self, w0, D, coeffs):
        deadline = time.monotonic() + 60
        while self._started.exists() and not self._go.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._started.touch()
        return self._ev.evaluate_affine(w0, D, coeffs)


if __name__ == "__main__":
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 4, generator=g), torch.randint(0, 3, (32,), generator=g)
    torch.manual_seed(0)
    ev = Evaluator(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)), "cross_entropy", (x, y),
                   plan=Plan(device="cpu"))
    dirs = random_directions(ev.space, ev.w0, n=2, seed=0)
    coords = np.linspace(-1.0, 1.0, 3)
    slow = Slow(ev, Path(sys.argv[2]), Path(sys.argv[3]))
    s = surface_2d(slow, ev.w0, dirs, coords, coords, path=sys.argv[1], chunk=1, progress=False)
    print(f"done {int(s.done.sum())}")
