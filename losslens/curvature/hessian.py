"""The extreme eigenpairs of the Hessian, by Lanczos (or PyHessian's power iteration).

``eigenpairs`` runs ``scipy.sparse.linalg.eigsh`` (implicitly restarted Lanczos, ARPACK; Lehoucq,
Sorensen, Yang 1998) on ``HessianOperator.to_scipy()`` and reports, for each pair, the residual norm

.. math::  r_i = \\lVert H v_i - \\lambda_i v_i \\rVert_2 ,

which for a symmetric matrix and a unit vector bounds the distance from :math:`\\lambda_i` to the
spectrum (:math:`\\min_j |\\lambda_i - \\lambda_j(H)| \\le r_i`): the honest tolerance of the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence, eigsh

from losslens.checks import check_choice, check_int, check_number, check_seed
from losslens.curvature import _pyhessian
from losslens.curvature.operator import HessianOperator, as_operator
from losslens.errors import ConfigError, LosslensError
from losslens.results import Result, array, attr

WHICH: tuple[str, ...] = ("largest", "smallest")
BACKENDS = _pyhessian.BACKENDS  # "losslens" (Lanczos) or "pyhessian"


class NotConverged(LosslensError, RuntimeError):
    """Lanczos did not find the eigenpairs asked for within its iteration budget."""


@dataclass(frozen=True, repr=False)
class Eigenpairs(Result):
    """Extreme eigenvalues of a symmetric operator and their eigenvectors.

    Attributes:
        values: ``(k,)`` float64 eigenvalues, descending for ``which="largest"``, ascending for
            ``which="smallest"``.
        vectors: ``(k, P)`` float64 CPU tensor, one unit eigenvector per row, in the order of ``values``.
        which: ``"largest"`` or ``"smallest"``.
        tol: the tolerance asked of the solver.
        n_matvec: operator-vector products the call made, the residual check included.
        meta: ``backend``, ``residual_norms`` (:math:`\\lVert Hv_i - \\lambda_i v_i\\rVert` per pair,
            which bound each eigenvalue's error), ``seed``, and the operator's provenance.
    """

    values: torch.Tensor = array(("k",), tensor=True)
    vectors: torch.Tensor = array(("k", "P"), tensor=True)
    which: str = attr(str)
    tol: float = attr(float)
    n_matvec: int = attr(int)
    meta: dict = field(default_factory=dict)
    KIND: ClassVar[str] = "eigenpairs"

    def __len__(self) -> int:
        return len(self.values)

    @property
    def residual_norms(self) -> torch.Tensor:
        """``(k,)`` residual norms :math:`\\lVert Hv_i - \\lambda_i v_i\\rVert_2`."""
        return torch.tensor(self.meta["residual_norms"], dtype=torch.float64)


def eigenpairs(
    H: HessianOperator | torch.Tensor,
    k: int = 2,
    *,
    which: Literal["largest", "smallest"] = "largest",
    tol: float = 1e-6,
    seed: int = 0,
    backend: Literal["losslens", "pyhessian"] = "losslens",
    maxiter: int | None = None,
) -> Eigenpairs:
    """The ``k`` largest (or smallest) eigenvalues of a symmetric operator and their eigenvectors.

    ``backend="losslens"`` runs Lanczos: ``scipy.sparse.linalg.eigsh`` (implicitly restarted Lanczos, ARPACK)
    on ``H.to_scipy()`` with ``which="LA"``/``"SA"`` (algebraically largest/smallest), a start
    vector drawn from ``seed``, and the BLAS limited to one thread during the call (oversubscribed
    OpenBLAS threads doubled its time). ``tol`` is ARPACK's relative accuracy of the Ritz values.

    ``backend="pyhessian"`` runs PyHessian 0.1's power iteration with deflation (Yao et al. 2020,
    "PyHessian: Neural Networks Through the Lens of the Hessian") on a copy of the model; it needs a
    ``HessianOperator``, finds the eigenvalues of largest *magnitude* (which are the largest ones
    when the top of the spectrum dominates), supports only ``which="largest"``, and reads ``tol`` as
    the relative change of the eigenvalue between iterations (its default is 1e-3). ``maxiter``
    is then its iteration cap per eigenvalue (default 100).

    Both report the residual norms :math:`\\lVert Hv_i - \\lambda_i v_i\\rVert`, computed with one
    extra block product, in ``meta["residual_norms"]``.

    Args:
        H: a ``HessianOperator`` or a dense symmetric ``(P, P)`` tensor.
        k: number of eigenpairs, ``1 <= k < P``.
        which: ``"largest"`` or ``"smallest"``.
        tol: solver tolerance (see above), ``>= 0``; 0 asks ARPACK for machine precision.
        seed: seeds the start vector (Lanczos) or the power iteration's random vectors.
        backend: ``"losslens"`` (Lanczos) or ``"pyhessian"`` (an optional extra).
        maxiter: iteration cap (ARPACK restarts, or power iterations); ``None`` for the default.

    Raises:
        ConfigError: an invalid option, ``k`` out of range, or ``backend="pyhessian"`` without PyHessian.
        NotConverged: the solver did not converge within ``maxiter``.
        NonFiniteHessian: a product is NaN or infinite (the weights or the loss diverged at the point).
    """
    check_choice("which", which, WHICH)
    _pyhessian.check_backend(backend)
    seed = check_seed(seed)
    op = as_operator(H)
    k = check_int("k", k, minimum=1, maximum=op.shape[0] - 1)  # below P
    tol = check_number("tol", tol, minimum=0)
    maxiter = check_int("maxiter", maxiter, minimum=1, none=True)
    start = op.n_matvec
    values, vectors, n_external = _solve(op, k, which, tol, seed, backend, maxiter)
    vectors = vectors / vectors.norm(dim=1, keepdim=True)
    meta = {"backend": backend, "residual_norms": _residual_norms(op, values, vectors).tolist(), "seed": seed,
            "maxiter": maxiter, **op.meta()}
    return Eigenpairs(values, vectors, which, tol, int(op.n_matvec - start + n_external), meta)


def _solve(op, k: int, which: str, tol: float, seed: int, backend: str, maxiter: int | None):
    """``(values, vectors, products made outside op)``: float64 CPU values sorted like ``which``, one vector
    per row, by Lanczos or PyHessian's power iteration (whose products ``op`` does not count)."""
    if backend == "losslens":
        return (*_lanczos(op, k, which, tol, seed, maxiter), 0)
    if which != "largest":
        raise ConfigError("backend='pyhessian' computes only which='largest' (power iteration)")
    values, vectors, n_external = _pyhessian.eigenpairs(_pyhessian.needs_model(op), k, tol=tol, seed=seed,
                                                        maxiter=maxiter)
    order = torch.argsort(values, descending=True)
    return values[order], vectors[order], n_external


