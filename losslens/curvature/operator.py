"""The Hessian of the loss as a linear operator, never formed.

:math:`H(w) = \\nabla^2 L(w)` of an evaluator's mean loss is a ``(P, P)`` operator whose products
:math:`H V` are Hessian-vector products (Pearlmutter 1994, "Fast exact multiplication by the
Hessian"). ``HessianOperator`` owns its products: at its point it keeps the gradient with its
autograd graph (``GradientGraph``) while that fits the evaluator's memory budget, so each product is
one double-backward pass; otherwise every product is recomputed forward-over-reverse by the
evaluator. It has ``@``, ``shape``, ``dtype``, ``device`` and ``to_scipy()``, so
``scipy.sparse.linalg.eigsh`` works on it unchanged.

Every estimator of ``losslens.curvature`` also accepts a dense symmetric ``(P, P)`` tensor in place of
the operator (``as_operator``), so tests can pass a matrix whose spectrum is known.
"""

from __future__ import annotations

from typing import Union

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator

from losslens.core.derivatives import GradientGraph
from losslens.core.evaluator import Evaluator
from losslens.core.provenance import fingerprint
from losslens.errors import LosslensError


class NonFiniteHessian(LosslensError, ArithmeticError):
    """A Hessian-vector product is NaN or infinite: the weights or the loss diverged at the point."""


class HessianOperator:
    """The Hessian of an evaluator's mean loss at a point, as a ``(P, P)`` linear operator.

    ``H @ v`` takes ``v`` of shape ``(P,)`` or ``(P, k)`` (columns) and returns the same layout, on
    the evaluator's device and dtype. ``n_matvec`` counts the vectors multiplied so far (a ``(P, k)``
    block counts ``k``).
    """

    def __init__(self, evaluator: Evaluator, w: torch.Tensor | None = None):
        """The Hessian of ``evaluator``'s mean loss at ``w``.

        Args:
            evaluator: gives the loss, the data and the parameter space.
            w: ``(P,)`` point (default ``evaluator.w0``, the model's own parameters).
        """
        if not isinstance(evaluator, Evaluator):
            raise TypeError(f"a HessianOperator needs an Evaluator, got {type(evaluator).__name__}")
        self.evaluator = evaluator
        P = evaluator.space.size
        point = evaluator.w0 if w is None else torch.as_tensor(w)
        if point.shape != (P,):
            raise ValueError(f"the point w must have shape ({P},), found {list(point.shape)}")
        self.w = point.detach().to(device=evaluator.device, dtype=evaluator.dtype)
        self.n_matvec = 0
        self._graph: GradientGraph | None = None

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
        rows = V[None] if V.dim() == 1 else V.T
        if self._graph is None and GradientGraph.fits(self.evaluator):
            with self.evaluator.runner.threads():
                self._graph = GradientGraph(self.evaluator, self.w)
        if self._graph is not None:
            with self.evaluator.runner.threads():
                out = self._graph.hvp(rows)
        else:
            out = self.evaluator.hvp(self.w, rows)
        if not bool(torch.isfinite(out).all()):
            raise NonFiniteHessian(
                f"the Hessian-vector product at this point is not finite (loss there: "
                f"{float(self.evaluator.evaluate(self.w).loss[0]):.6g}): the weights or the loss diverged, so "
                "the Hessian has no meaning here"
            )
        return out[0] if V.dim() == 1 else out.T

    def release(self) -> None:
        """Free the gradient graph kept at the point (the next product rebuilds it)."""
        self._graph = None

    def to_scipy(self) -> LinearOperator:
        """A float64 ``scipy.sparse.linalg.LinearOperator`` (symmetric: ``rmatvec`` is ``matvec``)."""
        return scipy_operator(self)

    def fingerprint(self) -> dict:
        """What an analysis of the operator depends on (``core.reuse``): its evaluator's and its point's."""
        return {"operator": "hessian", "evaluator": self.evaluator.fingerprint(), "w": fingerprint([self.w])}

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
        if not torch.isfinite(H).all():
            raise ValueError(f"a dense Hessian must be finite, found {int((~torch.isfinite(H)).sum())} NaN or "
                             "infinite entries")
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
        return scipy_operator(self)

    def meta(self) -> dict:
        return {"operator": "dense", "n_params": self.shape[0], "dtype": str(self.dtype).removeprefix("torch.")}


Operator = Union[HessianOperator, _DenseOperator]


def as_operator(H: HessianOperator | torch.Tensor) -> Operator:
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


def scipy_operator(op) -> LinearOperator:
    def matmat(X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        out = op @ torch.from_numpy(np.ascontiguousarray(X, dtype=np.float64))
        return out.detach().to(device="cpu", dtype=torch.float64).numpy()

    def matvec(x: np.ndarray) -> np.ndarray:
        return matmat(np.asarray(x).reshape(-1))

    return LinearOperator(op.shape, matvec=matvec, rmatvec=matvec, matmat=matmat, rmatmat=matmat, dtype=np.float64)
