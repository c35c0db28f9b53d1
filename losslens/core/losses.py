"""Losses and metrics: how a model's output is read, what is averaged, and over which units.

A loss gives the mean over the *units* of one batch; the evaluator weights each batch's mean by its
count of units, so the result is the mean over the whole evaluation set:

- ``samples``: every sample counts once (``mse``, class-probability targets, custom losses);
- ``targets``: every integer target that is not ignored counts once: a class label, or a token label
  of a sequence. Labels of ``IGNORE_INDEX`` (-100, Hugging Face's convention) are ignored, and, for
  token labels, so are positions whose ``attention_mask`` is 0 (padding);
- ``shifted_targets``: the same after the shift of a causal language model (the logits at position
  ``t`` predict the label at ``t + 1``: ``logits[:, :-1]`` against ``labels[:, 1:]``).

Built-in losses: ``cross_entropy`` (class labels ``(N,)`` with logits ``(N, C)``, token labels
``(N, T)`` with logits ``(N, T, C)`` or ``(N, C, T)``, or class probabilities of the logits' shape),
``causal_lm`` (shifted next-token cross-entropy), ``masked_lm`` and ``token_classification`` (token
cross-entropy over the labels that are not -100), ``mse``, and ``model``: the loss the model itself
returns (``output.loss`` / ``output["loss"]``, as Hugging Face models do when given ``labels``),
counted over the targets the model's own loss averages over: labels that are not -100, shifted for
a causal LM (class names ending in ``ForCausalLM`` or ``LMHeadModel``, which shift internally),
unshifted otherwise; the ``units`` option overrides the rule. ``accuracy`` is computed over the same
units as the loss.

Outputs of any structure: a tensor; a tuple or list (its first element); a dict or ``ModelOutput``
(``logits``, or the key given as ``output_key``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from losslens.checks import check_choice
from losslens.errors import ConfigError

Function = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
IGNORE_INDEX = -100
UNITS: tuple[str, ...] = ("auto", "samples", "targets", "shifted_targets")
TOKEN_LOSSES: tuple[str, ...] = ("causal_lm", "masked_lm", "token_classification")
LOSS_NAMES: tuple[str, ...] = ("cross_entropy", "mse", *TOKEN_LOSSES, "model")
LOSS_TASK: dict[str, str] = {"cross_entropy": "classification", "mse": "regression"}  # the losses train() takes
TRAINING_LOSSES: tuple[str, ...] = tuple(LOSS_TASK)
NONNEGATIVE_LOSSES: tuple[str, ...] = ("cross_entropy", "mse", *TOKEN_LOSSES)  # "model": whatever the model returns
_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")


def read_output(out, key: str | None = None) -> torch.Tensor:
    """The logits of a model's output: the tensor itself, the first element of a tuple or list, or
    ``out[key]`` (``"logits"`` by default) of a dict or ``ModelOutput``.

    Raises:
        ConfigError: an output with no such entry (the type and keys are named).
    """
    if isinstance(out, torch.Tensor) and key is None:
        return out
    if isinstance(out, Mapping):
        name = key or "logits"
        if name not in out or not isinstance(out[name], torch.Tensor):
            raise ConfigError(f"the model returns a {type(out).__name__} with keys {list(out)}; no tensor under "
                              f"{name!r}: name the output to use with output_key (--output-key)")
        return out[name]
    if isinstance(out, (tuple, list)) and key is None and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise ConfigError(f"cannot read the model's output of type {type(out).__name__}"
                      + (f" with output_key={key!r}" if key else "") + ": expected a tensor, a tuple/list whose first "
                      "element is a tensor, or a dict/ModelOutput")


def model_loss(out) -> torch.Tensor:
    """The scalar loss a model returned (``out.loss`` or ``out["loss"]``)."""
    loss = out.get("loss") if isinstance(out, Mapping) else getattr(out, "loss", None)
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        raise ConfigError(f"loss_fn='model' needs the model to return its loss (out.loss, a scalar), but it returns "
                          f"a {type(out).__name__}{' without a loss' if loss is None else ''}: pass the labels to the "
                          "model (dict batches with a 'labels' key) or choose another loss")
    return loss


@dataclass(frozen=True)
class LossOverUnits:
    """A loss over stated units, and the accuracy over the same units.

    Attributes:
        name: the loss's name (or the custom function's).
        units: ``"samples"``, ``"targets"`` or ``"shifted_targets"`` (see the module docstring).
        function: for a named loss on logits or a custom loss: ``f(logits, target) -> mean``;
            ``None`` for ``"model"``.
        output_key: the entry of a structured output holding the logits.
    """

    name: str
    units: str
    function: Function | None
    output_key: str | None = None

    @property
    def uses_model_loss(self) -> bool:
        return self.function is None

    def mask(self, target: torch.Tensor, inputs) -> torch.Tensor | None:
        """Bool mask of the counted targets (``None`` for sample units), shifted for a causal LM."""
        if self.units == "samples":
            return None
        keep = target != IGNORE_INDEX
        padding = inputs.get("attention_mask") if isinstance(inputs, Mapping) else None
        if isinstance(padding, torch.Tensor) and padding.shape == target.shape:
            keep = keep & (padding != 0)
        return keep[:, 1:] if self.units == "shifted_targets" else keep

    def count(self, target: torch.Tensor, inputs) -> torch.Tensor:
        """The number of units of a batch (a 0-d tensor)."""
        mask = self.mask(target, inputs)
        return torch.tensor(len(target)) if mask is None else mask.sum()

    def loss(self, out, target: torch.Tensor, inputs) -> torch.Tensor:
        """The batch's mean over its units."""
        if self.uses_model_loss:
            return model_loss(out)
        logits = read_output(out, self.output_key)
        if self.units == "samples":
            return self.function(logits, target)
        aligned, labels = _aligned(logits, target, self.units)
        return _masked_mean(_token_cross_entropy(aligned, labels), self.mask(target, inputs))

    def accuracy(self, out, target: torch.Tensor, inputs) -> torch.Tensor:
        """The share of units whose arg-max class is the target; NaN where an output is not finite."""
        logits = read_output(out, self.output_key)
        if self.units == "samples":
            value = (logits.argmax(dim=-1) == target).to(logits.dtype).mean()
        else:
            aligned, labels = _aligned(logits, target, self.units)
            hits = (aligned.argmax(dim=-1) == labels).to(logits.dtype)
            value = _masked_mean(hits, self.mask(target, inputs))
        return torch.where(torch.isfinite(logits).all(), value, torch.full_like(value, float("nan")))


