"""The Hessian of the loss as a linear operator, and its extreme eigenpairs.

The Hessian :math:`H(w) = \\nabla^2 L(w)` of the evaluator's mean loss is never formed: it is a
``(P, P)`` operator whose products :math:`H V` are Hessian-vector products computed by the
evaluator (Pearlmutter 1994, "Fast exact multiplication by the Hessian": a double backward through a
gradient graph kept at the point, or forward-over-reverse when that graph would not fit).
``HessianOperator`` has ``@``, ``shape``, ``dtype``, ``device`` and ``to_scipy()``, so
``scipy.sparse.linalg.eigsh`` (implicitly restarted Lanczos, ARPACK; Lehoucq, Sorensen, Yang 1998)
works on it unchanged. ``eigenpairs`` wraps that call and reports, for each pair, the residual norm

.. math::  r_i = \\lVert H v_i - \\lambda_i v_i \\rVert_2 ,

which for a symmetric matrix and a unit vector bounds the distance from :math:`\\lambda_i` to the
spectrum (:math:`\\min_j |\\lambda_i - \\lambda_j(H)| \\le r_i`): the honest tolerance of the result.

Every estimator of ``losslens.landscape`` also accepts a dense symmetric ``(P, P)`` tensor in place of
the operator (``_as_operator``), so tests can pass a matrix whose spectrum is known.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Union

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

from losslens._io import read_h5, write_h5
from losslens.core.evaluator import Evaluator
from losslens.errors import LosslensError

WHICH: tuple[str, ...] = ("largest", "smallest")


class NotConverged(LosslensError, RuntimeError):
    """Lanczos did not find the eigenpairs asked for within its iteration budget."""
EIGEN_BACKENDS: tuple[str, ...] = ("lanczos", "pyhessian")


class HessianOperator:
    """The Hessian of an evaluator's mean loss at a point, as a ``(P, P)`` linear operator.

    Args:
        evaluator: gives the loss, the data and the parameter space.
        w: ``(P,)`` point (default ``evaluator.w0``, the model's own parameters).

    ``H @ v`` takes ``v`` of shape ``(P,)`` or ``(P, k)`` (columns) and returns the same layout, on
    the evaluator's device and dtype. ``n_matvec`` counts the vectors multiplied so far (a ``(P, k)``
    block counts ``k``).
    """

    def __init__(self, evaluator: Evaluator, w: torch.Tensor | None = None):
        self.evaluator = evaluator
        P = evaluator.space.size
        point = evaluator.w0 if w is None else torch.as_tensor(w)
        if point.shape != (P,):
            raise ValueError(f"the point w must have shape ({P},), found {list(point.shape)}")
        self.w = point.detach().to(device=evaluator.device, dtype=evaluator.dtype)
        self.n_matvec = 0

    @property
    def shape(self) -> tuple[int, int]:
        P = self.evaluator.space.size
        return (P, P)

    @property
    def dtype(self) -> torch.dtype:
        return self.evaluator.dtype

    @property
    def device(self) -> torch.device:
        return self.evaluator.device

    def __matmul__(self, V: torch.Tensor) -> torch.Tensor:
        V = _check_operand(V, self.shape[0], self.dtype, self.device)
        self.n_matvec += 1 if V.dim() == 1 else V.shape[1]
        if V.dim() == 1:
            return self.evaluator.hvp(self.w, V)
        return self.evaluator.hvp(self.w, V.T).T

    def to_scipy(self) -> LinearOperator:
        """A float64 ``scipy.sparse.linalg.LinearOperator`` (symmetric: ``rmatvec`` is ``matvec``)."""
        return _scipy_operator(self)

    def meta(self) -> dict:
        """Provenance of the operator: the evaluator's description and the point's norm."""
        return {"operator": "hessian", **self.evaluator.meta(), "w_norm": float(self.w.double().norm())}

    def __repr__(self) -> str:
        return f"HessianOperator(P={self.shape[0]}, loss={self.evaluator.loss_name!r}, dtype={self.dtype})"


class _DenseOperator:
    """A dense symmetric matrix behind the same interface as ``HessianOperator`` (for tests, small P)."""

    def __init__(self, H: torch.Tensor):
        if H.dim() != 2 or H.shape[0] != H.shape[1]:
            raise ValueError(f"a dense Hessian must be a square (P, P) tensor, found shape {list(H.shape)}")
        if not H.is_floating_point():
            raise ValueError(f"a dense Hessian must be floating point, found {H.dtype}")
        scale = float(H.abs().max()) if H.numel() else 0.0
        asym = float((H - H.T).abs().max()) if H.numel() else 0.0
        if asym > 1e3 * torch.finfo(H.dtype).eps * max(scale, 1e-300):
            raise ValueError(f"a dense Hessian must be symmetric; max |H - H^T| = {asym:.3g} (max |H| = {scale:.3g})")
        self.matrix = H
        self.shape = tuple(H.shape)
        self.dtype = H.dtype
        self.device = H.device
        self.n_matvec = 0

    def __matmul__(self, V: torch.Tensor) -> torch.Tensor:
        V = _check_operand(V, self.shape[0], self.dtype, self.device)
        self.n_matvec += 1 if V.dim() == 1 else V.shape[1]
        return self.matrix @ V

    def to_scipy(self) -> LinearOperator:
        return _scipy_operator(self)

    def meta(self) -> dict:
        return {"operator": "dense", "n_params": self.shape[0], "dtype": str(self.dtype).removeprefix("torch.")}


Operator = Union[HessianOperator, _DenseOperator]


def _as_operator(H: HessianOperator | torch.Tensor) -> Operator:
    """The operator itself, or a dense symmetric ``(P, P)`` tensor wrapped in the same interface."""
    if isinstance(H, (HessianOperator, _DenseOperator)):
        return H
    if isinstance(H, torch.Tensor):
        return _DenseOperator(H)
    raise TypeError(f"expected a HessianOperator or a dense (P, P) tensor, found {type(H).__name__}")


def _check_operand(V: torch.Tensor, P: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    V = torch.as_tensor(V)
    if V.dim() not in (1, 2) or V.shape[0] != P:
        raise ValueError(f"the Hessian multiplies (P,) or (P, k) tensors with P={P}, found shape {list(V.shape)}")
    return V.to(device=device, dtype=dtype)


def _scipy_operator(op) -> LinearOperator:
    def matmat(X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        out = op @ torch.from_numpy(np.ascontiguousarray(X, dtype=np.float64))
        return out.detach().to(device="cpu", dtype=torch.float64).numpy()

    def matvec(x: np.ndarray) -> np.ndarray:
        return matmat(np.asarray(x).reshape(-1))

    return LinearOperator(op.shape, matvec=matvec, rmatvec=matvec, matmat=matmat, rmatmat=matmat, dtype=np.float64)


@dataclass(frozen=True)
class Eigenpairs:
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

    values: torch.Tensor
    vectors: torch.Tensor
    which: str
    tol: float
    n_matvec: int
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def residual_norms(self) -> torch.Tensor:
        """``(k,)`` residual norms :math:`\\lVert Hv_i - \\lambda_i v_i\\rVert_2`."""
        return torch.tensor(self.meta["residual_norms"], dtype=torch.float64)

    def save(self, path: str | Path) -> Path:
        """Write to an HDF5 file (kind ``eigenpairs``) with ``which``, ``tol``, ``n_matvec`` and ``meta`` inside."""
        meta = {"which": self.which, "tol": self.tol, "n_matvec": self.n_matvec, "meta": self.meta}
        return write_h5(path, "eigenpairs", {"values": self.values.numpy(), "vectors": self.vectors.numpy()}, meta)

    @classmethod
    def load(cls, path: str | Path) -> "Eigenpairs":
        """Read a file written by ``save``."""
        arrays, meta = read_h5(path, "eigenpairs")
        return cls(
            torch.from_numpy(arrays["values"]),
            torch.from_numpy(arrays["vectors"]),
            meta["which"],
            float(meta["tol"]),
            int(meta["n_matvec"]),
            meta["meta"],
        )


def eigenpairs(
    H: HessianOperator | torch.Tensor,
    k: int = 2,
    *,
    which: Literal["largest", "smallest"] = "largest",
    tol: float = 1e-6,
    seed: int = 0,
    backend: Literal["lanczos", "pyhessian"] = "lanczos",
    maxiter: int | None = None,
) -> Eigenpairs:
    """The ``k`` largest (or smallest) eigenvalues of a symmetric operator and their eigenvectors.

    ``backend="lanczos"`` runs ``scipy.sparse.linalg.eigsh`` (implicitly restarted Lanczos, ARPACK)
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
        backend: ``"lanczos"`` or ``"pyhessian"``.
        maxiter: iteration cap (ARPACK restarts, or power iterations); ``None`` for the default.

    Raises:
        ValueError: an invalid option, or ``k`` out of range.
        RuntimeError: the solver did not converge within ``maxiter``.
    """
    if which not in WHICH:
        raise ValueError(f"unknown which={which!r}; valid: {', '.join(WHICH)}")
    if backend not in EIGEN_BACKENDS:
        raise ValueError(f"unknown eigenpairs backend {backend!r}; valid: {', '.join(EIGEN_BACKENDS)}")
    op = _as_operator(H)
    P = op.shape[0]
    if not (isinstance(k, numbers.Integral) and 1 <= k < P):
        raise ValueError(f"k must be an integer with 1 <= k < P={P}, found {k!r}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, found {tol!r}")
    if maxiter is not None and maxiter < 1:
        raise ValueError(f"maxiter must be a positive integer or None, found {maxiter!r}")
    start, n_external = op.n_matvec, 0
    if backend == "lanczos":
        values, vectors = _lanczos(op, k, which, tol, seed, maxiter)
    else:
        if which != "largest":
            raise ValueError("backend='pyhessian' computes only which='largest' (power iteration)")
        if not isinstance(op, HessianOperator):
            raise ValueError("backend='pyhessian' needs a HessianOperator (it runs on the model), not a dense tensor")
        from losslens.landscape import _pyhessian

        values, vectors, n_external = _pyhessian.eigenpairs(op, k, tol=tol, seed=seed, maxiter=maxiter)
        order = torch.argsort(values, descending=True)
        values, vectors = values[order], vectors[order]
    vectors = vectors / vectors.norm(dim=1, keepdim=True)
    HV = (op @ vectors.T.to(device=op.device, dtype=op.dtype)).T.to(device="cpu", dtype=torch.float64)
    residuals = (HV - values[:, None] * vectors).norm(dim=1)
    meta = {"backend": backend, "residual_norms": residuals.tolist(), "seed": seed, "maxiter": maxiter, **op.meta()}
    return Eigenpairs(values, vectors, which, float(tol), int(op.n_matvec - start + n_external), meta)


def _lanczos(op: Operator, k: int, which: str, tol: float, seed: int, maxiter: int | None):
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
