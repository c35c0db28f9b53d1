"""Objectives: autograd gradients and Hessians, batched; the grid's bicubic spline, exact on cubics and
equal to the data at the grid points; its domain."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from losslens.errors import ConfigError
from losslens.landscape.fit import fit_surface
from losslens.trajectories.objectives import (
    ReplayObjective, as_objective, fit_objective, function_objective, grid_objective,
)

X = np.linspace(-1.0, 2.0, 13)  # non-square, asymmetric
Y = np.linspace(-0.5, 1.5, 9)


def cubic(x, y):
    """Degree <= 3 in each variable: the bicubic interpolating spline reproduces it exactly."""
    return x**3 - 2 * x**2 * y + y**3 / 3 + x * y + 0.5 * y


def cubic_grad_hess(x, y):
    g = np.array([3 * x**2 - 4 * x * y + y, -2 * x**2 + y**2 + x + 0.5])
    H = np.array([[6 * x - 4 * y, -4 * x + 1], [-4 * x + 1, 2 * y]])
    return g, H


def grid(fn=cubic, x=X, y=Y):
    Xg, Yg = np.meshgrid(x, y)
    return SimpleNamespace(x=x, y=y, loss=fn(Xg, Yg), meta={"model": "toy"})


def test_autograd_values_gradients_and_hessians_are_batched():
    obj = function_objective("quadratic", kappa=4.0)
    pts = torch.tensor([[1.0, 2.0], [-0.5, 0.25], [0.0, 0.0]], dtype=torch.float64)
    loss, grad, H = obj.value_grad_hessian(pts)
    np.testing.assert_allclose(loss.numpy(), (pts[:, 0] ** 2 + 4 * pts[:, 1] ** 2).numpy() / 2)
    np.testing.assert_allclose(grad.numpy(), (pts * torch.tensor([1.0, 4.0], dtype=torch.float64)).numpy())
    assert torch.equal(H, torch.diag(torch.tensor([1.0, 4.0], dtype=torch.float64)).expand(3, 2, 2))
    assert not (loss.requires_grad or grad.requires_grad or H.requires_grad)
    l2, g2 = obj.value_and_grad(pts)
    assert torch.equal(l2, loss) and torch.equal(g2, grad)


def test_hessian_of_a_linear_function_is_zero():
    obj = ReplayObjective(lambda p: 2 * p[:, 0] - p[:, 1])
    _, grad, H = obj.value_grad_hessian(torch.zeros(2, 2, dtype=torch.float64))
    assert grad.tolist() == [[2.0, -1.0]] * 2 and torch.count_nonzero(H) == 0


def test_grid_spline_equals_the_data_at_every_grid_point():
    rng = np.random.default_rng(0)
    s = SimpleNamespace(x=X, y=Y, loss=rng.standard_normal((len(Y), len(X))), meta={})
    obj = grid_objective(s)
    Xg, Yg = np.meshgrid(X, Y)
    pts = torch.as_tensor(np.stack([Xg.ravel(), Yg.ravel()], axis=1))
    loss, _ = obj.value_and_grad(pts)
    np.testing.assert_allclose(loss.numpy().reshape(Xg.shape), s.loss, atol=1e-12)
    np.testing.assert_allclose(obj.sample(X, Y), s.loss, atol=1e-12)
    assert obj.strict and obj.domain == ((-1.0, 2.0), (-0.5, 1.5))
    i = np.unravel_index(np.argmin(s.loss), s.loss.shape)
    assert obj.minimum == (X[i[1]], Y[i[0]]) and obj.min_value == s.loss[i]


def test_grid_spline_derivatives_are_exact_on_a_cubic():
    obj = grid_objective(grid())
    rng = np.random.default_rng(1)
    pts = np.stack([rng.uniform(-1, 2, 20), rng.uniform(-0.5, 1.5, 20)], axis=1)
    loss, grad, H = obj.value_grad_hessian(torch.as_tensor(pts))
    np.testing.assert_allclose(loss.numpy(), cubic(pts[:, 0], pts[:, 1]), atol=1e-9)
    for k, (x, y) in enumerate(pts):
        g, h = cubic_grad_hess(x, y)
        np.testing.assert_allclose(grad[k].numpy(), g, atol=1e-8)
        np.testing.assert_allclose(H[k].numpy(), h, atol=1e-7)


def test_grid_accepts_unsorted_coordinates_without_transposing():
    x, y = X[::-1].copy(), Y[[3, 0, 8, 1, 2, 4, 5, 6, 7]]
    obj = grid_objective(grid(x=x, y=y))
    pts = torch.tensor([[0.3, 0.7], [1.9, -0.4]], dtype=torch.float64)
    np.testing.assert_allclose(obj.value_and_grad(pts)[0].numpy(), cubic(pts[:, 0], pts[:, 1]).numpy(), atol=1e-9)


def test_grid_domain_and_refusals():
    obj = grid_objective(grid())
    inside = obj.inside(torch.tensor([[-1.0, -0.5], [2.0, 1.5], [2.0001, 0.0], [0.0, -0.51]], dtype=torch.float64))
    assert inside.tolist() == [True, True, False, False]
    bad = grid()
    bad.loss[2, 3] = np.nan
    with pytest.raises(ConfigError, match="1 of 117 are NaN or inf"):
        grid_objective(bad)
    with pytest.raises(ConfigError, match="4 points per axis.*13 x 3"):
        grid_objective(grid(y=np.array([0.0, 1.0, 2.0])))
    with pytest.raises(ValueError, match=r"shape \[13, 9\], expected \[9, 13\]"):
        grid_objective(SimpleNamespace(x=X, y=Y, loss=grid().loss.T, meta={}))
    with pytest.raises(ConfigError, match="line"):
        grid_objective(SimpleNamespace(x=X, y=None, loss=X**2, meta={}))


def test_fit_objective_is_the_fitted_function():
    s = grid(lambda x, y: 1 - np.exp(-((x - 0.5) ** 2 + (y - 0.2) ** 2) / 0.5))
    fit = fit_surface(s, "gaussian")
    obj = fit_objective(fit)
    assert not obj.strict and obj.minimum == pytest.approx((0.5, 0.2), abs=1e-6)
    assert obj.min_value == pytest.approx(0.0, abs=1e-7)  # held >= 0 by a bound, reached to ~1e-8
    pts = torch.tensor([[0.0, 0.0], [5.0, 5.0]], dtype=torch.float64)  # defined outside the grid too
    np.testing.assert_allclose(obj.value_and_grad(pts)[0].numpy(), fit.function()(pts).detach().numpy())


def test_as_objective_dispatch():
    assert as_objective("beale").name == "beale"
    assert as_objective(grid()).strict
    assert as_objective(lambda p: p.sum(dim=1)).meta["kind"] == "callable"
    with pytest.raises(ConfigError, match="cannot replay on a int"):
        as_objective(3)


def test_an_objective_without_autograd_has_no_hessian():
    class External(ReplayObjective):
        def value_and_grad(self, points):
            return (points**2).sum(dim=1), 2 * points

    obj = External(name="external")
    assert not obj.has_hessian and obj.sample(X, Y) is None
    with pytest.raises(ConfigError, match="value_grad_hessian"):
        obj.value_grad_hessian(torch.zeros(1, 2, dtype=torch.float64))
