"""Tests of losslens.landscape.interpolation: a line between two points is a 1-D surface; exact
parabolas, barriers, the grid, round trips."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from losslens.connectivity.barriers import line_barriers
from losslens.core.evaluator import Evaluator
from losslens.core.plan import Plan
from losslens.errors import LosslensError
from losslens.landscape.directions import Directions, between
from losslens.landscape.interpolation import interpolate
from losslens.landscape.surface import Surface, surface_1d


@pytest.fixture
def quadratic():
    """A linear model with MSE: the loss along any line is an exact parabola."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(20, 4, generator=g, dtype=torch.float64)
    y = torch.randn(20, 1, generator=g, dtype=torch.float64)
    model = nn.Linear(4, 1, bias=False)
    ev = Evaluator(model, "mse", (X, y), metrics=(), plan=Plan(dtype=torch.float64))
    w_a = torch.randn(4, generator=g, dtype=torch.float64)
    w_b = torch.randn(4, generator=g, dtype=torch.float64)
    return ev, model, X, y, w_a, w_b


def parabola(X, y, w_a, d, t):
    """L(w_a + t d) = mean (r + t X d)^2 = c0 + 2 t c1 + t^2 c2, with r = X w_a - y."""
    r, s = (X @ w_a - y[:, 0]).numpy(), (X @ d).numpy()
    return np.mean(r**2) + 2 * t * np.mean(r * s) + t**2 * np.mean(s**2)


def test_loss_along_a_line_is_the_exact_parabola(quadratic):
    ev, model, X, y, w_a, w_b = quadratic
    before = model.weight.detach().clone()
    line = interpolate(ev, w_a, w_b, steps=41, names=("a.pt", "b.pt"))
    assert isinstance(line, Surface) and line.ndim == 1
    np.testing.assert_allclose(line.loss, parabola(X, y, w_a, w_b - w_a, line.x), rtol=1e-12)
    assert len(line.x) == 41 and line.x[0] == -0.5 and line.x[-1] == 1.5
    assert line.directions.kind == "between" and line.directions.meta["endpoints"] == ["a.pt", "b.pt"]
    assert line.directions.meta["norm"] == pytest.approx(float((w_b - w_a).norm()))
    np.testing.assert_array_equal(line.w0, w_a.numpy())
    assert line.meta["extrapolate"] == 0.5 and line.meta["loss"] == "mse"
    assert torch.equal(model.weight, before)


def test_a_1d_surface_along_the_line_equals_the_interpolation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    x, y = torch.randn(50, 6), torch.randint(0, 3, (50,))
    ev = Evaluator(model, "cross_entropy", (x, y))
    w_a, w_b = ev.w0, ev.w0 + 0.5 * torch.randn(ev.space.size)
    line = interpolate(ev, w_a, w_b, steps=13)
    surface = surface_1d(ev, w_a, between(w_a, w_b), line.x, progress=False)
    np.testing.assert_allclose(surface.loss, line.loss, rtol=1e-6)
    np.testing.assert_allclose(surface.metrics["accuracy"], line.metrics["accuracy"])


def test_grid_always_holds_the_endpoints(quadratic):
    ev, _, X, y, w_a, w_b = quadratic
    line = interpolate(ev, w_a, w_b, steps=4)  # -0.5, 1/6, 5/6, 1.5: misses 0 and 1
    np.testing.assert_allclose(line.x, [-0.5, 0, 1 / 6, 5 / 6, 1, 1.5])
    line = interpolate(ev, w_a, w_b, t=[0.3, -0.2])
    assert list(line.x) == [-0.2, 0.0, 0.3, 1.0]
    np.testing.assert_allclose(line.loss[[1, 3]], ev.evaluate(torch.stack([w_a, w_b])).loss.numpy(), rtol=1e-12)
    # linspace puts 5.6e-17 instead of 0 in the second grid, 1 + 2.2e-16 instead of 1 in the third
    for steps, extrapolate in [(41, 0.5), (17, 0.3), (13, 0.1)]:
        t = interpolate(ev, w_a, w_b, steps=steps, extrapolate=extrapolate).x
        assert len(t) == steps and 0.0 in t and 1.0 in t  # snapped to 0 and 1, not duplicated


def test_barrier_of_a_known_bump():
    line = Surface.from_arrays(np.array([-1, 0, 0.5, 1, 2.0]), None, np.array([10, 1, 3, 2, 10.0]))
    found = line_barriers(line)
    assert found["barrier_max"] == 1.0  # extrapolated values are not part of the segment
    assert found["barrier"] == 1.5 and found["barrier_mean"] == 1.5  # 3 above the chord's and the mean's 1.5
    assert set(found) == {"barrier", "barrier_mean", "barrier_max"}  # no accuracy, no error barriers
    with pytest.raises(ValueError, match="t=0 and t=1"):
        line_barriers(Surface.from_arrays(np.array([0.0, 0.5]), None, np.array([1.0, 2.0])))
    with pytest.raises(ValueError, match="on a line"):
        line_barriers(Surface.from_arrays([0.0, 1.0], [0.0, 1.0], np.zeros((2, 2))))


