"""Helpers of the connectivity tests: a tiny float64 classifier and its evaluator."""

import torch
from torch import nn

from losslens.core.evaluator import Evaluator
from losslens.core.plan import Plan


def tiny_evaluator(seed: int = 0, bn: bool = False, mode: str = "eval"):
    """A float64 4-6-3 classifier (with BatchNorm when ``bn``) on 40 random samples, and its evaluator."""
    torch.manual_seed(seed)
    layers = [nn.Linear(4, 6)] + ([nn.BatchNorm1d(6)] if bn else []) + [nn.Tanh(), nn.Linear(6, 3)]
    model = nn.Sequential(*layers).double()
    g = torch.Generator().manual_seed(seed + 1)
    x, y = torch.randn(40, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (40,), generator=g)
    return model, (x, y), Evaluator(model, "cross_entropy", (x, y), bn=mode, plan=Plan(device="cpu", dtype=torch.float64))
