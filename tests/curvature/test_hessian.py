"""Tests of losslens/curvature/hessian.py: the Hessian operator and its eigenpairs, against ground truth.

Ground truth: a dense symmetric matrix with a known spectrum, and the dense Hessian of a tiny MLP
(8-6-3 on random data, float64) from ``torch.func.hessian`` of the loss as a function of the flat
parameter vector, diagonalized by ``torch.linalg.eigh``.
"""

import importlib.util

import numpy as np
import pytest
import torch
from scipy.sparse.linalg import eigsh

from torch import nn

from losslens.core.evaluator import Evaluator
from losslens.core.plan import Plan
from losslens.curvature.hessian import Eigenpairs, eigenpairs
from losslens.curvature.operator import HessianOperator, NonFiniteHessian
from losslens.errors import ConfigError


def known_matrix(P=120, seed=0):
    """``U diag(lam) U^T`` with a random orthogonal ``U`` and well separated extreme eigenvalues."""
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(P, P, generator=g, dtype=torch.float64))
    lam = torch.linspace(-1.0, 3.0, P, dtype=torch.float64)
    lam[-2:] = torch.tensor([5.0, 7.0], dtype=torch.float64)
    lam[:2] = torch.tensor([-4.0, -3.0], dtype=torch.float64)
    H = U @ torch.diag(lam) @ U.T
    return (H + H.T) / 2, lam, U




def snapshot(model):
    return [p.detach().clone() for p in model.parameters()], model.training


def assert_unchanged(model, snap):
    params, training = snap
    assert model.training == training
    for p, q in zip(model.parameters(), params):
        assert torch.equal(p.detach(), q)
        assert p.grad is None


# -- the operator ---------------------------------------------------------------------------------