def _aligned(logits: torch.Tensor, target: torch.Tensor, units: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits with classes last, and the labels they predict (shifted for a causal LM)."""
    if target.dim() >= 1 and logits.dim() == target.dim() + 1 and logits.shape[1:-1] != target.shape[1:] \
            and logits.shape[2:] == target.shape[1:]:
        logits = logits.movedim(1, -1)  # torch's (N, C, d...) layout
    if units == "shifted_targets":
        return logits[:, :-1], target[:, 1:]
    return logits, target


def _token_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """:math:`\\log\\sum_c e^{o_c} - o_y` per target (classes last); ignored labels give any value."""
    picked = logits.gather(-1, target.long().clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return logits.logsumexp(-1) - picked


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` holds (0 for an empty mask: it weighs nothing)."""
    if mask is None:
        return values.mean()
    n = mask.sum()
    return torch.where(mask, values, torch.zeros_like(values)).sum() / n.clamp_min(1)


def mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error; output and target must have the same shape (no silent broadcasting)."""
    if output.shape != target.shape:
        raise ValueError(f"mse: model output of shape {list(output.shape)} does not match targets of shape "
                         f"{list(target.shape)}")
    return F.mse_loss(output, target)


def probabilities_cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against class probabilities of the output's shape (classes on dim 1)."""
    return F.cross_entropy(output, target)


def make_objective(loss_fn: str | Function, target: torch.Tensor | None, *, units: str = "auto",
                   output_key: str | None = None, model=None) -> LossOverUnits:
    """The objective of a loss name (see ``LOSS_NAMES``) or a custom ``f(logits, target) -> mean``.

    Args:
        loss_fn: the loss.
        target: a batch's targets, to tell class labels from probabilities (``cross_entropy``).
        units: ``"auto"`` (the loss's own units, and for ``"model"`` the rule of the module
            docstring) or one of ``UNITS`` to override it.
        output_key: the entry of a structured output holding the logits.
        model: the model (its class name tells a causal LM for ``loss_fn="model"``).

    Raises:
        ConfigError: an unknown loss or units (the valid ones are listed).
    """
    check_choice("units", units, UNITS)
    if callable(loss_fn):
        name = getattr(loss_fn, "__name__", type(loss_fn).__name__)
        return LossOverUnits(name, "samples" if units == "auto" else units, loss_fn, output_key)
    check_choice("loss_fn", loss_fn, LOSS_NAMES, describe=f"one of {', '.join(LOSS_NAMES)} or a callable")
    if loss_fn == "model":
        causal = type(model).__name__.endswith(_CAUSAL_SUFFIXES)
        auto = "samples" if target is None or target.is_floating_point() else \
            "shifted_targets" if causal else "targets"
        return LossOverUnits("model", auto if units == "auto" else units, None, output_key)
    if loss_fn == "mse":
        return LossOverUnits("mse", "samples" if units == "auto" else units, mse, output_key)
    if loss_fn == "cross_entropy" and target is not None and target.is_floating_point():
        return LossOverUnits("cross_entropy", "samples" if units == "auto" else units, probabilities_cross_entropy,
                         output_key)
    auto = "shifted_targets" if loss_fn == "causal_lm" else "targets"
    return LossOverUnits(loss_fn, auto if units == "auto" else units, _token_cross_entropy, output_key)


def loss_function(name: str) -> Function:
    """``f(output, target) -> mean`` of a named loss on plain tensors (what the trainer minimizes)."""
    objective = make_objective(name, None)
    return lambda out, target: objective.loss(out, target, None)


def resolve_metric(value: str | Function) -> tuple[str, Function | None]:
    """``(name, function)`` of a metric: ``"accuracy"`` (``None``: the objective's accuracy) or a
    custom ``f(logits, target) -> mean`` (weighted by the loss's units)."""
    if callable(value):
        return getattr(value, "__name__", type(value).__name__), value
    check_choice("metric", value, ("accuracy",), describe="accuracy or a callable")
    return "accuracy", None


def resolve_loss(loss: str | None, data) -> str:
    """``loss``, checked against the task of ``data`` (a ``TensorData``); by default the loss of that task.

    Raises:
        ConfigError: an unknown loss, or one for the other task.
    """
    if loss is None:
        return "cross_entropy" if data.task == "classification" else "mse"
    check_choice("loss", loss, TRAINING_LOSSES)
    if LOSS_TASK[loss] != data.task:
        raise ConfigError(f"loss {loss!r} is for {LOSS_TASK[loss]}, but {data.name!r} is a {data.task} data set")
    return loss