def _residual_norms(op, values: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """:math:`\\lVert H v_i - \\lambda_i v_i \\rVert` for each pair, from one block product."""
    HV = (op @ vectors.T.to(device=op.device, dtype=op.dtype)).T.to(device="cpu", dtype=torch.float64)
    return (HV - values[:, None] * vectors).norm(dim=1)


def _lanczos(op, k: int, which: str, tol: float, seed: int, maxiter: int | None):
    """``eigsh`` on the float64 scipy view of ``op``; returns sorted float64 CPU values and rows."""
    from threadpoolctl import threadpool_limits

    P = op.shape[0]
    v0 = np.random.default_rng(seed).standard_normal(P)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            vals, vecs = eigsh(op.to_scipy(), k=k, which="LA" if which == "largest" else "SA",
                               v0=v0, tol=tol, maxiter=maxiter)
    except ArpackNoConvergence as err:
        raise NotConverged(
            f"Lanczos (eigsh) found only {len(err.eigenvalues)} of {k} eigenpairs within maxiter={maxiter} "
            f"at tol={tol}; raise maxiter or tol"
        ) from None
    order = np.argsort(vals)[::-1] if which == "largest" else np.argsort(vals)
    values = torch.from_numpy(np.ascontiguousarray(vals[order], dtype=np.float64))
    vectors = torch.from_numpy(np.ascontiguousarray(vecs[:, order].T, dtype=np.float64))
    return values, vectors
