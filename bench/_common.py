"""Shared pieces of the benchmarks: the bench models, their data, the point-by-point baseline, the peak.

The baseline is the way the older tools (loss-landscape, loss-landscapes, PyHessian scripts) evaluate a
plane: for each point, copy the weights into the model in place, then run the data in batches of 128.
"""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def mlp_784() -> nn.Module:
    """MLP 784-256-128-10 (about 235k parameters)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))


def cnn_28() -> nn.Module:
    """Small CNN for 1x28x28 inputs: conv 1->16, pool, conv 16->32, pool, then 1568-64-10 (106k parameters).

    Point by point it runs at about 16-20% of the float32 matmul peak here, as the CNN of
    shared/notes/performance-facts.md does: its eager max-pooling is slow, far from the convolutions' rate.
    """
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10),
    )


def cnn_strided_28() -> nn.Module:
    """The same layers with strided convolutions instead of pooling (28 -> 14 -> 7): point by point it
    already runs at 45-60% of the matmul peak here, which bounds what any evaluator can gain on a CPU."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10),
    )


def images_28(n: int = 2048, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` MNIST-shaped samples: scikit-learn's digits upsampled to 28x28 (repeated past 1797), with labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0
    x = nn.functional.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
    y = torch.tensor(digits.target)
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed)).repeat(n // len(x) + 1)[:n]
    return x[idx].contiguous(), y[idx].contiguous()


@torch.no_grad()
def point_by_point(model: nn.Module, x, y, w0, D, coeffs, batch_size: int = 128) -> torch.Tensor:
    """Mean cross-entropy at each point ``w0 + c @ D``, the older tools' way (weights copied in place)."""
    model = model.eval()
    params = [p for p in model.parameters()]
    losses = []
    for c in coeffs:
        w = w0 + c @ D
        torch.nn.utils.vector_to_parameters(w, params)
        total = 0.0
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]
            total += nn.functional.cross_entropy(model(xb), yb, reduction="sum").item()
        losses.append(total / len(x))
    return torch.tensor(losses, dtype=torch.float64)


def forward_flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one forward of ``model`` over ``x`` (matmuls and convolutions, as torch counts them)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """Measured float32 matmul rate of this machine in FLOP/s (best of ``repeats``)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def timed(f, *args, **kwargs):
    """``(result, seconds)`` of one call."""
    t = time.perf_counter()
    out = f(*args, **kwargs)
    return out, time.perf_counter() - t
