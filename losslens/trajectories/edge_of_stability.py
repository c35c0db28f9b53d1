"""The edge of stability: the optimizer's stability limit on the sharpness, and the sharpness itself.

Cohen et al. 2021 ("Gradient Descent on Neural Networks Typically Occurs at the Edge of Stability") found
full-batch GD drives :math:`\\lambda_{max}(H)` up to its limit :math:`2/\\eta` and hovering there; Cohen et al.
2022 ("Adaptive Gradient Methods at the Edge of Stability") found the same for Adam's preconditioned
sharpness :math:`\\lambda_{max}(P^{-1}H)` against :math:`(2 + 2\\beta_1)/((1 - \\beta_1)\\eta)`.
``stability_limit`` gives the limit per optimizer, ``sharpness_of`` the (preconditioned) sharpness by a
bounded Lanczos run, ``adam_preconditioner`` Adam's :math:`P`. ``dynamics.py`` records both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from losslens.core.params import ParameterSpace


SHARPNESS_NCV = 12  # Lanczos vectors per ARPACK restart


SHARPNESS_RESTARTS = 10


SHARPNESS_TOL = 1e-3  # relative accuracy of the top Ritz value


MAX_SHARPNESS_MATVECS = SHARPNESS_NCV + SHARPNESS_RESTARTS * (SHARPNESS_NCV - 1) + 1


SHARPNESS_BOUND = f"Lanczos top-1, at most {MAX_SHARPNESS_MATVECS} Hessian-vector products per record"


SHARPNESS_BUDGET = 5e10  # parameters x samples per Hessian-vector product of a default (automatic) sharpness


@dataclass(frozen=True)
class StabilityLimit:
    """An optimizer's edge of stability: on a quadratic of curvature :math:`\\lambda`, its update
    diverges once :math:`\\lambda` exceeds ``value``.

    Attributes:
        value: the limit (NaN when none is known). formula: how it follows from the learning rate.
        of: ``"hessian"`` (:math:`\\lambda_{max}(H)`), ``"preconditioned"`` (:math:`\\lambda_{max}(P^{-1}H)`,
            Adam) or ``""`` (no limit).
        note: why there is no limit, or what it assumes.
    """

    value: float
    formula: str
    of: str
    note: str = ""

    def as_dict(self) -> dict:
        return {"value": self.value, "formula": self.formula, "of": self.of, "note": self.note}


def stability_limit(optimizer: str | None, lr: float | None, options: dict | None = None) -> StabilityLimit:
    """The edge of stability of ``optimizer`` (a class name: ``SGD``, ``Adam``, ...) at learning rate ``lr``.

    On :math:`L = \\lambda w^2/2`, each update is a linear recurrence whose characteristic roots must
    lie in the unit disc (Jury's conditions on :math:`z^2 - Tz + D`: :math:`|D| < 1`, :math:`|T| < 1 + D`):

    - gradient descent :math:`w \\leftarrow w - \\eta g`: :math:`\\lambda < 2/\\eta`;
    - heavy-ball momentum (PyTorch's ``SGD(momentum=β, dampening=τ)``, :math:`v \\leftarrow \\beta v + (1-\\tau) g`,
      :math:`w \\leftarrow w - \\eta v`): :math:`T = 1 + \\beta - \\eta(1-\\tau)\\lambda`, :math:`D = \\beta`, so
      :math:`\\lambda < 2(1 + \\beta)/((1 - \\tau)\\eta)` (:math:`2(1+\\beta)/\\eta` without dampening);
    - Nesterov (``nesterov=True``: :math:`w \\leftarrow w - \\eta(g + \\beta v)`): :math:`T = 1 + \\beta -
      \\eta\\lambda(1 + \\beta)`, :math:`D = \\beta(1 - \\eta\\lambda)`, so
      :math:`\\lambda < (2 + 2\\beta)/((1 + 2\\beta)\\eta)`;
    - Adam and AdamW with :math:`\\beta_1`: with the preconditioner frozen, Adam is heavy ball with
      dampening :math:`\\beta_1` on :math:`P^{-1}H`, :math:`P = (1 - \\beta_1^{t+1})\\,\\mathrm{diag}(\\sqrt{\\hat v_t}
      + \\epsilon)`, so :math:`\\lambda_{max}(P^{-1}H) < (2 + 2\\beta_1)/((1 - \\beta_1)\\eta)` (Cohen et al. 2022,
      "Adaptive Gradient Methods at the Edge of Stability": 38/η at β1 = 0.9); AdamW's decoupled weight
      decay is left out (it adds :math:`\\eta\\cdot` decay, small, to the curvature).

    Other optimizers (RMSprop, Adagrad, Lion, LBFGS, ...) get no limit (NaN, ``note`` says so): their
    preconditioner or sign update has no threshold in these terms that losslens could check.
    ``options`` are the optimizer's (a parameter group, or the recorded ``optimizer_kwargs``); those
    missing take the class's defaults. ``optimizer=None`` means plain gradient descent.
    """
    if not lr or not math.isfinite(lr) or lr <= 0:
        return StabilityLimit(float("nan"), "", "", "no learning rate known")
    options = {**_defaults(optimizer), **(options or {})}
    name = (optimizer or "sgd").lower()
    if name == "sgd":
        beta, tau = float(options.get("momentum") or 0.0), float(options.get("dampening") or 0.0)
        if beta == 0:
            return StabilityLimit(2 / lr, "2/lr", "hessian",
                                  "" if optimizer else "no optimizer given: plain gradient descent assumed")
        if options.get("nesterov"):
            return StabilityLimit((2 + 2 * beta) / ((1 + 2 * beta) * lr), f"(2+2β)/((1+2β)lr), Nesterov β={beta:g}",
                                  "hessian")
        if tau:
            return StabilityLimit(2 * (1 + beta) / ((1 - tau) * lr), f"2(1+β)/((1-τ)lr), β={beta:g}, τ={tau:g}",
                                  "hessian")
        return StabilityLimit(2 * (1 + beta) / lr, f"2(1+β)/lr, momentum β={beta:g}", "hessian")
    if name in ("adam", "adamw"):
        beta1 = float(options["betas"][0])
        return StabilityLimit((2 + 2 * beta1) / ((1 - beta1) * lr), f"(2+2β1)/((1-β1)lr), β1={beta1:g}",
                              "preconditioned", "of the preconditioned sharpness λmax(P⁻¹H) (Cohen et al. 2022)")
    return StabilityLimit(float("nan"), "", "", f"no known edge-of-stability limit for {optimizer}")


def _defaults(optimizer: str | None) -> dict:
    """The default options of an optimizer class (``{}`` for an unknown one)."""
    import inspect

    from losslens.core.optimizers import resolve_optimizer
    from losslens.errors import ConfigError

    if not optimizer:
        return {}
    try:
        cls, _ = resolve_optimizer(optimizer)
    except ConfigError:
        return {}
    return {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty}


def adam_preconditioner(optimizer: torch.optim.Optimizer, space: ParameterSpace,
                        model: nn.Module) -> torch.Tensor | None:
    """``(P,)`` diagonal of Adam's preconditioner
    :math:`P = (1 - \\beta_1^{t+1})(\\sqrt{v_t/(1 - \\beta_2^t)} + \\epsilon)`
    for the next update (``step`` t done), in the space's order; ``None`` before the first step or for
    another optimizer (one parameter group's betas and eps apply to all)."""
    if type(optimizer).__name__.lower() not in ("adam", "adamw"):
        return None
    group = optimizer.param_groups[0]
    (beta1, beta2), eps = group["betas"], group["eps"]
    params = dict(model.named_parameters())
    parts = []
    second = "max_exp_avg_sq" if group.get("amsgrad") else "exp_avg_sq"  # what AMSGrad divides by
    for name in space.names:
        state = optimizer.state.get(params[name], {})
        if second not in state:
            return None
        t = float(state["step"])
        v_hat = state[second].detach().double().reshape(-1) / (1 - beta2 ** t)
        parts.append((1 - beta1 ** (t + 1)) * (v_hat.sqrt() + eps))
    return torch.cat(parts).cpu()


def sharpness_of(H, preconditioner: torch.Tensor | None = None, *, seed: int = 0) -> tuple[float, int]:
    """``(λmax, Hessian-vector products)``: the top eigenvalue of the Hessian operator ``H``, or of
    :math:`P^{-1}H` (computed as the symmetric :math:`P^{-1/2} H P^{-1/2}`, same eigenvalues) for a
    diagonal ``preconditioner``, at a bounded cost: ARPACK's Lanczos (``eigsh``, top 1, start vector from
    ``seed``) with ``SHARPNESS_NCV`` vectors, at most ``SHARPNESS_RESTARTS`` restarts and relative
    accuracy ``SHARPNESS_TOL``, so at most ``MAX_SHARPNESS_MATVECS`` products; NaN if it has not
    converged by then."""
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh
    from threadpoolctl import threadpool_limits

    P = H.shape[0]
    if P < 2:
        return float("nan"), 0
    plain = H.to_scipy()
    scale = None if preconditioner is None else preconditioner.double().rsqrt().numpy()
    op = plain if scale is None else LinearOperator(
        plain.shape, matvec=lambda x: scale * (plain @ (scale * x.reshape(-1))), dtype=np.float64)
    start = H.n_matvec
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            values = eigsh(op, k=1, which="LA", v0=np.random.default_rng(seed).standard_normal(P),
                           ncv=min(P, SHARPNESS_NCV), maxiter=SHARPNESS_RESTARTS, tol=SHARPNESS_TOL,
                           return_eigenvectors=False)
    except ArpackNoConvergence:
        return float("nan"), H.n_matvec - start
    return float(values[0]), H.n_matvec - start
