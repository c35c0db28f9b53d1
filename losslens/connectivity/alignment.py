"""Permutation alignment of model B to model A (Ainsworth et al. 2023, "Git Re-Basin"; Entezari et al. 2022).

Permuting hidden units leaves a network's function unchanged (``permutation.py``), so two trained networks
may sit in one basin up to a permutation. ``align`` finds, for each group ``g`` of units that share one
permutation, the permutation ``P_g`` of B's units that best matches A's:

- **weight matching** (Ainsworth et al., algorithm 1): maximise
  :math:`\\sum_\\ell \\langle W^A_\\ell, P_{\\ell} W^B_\\ell P_{\\ell-1}^T \\rangle` over every parameter touched
  by a group. Coordinate descent: over the groups in random order, each ``P_g`` alone is a linear assignment
  :math:`\\max_{P_g} \\sum_{ij} (P_g)_{ij} C_{ij}`, :math:`C = \\sum_{(W, k)} W^A_{(k)} (\\tilde W^B_{(k)})^T`
  (each parameter ``W`` with an axis ``k`` in ``g``, unfolded along it, B's other axes permuted by the
  current permutations; ``scipy.optimize.linear_sum_assignment``); a group changes only when that raises the
  objective, and the sweeps stop when none does (or after ``max_iter``). The objective is recorded before the
  first sweep and after each.
- **activation matching**: on a batch of inputs, for each group the correlation
  :math:`C_{ij} = \\operatorname{corr}(a^A_i, a^B_j)` of A's unit ``i`` with B's unit ``j`` over the samples
  (and positions of a feature map), summed over every place the group's units appear in the graph (before and
  after each activation); one linear assignment per group maximises :math:`\\sum_i C_{i, p(i)}`. The objective
  is that sum over the groups.

Only parameters enter weight matching; BatchNorm's running statistics are permuted with their units.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from losslens.checks import check_choice, check_int, check_seed
from losslens.connectivity.permutation import (
    PermutationSpec, apply_permutation, block_index, permutation_spec,
)
from losslens.core.data import BatchData, as_tensors
from losslens.errors import ConfigError
from losslens.results import Group, Result, array, attr, stored

METHODS = ("weights", "activations")


@dataclass(frozen=True, eq=False, repr=False)
class Alignment(Result):
    """B's hidden units permuted to match A's.

    Attributes:
        method: ``"weights"`` or ``"activations"``.
        permutations: ``{group: p}``: unit ``i`` of the group in the aligned B is unit ``p[i]`` of B.
        objective: the matching's objective per iteration (module docstring).
        output_change: :math:`\\max |f_{PB}(x) - f_B(x)| / \\max |f_B(x)|` over the data given (rounding level
            when the permutation keeps B's function), ``None`` without data.
        meta: ``groups`` (``{group: units}``), ``iterations``, ``converged``, ``samples``, ``seed``.
    """

    method: str = attr()
    permutations: dict = stored(Group())
    objective: np.ndarray = array((None,))
    output_change: float | None = attr(missing=None)
    meta: dict = field(default_factory=dict)
    KIND: ClassVar[str] = "alignment"

    def key_figures(self) -> dict:
        return {"method": self.method, "groups": len(self.permutations), "iterations": self.meta.get("iterations"),
                "objective": float(self.objective[-1]), "output_change": self.output_change}

    def apply(self, model_b: nn.Module) -> nn.Module:
        """A permuted deep copy of ``model_b`` computing the same function (``model_b`` is not changed)."""
        return apply_permutation(model_b, self.permutations)


def align(model_a: nn.Module, model_b: nn.Module, method: str = "weights", data=None, *, max_iter: int = 100,
          seed: int = 0, samples: int = 1024) -> Alignment:
    """Permute B's hidden units to match A's (module docstring), leaving both models unchanged.

    Args:
        model_a, model_b: two models of one architecture whose permutation structure ``torch.fx`` can derive.
        method: ``"weights"`` (weight matching) or ``"activations"`` (activation matching, needs ``data``).
        data: evaluation inputs: a tensor of inputs, or what ``losslens.core.data.as_tensors`` takes (a
            ``TensorData``, a pair of tensors, a Dataset or DataLoader of ``(x, y)``, or a ``BatchData`` of them);
            its first ``samples`` inputs (in the models' dtype) give the activations and the output change.
        max_iter: sweeps of weight matching at most.
        seed: the seed of the groups' random order in weight matching.
        samples: inputs used of ``data`` at most.

    Raises:
        ConfigError: a bad argument, models of different architectures, a model whose permutation structure
            cannot be derived (naming the module), activation matching without data.
    """
    check_choice("method", method, METHODS)
    max_iter, seed = check_int("max_iter", max_iter, 1), check_seed(seed)
    samples = check_int("samples", samples, 2)
    _same_architecture(model_a, model_b)
    spec = permutation_spec(model_a)
    x = None if data is None else _inputs(data, samples, model_a)
    if method == "weights":
        perms, objective, meta = weight_matching(spec, _params(model_a), _params(model_b), max_iter=max_iter,
                                                 seed=seed)
    else:
        if x is None:
            raise ConfigError("activation matching needs data: give data=(inputs, targets) or a tensor of inputs")
        perms, objective, meta = activation_matching(spec, model_a, model_b, x)
    change = None if x is None else output_change(model_b, apply_permutation(model_b, perms, spec), x)
    meta = {**meta, "groups": {g.name: g.size for g in spec.groups}, "seed": seed,
            "samples": None if x is None else len(x)}
    return Alignment(method, {k: np.asarray(v, dtype=np.int64) for k, v in perms.items()},
                     np.asarray(objective, dtype=np.float64), change, meta)


def weight_matching(spec: PermutationSpec, params_a: dict, params_b: dict, *, max_iter: int = 100,
                    seed: int = 0) -> tuple[dict, list[float], dict]:
    """Git Re-Basin's weight matching (module docstring) on ``{name: array}`` parameters of A and B:
    ``(perms, objective per iteration, {"iterations", "converged"})``."""
    perms = {g.name: np.arange(g.size) for g in spec.groups}
    touching = {}  # parameter -> [(group, axis)]
    for g in spec.groups:
        for axis in g.axes:
            if axis.tensor in params_a:
                touching.setdefault(axis.tensor, []).append((g.name, axis))
    objective = [_objective(params_a, params_b, touching, perms)]
    rng = np.random.default_rng(seed)
    converged = False
    for _ in range(max_iter):
        changed = False
        for k in rng.permutation(len(spec.groups)):
            g = spec.groups[k]
            cost = _cost(g.name, params_a, params_b, touching, perms)
            _, p = linear_sum_assignment(cost, maximize=True)
            rows = np.arange(g.size)
            old, new = cost[rows, perms[g.name]].sum(), cost[rows, p].sum()
            if new > old + 1e-12 * max(1.0, abs(old)):
                perms[g.name], changed = p, True
        objective.append(_objective(params_a, params_b, touching, perms))
        if not changed:
            converged = True
            break
    return perms, objective, {"iterations": len(objective) - 1, "converged": converged}


def _cost(group: str, params_a: dict, params_b: dict, touching: dict, perms: dict) -> np.ndarray:
    """:math:`C = \\sum W^A_{(k)} (\\tilde W^B_{(k)})^T` over the axes ``k`` of ``group`` (module docstring)."""
    n = len(perms[group])
    cost = np.zeros((n, n))
    for name, axes in touching.items():
        for g, axis in axes:
            if g != group:
                continue
            b = _permuted(params_b[name], [(h, ax) for h, ax in axes if ax != axis], perms)
            cost += _unfold(params_a[name], axis, n) @ _unfold(b, axis, n).T
    return cost


def _objective(params_a: dict, params_b: dict, touching: dict, perms: dict) -> float:
    """:math:`\\sum_W \\langle W^A, \\tilde W^B \\rangle` over the parameters touched by a group."""
    return float(sum(np.vdot(params_a[n], _permuted(params_b[n], axes, perms)) for n, axes in touching.items()))


def _permuted(w: np.ndarray, axes: list, perms: dict) -> np.ndarray:
    for g, axis in axes:
        w = np.take(w, block_index(perms[g], axis.block), axis=axis.axis)
    return w


def _unfold(w: np.ndarray, axis, n: int) -> np.ndarray:
    """``w`` as ``(n, -1)``: one row per unit of ``axis`` (its block of entries included)."""
    return np.moveaxis(w, axis.axis, 0).reshape(n, -1)


def activation_matching(spec: PermutationSpec, model_a: nn.Module, model_b: nn.Module,
                        x: torch.Tensor) -> tuple[dict, list[float], dict]:
    """Activation matching (module docstring): ``(perms, [objective], {"iterations": 1, "converged": True})``."""
    acts = [_activations(spec, m, x) for m in (model_a, model_b)]
    perms, total = {}, 0.0
    for g in spec.groups:
        cost = np.zeros((g.size, g.size))
        for node, (group, axis) in spec.spaces.items():
            if group == g.name:
                cost += _correlation(_units(acts[0][node], axis), _units(acts[1][node], axis))
        rows, perms[g.name] = linear_sum_assignment(cost, maximize=True)
        total += float(cost[rows, perms[g.name]].sum())
    return perms, [total], {"iterations": 1, "converged": True}


def _activations(spec: PermutationSpec, model: nn.Module, x: torch.Tensor) -> dict:
    """The outputs of the graph's nodes that hold a group's units, for inputs ``x`` (a copy in eval mode)."""
    gm = torch.fx.GraphModule(copy.deepcopy(model).eval(), spec.graph)
    wanted, found = set(spec.spaces), {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            if n.name in wanted:
                found[n.name] = out.detach()
            return out

    with torch.no_grad():
        Recorder(gm).run(x)
    return found


def _units(t: torch.Tensor, axis: int) -> np.ndarray:
    """``(units, samples)``: the units' axis first, every other axis (samples, positions) flattened."""
    return torch.movedim(t, axis, 0).reshape(t.shape[axis], -1).double().cpu().numpy()


def _correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlations of the rows of ``a`` with those of ``b`` (a constant unit correlates 0)."""
    a = (a - a.mean(1, keepdims=True)) / np.maximum(a.std(1, keepdims=True), 1e-12)
    b = (b - b.mean(1, keepdims=True)) / np.maximum(b.std(1, keepdims=True), 1e-12)
    return a @ b.T / a.shape[1]


def output_change(model: nn.Module, permuted: nn.Module, x: torch.Tensor) -> float:
    """:math:`\\max |f_{PB}(x) - f_B(x)| / \\max |f_B(x)|` of copies in eval mode."""
    with torch.no_grad():
        before, after = (copy.deepcopy(m).eval()(x) for m in (model, permuted))
    return float((after - before).abs().max() / before.abs().max().clamp_min(torch.finfo(before.dtype).tiny))


def _params(model: nn.Module) -> dict[str, np.ndarray]:
    return {n: p.detach().double().cpu().numpy() for n, p in model.named_parameters()}


def _inputs(data, samples: int, model: nn.Module) -> torch.Tensor:
    """The first ``samples`` inputs of ``data``, floating ones in the dtype and on the device of ``model``."""
    x = data if isinstance(data, torch.Tensor) else as_tensors(data.source if isinstance(data, BatchData) else data)[0]
    weight = next(model.parameters(), None)
    return x[:samples].to(weight.device, weight.dtype) if weight is not None and x.is_floating_point() else x[:samples]


def _same_architecture(model_a: nn.Module, model_b: nn.Module) -> None:
    """A ConfigError unless A and B are of one class with the same parameters and buffers (names, shapes)."""
    shapes = [{n: tuple(t.shape) for n, t in m.state_dict().items()} for m in (model_a, model_b)]
    if type(model_a) is not type(model_b) or shapes[0] != shapes[1]:
        differ = sorted(set(shapes[0].items()) ^ set(shapes[1].items()))[:3]
        raise ConfigError(f"model_a ({type(model_a).__name__}) and model_b ({type(model_b).__name__}) must be of one "
                          f"architecture; they differ in {differ or 'their class'}")
