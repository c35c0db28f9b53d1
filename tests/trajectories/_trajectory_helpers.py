"""Helpers of the trajectory tests: a tiny model, checkpoints of it at chosen weights, a planar trajectory."""

from __future__ import annotations

import torch
from torch import nn

from losslens.core.checkpoints import save_checkpoint
from losslens.core.params import ParameterSpace


def tiny_model(seed: int = 0) -> nn.Module:
    """A float64 MLP 4-5-3 (P = 43), so checkpoints hold float64 points exactly."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()


def write_checkpoints(directory, model: nn.Module, vectors, *, names=None, metadata=None):
    """Save each row of ``vectors`` as a safetensors checkpoint of ``model`` (in the rows' dtype); returns the paths."""
    space = ParameterSpace(model)
    paths = []
    for i, w in enumerate(vectors):
        state = {k: v.clone() for k, v in space.unflatten(torch.as_tensor(w)).items()}
        name = names[i] if names else f"step_{i:04d}.safetensors"
        meta = metadata[i] if metadata else None
        paths.append(save_checkpoint(state, directory / name, metadata=meta))
    return paths


def plane_trajectory(P: int, T: int = 9, seed: int = 0, offset: float = 0.0):
    """``T`` float64 points ``o + a_t e1 + b_t e2`` in a random 2D plane through ``o``, ending at ``o``
    (so the plane through the last point is the trajectory's own), with the orthonormal ``(e1, e2)``
    and the coefficients; ``offset`` adds ``offset * e3`` (orthogonal to the plane) to the first point."""
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(P, generator=g, dtype=torch.float64) * 0.3
    q, _ = torch.linalg.qr(torch.randn(P, 3, generator=g, dtype=torch.float64))
    t = torch.linspace(0, 1, T, dtype=torch.float64)
    coeffs = torch.stack([2.0 * (1 - t) * torch.cos(3 * t), 0.7 * (1 - t) * torch.sin(5 * t)], dim=1)
    points = o + coeffs @ q[:, :2].T
    points[0] += offset * q[:, 2]
    return points, q[:, :2].T.contiguous(), coeffs, q[:, 2]
