"""Optimizers by name: every ``torch.optim`` class, ``pytorch-optimizer``'s when it is installed, and
the presets that loss-landscape comparisons use.

A name resolves, case-insensitively, to ``(class, default options)``:

- a preset of ``PRESETS``: ``sgd``, ``momentum`` (SGD, momentum 0.9), ``nesterov`` (SGD, momentum 0.9,
  Nesterov), ``book-momentum`` (SGD with momentum 0.8 and dampening 0.8, which is the update
  :math:`v \\leftarrow m v + (1 - m) g,\\; w \\leftarrow w - \\eta v` of the book chapter this project
  grows from);
- any ``torch.optim`` class (``adam``, ``AdamW``, ``rmsprop``, ``adagrad``, ``lbfgs``, ``adafactor``, ...);
- any optimizer of the optional ``pytorch-optimizer`` package (``lion``, ``sophiah``, ``soap``, ...),
  through its ``load_optimizer``; ``pip install pytorch-optimizer`` (the ``optimizers`` extra) adds them.

The caller's options override a preset's.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Iterable

import torch

from losslens.errors import ConfigError

PRESETS: dict[str, tuple[str, dict]] = {
    "sgd": ("SGD", {}),
    "momentum": ("SGD", {"momentum": 0.9}),
    "nesterov": ("SGD", {"momentum": 0.9, "nesterov": True}),
    "book-momentum": ("SGD", {"momentum": 0.8, "dampening": 0.8}),
}
COMPARISON_DEFAULTS: tuple[str, ...] = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad", "lion")


def _torch_optimizers() -> dict[str, type[torch.optim.Optimizer]]:
    return {
        n.lower(): cls
        for n, cls in vars(torch.optim).items()
        if isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer) and cls is not torch.optim.Optimizer
    }


def is_available(name: str) -> bool:
    """Whether ``name`` resolves here (``lion`` needs ``pytorch-optimizer``)."""
    try:
        resolve_optimizer(name)
    except ConfigError:
        return False
    return True


def installed(names: Iterable[str]) -> list[str]:
    """The optimizers of a default list (``COMPARISON_DEFAULTS``, replay's) that resolve here, in order.

    Each one left out because its package is missing (``lion`` without ``pytorch-optimizer``) is
    said once, in a warning that names it, why, and how to get it.
    """
    names = list(names)
    kept = [n for n in names if is_available(n)]
    for name in names:
        if name not in kept:
            warnings.warn(f"{name} skipped: it comes from pytorch-optimizer, which is not installed "
                          "(pip install pytorch-optimizer)", stacklevel=2)
    return kept


def resolve_optimizer(name: str, options: dict | None = None) -> tuple[type[torch.optim.Optimizer], dict]:
    """``(class, options)`` for an optimizer name: a preset's options updated with ``options``.

    Raises:
        ConfigError: no optimizer of that name (the torch ones and the presets are listed), or a
            ``pytorch-optimizer`` name while that package is not installed.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"an optimizer name must be a non-empty string, got {name!r}")
    key = name.lower()
    base, defaults = PRESETS.get(key, (name, {}))
    table = _torch_optimizers()
    cls = table.get(base.lower())
    if cls is None:
        cls = _pytorch_optimizer_class(base)
    return cls, {**defaults, **(options or {})}


def _pytorch_optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    valid = ", ".join(sorted(list(PRESETS) + [c.__name__ for c in _torch_optimizers().values()], key=str.lower))
    try:
        import pytorch_optimizer
    except ImportError:
        raise ConfigError(
            f"unknown optimizer {name!r}; valid without extras: {valid}; optimizers such as lion come from "
            "pytorch-optimizer: pip install pytorch-optimizer"
        ) from None
    try:
        return pytorch_optimizer.load_optimizer(name.lower())
    except NotImplementedError:
        raise ConfigError(
            f"unknown optimizer {name!r}; valid: {valid}, or any of pytorch-optimizer's "
            "(pytorch_optimizer.get_supported_optimizers())"
        ) from None


def make_optimizer(
    name: str, params: Iterable[torch.Tensor], lr: float, options: dict | None = None, *, weight_decay: float = 0.0
) -> tuple[torch.optim.Optimizer, dict]:
    """An optimizer over ``params`` with learning rate ``lr``, and the options it was given.

    ``weight_decay`` is passed explicitly (0 by default, so AdamW's own default decay applies only
    when asked for) to optimizers that take it; a non-zero value for one that does not is an error.

    Raises:
        ConfigError: an unknown name, ``lr``/``params`` inside ``options``, weight decay given twice
            or to an optimizer without it, or options the optimizer does not take.
    """
    cls, kwargs = resolve_optimizer(name, options)
    if "lr" in (options or {}) or "params" in kwargs:
        raise ConfigError("give the learning rate as lr, not among the optimizer options (and no params there)")
    accepts = inspect.signature(cls.__init__).parameters
    if "weight_decay" in (options or {}):
        if weight_decay:
            raise ConfigError("weight decay given twice: as weight_decay and among the optimizer options")
    elif "weight_decay" in accepts:
        kwargs["weight_decay"] = weight_decay
    elif weight_decay:
        raise ConfigError(f"optimizer {cls.__name__} has no weight_decay option")
    try:
        return cls(list(params), lr=lr, **kwargs), kwargs
    except (TypeError, ValueError) as e:
        raise ConfigError(f"optimizer {cls.__name__} does not take the options {kwargs} (as {name!r}): {e}") from e
