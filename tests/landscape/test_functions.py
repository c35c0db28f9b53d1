"""The analytic test functions: values by hand, stationary points where documented, the registry's errors."""

import math

import numpy as np
import pytest
import torch
from torch.autograd.functional import hessian, jacobian

from losslens.errors import ConfigError
from losslens.landscape.functions import FUNCTIONS, get_function


def grad_and_hessian(f, point):
    p = torch.tensor(point, dtype=torch.float64)
    scalar = lambda q: f(q[None])[0]  # noqa: E731
    return jacobian(scalar, p), hessian(scalar, p)


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_documented_minima_are_minima(name):
    f = get_function(name)
    (x0, x1), (y0, y1) = f.domain
    for m in f.minima:
        g, H = grad_and_hessian(f, m)
        assert g.norm() < 1e-7, (m, g)
        assert torch.linalg.eigvalsh(H).min() > 0
        assert x0 <= m[0] <= x1 and y0 <= m[1] <= y1
    if f.minima:  # the global minimum is the lowest point of a fine grid over the domain
        assert float(f(torch.tensor([f.minima[0]], dtype=torch.float64))) == pytest.approx(f.min_value, abs=1e-9)
        X, Y = np.meshgrid(np.linspace(x0, x1, 301), np.linspace(y0, y1, 301))
        values = f(torch.as_tensor(np.stack([X.ravel(), Y.ravel()], axis=1)))
        assert float(values.min()) >= f.min_value - 1e-9
    assert x0 <= f.start[0] <= x1 and y0 <= f.start[1] <= y1


def test_saddle_has_no_minimum_and_an_indefinite_stationary_point():
    f = get_function("saddle")
    assert f.minima == () and f.min_value is None
    g, H = grad_and_hessian(f, (0.0, 0.0))
    assert g.norm() == 0 and torch.allclose(H, torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64)))


@pytest.mark.parametrize("name, point, value", [
    ("rosenbrock", (0.0, 0.0), 1.0),
    ("beale", (0.0, 0.0), 1.5**2 + 2.25**2 + 2.625**2),
    ("himmelblau", (0.0, 0.0), 121.0 + 49.0),
    ("rastrigin", (0.5, 0.5), 20.5 + 20.0),
    ("saddle", (2.0, 1.0), 1.5),
    ("quadratic", (2.0, 1.0), (4.0 + 10.0) / 2),
])
def test_values_by_hand(name, point, value):
    assert float(get_function(name)(torch.tensor([point], dtype=torch.float64))) == pytest.approx(value, rel=1e-12)


def test_quadratic_hessian_is_diag_one_kappa():
    f = get_function("quadratic", kappa=25.0)
    _, H = grad_and_hessian(f, (0.3, -0.7))
    assert torch.allclose(H, torch.diag(torch.tensor([1.0, 25.0], dtype=torch.float64)))
    assert f.options == {"kappa": 25.0}


def test_mixture_wells_are_their_depths():
    f = get_function("gaussian-mixture")
    values = f(torch.tensor(f.minima, dtype=torch.float64))
    assert values.tolist() == pytest.approx([-1.0, -0.6], abs=1e-8)


def test_batched_and_shape_checked():
    f = get_function("himmelblau")
    pts = torch.tensor([[3.0, 2.0], [0.0, 0.0], [1.0, -1.0]], dtype=torch.float64)
    assert f(pts).shape == (3,)
    assert f(pts)[2] == f(pts[2:])[0]
    with pytest.raises(ValueError, match=r"\(K, 2\).*\[2\]"):
        f(pts[0])


def test_registry_errors_name_the_valid_choices():
    with pytest.raises(ConfigError, match=r"test function must be one of .*rosenbrock.*gaussian-mixture \(got 'booth'"):
        get_function("booth")
    with pytest.raises(ConfigError, match="takes no option kappa"):
        get_function("rosenbrock", kappa=3)
    for bad in (0, -1.0, math.inf, "10"):
        with pytest.raises(ConfigError, match=r"kappa must be a finite number > 0 \(got "):
            get_function("quadratic", kappa=bad)
    assert get_function("Rosenbrock").name == "rosenbrock"
