"""NEB and AutoNEB on a tilted double well with a curved valley, whose saddle is known in closed form, and on a
real evaluator (every loss and gradient from its one batched call per step)."""

import numpy as np
import pytest
import torch
from torch import nn

from losslens.connectivity.neb import NEBChain, neb
from losslens.core.data import load_dataset, subset
from losslens.core.evaluator import Evaluator
from losslens.core.plan import Plan
from losslens.errors import ConfigError

C, TILT = 1.0, 0.3  # the valley floor is y = C (1 - x^2); the tilt makes the wells unequal


class CurvedWell:
    """L(x, y) = (x^2 - 1)^2 + 2 (y - C (1 - x^2))^2 + TILT x, counting its calls.

    In u = y - C (1 - x^2) it is (x^2 - 1)^2 + TILT x + 2 u^2: its critical points lie on the valley floor u = 0 at
    the roots of 4 x^3 - 4 x + TILT = 0, minima at the outer two, the saddle at the middle one. The straight line
    between the minima runs near y = 0, far below the floor's arch at x = 0 (y = C), so it climbs the wall."""

    def __init__(self):
        self.calls, self.rows = 0, []

    @staticmethod
    def loss(W):
        x, y = W[:, 0], W[:, 1]
        return (x**2 - 1) ** 2 + 2 * (y - C * (1 - x**2)) ** 2 + TILT * x

    def values_and_gradients(self, W):
        self.calls += 1
        self.rows.append(W.shape[0])
        W = W.detach().double().requires_grad_(True)
        values = self.loss(W)
        (grads,) = torch.autograd.grad(values.sum(), W)
        return values.detach(), grads


ROOTS = sorted(np.roots([4.0, 0.0, -4.0, TILT]).real)
A, B = (torch.tensor([x, C * (1 - x**2)], dtype=torch.float64) for x in (ROOTS[0], ROOTS[2]))
SADDLE = torch.tensor([ROOTS[1], C * (1 - ROOTS[1] ** 2)], dtype=torch.float64)
SADDLE_HEIGHT = (ROOTS[1] ** 2 - 1) ** 2 + TILT * ROOTS[1]
RELAX = {"steps": 300, "step_size": 0.03, "spring": 1.0, "progress": False}


def test_the_well_is_what_the_tests_assume():
    W = torch.stack([A, B, SADDLE]).requires_grad_(True)
    (grads,) = torch.autograd.grad(CurvedWell.loss(W).sum(), W)
    assert grads.abs().max() < 1e-12  # all three are critical points
    assert float(CurvedWell.loss(SADDLE[None])) == pytest.approx(SADDLE_HEIGHT, abs=1e-12)


def test_neb_finds_the_saddle_the_straight_line_climbs_over():
    chain = neb(CurvedWell(), A, B, pivots=21, **RELAX)
    top = int(np.argmax(chain.losses))
    assert chain.losses.max() == pytest.approx(SADDLE_HEIGHT, abs=1e-3)
    assert torch.linalg.vector_norm(chain.pivots[top] - SADDLE) < 0.05
    along = float(CurvedWell.loss(chain.points(np.linspace(0, 1, 2001))).max())
    assert along == pytest.approx(SADDLE_HEIGHT, abs=1e-3)  # the path between the pivots too
    line = A + torch.linspace(0, 1, 2001, dtype=torch.float64)[:, None] * (B - A)
    assert float(CurvedWell.loss(line).max()) > SADDLE_HEIGHT + 1.9  # by 1.97
    assert torch.equal(chain.pivots[0], A) and torch.equal(chain.pivots[-1], B)  # the endpoints stay fixed
    assert chain.history.shape == (300,) and chain.history[-1] < chain.history[0]
    spacing = torch.linalg.vector_norm(chain.pivots[1:] - chain.pivots[:-1], dim=1)
    assert spacing.max() / spacing.min() < 1.1  # the springs keep the pivots evenly spaced


def test_autoneb_inserts_pivots_where_the_loss_rises_and_reaches_the_saddle_from_few():
    few = neb(CurvedWell(), A, B, pivots=5, **RELAX)
    assert few.losses.max() < SADDLE_HEIGHT - 1e-2  # five pivots straddle the saddle
    chain = neb(CurvedWell(), A, B, pivots=5, auto=True, insert_points=3, max_pivots=15, **RELAX)
    assert chain.options["inserted"] and sum(chain.options["inserted"]) == chain.pivots.shape[0] - 5
    assert chain.pivots.shape[0] < 21  # fewer pivots than plain NEB needs
    assert chain.losses.max() == pytest.approx(SADDLE_HEIGHT, abs=1e-3)


def test_autoneb_inserts_at_the_highest_point_inside_a_segment_above_its_pivots():
    line = A + torch.linspace(0, 1, 13, dtype=torch.float64)[:, None] * (B - A)  # 4 pivots, 3 points per segment
    loss = CurvedWell.loss(line).numpy()
    inner = [[1 + 4 * i + j for j in range(3)] for i in range(3)]
    rising = [i for i in range(3) if loss[inner[i]].max() > max(loss[4 * i], loss[4 * i + 4])]
    assert rising == [1]  # only the middle segment holds the line's peak (by hand: the loss along the line)
    frozen = {"steps": 1, "step_size": 1e-12, "spring": 0.0, "progress": False}  # the pivots stay on the line
    chain = neb(CurvedWell(), A, B, pivots=4, auto=True, insert_points=3, max_pivots=5, **frozen)
    peak = inner[1][int(np.argmax(loss[inner[1]]))]
    assert chain.options["inserted"] == [1]
    assert torch.allclose(chain.pivots, line[[0, 4, peak, 8, 12]], atol=1e-9)


