"""The eigenvalue density of the Hessian, from Hessian-vector products only (its trace: ``trace_estimation.py``).

Density (``density``), stochastic Lanczos quadrature (Lin, Saad, Yang 2016, "Approximating spectral
densities of large matrices"; Ubaru, Chen, Saad 2017, "Fast estimation of tr(f(A)) via stochastic
Lanczos quadrature"; Ghorbani, Krishnan, Xiao 2019, "An investigation into neural net optimization
via Hessian eigenvalue density"): for a unit start vector :math:`v = z/\\sqrt P`, ``m`` Lanczos steps
give a tridiagonal :math:`T_m = U \\Theta U^T`; the Gauss quadrature with nodes :math:`\\theta_j` and
weights :math:`\\tau_j = U_{1j}^2` gives :math:`v^T f(H) v \\approx \\sum_j \\tau_j f(\\theta_j)`, exact
for polynomials of degree :math:`< 2m`. Averaged over start vectors and smoothed by a Gaussian,

.. math::  \\phi(x) = \\frac{1}{n_v} \\sum_{l=1}^{n_v} \\sum_{j=1}^{m} \\tau^{(l)}_j \\,
           \\mathcal N(x;\\, \\theta^{(l)}_j, \\sigma^2)

estimates the spectral density :math:`\\frac1P \\sum_i \\delta(x - \\lambda_i)`. With few steps the
extreme nodes lie far inside the spectrum (one step gives one node, the Rayleigh quotient
:math:`v^T H v`): fewer than ``MIN_LANCZOS`` steps (and fewer than ``P``, and no Krylov space
exhausted), or a support (the nodes
+- 5 sigma) that misses an eigenvalue found otherwise (``known_eigenvalues``, e.g. the top ones by
Lanczos), is recorded in ``Spectrum.warnings`` and warned about.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np
import torch
from scipy.integrate import trapezoid
from scipy.linalg import eigh_tridiagonal

from losslens.checks import check_int, check_number, check_seed, refuse
from losslens.curvature import _pyhessian
from losslens.curvature.operator import HessianOperator, as_operator
from losslens.curvature.trace_estimation import _rademacher
from losslens.errors import ConfigError
from losslens.results import Result, array, attr

SIGMA_FRACTION = 0.01  # default sigma, as a fraction of the node range
MIN_LANCZOS = 10  # fewer Lanczos steps (unless P): the extreme nodes are far inside the spectrum


@dataclass(frozen=True, repr=False)
class Spectrum(Result):
    """An eigenvalue density estimated by stochastic Lanczos quadrature.

    Attributes:
        grid: ``(G,)`` increasing eigenvalue axis.
        density: ``(G,)`` smoothed density on ``grid`` (integrates to 1 when the grid covers the
            nodes +- 5 sigma, as the default grid does).
        nodes: ``(n_vectors, m)`` Ritz values :math:`\\theta^{(l)}_j`, one row per start vector.
        weights: ``(n_vectors, m)`` quadrature weights :math:`\\tau^{(l)}_j`; each row sums to 1.
        sigma: standard deviation of the Gaussian kernel.
        meta: ``n_params`` (P), ``backend``, ``seed``, ``n_matvec``, ``integral`` (of the density over
            the grid), ``warnings`` and the operator's provenance.
    """

    grid: np.ndarray = array()
    density: np.ndarray = array()
    nodes: np.ndarray = array()
    weights: np.ndarray = array()
    sigma: float = attr(float)
    meta: dict = field(default_factory=dict)
    KIND: ClassVar[str] = "spectrum"

    @property
    def warnings(self) -> tuple[str, ...]:
        """Why the density may mislead (too few Lanczos steps, a known eigenvalue outside its support)."""
        return tuple(self.meta.get("warnings", ()))

    @property
    def lambda_max(self) -> float:
        """The largest node, an estimate of the largest eigenvalue (Lanczos converges fast at the ends)."""
        return float(self.nodes.max())

    @property
    def lambda_min(self) -> float:
        """The smallest node, an estimate of the smallest eigenvalue."""
        return float(self.nodes.min())

    @property
    def trace_estimate(self) -> float:
        """:math:`P \\cdot \\frac{1}{n_v}\\sum_l \\sum_j \\tau^{(l)}_j \\theta^{(l)}_j`: the Hutchinson
        estimate of the trace from the same start vectors."""
        return float(self.meta["n_params"] * self.moments(1)[0])

    @property
    def trace_stderr(self) -> float | None:
        """The standard error of ``trace_estimate`` from the spread of the per-vector estimates
        :math:`t_l = P \\sum_j \\tau^{(l)}_j \\theta^{(l)}_j`: :math:`s(t_l) / \\sqrt{n_v}`; ``None`` with
        a single start vector, where there is no spread to measure."""
        n = len(self.nodes)
        if n < 2:
            return None
        per_vector = self.meta["n_params"] * (self.weights * self.nodes).sum(axis=1)
        return float(per_vector.std(ddof=1) / math.sqrt(n))

    @property
    def condition(self) -> float:
        """:math:`|\\lambda_{max} / \\lambda_{min}|` from the extreme nodes.

        Meaningful for a positive definite Hessian only; ``inf`` when :math:`\\lambda_{min} \\approx 0`
        (within 1e-12 of :math:`|\\lambda_{max}|`), as it is at the flat directions of a network.
        """
        lo, hi = self.lambda_min, self.lambda_max
        if abs(lo) <= 1e-12 * abs(hi) or lo == 0.0:
            return math.inf
        return abs(hi / lo)

    def moments(self, k: int) -> np.ndarray:
        """``(k,)`` spectral moments of orders 1..k, :math:`\\frac1P \\operatorname{tr} H^i \\approx
        \\frac{1}{n_v}\\sum_l \\sum_j \\tau^{(l)}_j (\\theta^{(l)}_j)^i` (of the quadrature, not of the
        smoothed density, whose second moment adds :math:`\\sigma^2`)."""
        k = check_int("k", k, minimum=1)
        powers = self.nodes[None] ** np.arange(1, k + 1)[:, None, None]
        return (self.weights[None] * powers).sum(axis=2).mean(axis=1)


def density(
    H: HessianOperator | torch.Tensor,
    *,
    n_vectors: int = 4,
    n_lanczos: int = 80,
    grid: np.ndarray | None = None,
    grid_size: int = 1000,
    sigma: float | None = None,
    seed: int = 0,
    backend: Literal["losslens", "pyhessian"] = "losslens",
    known_eigenvalues=None,
) -> Spectrum:
    """Eigenvalue density of ``H`` by stochastic Lanczos quadrature.

    The ``n_vectors`` Rademacher start vectors run ``n_lanczos`` Lanczos steps in lockstep (one block
    product per step) with full reorthogonalization against all previous Lanczos vectors (twice,
    "twice is enough"); this stores ``n_vectors * n_lanczos`` vectors of length P. When a Krylov space
    is exhausted (:math:`\\beta_j \\approx 0`) the recurrence goes on from a random vector orthogonal
    to it with :math:`\\beta_j = 0`, which leaves the quadrature exact (the new nodes get weight 0).
    ``backend="pyhessian"`` runs PyHessian's ``density(iter=n_lanczos, n_v=n_vectors)`` instead and
    smooths its nodes and weights the same way.

    Args:
        H: a ``HessianOperator`` or a dense symmetric ``(P, P)`` tensor.
        n_vectors: start vectors (>= 1).
        n_lanczos: Lanczos steps per vector, ``1 <= n_lanczos <= P``.
        grid: the eigenvalue axis (1-D, increasing); by default ``grid_size`` points covering
            ``[min node - 5 sigma, max node + 5 sigma]``.
        grid_size: points of the default grid (>= 2).
        sigma: width of the Gaussian kernel (> 0); by default ``SIGMA_FRACTION`` (1%) of the node range
            (of the nodes' magnitude when they all coincide, and 1 when they are all 0).
        seed: seeds the start vectors.
        backend: ``"losslens"`` or ``"pyhessian"``.
        known_eigenvalues: eigenvalues found otherwise (the top ones by Lanczos): a warning when the
            support of the density (its nodes +- 5 sigma) misses one.

    Raises:
        ConfigError: an invalid option.
    """
    _pyhessian.check_backend(backend)
    op = as_operator(H)
    seed = check_seed(seed)
    P = op.shape[0]
    n_vectors = check_int("n_vectors", n_vectors, minimum=1)
    n_lanczos = check_int("n_lanczos", n_lanczos, minimum=1, maximum=P)
    sigma = check_number("sigma", sigma, positive=True, none=True)
    if grid is not None:
        grid = _grid_axis(grid)
    else:
        grid_size = check_int("grid_size", grid_size, minimum=2)
    known_eigenvalues = _known(known_eigenvalues)
    nodes, weights, used = _quadrature(op, backend, n_vectors, n_lanczos, seed)
    sigma, grid, phi, integral = _smoothed_density(nodes, weights, sigma, grid, grid_size)
    notes = _cautions(nodes, weights, sigma, n_lanczos, P, known_eigenvalues)
    for note in notes:
        warnings.warn(f"losslens: {note}", stacklevel=2)
    meta = {"backend": backend, "seed": seed, "n_matvec": used, "n_vectors": n_vectors, "n_lanczos": n_lanczos,
            "integral": integral, "warnings": notes, **op.meta()}
    return Spectrum(grid, phi, nodes, weights, sigma, meta)


def _grid_axis(grid) -> np.ndarray:
    """``grid`` as a float64 array, or a ConfigError when it is not 1-D, increasing, of 2 points or more."""
    axis = np.asarray(grid, dtype=np.float64)
    if axis.ndim != 1 or len(axis) < 2 or not np.all(np.diff(axis) > 0):
        raise ConfigError(f"grid must be a 1-D increasing array of at least 2 points (got shape {axis.shape})")
    return axis


def _smoothed_density(nodes: np.ndarray, weights: np.ndarray, sigma: float | None, grid: np.ndarray | None,
                      grid_size: int) -> tuple[float, np.ndarray, np.ndarray, float]:
    """``(sigma, grid, density on it, its integral)``: the quadrature smoothed by a Gaussian of width ``sigma``
    (default from the nodes) on ``grid`` (default ``grid_size`` points over the nodes +- 5 sigma); a warning
    when the integral is not 1 within 1%."""
    sigma = sigma if sigma is not None else _default_sigma(nodes)
    if grid is None:
        grid = np.linspace(nodes.min() - 5 * sigma, nodes.max() + 5 * sigma, grid_size)
    phi = _smoothed(grid, nodes, weights, sigma)
    integral = float(trapezoid(phi, grid))
    if abs(integral - 1) > 1e-2:
        warnings.warn(f"losslens: the density integrates to {integral:.4f} over the grid: the grid is too coarse "
                      f"for sigma={sigma:.3g} or does not cover the nodes", stacklevel=3)
    return sigma, grid, phi, integral


def _known(known_eigenvalues) -> np.ndarray | None:
    """The eigenvalues found otherwise as a flat float64 array, or a ConfigError when one is not a finite number."""
    if known_eigenvalues is None:
        return None
    known = known_eigenvalues.cpu() if isinstance(known_eigenvalues, torch.Tensor) else known_eigenvalues
    try:
        known = np.asarray(known, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        known = np.array([np.nan])
    if not np.isfinite(known).all():
        raise refuse("known_eigenvalues", "finite numbers", known_eigenvalues)
    return known


def _quadrature(op, backend: str, n_vectors: int, n_lanczos: int, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``(nodes, weights, products)``: ``(n_vectors, n_lanczos)`` nodes and weights of the stochastic Lanczos
    quadrature, by losslens's lockstep Lanczos or by PyHessian."""
    if backend == "pyhessian":
        nodes, weights, used = _pyhessian.density_quadrature(_pyhessian.needs_model(op), n_vectors, n_lanczos,
                                                             seed=seed)
        return nodes.numpy(), weights.numpy(), used
    start = op.n_matvec
    nodes, weights = _slq(op, n_vectors, n_lanczos, seed)
    return nodes, weights, op.n_matvec - start


def _cautions(nodes: np.ndarray, weights: np.ndarray, sigma: float, m: int, P: int, known) -> list[str]:
    """Why a density may mislead (see the module docstring). Few steps are fine when every start
    vector exhausted its Krylov space (a node of weight 0 follows the breakdown): the quadrature is exact."""
    out = []
    exhausted = bool((weights < 1e-12).any(axis=1).all())
    if m < min(MIN_LANCZOS, P) and not exhausted:
        out.append(f"only {m} Lanczos step{'s' * (m > 1)} per start vector (fewer than {MIN_LANCZOS}): the density's "
                   f"extreme eigenvalues lie far inside the spectrum; use {MIN_LANCZOS} or more")
    lo, hi = float(nodes.min()) - 5 * sigma, float(nodes.max()) + 5 * sigma
    missed = [float(v) for v in (known if known is not None else ()) if not lo <= float(v) <= hi]
    if missed:
        out.append(f"the density's support [{lo:.4g}, {hi:.4g}] misses the eigenvalue"
                   f"{'s' * (len(missed) > 1)} {', '.join(f'{v:.4g}' for v in missed)} found by Lanczos: too few "
                   "Lanczos steps")
    return out


def _slq(op, n_vectors: int, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights ``(n_vectors, m)`` of Lanczos quadrature from Rademacher start vectors."""
    P = op.shape[0]
    gen = torch.Generator().manual_seed(seed)
    q = _rademacher(P, n_vectors, gen, op) / math.sqrt(P)  # (P, n) unit columns
    basis = torch.zeros(n_vectors, m, P, dtype=op.dtype, device=op.device)
    alpha = np.zeros((n_vectors, m))
    beta = np.zeros((n_vectors, max(m - 1, 0)))
    q_prev, b_prev = torch.zeros_like(q), torch.zeros(n_vectors, dtype=op.dtype, device=op.device)
    scale, eps = 0.0, torch.finfo(op.dtype).eps
    for j in range(m):
        basis[:, j] = q.T
        w = op @ q
        a = (q * w).sum(0)
        w = w - a * q - b_prev * q_prev
        w = _orthogonalize(w, basis[:, : j + 1])
        alpha[:, j] = a.double().cpu().numpy()
        if j == m - 1:
            break
        b = w.norm(dim=0)
        scale = max(scale, float(a.abs().max()), float(b.max()))
        broken = b <= 100 * eps * max(scale, 1e-300)
        q_next = w / torch.where(broken, torch.ones_like(b), b)
        if broken.any():  # exhausted Krylov space: go on from a fresh orthogonal direction, beta = 0
            fresh = torch.randn(P, n_vectors, generator=gen, dtype=torch.float64).to(device=op.device, dtype=op.dtype)
            fresh = _orthogonalize(fresh, basis[:, : j + 1])
            q_next = torch.where(broken, fresh / fresh.norm(dim=0), q_next)
            b = torch.where(broken, torch.zeros_like(b), b)
        q_prev, q, b_prev = q, q_next, b
        beta[:, j] = b.double().cpu().numpy()
    nodes, weights = np.zeros((n_vectors, m)), np.zeros((n_vectors, m))
    for i in range(n_vectors):
        theta, U = eigh_tridiagonal(alpha[i], beta[i])
        nodes[i], weights[i] = theta, U[0] ** 2
    return nodes, weights


def _orthogonalize(w: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Columns of ``w`` (P, n) made orthogonal to their own vectors ``basis`` (n, j, P), twice."""
    for _ in range(2):
        w = w - torch.einsum("njp,nj->pn", basis, torch.einsum("njp,pn->nj", basis, w))
    return w


def _smoothed(grid: np.ndarray, nodes: np.ndarray, weights: np.ndarray, sigma: float) -> np.ndarray:
    """:math:`\\frac{1}{n_v}\\sum_{l,j} \\tau_{lj} \\mathcal N(x; \\theta_{lj}, \\sigma^2)` at each grid point."""
    theta, tau = nodes.reshape(-1), weights.reshape(-1) / len(nodes)
    phi = np.zeros_like(grid)
    for i in range(0, len(theta), 256):  # bounded (G, 256) blocks
        z = (grid[:, None] - theta[None, i : i + 256]) / sigma
        phi += np.exp(-0.5 * z**2) @ tau[i : i + 256]
    return phi / (sigma * math.sqrt(2 * math.pi))


def _default_sigma(nodes: np.ndarray) -> float:
    spread = float(nodes.max() - nodes.min())
    if spread > 0:
        return SIGMA_FRACTION * spread
    size = float(np.abs(nodes).max())
    return SIGMA_FRACTION * size if size > 0 else 1.0