def test_barrier_of_a_double_well():
    """L(w) = (w^2 - 1)^2 from w = -1 to w = 1.2: peak 1 at w = 0, end values 0 and 0.1936."""
    model = nn.Linear(1, 1, bias=False)
    data = (torch.ones(3, 1, dtype=torch.float64), torch.zeros(3, 1, dtype=torch.float64))

    def double_well(out, target):
        return ((out**2 - 1) ** 2).mean()

    ev = Evaluator(model, double_well, data, metrics=(), plan=Plan(dtype=torch.float64))
    w_a, w_b = torch.tensor([-1.0], dtype=torch.float64), torch.tensor([1.2], dtype=torch.float64)
    line = interpolate(ev, w_a, w_b, t=np.append(np.linspace(-0.2, 1.2, 15), 1 / 2.2))
    assert line.loss[line.x == 0][0] == pytest.approx(0.0, abs=1e-15)
    found = line_barriers(line)
    assert found["barrier_max"] == pytest.approx(1 - 0.44**2, rel=1e-12)
    assert found["barrier_mean"] == pytest.approx(1 - 0.44**2 / 2, rel=1e-12)
    assert found["barrier"] == pytest.approx(1 - 0.44**2 / 2.2, rel=1e-12)  # at the peak, t = 1 / 2.2


def test_bad_arguments(quadratic):
    ev, _, X, y, w_a, w_b = quadratic
    with pytest.raises(ValueError, match=r"w_b must be .*\(4,\).*\[3\]"):
        interpolate(ev, w_a, w_b[:3])
    with pytest.raises(ValueError, match="the same point"):
        interpolate(ev, w_a, w_a.clone())
    with pytest.raises(ValueError, match="steps"):
        interpolate(ev, w_a, w_b, steps=1)
    with pytest.raises(ValueError, match="extrapolate"):
        interpolate(ev, w_a, w_b, extrapolate=-1.0)
    with pytest.raises(ValueError, match="finite"):
        interpolate(ev, w_a, w_b, t=[0.0, float("nan")])


def test_the_grid_always_samples_the_segment_and_the_barrier_reads_its_ends(quadratic):
    ev, _, X, y, w_a, w_b = quadratic
    for extrapolate in (1e30, 10.5, math.inf):  # so far out that the grid says nothing of the segment
        with pytest.raises(ValueError, match="extrapolate must be a number from 0 to 10"):
            interpolate(ev, w_a, w_b, extrapolate=extrapolate)
    with pytest.raises(ValueError, match=r"4 steps over \[-1, 2\] put no point strictly between t=0 and t=1"):
        interpolate(ev, w_a, w_b, steps=4, extrapolate=1.0)  # -1, 0, 1, 2
    assert interpolate(ev, w_a, w_b, steps=3, extrapolate=0.5).x.tolist() == [-0.5, 0.0, 0.5, 1.0, 1.5]
    line = interpolate(ev, w_a, w_b, steps=4, extrapolate=0.5)  # two points inside the segment
    assert line.x.tolist() == pytest.approx([-0.5, 0.0, 1 / 6, 5 / 6, 1.0, 1.5])
    assert line.x[1] == 0.0 and line.x[4] == 1.0  # A and B exactly
    loss = line.loss
    found, t = line_barriers(line), line.x[1:5]
    assert found["barrier_max"] == pytest.approx(max(loss[1:5]) - max(loss[1], loss[4]), rel=1e-12)
    assert found["barrier_mean"] == pytest.approx(max(loss[1:5]) - (loss[1] + loss[4]) / 2, rel=1e-12)
    assert found["barrier"] == pytest.approx(max(loss[1:5] - ((1 - t) * loss[1] + t * loss[4])), rel=1e-12)
    with pytest.raises(ValueError, match="strictly between t=0 and t=1"):
        line_barriers(interpolate(ev, w_a, w_b, t=[-1.0, 0.0, 1.0, 2.0]))


def test_save_load_resume_round_trip(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    ev = Evaluator(model, "cross_entropy", (x, y))
    w_a = ev.w0
    path = tmp_path / "line.h5"
    line = interpolate(ev, w_a, w_a * 0.5, steps=9, names=("trained", "half"), path=path)
    assert set(line.metrics) == {"accuracy"} and line.metrics["accuracy"].shape == line.x.shape
    back = Surface.load(path)
    np.testing.assert_array_equal(back.x, line.x)
    np.testing.assert_array_equal(back.loss, line.loss)
    np.testing.assert_array_equal(back.metrics["accuracy"], line.metrics["accuracy"])
    assert back.directions.meta["endpoints"] == ["trained", "half"] and line_barriers(back) == line_barriers(line)
    again = interpolate(ev, w_a, w_a * 0.5, steps=9, names=("trained", "half"), path=path)  # read, not recomputed
    assert again.meta["seconds"] == back.meta["seconds"]
    with pytest.raises(LosslensError, match="expected a losslens directions file, found surface"):
        Directions.load(path)


def test_barrier_names_what_is_not_a_line():
    with pytest.raises(TypeError, match="needs the Surface of a line .*got str"):
        line_barriers("line.h5")