def test_operator_products_match_dense_hessian(net):
    _, ev, op, dense = net
    P = ev.space.size
    assert op.shape == (P, P) and op.dtype == torch.float64 and op.device == ev.device
    assert torch.allclose(dense, dense.T, atol=1e-12)
    g = torch.Generator().manual_seed(1)
    v = torch.randn(P, generator=g, dtype=torch.float64)
    V = torch.randn(P, 3, generator=g, dtype=torch.float64)
    before = op.n_matvec
    hv, hV = (op @ v).cpu(), (op @ V).cpu()
    assert hv.shape == (P,) and hV.shape == (P, 3)
    assert op.n_matvec - before == 4
    torch.testing.assert_close(hv, dense @ v, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(hV, dense @ V, rtol=1e-10, atol=1e-12)


def test_to_scipy_is_float64_matvec_and_matmat(net):
    _, ev, op, dense = net
    lin = op.to_scipy()
    x = np.random.default_rng(0).standard_normal((ev.space.size, 2))
    assert lin.dtype == np.float64 and lin.shape == op.shape
    np.testing.assert_allclose(lin.matvec(x[:, 0]), dense.numpy() @ x[:, 0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(lin.matmat(x), dense.numpy() @ x, rtol=1e-10, atol=1e-12)
    vals = eigsh(lin, k=1, which="LA", return_eigenvectors=False)  # works unchanged
    assert vals[0] == pytest.approx(float(torch.linalg.eigvalsh(dense)[-1]), rel=1e-6)


def test_operator_at_another_point(net):
    _, ev, _, _ = net
    w = ev.w0.double().cpu() * 0.5
    assert torch.equal(HessianOperator(ev, w).w.cpu(), w)
    with pytest.raises(ValueError, match="shape"):
        HessianOperator(ev, w[:-1])


# -- eigenpairs on a known matrix -----------------------------------------------------------------


@pytest.mark.parametrize("which", ["largest", "smallest"])
def test_eigenpairs_of_known_matrix(which):
    H, lam, U = known_matrix()
    res = eigenpairs(H, k=3, which=which, tol=1e-10)
    idx = [-1, -2, -3] if which == "largest" else [0, 1, 2]
    torch.testing.assert_close(res.values, lam[idx], rtol=1e-6, atol=1e-8)
    assert res.vectors.shape == (3, 120) and res.vectors.device.type == "cpu"
    torch.testing.assert_close(res.vectors.norm(dim=1), torch.ones(3, dtype=torch.float64))
    cos = (res.vectors @ U[:, idx]).diagonal().abs()
    assert torch.all(cos > 1 - 1e-6)
    assert max(res.meta["residual_norms"]) < 1e-6
    assert res.which == which and res.meta["backend"] == "losslens" and res.n_matvec > 3


def test_eigenpairs_seeded_and_residuals_bound_the_error():
    H, lam, _ = known_matrix()
    a, b = eigenpairs(H, k=2, tol=1e-3, seed=5), eigenpairs(H, k=2, tol=1e-3, seed=5)
    assert torch.equal(a.values, b.values)
    # for a symmetric matrix and a unit vector, |lambda - nearest eigenvalue| <= ||Hv - lambda v||
    for value, r in zip(a.values, a.meta["residual_norms"]):
        assert float((lam - value).abs().min()) <= r + 1e-12


def test_eigenpairs_reports_non_convergence():
    clustered = torch.diag(torch.linspace(0.0, 1.0, 300, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="maxiter=1"):
        eigenpairs(clustered, k=2, maxiter=1)


def test_eigenpairs_save_load(tmp_path):
    H, _, _ = known_matrix(P=40)
    res = eigenpairs(H, k=2)
    path = res.save(tmp_path / "pairs.h5")
    back = Eigenpairs.load(path)
    assert torch.equal(back.values, res.values) and torch.equal(back.vectors, res.vectors)
    assert (back.which, back.tol, back.n_matvec, back.meta) == (res.which, res.tol, res.n_matvec, res.meta)


def test_eigenpairs_rejects_bad_options():
    H, _, _ = known_matrix(P=20)
    with pytest.raises(ValueError, match="largest, smallest"):
        eigenpairs(H, which="top")
    with pytest.raises(ValueError, match="losslens, pyhessian"):
        eigenpairs(H, backend="arpack")
    with pytest.raises(ValueError, match="k must be"):
        eigenpairs(H, k=20)
    if importlib.util.find_spec("pyhessian") is not None:
        with pytest.raises(ValueError, match="HessianOperator"):
            eigenpairs(H, backend="pyhessian")
    with pytest.raises(ValueError, match="symmetric"):
        eigenpairs(H + torch.triu(torch.ones(20, 20, dtype=torch.float64), 1))
    with pytest.raises(ValueError, match="square"):
        eigenpairs(H[:, :5])


# -- eigenpairs of a tiny network's Hessian -------------------------------------------------------


@pytest.mark.parametrize("which", ["largest", "smallest"])
def test_lanczos_matches_dense_hessian_of_net(net, which):
    model, _, op, dense = net
    snap = snapshot(model)
    lam, U = torch.linalg.eigh(dense)
    res = eigenpairs(op, k=2, which=which)
    idx = [-1, -2] if which == "largest" else [0, 1]
    torch.testing.assert_close(res.values, lam[idx], rtol=1e-4, atol=0)
    assert torch.all((res.vectors @ U[:, idx]).diagonal().abs() > 0.999)
    assert_unchanged(model, snap)


def test_pyhessian_agrees_within_its_tolerance_and_leaves_state_alone(net):
    pytest.importorskip("pyhessian")
    model, ev, op, dense = net
    snap = snapshot(model)
    rng, dtype = torch.get_rng_state(), torch.get_default_dtype()
    top = torch.linalg.eigvalsh(dense)[-2:].flip(0)
    ours = eigenpairs(op, k=2)
    theirs = eigenpairs(op, k=2, backend="pyhessian", tol=1e-3, seed=0)
    torch.testing.assert_close(theirs.values, ours.values, rtol=2e-2, atol=0)
    torch.testing.assert_close(theirs.values, top, rtol=2e-2, atol=0)
    assert theirs.meta["backend"] == "pyhessian" and theirs.n_matvec > 2
    assert len(theirs.meta["residual_norms"]) == 2 and theirs.vectors.shape == (2, ev.space.size)
    assert torch.equal(eigenpairs(op, k=2, backend="pyhessian", tol=1e-3, seed=0).values, theirs.values)
    assert_unchanged(model, snap)
    assert torch.equal(torch.get_rng_state(), rng) and torch.get_default_dtype() == dtype
    with pytest.raises(ValueError, match="largest"):
        eigenpairs(op, k=2, backend="pyhessian", which="smallest")


def test_operator_keeps_a_gradient_graph_only_when_it_fits(net):
    model, ev, op, dense = net
    v = torch.randn(ev.space.size, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    kept = HessianOperator(ev)
    torch.testing.assert_close(kept @ v, dense @ v, rtol=1e-10, atol=1e-12)
    assert kept._graph is not None  # built once at the point, reused by the next products
    graph = kept._graph
    kept @ v
    assert kept._graph is graph
    kept.release()
    assert kept._graph is None
    x, y = ev.data.x, ev.data.y
    tight = Evaluator(model, "cross_entropy", (x, y), plan=Plan(dtype=torch.float64, memory_budget=64, device="cpu"))
    recomputed = HessianOperator(tight)
    torch.testing.assert_close(recomputed @ v, dense @ v, rtol=1e-10, atol=1e-12)
    assert recomputed._graph is None  # forward-over-reverse at every product


def test_diverged_point_is_a_clear_error_not_an_arpack_failure():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    x, y = torch.randn(20, 4), torch.randint(0, 3, (20,))
    with pytest.warns(UserWarning, match="not all finite"):
        ev = Evaluator(model, "cross_entropy", (x, y), plan=Plan(dtype=torch.float64, device="cpu"))
    with pytest.raises(NonFiniteHessian, match=r"not finite \(loss there: nan\)"):
        eigenpairs(HessianOperator(ev), k=2)


def test_pyhessian_backend_missing_is_one_line(net, monkeypatch):
    _, _, op, _ = net
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyhessian" else real(name, *a))
    with pytest.raises(ConfigError, match="optional PyHessian package .* pip install pyhessian"):
        eigenpairs(op, k=2, backend="pyhessian")


def test_operator_and_dense_matrix_refuse_what_has_no_spectrum():
    with pytest.raises(TypeError, match="needs an Evaluator, got str"):
        HessianOperator("ev")
    H = torch.eye(3, dtype=torch.float64)
    H[1, 1] = float("nan")
    with pytest.raises(ValueError, match="dense Hessian must be finite, found 1 NaN"):
        eigenpairs(H, 1)
