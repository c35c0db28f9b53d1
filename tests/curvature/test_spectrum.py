"""Tests of losslens/curvature/trace_estimation.py and spectrum.py: trace estimators and SLQ densities,
against ground truth.

Ground truth: dense symmetric matrices with known spectra (random orthogonal basis, diagonal, low
rank), whose traces and moments are exact; tolerances come from the estimators' variances. For
Rademacher ``z`` and symmetric ``A``, :math:`\\operatorname{Var}(z^TAz) = 2\\sum_{i \\ne j} A_{ij}^2`.
"""

import math

import numpy as np
import pytest
import torch
from scipy.integrate import trapezoid

from losslens.curvature.spectrum import Spectrum, density
from losslens.curvature.trace_estimation import TraceEstimate, trace


def rotated(lam, seed=0):
    """``U diag(lam) U^T`` for a random orthogonal ``U``."""
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(len(lam), len(lam), generator=g, dtype=torch.float64))
    H = U @ torch.diag(lam) @ U.T
    return (H + H.T) / 2


def rademacher_std(A):
    """Standard deviation of :math:`z^T A z` for a Rademacher ``z``."""
    off = A - torch.diag(torch.diag(A))
    return math.sqrt(2 * float((off**2).sum()))


LAM = torch.linspace(-1.0, 4.0, 150, dtype=torch.float64)
H = rotated(LAM)


# -- trace ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
def test_trace_within_three_standard_errors_and_stderr_shrinks(method):
    exact = float(LAM.sum())
    small = trace(H, method=method, n_matvec=30, seed=0)
    large = trace(H, method=method, n_matvec=300, seed=0)
    for est in (small, large):
        assert abs(est.value - exact) <= 3 * est.stderr
        assert est.method == method and est.meta["backend"] == "losslens"
    assert (small.n_matvec, large.n_matvec) == (30, 300)
    assert large.stderr < small.stderr / 2  # ~ 1/sqrt(n): a factor sqrt(10) expected


def test_hutchinson_stderr_matches_its_variance():
    est = trace(H, method="hutchinson", n_matvec=300, seed=1)
    assert est.stderr == pytest.approx(rademacher_std(H) / math.sqrt(300), rel=0.25)


def test_hutchplusplus_is_exact_on_low_rank_and_beats_hutchinson_on_decay():
    low_rank = rotated(torch.cat([torch.tensor([9.0, 5.0, -3.0, 2.0]), torch.zeros(96)]).double())
    est = trace(low_rank, method="hutch++", n_matvec=15)  # sketch of 5 columns >= rank 4
    assert est.value == pytest.approx(13.0, abs=1e-9) and est.stderr < 1e-9
    decaying = rotated(100.0 * 0.7 ** torch.arange(100, dtype=torch.float64))
    plus = trace(decaying, method="hutch++", n_matvec=60)
    plain = trace(decaying, method="hutchinson", n_matvec=60)
    assert plus.stderr < plain.stderr / 5
    assert abs(plus.value - float(torch.trace(decaying))) <= 3 * plus.stderr


def test_trace_of_diagonal_is_exact_for_rademacher():
    D = torch.diag(torch.arange(1.0, 21.0, dtype=torch.float64))
    est = trace(D, method="hutchinson", n_matvec=5)
    assert est.value == pytest.approx(210.0) and est.stderr == pytest.approx(0.0, abs=1e-12)


def test_trace_save_load(tmp_path):
    est = trace(H, n_matvec=12, seed=3)
    back = TraceEstimate.load(est.save(tmp_path / "trace.h5"))
    assert back == est


def test_trace_rejects_bad_options():
    with pytest.raises(ValueError, match="hutchinson, hutch\\+\\+"):
        trace(H, method="girard")
    with pytest.raises(ValueError, match=">= 4"):
        trace(H, method="hutch++", n_matvec=3)
    with pytest.raises(ValueError, match="losslens, pyhessian"):
        trace(H, backend="scipy")
    with pytest.raises(ValueError, match="HessianOperator"):
        trace(H, method="hutchinson", backend="pyhessian")


# -- density --------------------------------------------------------------------------------------


def test_density_integrates_to_one_and_matches_moments():
    n_vectors = 4
    spec = density(H, n_vectors=n_vectors, n_lanczos=40, seed=0)
    assert spec.nodes.shape == spec.weights.shape == (n_vectors, 40)
    np.testing.assert_allclose(spec.weights.sum(axis=1), 1.0, rtol=1e-10)
    assert trapezoid(spec.density, spec.grid) == pytest.approx(1.0, abs=1e-6)
    assert spec.grid[0] <= spec.lambda_min - 4.99 * spec.sigma and spec.grid[-1] >= spec.lambda_max + 4.99 * spec.sigma
    # Gauss quadrature with m nodes is exact for degree < 2m, so the moment estimate for a start
    # vector v = z/sqrt(P) is v^T H^i v, whose mean is (1/P) tr H^i and whose standard deviation over
    # n_vectors vectors is rademacher_std(H^i) / (P sqrt(n_vectors)): 4 of those is the tolerance.
    P = len(LAM)
    m1, m2 = spec.moments(2)
    for est, power in ((m1, 1), (m2, 2)):
        Hi = torch.linalg.matrix_power(H, power)
        tol = 4 * rademacher_std(Hi) / (P * math.sqrt(n_vectors))
        assert abs(est - float((LAM**power).mean())) <= tol
    assert spec.trace_estimate == pytest.approx(P * m1)
    # the smoothed density's own moments: the quadrature's mean, and its second moment plus sigma^2
    mean = trapezoid(spec.grid * spec.density, spec.grid)
    second = trapezoid(spec.grid**2 * spec.density, spec.grid)
    assert mean == pytest.approx(m1, abs=1e-5) and second == pytest.approx(m2 + spec.sigma**2, rel=1e-5)


