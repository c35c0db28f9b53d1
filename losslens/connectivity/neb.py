"""Nudged elastic band (NEB) and AutoNEB between two minima (Draxler et al. 2018, "Essentially No Barriers in
Neural Network Energy Landscape"; the method of Jonsson, Mills & Jacobsen 1998, the tangent of Henkelman &
Jonsson 2000).

A chain of pivots :math:`w_0 = A, w_1, \\dots, w_{K-1} = B` (the endpoints fixed) starts on the line from A to B.
Each step moves every inner pivot along its force

.. math::  F_i = -\\left(\\nabla L(w_i) - (\\nabla L(w_i) \\cdot \\tau_i)\\, \\tau_i\\right)
           + k \\left(\\|w_{i+1} - w_i\\| - \\|w_i - w_{i-1}\\|\\right) \\tau_i,
           \\qquad w_i \\leftarrow w_i + \\eta F_i:

the loss gradient's component perpendicular to the path pulls the pivot down onto the valley floor, and the
spring's component along the path keeps the pivots evenly spaced (the "nudging": neither force acts in the
other's direction, so the springs never cut corners and the loss never slides the pivots into the minima).
:math:`\\tau_i` is the improved tangent of Henkelman & Jonsson: the unit vector towards the higher neighbour when
the loss rises monotonically through the pivot (:math:`\\tau_i^+ = w_{i+1} - w_i` when
:math:`L_{i+1} > L_i > L_{i-1}`, :math:`\\tau_i^- = w_i - w_{i-1}` when :math:`L_{i+1} < L_i < L_{i-1}`), and at an
extremum the blend :math:`\\tau_i^+ \\Delta L^{max} + \\tau_i^- \\Delta L^{min}` (when :math:`L_{i+1} > L_{i-1}`,
the weights swapped otherwise) with :math:`\\Delta L^{max/min} = \\max/\\min(|L_{i+1} - L_i|, |L_{i-1} - L_i|)`.

AutoNEB (Draxler et al., section 3) repeats cycles of NEB: after each, the loss is evaluated at
``insert_points`` evenly spaced points inside every segment between neighbouring pivots, and where the highest
of them lies above both of the segment's pivots a new pivot is inserted there (the largest rises first, up to
``max_pivots`` pivots in all); the cycles stop when nothing is inserted.

Every loss and gradient comes from the objective's ``values_and_gradients``, all pivots of a step in one batched
call (an ``Evaluator`` is such an objective).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from losslens.checks import check_int, check_number, check_seed, refuse
from losslens.errors import ConfigError, LosslensError

__all__ = ["NEBChain", "neb"]


@dataclass(frozen=True, eq=False)
class NEBChain:
    """A relaxed chain of pivots between two points and the piecewise-linear path through them.

    Attributes:
        pivots: ``(K, P)`` pivots, ``pivots[0] = A`` and ``pivots[-1] = B``.
        losses: ``(K,)`` float64 loss at each pivot (after the last step).
        history: ``(steps,)`` float64 highest loss of the pivots at each step (every cycle's, in order).
        options: the options of the run (``pivots``, ``steps``, ``spring``, ``step_size``, ``auto``,
            ``insert_points``, ``max_pivots``, ``jitter``, ``seed``) and ``inserted``, the pivots AutoNEB
            inserted in each cycle.
    """

    pivots: torch.Tensor
    losses: np.ndarray
    history: np.ndarray
    options: dict = field(default_factory=dict)

    @property
    def t(self) -> np.ndarray:
        """``(K,)`` the pivots' path coordinates: cumulative arc length normalised to ``[0, 1]``."""
        return _arc_length(self.pivots)

    def points(self, t) -> torch.Tensor:
        """The points ``(n, P)`` of the piecewise-linear path through the pivots at ``t`` (a number or ``(n,)``
        numbers in ``[0, 1]``), ``t`` being the normalised cumulative arc length: between pivots ``i`` and
        ``i + 1``, :math:`w(t) = w_i + \\frac{t - t_i}{t_{i+1} - t_i} (w_{i+1} - w_i)`.

        Args:
            t: path coordinates in ``[0, 1]``.

        Raises:
            ConfigError: ``t`` not finite numbers in ``[0, 1]``.
        """
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        if t.ndim != 1:
            raise refuse("t", "a number or a one-dimensional array of numbers from 0 to 1", f"shape {list(t.shape)}")
        outside = ~((t >= 0.0) & (t <= 1.0))  # NaN included
        if outside.any():
            raise refuse("t", "numbers from 0 to 1", t[outside][:3].tolist())
        knots = self.t
        i = np.clip(np.searchsorted(knots, t, side="right") - 1, 0, len(knots) - 2)
        s = (t - knots[i]) / (knots[i + 1] - knots[i])
        s = torch.as_tensor(s, dtype=self.pivots.dtype, device=self.pivots.device)[:, None]
        i = torch.as_tensor(i, device=self.pivots.device)
        return self.pivots[i] + s * (self.pivots[i + 1] - self.pivots[i])


def neb(objective, w_a: torch.Tensor, w_b: torch.Tensor, *, pivots: int = 9, steps: int = 100, spring: float = 1.0,
        step_size: float = 0.1, auto: bool = False, insert_points: int = 3, max_pivots: int = 33, jitter: float = 0.0,
        seed: int = 0, progress: bool = True) -> NEBChain:
    """Relax a chain of pivots from ``w_a`` to ``w_b`` by the nudged elastic band (see the module docstring).

    Args:
        objective: an ``Evaluator``, or any object with ``values_and_gradients(W)`` taking ``(n, P)`` points and
            returning the losses ``(n,)`` and their gradients ``(n, P)``.
        w_a: ``(P,)`` the first endpoint (fixed).
        w_b: ``(P,)`` the second endpoint (fixed).
        pivots: pivots of the initial chain, both endpoints included (at least 3), evenly spaced on the line.
        steps: steps of gradient descent along the forces (per cycle with ``auto``), at least 1.
        spring: the springs' stiffness ``k`` (loss per squared distance), >= 0.
        step_size: the step ``eta`` of each move, > 0.
        auto: run AutoNEB: cycles of ``steps`` steps, inserting pivots where the loss rises between them.
        insert_points: points evaluated inside each segment to find where to insert (AutoNEB), at least 1.
        max_pivots: the most pivots AutoNEB may reach, both endpoints included, at least ``pivots``.
        jitter: the inner pivots start off the line by a Gaussian displacement of this size relative to
            ``|w_b - w_a|`` (0: on the line); it breaks the symmetry of a line that is itself a critical path.
        seed: the seed of the jitter.
        progress: show a tqdm bar over the steps.

    Returns:
        The relaxed ``NEBChain``.

    Raises:
        ConfigError: an objective without ``values_and_gradients``, endpoints of other shapes or equal, or an
            option out of range.
        LosslensError: a loss that is not finite during the relaxation (a smaller ``step_size`` helps).
    """
    options = _options(pivots, steps, spring, step_size, auto, insert_points, max_pivots, jitter, seed)
    if not callable(getattr(objective, "values_and_gradients", None)):
        raise ConfigError(f"objective must be an Evaluator or have values_and_gradients(W), got {type(objective).__name__}")
    W = _initial_chain(w_a, w_b, options)
    history, inserted = [], []
    while True:
        W = _relax(objective, W, options, history, progress)
        added = _insert(objective, W, options) if auto else W
        if added.shape[0] == W.shape[0]:
            break
        inserted.append(added.shape[0] - W.shape[0])
        W = added
    losses, _ = _evaluate(objective, W, "the final chain")
    return NEBChain(W, losses, np.asarray(history, dtype=np.float64), options | {"inserted": inserted})


def _options(pivots, steps, spring, step_size, auto, insert_points, max_pivots, jitter, seed) -> dict:
    """The checked options, as plain Python values."""
    if not isinstance(auto, bool):
        raise refuse("auto", "True or False", auto)
    pivots = check_int("pivots", pivots, minimum=3)
    return {"pivots": pivots, "steps": check_int("steps", steps, minimum=1),
            "spring": check_number("spring", spring, minimum=0), "step_size": check_number("step_size", step_size,
                                                                                          positive=True),
            "auto": auto, "insert_points": check_int("insert_points", insert_points, minimum=1),
            "max_pivots": check_int("max_pivots", max_pivots, minimum=pivots),
            "jitter": check_number("jitter", jitter, minimum=0), "seed": check_seed(seed)}


def _initial_chain(w_a, w_b, options: dict) -> torch.Tensor:
    """``(K, P)`` pivots evenly spaced on the line from ``w_a`` to ``w_b``, the inner ones jittered."""
    a, b = (torch.as_tensor(w).detach() for w in (w_a, w_b))
    if a.dim() != 1 or a.shape != b.shape:
        raise ConfigError(f"w_a and w_b must be vectors (P,) of one length, got shapes {list(a.shape)} and "
                          f"{list(b.shape)}")
    b = b.to(a)
    distance = float(torch.linalg.vector_norm(b - a))
    if distance == 0.0:
        raise ConfigError("w_a and w_b are the same point: there is no path between them")
    s = torch.linspace(0.0, 1.0, options["pivots"], dtype=a.dtype, device=a.device)[:, None]
    W = a + s * (b - a)
    W[-1] = b  # exactly: a + 1 * (b - a) need not round to b
    if options["jitter"] > 0:
        g = torch.Generator().manual_seed(options["seed"])
        noise = torch.randn(W.shape[0] - 2, W.shape[1], generator=g, dtype=torch.float64)
        W[1:-1] += (options["jitter"] * distance / W.shape[1] ** 0.5 * noise).to(W)
    return W


def _evaluate(objective, W: torch.Tensor, when: str) -> tuple[np.ndarray, torch.Tensor]:
    """The losses (float64 numpy) and gradients at the rows of ``W``, from one call of the objective."""
    values, grads = objective.values_and_gradients(W)
    values = torch.as_tensor(values).detach().cpu().double().numpy()
    if not np.all(np.isfinite(values)):
        raise LosslensError(f"the loss is not finite at {int((~np.isfinite(values)).sum())} pivots of {when}: "
                            "the chain diverged, use a smaller step_size")
    return values, torch.as_tensor(grads).detach().to(W)


def _relax(objective, W: torch.Tensor, options: dict, history: list, progress: bool) -> torch.Tensor:
    """``W`` after ``steps`` NEB steps; each step's highest pivot loss is appended to ``history``."""
    from tqdm.auto import tqdm

    W = W.clone()
    k, eta = options["spring"], options["step_size"]
    with tqdm(range(options["steps"]), desc=f"neb ({W.shape[0]} pivots)", unit="step", disable=not progress) as bar:
        for step in bar:
            values, grads = _evaluate(objective, W, f"step {len(history) + 1}")
            history.append(float(values.max()))
            bar.set_postfix(max_loss=f"{history[-1]:.4g}", refresh=False)
            W[1:-1] += eta * _forces(W, values, grads, k)
    return W


def _forces(W: torch.Tensor, values: np.ndarray, grads: torch.Tensor, k: float) -> torch.Tensor:
    """``(K - 2, P)`` NEB forces on the inner pivots: the gradient's part perpendicular to the tangent, reversed,
    plus the spring force along it."""
    tau = _tangents(W, values)
    g = grads[1:-1]
    g_perp = g - (g * tau).sum(1, keepdim=True) * tau
    ahead = torch.linalg.vector_norm(W[2:] - W[1:-1], dim=1)
    behind = torch.linalg.vector_norm(W[1:-1] - W[:-2], dim=1)
    return -g_perp + k * (ahead - behind)[:, None] * tau


def _tangents(W: torch.Tensor, values: np.ndarray) -> torch.Tensor:
    """``(K - 2, P)`` unit tangents of the inner pivots by Henkelman & Jonsson's rule (module docstring)."""
    plus, minus = W[2:] - W[1:-1], W[1:-1] - W[:-2]
    v_prev, v, v_next = values[:-2], values[1:-1], values[2:]
    d_next, d_prev = np.abs(v_next - v), np.abs(v_prev - v)
    big, small = np.maximum(d_next, d_prev), np.minimum(d_next, d_prev)
    up, down, rising = (v_next > v) & (v > v_prev), (v_next < v) & (v < v_prev), v_next > v_prev
    # rising or falling through: towards the higher neighbour; at an extremum: the higher side weighs more
    w_plus = np.select([up, down, rising], [1.0, 0.0, big], small)
    w_minus = np.select([up, down, rising], [0.0, 1.0, small], big)
    flat = (w_plus + w_minus) == 0  # equal losses all round: the mean of both sides
    w_plus, w_minus = np.where(flat, 1.0, w_plus), np.where(flat, 1.0, w_minus)
    w_plus, w_minus = (torch.as_tensor(w, dtype=W.dtype, device=W.device)[:, None] for w in (w_plus, w_minus))
    tau = w_plus * plus + w_minus * minus
    return tau / torch.linalg.vector_norm(tau, dim=1, keepdim=True).clamp_min(torch.finfo(W.dtype).tiny)


def _insert(objective, W: torch.Tensor, options: dict) -> torch.Tensor:
    """AutoNEB's insertion: ``W`` with a pivot added at the highest of ``insert_points`` points inside each
    segment whose highest point lies above both its pivots (the largest rises first, up to ``max_pivots``)."""
    room = options["max_pivots"] - W.shape[0]
    if room <= 0:
        return W
    m = options["insert_points"]
    s = torch.arange(1, m + 1, dtype=W.dtype, device=W.device)[None, :, None] / (m + 1)
    inner = (W[:-1, None] + s * (W[1:] - W[:-1])[:, None]).reshape(-1, W.shape[1])  # (K - 1) * m points
    values, _ = _evaluate(objective, torch.cat([W, inner]), "AutoNEB's insertion check")
    pivot_values, inner_values = values[:W.shape[0]], values[W.shape[0]:].reshape(-1, m)
    best = inner_values.argmax(1)
    rise = inner_values.max(1) - np.maximum(pivot_values[:-1], pivot_values[1:])
    chosen = sorted(i for i in np.argsort(-rise)[:room] if rise[i] > 0)
    if not chosen:
        return W
    rows = list(W)
    for i in reversed(chosen):
        rows.insert(i + 1, inner[i * m + best[i]])
    return torch.stack(rows)


def _arc_length(W: torch.Tensor) -> np.ndarray:
    """``(K,)`` the cumulative distance along the pivots, normalised to end at 1."""
    steps = torch.linalg.vector_norm(W[1:] - W[:-1], dim=1).detach().cpu().double().numpy()
    t = np.concatenate([[0.0], np.cumsum(steps)])
    return t / t[-1]
