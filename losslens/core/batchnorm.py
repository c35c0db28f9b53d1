"""BatchNorm modes of evaluation, applied to the evaluator's private copy of the model.

- ``eval``: running statistics (the model's own), read-only.
- ``batch``: statistics of each evaluation batch; running statistics are not touched.
- ``recalibrate``: at every point, running statistics are re-estimated on a calibration set as
  ``torch.optim.swa_utils.update_bn`` does (reset, then a cumulative average over the calibration
  batches of train-mode forwards), then the point is evaluated with them, as in mode-connectivity
  work (Garipov et al. 2018).

Dropout is always off: the copy is in eval mode except for the BatchNorm layers a mode switches.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from losslens.checks import check_choice

BN_MODES: tuple[str, ...] = ("eval", "batch", "recalibrate")


def batchnorm_layers(module: nn.Module) -> list[tuple[str, _BatchNorm]]:
    return [(n, m) for n, m in module.named_modules() if isinstance(m, _BatchNorm)]


def check_mode(bn: str) -> str:
    return check_choice("bn", bn, BN_MODES)


def configure(module: nn.Module, bn: str) -> None:
    """Put the private copy in the state that evaluation in mode ``bn`` needs."""
    module.eval()
    if bn == "batch":
        for _, layer in batchnorm_layers(module):
            layer.train()
            layer.track_running_stats = False  # batch statistics, and no running-stat updates


def running_stat_names(module: nn.Module) -> list[str]:
    """Names of the running mean/variance buffers that recalibration re-estimates."""
    names = []
    for prefix, layer in batchnorm_layers(module):
        if layer.track_running_stats and layer.running_mean is not None:
            names += [f"{prefix}.running_mean", f"{prefix}.running_var"]
    return names


def fresh_running_stats(module: nn.Module, k: int) -> dict[str, torch.Tensor]:
    """Reset running statistics (mean 0, variance 1) for ``k`` points: ``{name: (k, C)}``."""
    buffers = dict(module.named_buffers())
    return {
        n: (torch.zeros_like if n.endswith("mean") else torch.ones_like)(buffers[n]).expand(k, -1).clone()
        for n in running_stat_names(module)
    }


@contextlib.contextmanager
def calibrating(module: nn.Module) -> Iterator[None]:
    """Train-mode BatchNorm with a cumulative average (``momentum=None``) from a zero batch count."""
    layers = [m for _, m in batchnorm_layers(module) if m.track_running_stats]
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.train()
        m.momentum = None
        if m.num_batches_tracked is not None:
            m.num_batches_tracked.zero_()
    try:
        yield
    finally:
        for m, momentum in zip(layers, momenta):
            m.eval()
            m.momentum = momentum


def recalibrated_stats(module: nn.Module, params: dict, k: int, batches: list[torch.Tensor], forward: Callable,
                       runner) -> dict[str, torch.Tensor]:
    """Running statistics re-estimated at each of ``k`` points: ``{name: (k, C)}``.

    ``forward(params, stats, x)`` runs the model at the point with the statistics ``stats`` (updated
    in place by train-mode BatchNorm); the points run vmapped when the runner's plan says so, else
    (also after a vmap failure in the loop) one after another.
    """
    stats = fresh_running_stats(module, k)
    if runner.plan.vectorize:
        with calibrating(module):
            for x in batches:
                runner.map(forward, (params, stats, x), (0, 0, None), compilable=False)
    if not runner.plan.vectorize:  # also after a fallback in the loop above: recompute every point
        from losslens.core._runner import index

        stats = fresh_running_stats(module, k)
        with torch.no_grad():
            for i in range(k):
                with calibrating(module):
                    for x in batches:
                        forward(index(params, i), index(stats, i), x)
    return stats
