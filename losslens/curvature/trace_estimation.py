"""The trace of the Hessian from Hessian-vector products only.

- Hutchinson (1989), "A stochastic estimator of the trace of the influence matrix for Laplacian
  smoothing splines": for Rademacher vectors :math:`z_i \\in \\{-1, 1\\}^P`,
  :math:`\\operatorname{tr} H \\approx \\frac1n \\sum_i z_i^T H z_i`, with standard error
  :math:`s/\\sqrt n` (:math:`s` the samples' standard deviation).
- Hutch++ (Meyer, Musco, Musco, Woodruff 2021, "Hutch++: Optimal Stochastic Trace Estimation"): a
  third of the budget sketches :math:`Q = \\operatorname{qr}(HS)` (``S`` Rademacher, ``P x s``), a
  third gives :math:`\\operatorname{tr}(Q^T H Q)` exactly, and the rest runs Hutchinson on the
  deflated :math:`(I - QQ^T) H (I - QQ^T)`, whose variance is what remains once the top of the
  spectrum is taken out exactly. Its standard error is that of the Hutchinson part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch

from losslens.checks import check_choice, check_int, check_seed
from losslens.curvature import _pyhessian
from losslens.curvature.operator import HessianOperator, as_operator
from losslens.errors import ConfigError
from losslens.results import Result, attr


TRACE_METHODS: tuple[str, ...] = ("hutchinson", "hutch++")


@dataclass(frozen=True, repr=False)
class TraceEstimate(Result):
    """A stochastic estimate of :math:`\\operatorname{tr} H` with its standard error.

    Attributes:
        value: the estimate.
        stderr: its standard error (from the Hutchinson samples).
        n_matvec: operator-vector products used.
        method: ``"hutchinson"`` or ``"hutch++"``.
        meta: ``backend``, ``seed``, ``samples`` (the Hutchinson samples), for Hutch++ also
            ``exact_part`` (:math:`\\operatorname{tr} Q^THQ`) and ``sketch_size``, and the operator's provenance.
    """

    value: float = attr(float)
    stderr: float = attr(float)
    n_matvec: int = attr(int)
    method: str = attr()
    meta: dict = field(default_factory=dict)
    KIND: ClassVar[str] = "trace"

    @property
    def resolved(self) -> bool:
        """Whether the estimate is resolved: its standard error is smaller than its magnitude (else even
        its sign is uncertain, and it should be reported as not resolved rather than as a number)."""
        return self.stderr < abs(self.value)


def trace(
    H: HessianOperator | torch.Tensor,
    *,
    method: Literal["hutchinson", "hutch++"] = "hutch++",
    n_matvec: int = 100,
    seed: int = 0,
    backend: Literal["losslens", "pyhessian"] = "losslens",
) -> TraceEstimate:
    """Estimate :math:`\\operatorname{tr} H` with ``n_matvec`` operator-vector products.

    Hutch++ splits the budget in thirds: ``s = n_matvec // 3`` sketch vectors, ``s`` products with
    :math:`Q`, and ``n_matvec - 2s`` Hutchinson vectors on the deflated operator. Each part is one
    block product. ``backend="pyhessian"`` runs PyHessian's Hutchinson (``method="hutchinson"``
    only) with its early stop disabled (``tol=0``), so that the budget is ``n_matvec``; PyHessian still
    stops after 2 samples when their running mean is negative (its relative-change test divides by
    ``mean + 1e-6``), and ``n_matvec`` of the result reports the products it made.

    Args:
        H: a ``HessianOperator`` or a dense symmetric ``(P, P)`` tensor.
        method: ``"hutchinson"`` or ``"hutch++"``.
        n_matvec: budget of products: at least 2 (Hutchinson) or 4 (Hutch++), so a standard error exists.
        seed: seeds the Rademacher vectors.
        backend: ``"losslens"`` or ``"pyhessian"``.

    Raises:
        ConfigError: an invalid option or budget.
    """
    check_choice("method", method, TRACE_METHODS)
    _pyhessian.check_backend(backend)
    n_matvec = check_int("n_matvec", n_matvec, minimum=2 if method == "hutchinson" else 4)
    seed = check_seed(seed)
    op = as_operator(H)
    meta = {"backend": backend, "seed": seed, **op.meta()}
    if backend == "pyhessian":
        if method != "hutchinson":
            raise ConfigError("backend='pyhessian' implements only method='hutchinson'")
        samples, used = _pyhessian.trace_samples(_pyhessian.needs_model(op), n_matvec, seed=seed)
        s = torch.tensor(samples, dtype=torch.float64)
        return TraceEstimate(float(s.mean()), _stderr(s), used, method, {**meta, "samples": samples})

    gen = torch.Generator().manual_seed(seed)
    start = op.n_matvec
    P = op.shape[0]
    if method == "hutchinson":
        s = _quadratic_forms(op, _rademacher(P, n_matvec, gen, op))
        exact = 0.0
    else:
        sketch = n_matvec // 3
        S = _rademacher(P, sketch, gen, op)
        G = _rademacher(P, n_matvec - 2 * sketch, gen, op)
        Q = torch.linalg.qr(op @ S).Q  # (P, min(P, s)) orthonormal columns
        exact = float(torch.trace(Q.T.double() @ (op @ Q).double()))
        s = _quadratic_forms(op, G - Q @ (Q.T @ G))
        meta |= {"exact_part": exact, "sketch_size": sketch}
    meta["samples"] = s.tolist()
    return TraceEstimate(exact + float(s.mean()), _stderr(s), op.n_matvec - start, method, meta)


def _rademacher(P: int, n: int, gen: torch.Generator, op) -> torch.Tensor:
    """``(P, n)`` Rademacher columns drawn on the CPU (the same on every device), in the operator's dtype."""
    z = torch.randint(0, 2, (P, n), generator=gen).mul_(2).sub_(1)
    return z.to(device=op.device, dtype=op.dtype)


def _quadratic_forms(op, Z: torch.Tensor) -> torch.Tensor:
    """``(n,)`` float64 CPU :math:`z_i^T H z_i` for the columns of ``Z``, by one block product."""
    return (Z.double() * (op @ Z).double()).sum(0).cpu()


def _stderr(samples: torch.Tensor) -> float:
    return float(samples.std(unbiased=True) / math.sqrt(len(samples))) if len(samples) > 1 else math.nan
