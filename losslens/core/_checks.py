"""Checks of the model, the inputs and the targets, made before the first evaluation.

Each failure is one line naming what is wrong: a model that is not an ``nn.Module``, inputs the
model cannot take (their shape and dtype are named), class labels outside the model's outputs,
float targets given to ``cross_entropy`` (which would read them as probabilities and return a
meaningless loss), targets whose shape does not fit the outputs.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from losslens.errors import ConfigError


def check_model(model) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise ConfigError(f"the model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def check_batch_size(batch_size) -> None:
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")


def probe_output(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The model's output on the first two samples ``x``, or a one-line error naming the inputs."""
    try:
        with torch.no_grad():
            out = forward(x)
    except Exception as err:  # noqa: BLE001 - any failure here is the inputs not fitting the model
        message = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ConfigError(
            f"the model cannot take the data's inputs (samples of shape {list(x.shape[1:])}, dtype "
            f"{str(x.dtype).removeprefix('torch.')}): {type(err).__name__}: {message}"
        ) from None
    if not isinstance(out, torch.Tensor):
        raise ConfigError(f"the model returns a {type(out).__name__}, not a tensor")
    return out


def check_targets(loss_name: str, metric_names: tuple[str, ...], out: torch.Tensor, y: torch.Tensor) -> None:
    """Targets ``y`` (the whole set) against the model's output ``out`` on two samples.

    - ``cross_entropy``: integer class labels of shape ``(N, *out.shape[2:])`` in
      ``[0, out.shape[1])``, or float class probabilities of the output's shape (non-negative,
      summing to 1 over dim 1);
    - ``mse``: float targets of the output's per-sample shape;
    - ``accuracy``: integer class labels of the shape of ``out.shape[:-1]``.
    Custom (callable) losses are the user's to check.
    """
    if loss_name == "cross_entropy":
        _check_cross_entropy(out, y)
    elif loss_name == "mse":
        if not y.is_floating_point() or tuple(y.shape[1:]) != tuple(out.shape[1:]):
            raise ConfigError(
                f"mse needs float targets of the model's output shape {list(out.shape[1:])} per sample; found "
                f"{_dtype(y)} targets of shape {list(y.shape[1:])} per sample"
            )
    if "accuracy" in metric_names:
        if y.is_floating_point() or tuple(y.shape[1:]) != tuple(out.shape[1:-1]):
            raise ConfigError(
                f"accuracy needs integer class labels of shape {list(out.shape[1:-1])} per sample; found "
                f"{_dtype(y)} targets of shape {list(y.shape[1:])}: pass metrics=() for regression"
            )
        _check_label_range(y, out.shape[-1])


def _check_cross_entropy(out: torch.Tensor, y: torch.Tensor) -> None:
    if out.dim() < 2:
        raise ConfigError(f"cross_entropy needs outputs of shape (N, C, ...), the model gives {list(out.shape)}")
    n_classes = out.shape[1]
    if y.is_floating_point():
        if tuple(y.shape[1:]) != tuple(out.shape[1:]):
            raise ConfigError(
                f"cross_entropy got float targets of shape {list(y.shape[1:])} per sample: give integer class "
                f"labels, or class probabilities of the output's shape {list(out.shape[1:])}"
            )
        sums = y.double().sum(dim=1)
        if (y < 0).any() or not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
            raise ConfigError("cross_entropy got float targets that are not class probabilities (non-negative, "
                              "summing to 1 over the classes): give integer class labels instead")
        return
    if torch.is_complex(y) or y.dtype == torch.bool:
        raise ConfigError(f"cross_entropy needs integer class labels, found {_dtype(y)} targets")
    if tuple(y.shape[1:]) != tuple(out.shape[2:]):
        raise ConfigError(
            f"cross_entropy needs class labels of shape {list(out.shape[2:])} per sample for outputs of shape "
            f"{list(out.shape[1:])}; found labels of shape {list(y.shape[1:])}"
        )
    _check_label_range(y, n_classes)


def _check_label_range(y: torch.Tensor, n_classes: int) -> None:
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= n_classes:
        raise ConfigError(f"class labels range over [{lo}, {hi}] but the model has {n_classes} outputs "
                          f"(labels must lie in [0, {n_classes - 1}])")


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def nonfinite_tensors(state: dict[str, torch.Tensor]) -> list[str]:
    """``"name (k of n)"`` for each floating tensor holding NaN or inf entries."""
    found = []
    for name, t in state.items():
        if t.is_floating_point():
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                found.append(f"{name} ({bad} of {t.numel()})")
    return found
