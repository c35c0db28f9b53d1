"""The permutation symmetry of a network, read from its graph: which hidden units may be permuted, together.

Permuting the output units of a layer by :math:`P` (its weight's rows, its bias, the BatchNorm that follows)
and the input units of the next layer by the same :math:`P` (its weight's columns) leaves the network's
function unchanged: :math:`W_2 \\sigma(W_1 x + b_1) = (W_2 P^T) \\sigma(P W_1 x + P b_1)` for an elementwise
:math:`\\sigma`. ``permutation_spec`` traces the model with ``torch.fx`` and follows each tensor's *unit space*
(the axis of its units: the last of a Linear's output, the channel axis of a convolution's) through the graph:

- a Linear or Conv (``groups=1``) opens a new space for its outputs and reads the space of its inputs;
- elementwise activations, dropout, pooling and BatchNorm keep the space (BatchNorm's ``weight``, ``bias``,
  ``running_mean``, ``running_var`` are permuted with it);
- flatten of a convolution's ``(N, C, H, W)`` output gives blocks of ``H W`` features per channel, so the next
  Linear's columns are permuted in blocks;
- an addition or product of two tensors (a residual connection) joins the spaces of its operands into one group,
  which then shares one permutation.

The model's inputs and outputs are never permuted: a group joined to either is left out. Any other operation
(attention, a reshape other than flatten, a module of unknown kind) stops the derivation with one
``ConfigError`` naming the module (its qualified name and type) or the operation.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from losslens.errors import ConfigError

_ELEMENTWISE_MODULES = (
    nn.ReLU, nn.LeakyReLU, nn.GELU, nn.ELU, nn.SELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Identity,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)
_ELEMENTWISE_FUNCTIONS = {
    F.relu, F.leaky_relu, F.gelu, F.elu, F.selu, F.silu, F.softplus, F.dropout, F.dropout2d, torch.relu,
    torch.tanh, torch.sigmoid, F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, operator.neg,
}
_ELEMENTWISE_METHODS = {"relu", "tanh", "sigmoid", "contiguous", "clone"}
_JOINING = {operator.add, operator.mul, operator.sub, torch.add, torch.mul, operator.iadd}
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_BATCHNORM_TENSORS = ("weight", "bias", "running_mean", "running_var")
_FIXED = "<inputs and outputs>"
SUPPORTED = ("supported: Linear, Conv, BatchNorm, elementwise activations, dropout, pooling, flatten from dim 1, "
             "residual additions")
_FLAT = "flat"  # a tensor's units flattened into blocks of features


@dataclass(frozen=True)
class Axis:
    """One axis of a parameter or buffer permuted by a group: ``tensor`` (qualified name), ``axis``, and
    ``block`` (each unit owns ``block`` consecutive entries there: a channel's features after flatten)."""

    tensor: str
    axis: int
    block: int = 1


@dataclass(frozen=True)
class PermutationGroup:
    """Hidden units that share one permutation: ``name`` (the first module producing them), ``size`` (units)
    and the ``axes`` it permutes."""

    name: str
    size: int
    axes: tuple[Axis, ...]


@dataclass(frozen=True)
class PermutationSpec:
    """The permutation groups of a model, and the ``graph`` they were read from (``torch.fx``)."""

    groups: tuple[PermutationGroup, ...]
    graph: torch.fx.Graph
    spaces: dict  # fx node name -> (group name, the units' axis) of the nodes whose units a group permutes

    def by_name(self) -> dict[str, PermutationGroup]:
        return {g.name: g for g in self.groups}


class _Spaces:
    """Union-find over unit spaces: each has a size (units) and the module that opened it; the first
    opened names a joined group, and ``_FIXED`` (the model's inputs and outputs) absorbs what it joins."""

    def __init__(self):
        self.parent, self.size, self.order = {_FIXED: _FIXED}, {_FIXED: 0}, {_FIXED: -1}

    def new(self, origin: str, size: int) -> str:
        self.parent[origin], self.size[origin], self.order[origin] = origin, size, len(self.order)
        return origin

    def find(self, key: str) -> str:
        while self.parent[key] != key:
            key = self.parent[key]
        return key

    def join(self, a: str, b: str, where: str) -> None:
        a, b = sorted((self.find(a), self.find(b)), key=self.order.get)
        if a == b:
            return
        if a != _FIXED and self.size[a] != self.size[b]:
            raise ConfigError(f"cannot derive the permutation structure: {where} joins {self.size[a]} and "
                              f"{self.size[b]} units")
        self.parent[b] = a


def trace(model: nn.Module) -> torch.fx.GraphModule:
    """``torch.fx.symbolic_trace`` of the model; a ConfigError when it cannot be traced."""
    try:
        return torch.fx.symbolic_trace(model)
    except Exception as err:  # fx raises many kinds (TraceError, TypeError, ...) for code it cannot follow
        raise ConfigError(f"cannot derive the permutation structure of {type(model).__name__}: torch.fx cannot "
                          f"trace it ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None


def permutation_spec(model: nn.Module) -> PermutationSpec:
    """The permutation groups of ``model`` (module docstring); a ConfigError naming the module or operation
    whose effect on the units is unknown."""
    gm = trace(model)
    modules = dict(gm.named_modules())
    spaces = _Spaces()
    state: dict[str, tuple | None] = {}  # node -> (space, the units' axis or _FLAT), None: no units
    axes: list[tuple[str, Axis]] = []
    for node in gm.graph.nodes:
        state[node.name] = _follow(node, modules, state, spaces, axes, type(model).__name__)
    return _groups(gm.graph, spaces, state, axes)


def _follow(node, modules, state, spaces: _Spaces, axes: list, root: str) -> tuple | None:
    """``(space, the units' axis or _FLAT)`` of ``node``'s output (``None``: no units), recording the axes its module permutes."""
    ins = [state[a.name] for a in node.all_input_nodes]
    if node.op == "placeholder":
        return (_FIXED, 1)
    if node.op == "output":
        for s in ins:
            if s is not None:
                spaces.join(s[0], _FIXED, "the output")
        return None
    if node.op == "get_attr":
        return None
    if node.op == "call_module":
        return _module(node, modules[node.target], ins, spaces, axes)
    what = node.target if node.op == "call_method" else getattr(node.target, "__name__", str(node.target))
    known = (node.op == "call_method" and node.target in _ELEMENTWISE_METHODS) or node.target in _ELEMENTWISE_FUNCTIONS
    if known and len(ins) == 1:
        return ins[0]
    if node.target in _JOINING and ins and None not in ins and len({s[1] for s in ins}) == 1:
        for s in ins[1:]:  # a parameter (``get_attr``) operand is not permuted: refused below
            spaces.join(ins[0][0], s[0], f"the operation {node.name} ({what})")
        return ins[0]
    if (node.target is torch.flatten or node.target == "flatten") and len(ins) == 1 and _flatten_args(node):
        return None if ins[0] is None else (ins[0][0], _FLAT)
    stack = list(node.meta.get("nn_module_stack", {}).values())
    inside = f" in module {stack[-1][0]!r} ({stack[-1][1].__name__})" if stack else f" in {root}.forward"
    raise ConfigError(f"cannot derive the permutation structure: the operation {node.name} ({what}){inside} may "
                      f"mix hidden units in an unknown way ({SUPPORTED})")


def _flatten_args(node) -> bool:
    """Whether a ``flatten`` call flattens every dimension after the samples' (``start_dim=1, end_dim=-1``)."""
    start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
    end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
    return start == 1 and end == -1


def _module(node, module: nn.Module, ins: list, spaces: _Spaces, axes: list) -> tuple | None:
    """The unit space after a call of ``module`` (named ``node.target``)."""
    name = node.target
    if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) and not (
            isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d) and module.groups != 1):
        if name in spaces.parent:
            raise ConfigError(f"cannot derive the permutation structure: module {name!r} ({type(module).__name__}) "
                              f"is called more than once")
        (space, where), = ins
        out = spaces.new(name, module.weight.shape[0])
        axes.append((out, Axis(f"{name}.weight", 0)))
        if module.bias is not None:
            axes.append((out, Axis(f"{name}.bias", 0)))
        units = spaces.size[spaces.find(space)]
        axes.append((space, Axis(f"{name}.weight", 1, module.weight.shape[1] // units if where == _FLAT and units else 1)))
        return (out, -1 if isinstance(module, nn.Linear) else 1)
    if isinstance(module, _BATCHNORM) and ins[0] is not None and ins[0][1] != _FLAT:
        for t in _BATCHNORM_TENSORS:
            if getattr(module, t, None) is not None:
                axes.append((ins[0][0], Axis(f"{name}.{t}", 0)))
        return ins[0]
    if isinstance(module, _ELEMENTWISE_MODULES) and len(ins) == 1:
        return ins[0]
    if isinstance(module, nn.Flatten) and module.start_dim == 1 and module.end_dim == -1 and len(ins) == 1:
        return None if ins[0] is None else (ins[0][0], _FLAT)
    raise ConfigError(f"cannot derive the permutation structure: module {name!r} ({type(module).__name__}) may mix "
                      f"hidden units in an unknown way ({SUPPORTED})")


def _groups(graph, spaces: _Spaces, state: dict, axes: list) -> PermutationSpec:
    """The groups of the joined spaces that are neither the model's inputs nor its outputs."""
    found: dict[str, list[Axis]] = {}
    for space, axis in axes:
        root = spaces.find(space)
        if root != _FIXED:
            found.setdefault(root, []).append(axis)
    groups = tuple(PermutationGroup(root, spaces.size[root], tuple(a)) for root, a in found.items())
    at = {node: (spaces.find(s[0]), s[1]) for node, s in state.items() if s is not None and s[1] != _FLAT}
    return PermutationSpec(groups, graph, {node: where for node, where in at.items() if where[0] in found})


def apply_permutation(model: nn.Module, perms: dict[str, np.ndarray], spec: PermutationSpec | None = None) -> nn.Module:
    """A deep copy of ``model`` with each group's units permuted: unit ``i`` of group ``g`` in the copy is unit
    ``perms[g][i]`` of ``model`` (rows, bias and BatchNorm entries taken as ``x[p]``, the next layer's columns
    as ``W[:, p]``, in blocks after flatten), so the copy computes the same function. Groups not in ``perms``
    are kept. ``model`` is not changed.

    Raises:
        ConfigError: an unknown group, or a permutation that is not one of its group's units.
    """
    spec = spec or permutation_spec(model)
    groups = spec.by_name()
    unknown = sorted(set(perms) - set(groups))
    if unknown:
        raise ConfigError(f"perms names groups {unknown} the model does not have; its groups: {', '.join(groups)}")
    out = copy.deepcopy(model)
    tensors = {**dict(out.named_parameters()), **dict(out.named_buffers())}
    with torch.no_grad():
        for name, p in perms.items():
            p = np.asarray(p)
            if sorted(p.tolist()) != list(range(groups[name].size)):
                raise ConfigError(f"perms[{name!r}] must be a permutation of 0..{groups[name].size - 1}")
            for axis in groups[name].axes:
                t = tensors[axis.tensor]
                t.copy_(t.index_select(axis.axis, torch.as_tensor(block_index(p, axis.block), device=t.device)))
    return out


def block_index(p: np.ndarray, block: int) -> np.ndarray:
    """The entries of an axis of ``len(p) * block`` taken by permuting its blocks of ``block`` by ``p``."""
    return (np.asarray(p)[:, None] * block + np.arange(block)[None, :]).ravel()
