"""Losses and metrics by name. Each returns the *mean* over the samples of one batch."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from losslens.errors import ConfigError

Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def accuracy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Fraction of samples whose arg-max class equals the integer target; NaN when an output is not
    finite (the arg-max of NaN logits is meaningless: a diverged point has no accuracy)."""
    value = (output.argmax(dim=-1) == target).to(output.dtype).mean()
    return torch.where(torch.isfinite(output).all(), value, torch.full_like(value, float("nan")))


def mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error; output and target must have the same shape (no silent broadcasting)."""
    if output.shape != target.shape:
        raise ValueError(f"mse: model output of shape {list(output.shape)} does not match targets of shape "
                         f"{list(target.shape)}")
    return F.mse_loss(output, target)


def cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``F.cross_entropy``; for ``(N, C)`` logits and class indices computed as
    :math:`\\mathrm{mean}_i(\\log\\sum_c e^{o_{ic}} - o_{i y_i})`, which on CPU runs about twice as fast
    as ``log_softmax`` over a small class dimension (same value to float rounding)."""
    if output.dim() == 2 and not target.is_floating_point():
        return (output.logsumexp(1) - output.gather(1, target[:, None])[:, 0]).mean()
    return F.cross_entropy(output, target)


LOSSES: dict[str, Objective] = {
    "cross_entropy": cross_entropy,
    "mse": mse,
}
METRICS: dict[str, Objective] = {"accuracy": accuracy}


def resolve(value: str | Objective, table: dict[str, Objective], kind: str) -> tuple[str, Objective]:
    """``(name, function)`` for a name from ``table`` or a callable ``f(output, target) -> mean``."""
    if callable(value):
        return getattr(value, "__name__", type(value).__name__), value
    if value not in table:
        raise ConfigError(f"unknown {kind} {value!r}; valid: {', '.join(sorted(table))} or a callable")
    return value, table[value]
