"""Fixtures shared by the Hessian tests (tests/curvature/, and the curvature map's in tests/landscape/)."""

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call, hessian

from losslens.core.evaluator import Evaluator
from losslens.core.plan import Plan
from losslens.curvature.operator import HessianOperator


@pytest.fixture(scope="module")
def net():
    """A tiny MLP in train mode, its float64 evaluator and the dense Hessian of the mean loss at w0."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 3))
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    ev = Evaluator(model, "cross_entropy", (x, y), plan=Plan(dtype=torch.float64))
    op = HessianOperator(ev)
    ref = copy.deepcopy(model).double()

    def loss(w):
        return nn.functional.cross_entropy(functional_call(ref, ev.space.unflatten(w), (x.double(),)), y)

    dense = hessian(loss)(op.w.cpu())
    return model, ev, op, dense
