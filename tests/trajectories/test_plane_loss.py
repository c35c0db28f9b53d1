"""The true loss in a plane: values equal to the surface's, derivatives equal to torch.func and finite
differences, one batched evaluator call per replay step, the picture's grid, refusals."""

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, hessian

from _trajectory_helpers import tiny_model
from losslens.core.evaluator import Evaluator
from losslens.core.plan import Plan
from losslens.landscape.directions import hessian_directions
from losslens.landscape.surface import surface_2d
from losslens.trajectories.objectives import PlaneLoss
from losslens.trajectories.replay import OptimizerSpec, replay

X = np.linspace(-1.0, 1.5, 6)  # non-square, asymmetric; (0, 0) is not on it
Y = np.linspace(-0.8, 0.6, 4)


def data(seed=0, n=40):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def evaluator(dtype=torch.float64, seed=0):
    x, y = data(seed)
    return Evaluator(tiny_model(), "cross_entropy", (x, y), plan=Plan(dtype=dtype, device="cpu"))


def unit_directions(P, seed=1):
    """Two unit directions that are NOT orthogonal (the chain rule needs no orthogonality)."""
    D = torch.randn(2, P, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    D[1] += 0.5 * D[0]
    return D / D.norm(dim=1, keepdim=True)


@pytest.fixture(scope="module")
def plane():
    ev = evaluator()
    return PlaneLoss(ev, unit_directions(ev.space.size))


def plane_function(obj):
    """f(c) = L(w0 + c D) written directly with torch.func, in float64."""
    model = copy.deepcopy(tiny_model())
    x, y = data()
    w0, D = obj.w0.double(), obj.D.double()

    def f(c):
        w = w0 + c @ D
        return nn.functional.cross_entropy(functional_call(model, obj.evaluator.space.unflatten(w), (x,)), y)

    return f


def test_gradients_and_hessians_equal_torch_func_in_float64(plane):
    f = plane_function(plane)
    pts = torch.tensor([[0.0, 0.0], [0.7, -0.4], [-1.2, 0.9]], dtype=torch.float64)
    loss, g, H = plane.value_grad_hessian(pts)
    l2, g2 = plane.value_and_grad(pts)
    for k, c in enumerate(pts):
        assert float(loss[k]) == pytest.approx(float(f(c)), rel=1e-13)
        torch.testing.assert_close(g[k], grad(f)(c), rtol=1e-11, atol=1e-13)
        torch.testing.assert_close(H[k], hessian(f)(c), rtol=1e-10, atol=1e-12)
    assert torch.equal(loss, l2) and torch.equal(g, g2)
    assert loss.dtype == g.dtype == H.dtype == torch.float64 and g.shape == (3, 2) and H.shape == (3, 2, 2)


def test_gradients_equal_central_differences_of_evaluate(plane):
    # h = 1e-5: truncation h^2 f'''/6 ~ 1e-11, rounding 1e-16 / h ~ 1e-11
    ev, h = plane.evaluator, 1e-5
    c = torch.tensor([0.3, -0.6], dtype=torch.float64)
    _, g = plane.value_and_grad(c[None])
    for i in range(2):
        e = torch.zeros(2, dtype=torch.float64)
        e[i] = h
        up, down = (float(ev.evaluate(plane.w0 + (c + s * e) @ plane.D).loss[0]) for s in (1, -1))
        assert float(g[0, i]) == pytest.approx((up - down) / (2 * h), rel=1e-8, abs=1e-10)


def test_hessian_at_the_origin_of_a_hessian_plane_is_the_eigenvalues():
    ev = evaluator()
    dirs = hessian_directions(ev, k=2, seed=0, tol=1e-10)
    _, _, H = PlaneLoss(ev, dirs).value_grad_hessian(torch.zeros(1, 2, dtype=torch.float64))
    torch.testing.assert_close(H[0], torch.diag(torch.tensor(dirs.meta["eigenvalues"], dtype=torch.float64)),
                               rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_values_at_the_grid_points_equal_the_surface(dtype, rtol):
    # both from the core: surface_2d's evaluate_affine and values_and_gradients; in float32 they agree to
    # rounding (a mean of 40 samples summed by other kernels: a few ulps of 6e-8, below 1e-6 relative)
    ev = evaluator(dtype)
    D = unit_directions(ev.space.size).to(dtype)
    surface = surface_2d(ev, ev.w0, D, X, Y, progress=False)
    obj = PlaneLoss(ev, surface=surface)
    Xg, Yg = np.meshgrid(X, Y)
    loss, _ = obj.value_and_grad(torch.as_tensor(np.stack([Xg.ravel(), Yg.ravel()], axis=1)))
    np.testing.assert_allclose(loss.numpy().reshape(len(Y), len(X)), surface.loss, rtol=rtol)
    assert surface.loss.shape == (4, 6) and np.ptp(surface.loss) > 100 * rtol * surface.loss.max()


def test_the_replay_agrees_with_the_surface_at_the_points_it_visits():
    ev = evaluator()
    D = unit_directions(ev.space.size)
    obj = PlaneLoss(ev, D)
    r = replay(obj, ["sgd", "adam"], lr=0.3, start=(0.5, -0.25), steps=5, lambda_max=1.0)
    pts = np.concatenate([p[:, 1:3] for p in r.paths])
    xs, ys = np.unique(pts[:, 0]), np.unique(pts[:, 1])  # the grid of the visited coordinates
    surface = surface_2d(ev, ev.w0, D, xs, ys, progress=False)
    for label in r.labels:
        p = r.path(label)
        ix, iy = np.searchsorted(xs, p["x"]), np.searchsorted(ys, p["y"])
        assert np.array_equal(xs[ix], p["x"]) and np.array_equal(ys[iy], p["y"])  # each visit is a grid point
        np.testing.assert_allclose(p["loss"], surface.loss[iy, ix], rtol=1e-12)
    assert len(set(pts[:, 0])) > 5  # the paths moved


def counting(ev):
    """Wrap the evaluator's batched derivatives: record the number of points of each call."""
    calls = {"values_and_gradients": [], "hvp": []}
    vg, hvp = ev.values_and_gradients, ev.hvp

    def values_and_gradients(W):
        calls["values_and_gradients"].append(len(W))
        return vg(W)

    def counted_hvp(w, V):
        calls["hvp"].append(len(V))
        return hvp(w, V)

    ev.values_and_gradients, ev.hvp = values_and_gradients, counted_hvp
    return calls


def test_one_batched_values_and_gradients_call_per_step():
    ev = evaluator()
    calls = counting(ev)
    obj = PlaneLoss(ev, unit_directions(ev.space.size))
    replay(obj, ["sgd", "momentum", "adam"], lr=0.05, start=(0.2, 0.1), steps=7, lambda_max=1.0)
    assert calls == {"values_and_gradients": [3] * 8, "hvp": []}  # steps 0..7, all three points each time

    ev2 = evaluator()
    surface = surface_2d(ev2, ev2.w0, unit_directions(ev2.space.size), X, Y, progress=False)
    calls = counting(ev2)
    replay(PlaneLoss(ev2, surface=surface), ["sgd", "adam"], lr=0.05, steps=4)
    # plus the curvature at the start and at the lowest grid point: one call and two products each
    assert calls == {"values_and_gradients": [1, 1] + [2] * 5, "hvp": [2, 2]}


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph")
def test_sophiah_gets_the_true_hessian():
    pytest.importorskip("pytorch_optimizer")
    ev = evaluator()
    calls = counting(ev)
    r = replay(PlaneLoss(ev, unit_directions(ev.space.size)), [OptimizerSpec("sophiah", 0.05), "sgd"], lr=0.05,
               start=(0.2, 0.1), steps=3, lambda_max=1.0)
    assert r.status == ("completed", "completed")
    assert calls == {"values_and_gradients": [2] * 4, "hvp": [2] * 8}  # one call per step, products per point


def test_the_picture_shows_the_grid_and_the_paths_may_leave_it():
    ev = evaluator()
    surface = surface_2d(ev, ev.w0, unit_directions(ev.space.size), X, Y, progress=False)
    obj = PlaneLoss(ev, surface=surface)
    assert not obj.strict and obj.domain == ((-1.0, 1.5), (-0.8, 0.6)) and obj.start == (-0.375, 0.25)
    i = np.unravel_index(np.argmin(surface.loss), surface.loss.shape)
    assert obj.minimum == (X[i[1]], Y[i[0]]) and obj.min_value == surface.loss[i]
    np.testing.assert_array_equal(obj.sample(X, Y), surface.loss)  # its own grid points: its values
    mid = obj.sample(np.array([(X[1] + X[2]) / 2, 9.0]), np.array([Y[3]]))
    assert mid[0, 0] == pytest.approx((surface.loss[3, 1] + surface.loss[3, 2]) / 2) and np.isnan(mid[0, 1])
    assert PlaneLoss(ev, surface.directions).sample(X, Y) is None  # no grid: no background

    r = replay(obj, ["sgd"], lr=0.5, start=(2.5, 1.0), steps=4)  # outside the grid: the true loss is defined there
    p = r.path("sgd")
    assert r.status == ("completed",) and (p["x"] > 1.5).all() and np.isfinite(p["loss"]).all()
    bx, by, bz = r.background
    assert bx.max() > 2.5 and by.max() > 1.0  # the picture holds the paths
    outside = (bx[None, :] > 1.5) | (by[:, None] > 0.6) | (bx[None, :] < -1.0) | (by[:, None] < -0.8)
    assert np.isnan(bz[outside]).all() and np.isfinite(bz[~outside]).all()
    assert "beyond" in r.meta["objective"]["note"] and r.meta["objective"]["kind"] == "true-loss"


def test_refusals_name_what_differs():
    ev = evaluator()
    D = unit_directions(ev.space.size)
    surface = surface_2d(ev, ev.w0, D, X, Y, progress=False)
    with pytest.raises(ValueError, match="direction vectors differ"):
        PlaneLoss(ev, unit_directions(ev.space.size, seed=5), surface=surface)
    with pytest.raises(ValueError, match="origin w0 differ"):
        PlaneLoss(ev, D, w0=ev.w0 + 0.1, surface=surface)
    with pytest.raises(ValueError, match=r"evaluator settings differ \(data\)"):
        PlaneLoss(evaluator(seed=3), D, surface=surface)
    with pytest.raises(ValueError, match=r"2 directions of the evaluator's 43 parameters, found shape \[1, 43\]"):
        PlaneLoss(ev, D[:1])
    with pytest.raises(ValueError, match="needs the plane.s directions"):
        PlaneLoss(ev)