def test_autoneb_stops_at_max_pivots():
    chain = neb(CurvedWell(), A, B, pivots=3, auto=True, max_pivots=4, **RELAX)
    assert chain.pivots.shape[0] == 4 and chain.options["inserted"] == [1]


def test_every_loss_and_gradient_comes_from_one_batched_call_per_step():
    well = CurvedWell()
    neb(well, A, B, pivots=7, steps=12, step_size=0.03, progress=False)
    assert well.calls == 12 + 1 and well.rows == [7] * 13  # one per step, one for the final losses
    well = CurvedWell()
    chain = neb(well, A, B, pivots=5, steps=20, auto=True, insert_points=2, max_pivots=8, step_size=0.03,
                progress=False)
    cycles = len(chain.options["inserted"]) + 1
    assert well.calls == cycles * (20 + 1) + 1  # each cycle: its steps and one insertion check


@pytest.fixture(scope="module")
def digits_evaluator():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 12), nn.Tanh(), nn.Linear(12, 10))
    data = subset(load_dataset("digits", "train"), 96, seed=0)
    return Evaluator(model, "cross_entropy", data, plan=Plan(dtype=torch.float64, device="cpu"))


def test_on_a_real_evaluator_everything_comes_from_values_and_gradients(digits_evaluator, monkeypatch):
    ev = digits_evaluator
    w_a = ev.w0
    w_b = w_a + 0.5 * torch.randn(w_a.shape, generator=torch.Generator().manual_seed(1), dtype=w_a.dtype)
    calls, real = [], ev.values_and_gradients

    def spy(W):
        calls.append(W.shape[0])
        return real(W)

    monkeypatch.setattr(ev, "values_and_gradients", spy)
    for other in ("evaluate", "evaluate_affine", "hvp"):
        monkeypatch.setattr(ev, other, lambda *a, **k: pytest.fail("NEB must use values_and_gradients only"))
    chain = neb(ev, w_a, w_b, pivots=5, steps=4, step_size=0.1, progress=False)
    assert calls == [5] * 5
    assert np.allclose(chain.losses, real(chain.pivots)[0].numpy(), rtol=1e-12, atol=0)
    assert chain.history.shape == (4,) and chain.pivots.dtype == w_a.dtype


def test_points_follow_the_pivots_by_arc_length():
    pivots = torch.tensor([[0.0, 0.0], [3.0, 0.0], [3.0, 1.0]], dtype=torch.float64)  # lengths 3 and 1
    chain = NEBChain(pivots, np.zeros(3), np.zeros(1))
    assert np.allclose(chain.t, [0.0, 0.75, 1.0])
    got = chain.points([0.0, 0.5, 0.75, 0.875, 1.0])
    assert torch.allclose(got, torch.tensor([[0, 0], [2, 0], [3, 0], [3, 0.5], [3, 1.0]], dtype=torch.float64))
    assert chain.points(0.25).shape == (1, 2)
    for t, shown in ((1.5, r"\[1.5\]"), (-0.1, r"\[-0.1\]"), ([0.5, float("nan"), 2.0], r"\[nan, 2.0\]")):
        with pytest.raises(ConfigError, match=rf"^t must be numbers from 0 to 1 \(got {shown}\)$"):
            chain.points(t)
    with pytest.raises(ConfigError, match=r"^t must be a number or a one-dimensional array"):
        chain.points([[0.5]])


def test_jitter_is_seeded():
    def run(seed):
        return neb(CurvedWell(), A, B, pivots=5, steps=3, jitter=0.1, seed=seed, progress=False).pivots

    assert torch.equal(run(3), run(3)) and not torch.equal(run(3), run(4))
    assert not torch.equal(run(3), neb(CurvedWell(), A, B, pivots=5, steps=3, progress=False).pivots)


@pytest.mark.parametrize("options, named", [
    ({"pivots": 2}, "pivots"), ({"steps": 0}, "steps"), ({"spring": -1.0}, "spring"), ({"step_size": 0.0}, "step_size"),
    ({"auto": "yes"}, "auto"), ({"insert_points": 0}, "insert_points"), ({"pivots": 9, "max_pivots": 8}, "max_pivots"),
    ({"jitter": float("nan")}, "jitter"), ({"seed": -1}, "seed"),
])
def test_bad_options_are_refused_naming_them(options, named):
    with pytest.raises(ConfigError, match=f"^{named} must be"):
        neb(CurvedWell(), A, B, progress=False, **options)


def test_bad_objectives_and_endpoints_are_refused():
    with pytest.raises(ConfigError, match="objective must be"):
        neb(object(), A, B, progress=False)
    with pytest.raises(ConfigError, match="same point"):
        neb(CurvedWell(), A, A.clone(), progress=False)
    with pytest.raises(ConfigError, match="w_a and w_b must be vectors"):
        neb(CurvedWell(), A, torch.zeros(3, dtype=torch.float64), progress=False)