def test_density_extremes_converge_to_extreme_eigenvalues():
    spec = density(H, n_vectors=2, n_lanczos=80)
    assert spec.lambda_max == pytest.approx(4.0, abs=1e-6) and spec.lambda_min == pytest.approx(-1.0, abs=1e-6)
    assert spec.condition == pytest.approx(4.0, rel=1e-5)


def test_density_of_diagonal_is_exact_including_breakdown():
    # three distinct eigenvalues: the Krylov space is exhausted after 3 steps (beta = 0), and for a
    # diagonal matrix v^T f(H) v = (1/P) tr f(H) exactly for every Rademacher v.
    values = torch.tensor([0.0] * 10 + [2.0] * 15 + [5.0] * 5, dtype=torch.float64)
    spec = density(torch.diag(values), n_vectors=2, n_lanczos=8)
    np.testing.assert_allclose(spec.moments(6), [float((values**i).mean()) for i in range(1, 7)], rtol=1e-9)
    for nodes, weights in zip(spec.nodes, spec.weights):
        kept = weights > 1e-10
        np.testing.assert_allclose(np.sort(nodes[kept]), [0.0, 2.0, 5.0], atol=1e-9)
        np.testing.assert_allclose(weights[kept][np.argsort(nodes[kept])], [10 / 30, 15 / 30, 5 / 30], rtol=1e-9)
    assert spec.condition == math.inf and spec.trace_estimate == pytest.approx(55.0)


def test_density_on_a_given_grid_and_sigma():
    grid = np.linspace(-3.0, 6.0, 501)
    spec = density(H, n_vectors=1, n_lanczos=30, grid=grid, sigma=0.1)
    assert np.array_equal(spec.grid, grid) and spec.sigma == 0.1
    assert trapezoid(spec.density, grid) == pytest.approx(1.0, abs=1e-4)
    with pytest.warns(UserWarning, match="integrates to"):
        density(H, n_vectors=1, n_lanczos=30, grid=np.linspace(0.0, 1.0, 50))


def test_too_few_lanczos_steps_are_flagged_and_a_missed_top_eigenvalue_too(tmp_path):
    with pytest.warns(UserWarning) as caught:
        one = density(H, n_vectors=2, n_lanczos=1, known_eigenvalues=[4.0])
    assert [str(w.message) for w in caught] == [f"losslens: {note}" for note in one.warnings]
    assert one.lambda_max < 3.0  # the Rayleigh quotients, far inside [-1, 4]
    assert "fewer than 10" in one.warnings[0] and "misses the eigenvalue 4 found by Lanczos" in one.warnings[1]
    assert Spectrum.load(one.save(tmp_path / "s.h5")).warnings == one.warnings
    assert density(H, n_vectors=2, n_lanczos=40, known_eigenvalues=[4.0, 3.9]).warnings == ()
    small = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))  # 3 steps are exact here
    assert density(small, n_vectors=1, n_lanczos=3, known_eigenvalues=[3.0]).warnings == ()


def test_density_save_load_and_seed(tmp_path):
    spec = density(H, n_vectors=2, n_lanczos=20, seed=4)
    assert np.array_equal(density(H, n_vectors=2, n_lanczos=20, seed=4).nodes, spec.nodes)
    back = Spectrum.load(spec.save(tmp_path / "spec.h5"))
    for name in ("grid", "density", "nodes", "weights"):
        assert np.array_equal(getattr(back, name), getattr(spec, name))
    assert back.sigma == spec.sigma and back.meta == spec.meta


def test_density_rejects_bad_options():
    with pytest.raises(ValueError, match="n_lanczos"):
        density(H, n_lanczos=151)
    with pytest.raises(ValueError, match="sigma"):
        density(H, sigma=0.0)
    with pytest.raises(ValueError, match="increasing"):
        density(H, grid=np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="losslens, pyhessian"):
        density(H, backend="lanczos")


# -- on a tiny network, with both backends ---------------------------------------------------------




def test_net_trace_and_density_with_both_backends(net):
    pytest.importorskip("pyhessian")
    model, _, op, dense = net
    params = [p.detach().clone() for p in model.parameters()]
    lam = torch.linalg.eigvalsh(dense)
    for backend in ("losslens", "pyhessian"):
        est = trace(op, method="hutchinson", n_matvec=60, backend=backend, seed=0)
        assert abs(est.value - float(lam.sum())) <= 3 * est.stderr and est.meta["backend"] == backend
        spec = density(op, n_vectors=2, n_lanczos=30, backend=backend, seed=0)
        assert spec.nodes.shape == (2, 30) and spec.meta["n_matvec"] >= 60
        assert trapezoid(spec.density, spec.grid) == pytest.approx(1.0, abs=1e-4)
        # Ritz values lie inside the spectrum, and the extreme ones converge first
        assert lam[0] - 1e-6 <= spec.lambda_min and spec.lambda_max <= lam[-1] + 1e-6
        assert spec.lambda_max == pytest.approx(float(lam[-1]), rel=1e-3)
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(p.detach(), q) for p, q in zip(model.parameters(), params))
    with pytest.raises(RuntimeError, match="removed"):  # PyHessian's torch.eig stand-in is gone again
        torch.eig(torch.eye(2))


@pytest.mark.parametrize("known", [[float("nan")], "abc"])
def test_known_eigenvalues_must_be_numbers(known):
    with pytest.raises(ValueError, match="known_eigenvalues must be finite numbers"):
        density(torch.eye(4, dtype=torch.float64), n_lanczos=2, known_eigenvalues=known)
