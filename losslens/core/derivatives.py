"""Derivatives of the evaluator's mean loss: the gradient and Hessian-vector products.

- ``gradient``: :math:`\\nabla L(w) = \\sum_b \\frac{n_b}{N} \\nabla \\bar\\ell_b(w)`, batch by batch;
  ``values_and_gradients`` gives :math:`L` and :math:`\\nabla L` at ``K`` points in one pass over the
  data (vmapped over the points when the plan vmaps).
- ``hvp``: forward-over-reverse, :math:`H v = \\partial_t \\nabla L(w + t v)|_{t=0}`
  (``jvp`` of ``grad``), vmapped over the vectors, recomputed at every call: it keeps no memory.
- ``GradientGraph``: the gradient at one point with its autograd graph, kept so that each further
  product is one double-backward pass, :math:`H v = \\nabla_w (\\nabla L(w) \\cdot v)` (Pearlmutter
  1994), batched over the vectors. Hessian operators hold one while they work at a point (Lanczos
  asks tens of products there); it is built only when its activations fit the memory budget.

Each batch weighs its share of the set's units (``Evaluator.batch_weight``); one without units is
skipped (``Evaluator.weighted_batches``). With ``bn="batch"`` the
batches are the evaluation batches themselves, since batch statistics (and so the function
differentiated) depend on them; ``bn="recalibrate"`` is refused (the running statistics would have to
be differentiated as functions of ``w``). The differentiated passes run ``scaled_dot_product_attention``
on its math backend (``torch.nn.attention.sdpa_kernel``): the fused CPU and GPU kernels have no
double backward, and the math backend computes the same attention.
"""

from __future__ import annotations

import torch
from torch.func import grad, grad_and_value, jvp

from losslens.core.plan import math_attention

_GRAPH_FACTOR = 8  # bytes of a gradient graph per byte of forward activations (measured upper bound)


def grad_batch_size(ev, n_vectors: int) -> int:
    """Samples per batch of derivative work (see the module docstring for BatchNorm)."""
    if ev.bn == "recalibrate":
        raise ValueError("gradients and Hessians with bn='recalibrate' are not supported (the running statistics "
                         "would have to be re-estimated as a function of w); use bn='eval' or bn='batch'")
    if ev.bn == "batch":
        return ev.plan.batch_size
    per_sample = _GRAPH_FACTOR * n_vectors * ev.activation_bytes
    return int(max(1, min(ev.n_samples, ev.budget // per_sample)))


def gradient(ev, w: torch.Tensor) -> torch.Tensor:
    """``(P,)`` gradient of the mean loss at ``w``."""
    g = torch.zeros_like(w)
    with math_attention():
        for inputs, target in ev.weighted_batches(grad_batch_size(ev, 1)):
            g += grad(ev.batch_loss)(w, inputs, target) * ev.batch_weight(inputs, target)
    return g


def values_and_gradients(ev, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L (K,), grad (K, P))`` of the mean loss at the rows of ``W``, one pass over the data."""
    losses = torch.zeros(len(W), dtype=W.dtype, device=W.device)
    grads = torch.zeros_like(W)

    def one(w, inputs, target):
        g, value = grad_and_value(ev.batch_loss)(w, inputs, target)
        return torch.cat([value[None], g])

    with math_attention():
        for inputs, target in ev.weighted_batches(grad_batch_size(ev, len(W))):
            both = ev.runner.map(one, (W, inputs, target), (0, None, None), compilable=False)
            both = both * ev.batch_weight(inputs, target)
            losses += both[:, 0]
            grads += both[:, 1:]
    return losses, grads


def hvp(ev, w: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """``(k, P)`` products :math:`H(w) v_i` for the rows of ``V``, forward-over-reverse."""
    out = torch.zeros_like(V)

    def one(v, inputs, target):
        return jvp(lambda w_: grad(ev.batch_loss)(w_, inputs, target), (w,), (v,))[1]

    with math_attention():
        for inputs, target in ev.weighted_batches(grad_batch_size(ev, len(V))):
            products = ev.runner.map(one, (V, inputs, target), (0, None, None), vectorize=True, compilable=False)
            out += products * ev.batch_weight(inputs, target)
    return out


class GradientGraph:
    """The gradient of the mean loss at ``w`` with its graph, batch by batch, for repeated products."""

    def __init__(self, ev, w: torch.Tensor):
        self.w = w.clone()
        self._parts = []
        with torch.enable_grad(), math_attention():
            for inputs, target in ev.weighted_batches(grad_batch_size(ev, 1)):
                leaf = w.detach().clone().requires_grad_()
                loss = ev.batch_loss(leaf, inputs, target) * ev.batch_weight(inputs, target)
                self._parts.append((leaf, torch.autograd.grad(loss, leaf, create_graph=True)[0]))

    @staticmethod
    def fits(ev) -> bool:
        """Whether the graph over the whole evaluation set fits the evaluator's memory budget."""
        return _GRAPH_FACTOR * ev.activation_bytes * ev.n_samples <= ev.budget

    def hvp(self, V: torch.Tensor) -> torch.Tensor:
        """``(k, P)`` products for the rows of ``V``, one batched double backward per data batch."""
        with math_attention():
            return sum(torch.autograd.grad(g, leaf, V, retain_graph=True, is_grads_batched=True)[0]
                       for leaf, g in self._parts)
