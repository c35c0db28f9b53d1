"""The parameter space of a model: which tensors form the flat vector ``w``, and how to map back.

Every point of a landscape is a flat vector ``w`` of length ``P``. ``ParameterSpace`` fixes the order,
shapes and dtypes of the tensors that make up ``w``; everything else the model holds (frozen
parameters, buffers such as BatchNorm running statistics) is *fixed state*, kept apart and passed
explicitly to ``torch.func.functional_call``.

Tied (shared) parameters appear once, under the first name ``named_parameters`` gives them;
``functional_call`` ties the other names to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from torch import nn

from losslens.core._checks import check_model
from losslens.errors import CheckpointError, ConfigError


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of one tensor of the flat vector."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


class ParameterSpace:
    """Flat-vector view of a model's parameters.

    ``flatten`` and ``unflatten`` round-trip exactly; ``unflatten`` of a ``(..., P)`` tensor gives
    tensors of shape ``(..., *shape)`` that are views of it (no copy).
    """

    def __init__(self, model: nn.Module, *, include_buffers: bool = False):
        """The flat-vector view of ``model``'s parameters.

        Args:
            model: the module whose parameters define the space. It is only read.
            include_buffers: also put floating-point buffers (BatchNorm running statistics) in the
                vector, as the "states" directions of the older tools do. Integer buffers
                (``num_batches_tracked``) are never part of it. Parameters with ``requires_grad=False``
                (frozen) are fixed state, not part of the vector.
        """
        check_model(model)
        self.include_buffers = include_buffers
        specs, fixed = [], []
        for name, p in model.named_parameters():  # deduplicates tied parameters
            if p.requires_grad:
                specs.append(TensorSpec(name, tuple(p.shape), p.dtype))
            else:
                fixed.append(name)
        for name, b in model.named_buffers():
            if include_buffers and b.is_floating_point():
                specs.append(TensorSpec(name, tuple(b.shape), b.dtype))
            else:
                fixed.append(name)
        if not specs:
            raise ValueError("the model has no trainable parameters: its parameter space is empty")
        self.specs: tuple[TensorSpec, ...] = tuple(specs)
        self.fixed_names: tuple[str, ...] = tuple(fixed)
        self.names: tuple[str, ...] = tuple(s.name for s in specs)
        self.shapes: tuple[tuple[int, ...], ...] = tuple(s.shape for s in specs)
        self.numels: tuple[int, ...] = tuple(s.numel for s in specs)
        self.size: int = sum(self.numels)
        offsets, o = [], 0
        for n in self.numels:
            offsets.append(o)
            o += n
        self.offsets: tuple[int, ...] = tuple(offsets)

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return f"ParameterSpace(P={self.size}, tensors={len(self.specs)}, include_buffers={self.include_buffers})"

    def slice_of(self, name: str) -> slice:
        """The slice of the flat vector that holds tensor ``name``."""
        i = self.names.index(name)
        return slice(self.offsets[i], self.offsets[i] + self.numels[i])

    def flatten(self, source: nn.Module | Mapping[str, torch.Tensor], *, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Concatenate the space's tensors of a model or a state dict into one ``(P,)`` vector.

        Raises:
            CheckpointError: a tensor is missing or has the wrong shape (its name, the expected and
                the found shape are given).
        """
        state = _state_of(source)
        missing = [n for n in self.names if n not in state]
        if missing:
            raise CheckpointError(f"missing tensors for the parameter space: {', '.join(missing)}")
        parts = []
        for spec in self.specs:
            t = state[spec.name]
            if tuple(t.shape) != spec.shape:
                raise CheckpointError(
                    f"shape mismatch for {spec.name!r}: expected {list(spec.shape)}, found {list(t.shape)}"
                )
            parts.append(t.detach().reshape(-1).to(dtype or spec.dtype))
        return torch.cat(parts)

    def unflatten(self, vec: torch.Tensor, names: list[str] | None = None) -> dict[str, torch.Tensor]:
        """Split a ``(..., P)`` tensor into ``{name: (..., *shape)}`` views.

        With ``names``, ``vec`` holds only those tensors, in the space's order (see ``index``).
        """
        specs = self.specs if names is None else [s for s in self.specs if s.name in set(names)]
        size = sum(s.numel for s in specs)
        if vec.shape[-1] != size:
            raise ValueError(f"expected vectors of length P={size}, found shape {list(vec.shape)}")
        lead, out, o = vec.shape[:-1], {}, 0
        for spec in specs:
            out[spec.name] = vec[..., o : o + spec.numel].reshape(*lead, *spec.shape)
            o += spec.numel
        return out

    def index(self, names: list[str]) -> torch.Tensor:
        """Positions in the flat vector of the entries of tensors ``names``, in the space's order."""
        chosen = set(names)
        return torch.cat([torch.arange(self.slice_of(s.name).start, self.slice_of(s.name).stop)
                          for s in self.specs if s.name in chosen] or [torch.zeros(0, dtype=torch.long)])

    def fixed_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The tensors of ``model`` that are not in the vector (frozen parameters, buffers)."""
        state = dict(model.named_parameters())
        state.update(model.named_buffers())
        return {n: state[n].detach() for n in self.fixed_names}

    def mask(self, predicate) -> torch.Tensor:
        """Boolean ``(P,)`` mask of the entries whose tensor satisfies ``predicate(spec)``."""
        m = torch.zeros(self.size, dtype=torch.bool)
        for spec, o, n in zip(self.specs, self.offsets, self.numels):
            if predicate(spec):
                m[o : o + n] = True
        return m


def _state_of(source: nn.Module | Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    if isinstance(source, nn.Module):
        state = dict(source.named_parameters())
        state.update(source.named_buffers())
        return state
    if not isinstance(source, Mapping):
        raise ConfigError(f"expected the model (an nn.Module) or its state dict, got {type(source).__name__}")
    return source
