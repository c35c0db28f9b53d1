"""One replay step: the objective's answer checked, an optimizer's update (noise, clipping, the exact local
model for optimizers that need the Hessian), the learning-rate schedule, the top curvature at a point
(``replay.py`` runs them)."""

from __future__ import annotations

import math

import torch

from losslens.trajectories.objectives import ReplayObjective


def _checked(obj: ReplayObjective, out, K: int):
    """The objective's ``(loss (K,), grad (K, 2), hessian (K, 2, 2) or None)``, float64 on the CPU, detached.

    Raises:
        ValueError: shapes that are not those (the objective is named).
    """
    expected = ((K,), (K, 2), (K, 2, 2))
    result = []
    for name, value, shape in zip(("loss", "gradient", "Hessian"), out, expected):
        if value is None:
            result.append(None)
            continue
        value = torch.as_tensor(value).detach().to(device="cpu", dtype=torch.float64)
        if tuple(value.shape) != shape:
            raise ValueError(f"objective {obj.name!r} returned a {name} of shape {list(value.shape)} for {K} points, "
                             f"expected {list(shape)}")
        result.append(value)
    return tuple(result)


def _update(p, opt, scheduler, grad, hess, needs_hessian: bool, xi, noise: float, clip: float | None) -> None:
    """One optimizer step from the batched gradient (noise, then clipping; see the module doc)."""
    g = grad.clone()
    if xi is not None:
        g = g + noise * xi
    if clip is not None:
        norm = float(g.norm())
        if norm > clip:
            g = g * (clip / norm)
    if needs_hessian:  # value g, derivative hess: exact Hessian-vector products through p.grad's graph
        g = g + hess @ (p - p.detach())
    p.grad = g
    opt.step()
    scheduler.step()


def _scheduler(opt, schedule: str, steps: int, warmup: int, step_size: int | None, gamma: float):
    from torch.optim import lr_scheduler as ls

    after = max(steps - warmup, 1)
    main = {
        "constant": lambda: ls.ConstantLR(opt, factor=1.0, total_iters=0),
        "cosine": lambda: ls.CosineAnnealingLR(opt, T_max=after),
        "step": lambda: ls.StepLR(opt, step_size=step_size, gamma=gamma),
    }[schedule]
    if warmup == 0:
        return main()
    warm = ls.LinearLR(opt, start_factor=1.0 / (warmup + 1), end_factor=1.0, total_iters=warmup)
    return ls.SequentialLR(opt, [warm, main()], milestones=[warmup])


def _top_curvature(obj: ReplayObjective, point) -> float | None:
    """The largest eigenvalue of the objective's Hessian at ``point``, when it has Hessians."""
    if not obj.has_hessian:
        return None
    _, _, H = obj.value_grad_hessian(torch.tensor([point], dtype=torch.float64))
    value = float(torch.linalg.eigvalsh(H[0]).max())
    return value if math.isfinite(value) else None


