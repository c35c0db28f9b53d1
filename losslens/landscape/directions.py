"""Directions in weight space: the axes of loss-landscape lines and planes.

A direction is a flat vector in the order of a ``ParameterSpace``; a set of ``m`` of them is a
``Directions`` object holding an ``(m, P)`` tensor and how it was made. They are made by:

- ``random_directions``: Gaussian directions, normalized so that their scale matches the weights'
  (Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets", filter normalization);
- ``hessian_directions``: the top eigenvectors of the Hessian at a point;
- ``losslens.trajectories.pca_directions``: the principal components of a training trajectory
  (Li et al. 2018, Sec. 7);
- ``between``: the single direction from one point to another (Goodfellow et al. 2015).

Directions are never orthogonalized: orthogonalizing after normalizing destroys the normalization,
and normalizing after orthogonalizing destroys the orthogonality (a mistake of older tools). Random
Gaussian directions in high dimension are nearly orthogonal anyway; their cosines are recorded in
``meta["cosine"]``; projections onto a plane (``losslens.trajectories``) solve a least-squares problem,
so they need no orthogonality.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch

from losslens.checks import check_choice, check_int, check_seed
from losslens.core.params import ParameterSpace
from losslens.results import Result, array, attr

KINDS: tuple[str, ...] = ("random", "hessian", "pca", "between", "custom")
NORMALIZATIONS: tuple[str, ...] = ("filter", "layer", "model", "none")
IGNORES: tuple[str, ...] = ("biasbn", "none")

Normalization = Literal["filter", "layer", "model", "none"]
Ignore = Literal["biasbn", "none"]


@dataclass(frozen=True, eq=False, repr=False)
class Directions(Result):
    """A set of directions in weight space, one per row.

    Attributes:
        vectors: ``(m, P)`` float32 or float64 CPU tensor, one direction per row, in the order of the
            ``ParameterSpace`` they were made for.
        kind: how they were made: ``"random"``, ``"hessian"``, ``"pca"``, ``"between"``, or
            ``"custom"`` (vectors given by the user).
        meta: the recipe (normalization, ignore, seed, eigenvalues, explained variance, ...) as
            JSON-compatible values, and ``cosine``, the ``(m, m)`` cosines of the rows, as lists.
    """

    vectors: torch.Tensor = array(("m", "P"), tensor=True)
    kind: str = attr()
    meta: dict = field(default_factory=dict)
    KIND: ClassVar[str] = "directions"

    def __post_init__(self):
        vectors = torch.as_tensor(self.vectors).detach().cpu()
        if vectors.dim() != 2 or not vectors.is_floating_point():
            raise ValueError(
                "Directions.vectors must be a floating (m, P) tensor, "
                f"found {vectors.dtype} of shape {list(vectors.shape)}"
            )
        check_choice("kind", self.kind, KINDS)
        object.__setattr__(self, "vectors", vectors)

    def __len__(self) -> int:
        return len(self.vectors)

    def cosine(self) -> torch.Tensor:
        """``(m, m)`` float64 cosine similarities of the rows, ``<d_i, d_j> / (||d_i|| ||d_j||)``.

        A zero row has NaN cosines.
        """
        return _cosine(self.vectors)


def random_directions(
    space: ParameterSpace,
    w0: torch.Tensor,
    n: int = 2,
    *,
    normalization: Normalization = "filter",
    ignore: Ignore = "biasbn",
    seed: int = 0,
) -> Directions:
    """Gaussian random directions scaled to the weights ``w0`` (Li et al. 2018).

    Each entry is drawn from :math:`\\mathcal N(0, 1)` by a ``torch.Generator`` seeded with ``seed``
    (in float64 on the CPU, so the same seed gives the same directions whatever the device or dtype
    of ``w0``; the global RNG is not touched). Each raw direction ``d`` is then rescaled:

    - ``"filter"``: every filter ``f`` of a tensor with ``dim > 1`` (a slice along dim 0: a
      convolution's output channel, a ``Linear`` output row) gets
      :math:`d_f \\leftarrow d_f \\, \\|w_f\\| / \\|d_f\\|`, so :math:`\\|d_f\\| = \\|w_f\\|`;
    - ``"layer"``: every tensor ``t`` gets :math:`\\|d_t\\| = \\|w_t\\|`;
    - ``"model"``: the whole vector gets :math:`\\|d\\| = \\|w_0\\|` (the norm of all of ``w0``);
    - ``"none"``: the raw Gaussian entries are kept.

    A filter or tensor whose weights are zero gets a zero direction. Tensors with ``dim <= 1``
    (biases, BatchNorm weights and biases, and running statistics when the space holds buffers):

    - ``ignore="biasbn"``: their entries are zero, whatever the normalization, so they stay at
      their values in ``w0`` along the direction;
    - ``ignore="none"``: with ``"filter"`` they are a copy of the weights, :math:`d_t = w_t`, as in
      Li et al.'s code (every entry is a one-element filter with :math:`|d_i| = |w_i|`); with
      ``"layer"`` they are rescaled like any tensor; with ``"model"`` and ``"none"`` they keep their
      Gaussian entries, as part of the whole vector.
    The directions are not orthogonalized; ``meta["cosine"]`` holds their cosines.

    Args:
        space: the parameter space the flat vectors live in.
        w0: ``(P,)`` weights the directions are scaled to (usually the trained model, ``evaluator.w0``).
        n: number of directions.
        normalization: ``"filter"``, ``"layer"``, ``"model"`` or ``"none"``.
        ignore: ``"biasbn"`` or ``"none"``.
        seed: seed of the generator.

    Returns:
        ``Directions`` of kind ``"random"``, in ``w0``'s dtype (float32 for a lower precision), on the CPU.

    Raises:
        ConfigError: an unknown option or ``n < 1``; ValueError: ``w0`` of the wrong shape.
    """
    if not isinstance(space, ParameterSpace):
        raise TypeError(f"space must be a ParameterSpace (e.g. evaluator.space), got {type(space).__name__}")
    check_choice("normalization", normalization, NORMALIZATIONS)
    check_choice("ignore", ignore, IGNORES)
    n = check_int("n", n, minimum=1)
    w0 = _flat(w0, "w0", space.size)
    seed = check_seed(seed)
    d = torch.randn(n, space.size, generator=torch.Generator(device="cpu").manual_seed(seed), dtype=torch.float64)
    d = _scale_to_weights(d, w0.detach().to(device="cpu", dtype=torch.float64), space, normalization, ignore)
    meta = {"normalization": normalization, "ignore": ignore, "seed": int(seed), "n_params": space.size,
            "norms": [float(x) for x in d.norm(dim=1)], "cosine": _cosine(d).tolist()}
    return Directions(d.to(_out_dtype(w0.dtype)), "random", meta)


def _scale_to_weights(d: torch.Tensor, w: torch.Tensor, space: ParameterSpace, normalization: str,
                      ignore: str) -> torch.Tensor:
    """The Gaussian directions ``d`` ``(n, P)`` rescaled in place to the weights ``w`` by ``normalization``,
    with the entries of tensors of ``dim <= 1`` zeroed for ``ignore="biasbn"`` (see ``random_directions``)."""
    for spec in space.specs:
        sl = space.slice_of(spec.name)
        d_t, w_t = d[:, sl], w[sl]
        if len(spec.shape) <= 1 and ignore == "biasbn":
            d_t.zero_()
        elif normalization == "filter" and len(spec.shape) <= 1:
            d_t.copy_(w_t.expand_as(d_t))
        elif normalization == "filter":
            rows = d_t.view(len(d), spec.shape[0], -1)
            w_rows = w_t.view(spec.shape[0], -1)
            rows.mul_(_ratio(w_rows.norm(dim=1), rows.norm(dim=2))[..., None])
        elif normalization == "layer":
            d_t.mul_(_ratio(w_t.norm(), d_t.norm(dim=1)[:, None]))
        # "model" and "none" keep the Gaussian entries of every tensor here
    if normalization == "model":
        d.mul_(_ratio(w.norm(), d.norm(dim=1)[:, None]))
    return d


def hessian_directions(
    evaluator,
    w: torch.Tensor | None = None,
    k: int = 2,
    *,
    seed: int = 0,
    tol: float = 1e-6,
) -> Directions:
    """The ``k`` Hessian eigenvectors of largest eigenvalue at ``w``, as unit directions.

    Computed by ``losslens.curvature.hessian.eigenpairs`` (Lanczos on Hessian-vector products of
    the evaluator). Each eigenvector is normalized to :math:`\\|d\\| = 1` and its sign fixed so that
    its entry of largest magnitude is positive (eigenvectors are defined up to sign), so the same
    seed gives the same directions.

    Args:
        evaluator: the ``Evaluator`` whose mean loss defines the Hessian.
        w: ``(P,)`` point (default ``evaluator.w0``).
        k: number of eigenvectors.
        seed: seed of the eigensolver's start vector.
        tol: relative tolerance of the eigensolver.

    Returns:
        ``Directions`` of kind ``"hessian"`` in the evaluator's dtype, with ``meta["eigenvalues"]``
        (descending), ``meta["residual_norms"]`` (:math:`\\|H d_i - \\lambda_i d_i\\|`) and the
        evaluator's ``meta()`` under ``meta["evaluator"]``.
    """
    from losslens.curvature.hessian import eigenpairs
    from losslens.curvature.operator import HessianOperator

    k = check_int("k", k, minimum=1)
    at = "w0" if w is None else "given"
    if w is not None:
        w = _flat(w, "w", evaluator.space.size)
    pairs = eigenpairs(HessianOperator(evaluator, w), k=k, which="largest", tol=tol, seed=seed)
    vectors = torch.as_tensor(pairs.vectors).detach().to(device="cpu", dtype=torch.float64)
    vectors = vectors / vectors.norm(dim=1, keepdim=True)
    vectors = vectors * _sign_of_largest(vectors)[:, None]
    meta = {
        "eigenvalues": [float(v) for v in torch.as_tensor(pairs.values).flatten()],
        "residual_norms": [float(r) for r in pairs.residual_norms],
        "which": "largest",
        "k": int(k),
        "seed": int(seed),
        "tol": float(tol),
        "at": at,
        "n_params": evaluator.space.size,
        "evaluator": evaluator.meta(),
        "cosine": _cosine(vectors).tolist(),
    }
    return Directions(vectors.to(_out_dtype(evaluator.dtype)), "hessian", meta)


def between(w_a: torch.Tensor, w_b: torch.Tensor, *, names: tuple[str, str] | None = None) -> Directions:
    """The single direction :math:`d = w_b - w_a` from one point to another.

    Args:
        w_a, w_b: ``(P,)`` start and end points.
        names: optional labels of the two points (checkpoint names), kept in ``meta["endpoints"]``.

    Returns:
        ``Directions`` of kind ``"between"`` with one row, ``meta["norm"]`` :math:`= \\|w_b - w_a\\|`.

    Raises:
        ValueError: the points are not flat vectors of the same length.
    """
    w_a = _flat(w_a, "w_a", None)
    w_b = _flat(w_b, "w_b", len(w_a))
    dtype = _out_dtype(torch.promote_types(w_a.dtype, w_b.dtype))
    d = w_b.detach().to(device="cpu", dtype=torch.float64) - w_a.detach().to(device="cpu", dtype=torch.float64)
    meta = {
        "norm": float(d.norm()),
        "n_params": len(d),
        "endpoints": None if names is None else [str(x) for x in names],
        "cosine": _cosine(d[None]).tolist(),
    }
    return Directions(d[None].to(dtype), "between", meta)


# -- helpers ------------------------------------------------------------------------------------


def _flat(w, what: str, size: int | None) -> torch.Tensor:
    w = torch.as_tensor(w)
    if w.dim() != 1 or (size is not None and len(w) != size) or not w.is_floating_point():
        expected = "(P,)" if size is None else f"({size},)"
        raise ValueError(
            f"{what} must be a floating vector of shape {expected}, found {w.dtype} of shape {list(w.shape)}"
        )
    if not torch.isfinite(w).all():
        raise ValueError(f"{what} holds {int((~torch.isfinite(w)).sum())} NaN or infinite entries")
    return w


def _ratio(target: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """``target / norm``, and 0 where ``norm`` is 0 (a zero direction stays zero)."""
    return torch.where(norm > 0, target / norm.clamp_min(torch.finfo(norm.dtype).tiny), torch.zeros_like(norm))


def _cosine(vectors: torch.Tensor) -> torch.Tensor:
    v = vectors.to(torch.float64)
    norms = v.norm(dim=1)
    return (v @ v.T) / (norms[:, None] * norms[None, :])


def _sign_of_largest(vectors: torch.Tensor) -> torch.Tensor:
    """``(m,)`` signs that make each row's entry of largest magnitude positive."""
    picked = vectors.gather(1, vectors.abs().argmax(dim=1, keepdim=True)).squeeze(1)
    return torch.where(picked < 0, -1.0, 1.0).to(vectors.dtype)


def _out_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32
