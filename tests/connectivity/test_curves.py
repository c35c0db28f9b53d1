"""The curves' coefficients and points: the line, a Bezier curve through the midpoint (the line again), the
polychain's two segments, and t outside [0, 1] refused for a curve."""

import pytest
import torch

from losslens.connectivity.connect import connect
from losslens.connectivity.curves import Bezier, Line, Polychain
from losslens.errors import ConfigError

from _connect_helpers import tiny_evaluator


def _ends(P=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(P, generator=g, dtype=torch.float64), torch.randn(P, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("cls", [Line, Bezier, Polychain])
def test_every_path_starts_at_a_ends_at_b_and_its_coefficients_sum_to_one(cls):
    a, b = _ends()
    theta = torch.randn(7, dtype=torch.float64)
    curve = cls(a, b, theta)
    t = torch.linspace(0, 1, 11)
    assert torch.allclose(curve.coefficients(t).sum(dim=1), torch.ones(11, dtype=torch.float64))
    W = curve.points([0.0, 1.0])
    assert torch.equal(W[0], a) and torch.equal(W[1], b)


def test_the_bezier_curve_and_the_polychain_pass_through_the_bend_as_their_formulas_say():
    a, b = _ends()
    theta = torch.randn(7, dtype=torch.float64)
    assert torch.allclose(Polychain(a, b, theta).points([0.5])[0], theta)
    assert torch.allclose(Polychain(a, b, theta).points([0.25])[0], (a + theta) / 2)
    assert torch.allclose(Bezier(a, b, theta).points([0.5])[0], a / 4 + theta / 2 + b / 4)


def test_a_bezier_curve_through_the_midpoint_is_the_line_in_points_and_losses():
    model, data, ev = tiny_evaluator()
    a = ev.w0
    b = a + 0.5 * torch.randn(a.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    t = torch.linspace(0, 1, 9, dtype=torch.float64)
    # w(t) = (1-t)^2 A + t(1-t)(A + B) + t^2 B = (1-t) A + t B
    assert torch.allclose(Bezier(a, b).points(t), Line(a, b).points(t), atol=1e-14)
    line = connect(ev, a, b, path="line", points=9)
    curve = connect(ev, a, b, path="bezier", points=9, steps=1, lr=1e-300)  # a step of 1e-300 leaves the midpoint
    assert curve.curves[0][:, 3] == pytest.approx(line.curves[0][:, 3], abs=1e-12)


@pytest.mark.parametrize("cls", [Bezier, Polychain])
def test_t_outside_the_unit_interval_is_refused_for_a_curve(cls):
    a, b = _ends()
    with pytest.raises(ConfigError, match=r"t must be in \[0, 1\] for a .* curve.*got 1.5"):
        cls(a, b).points([0.0, 1.5])
    with pytest.raises(ConfigError, match="got -0.1"):
        cls(a, b).coefficients([-0.1])


def test_the_line_extrapolates():
    a, b = _ends()
    assert torch.allclose(Line(a, b).points([2.0])[0], 2 * b - a)
