"""Checks of the model, the inputs and the targets, made before the first evaluation.

Each failure is one line naming what is wrong: a model that is not an ``nn.Module``, inputs the
model cannot take (their shapes and dtypes are named), an output the loss cannot read (its type and
keys are named), class labels outside the model's outputs, float targets given to a classification
loss that would read them as probabilities, targets whose shape does not fit the outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Callable

import torch
from torch import nn

from losslens.checks import check_int
from losslens.core.losses import IGNORE_INDEX, LossOverUnits, model_loss, read_output
from losslens.errors import ConfigError


def check_model(model) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise ConfigError(f"the model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def check_batch_size(batch_size) -> None:
    check_int("batch_size", batch_size, minimum=1, none=True)


def probe_output(forward: Callable[[object], object], inputs) -> object:
    """The model's output on the first samples ``inputs``, or a one-line error naming the inputs."""
    try:
        with torch.no_grad():
            return forward(inputs)
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure here is the inputs not fitting the model
        message = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ConfigError(f"the model cannot take the data's inputs ({describe_inputs(inputs)}): "
                          f"{type(err).__name__}: {message}") from None


def describe_inputs(inputs) -> str:
    """``samples of shape [1, 8, 8], dtype float32`` or ``input_ids [12] int64, attention_mask [12] int64``."""
    if isinstance(inputs, torch.Tensor):
        return f"samples of shape {list(inputs.shape[1:])}, dtype {_dtype(inputs)}"
    items = inputs.items() if isinstance(inputs, Mapping) else enumerate(inputs)
    return ", ".join(f"{k} {list(t.shape[1:])} {_dtype(t)}" for k, t in items)


def check_targets(objective: LossOverUnits, metric_names: tuple[str, ...], out, target: torch.Tensor) -> int | None:
    """The targets of the first samples against the model's output on them (see the module docstring).

    Returns:
        The number of classes when the targets are class labels (``check_label_range`` checks every
        batch against it), else ``None``.
    """
    n_classes = None
    if objective.uses_model_loss:
        model_loss(out)
        if "accuracy" not in metric_names:
            return None
    logits = read_output(out, objective.output_key)
    if objective.name == "mse":
        if not target.is_floating_point() or tuple(target.shape[1:]) != tuple(logits.shape[1:]):
            raise ConfigError(f"mse needs float targets of the model's output shape {list(logits.shape[1:])} per sample; "
                              f"found {_dtype(target)} targets of shape {list(target.shape[1:])} per sample")
    elif objective.units == "samples" and objective.name == "cross_entropy":
        if tuple(target.shape) != tuple(logits.shape):
            raise ConfigError(f"cross_entropy got float targets of shape {list(target.shape[1:])} per sample: give "
                              f"integer class labels, or class probabilities of the output's shape {list(logits.shape[1:])}")
        sums = target.double().sum(dim=1)
        if (target < 0).any() or not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
            raise ConfigError("cross_entropy got float targets that are not class probabilities (non-negative, summing "
                              "to 1 over the classes): give integer class labels instead")
    elif objective.units != "samples" and not objective.uses_model_loss:
        if objective.units == "shifted_targets" and target.dim() < 2:
            raise ConfigError(f"{objective.name} predicts each next token: it needs token sequences, targets of "
                              f"shape (N, T); found one target per sample (shape {list(target.shape)})")
        n_classes = _classes(objective.name, logits, target)
    if "accuracy" in metric_names:
        if target.is_floating_point() or torch.is_complex(target):
            raise ConfigError(f"accuracy needs integer class labels; found {_dtype(target)} targets: pass metrics=() for "
                              "regression")
        n_classes = _classes("accuracy", logits, target)
    return n_classes


def _classes(what: str, logits: torch.Tensor, target: torch.Tensor) -> int:
    """The number of classes, for integer labels of shape ``logits.shape[:-1]`` (classes last) or
    ``(N, d...)`` for ``(N, C, d...)``."""
    if target.is_floating_point() or torch.is_complex(target) or target.dtype == torch.bool:
        raise ConfigError(f"{what} needs integer class labels, found {_dtype(target)} targets")
    if logits.dim() < 2:
        raise ConfigError(f"{what} needs outputs of shape (N, C, ...), the model gives {list(logits.shape)}")
    if tuple(target.shape) == tuple(logits.shape[:-1]):
        n_classes = logits.shape[-1]
    elif tuple(target.shape[1:]) == tuple(logits.shape[2:]):
        n_classes = logits.shape[1]
    else:
        raise ConfigError(f"{what} needs labels of shape {list(logits.shape[1:-1])} per sample for outputs of shape "
                          f"{list(logits.shape[1:])}; found labels of shape {list(target.shape[1:])}")
    return n_classes


def check_label_range(target: torch.Tensor, n_classes: int) -> None:
    """Class labels in ``[0, n_classes)``, or ``IGNORE_INDEX`` (ignored)."""
    kept = target[target != IGNORE_INDEX]
    if kept.numel():
        lo, hi = int(kept.min()), int(kept.max())
        if lo < 0 or hi >= n_classes:
            raise ConfigError(f"class labels range over [{lo}, {hi}] but the model has {n_classes} outputs "
                              f"(labels must lie in [0, {n_classes - 1}], or be {IGNORE_INDEX} to be ignored)")


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

