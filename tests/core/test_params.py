"""ParameterSpace: the flat vector of a model's parameters and its way back."""

import pytest
import torch
from torch import nn

from losslens.core.params import ParameterSpace
from losslens.errors import CheckpointError


def net():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(12, 4), nn.Linear(4, 12))
    model[4].weight = nn.Parameter(model[3].weight.T.contiguous())  # a separate tensor...
    return model


def tied():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4))
    model[2].weight = model[0].weight
    return model


def test_order_shapes_and_round_trip():
    model = net()
    space = ParameterSpace(model)
    names = [n for n, _ in model.named_parameters()]
    assert space.names == tuple(names)
    assert space.size == sum(p.numel() for p in model.parameters()) == len(space)
    w = space.flatten(model)
    parts = space.unflatten(w)
    for name, p in model.named_parameters():
        assert torch.equal(parts[name], p.detach())
        assert torch.equal(w[space.slice_of(name)], p.detach().reshape(-1))
    assert torch.equal(space.flatten(parts), w)


def test_unflatten_gives_views_and_batches():
    space = ParameterSpace(net())
    W = torch.randn(3, space.size)
    parts = space.unflatten(W)
    first = space.names[0]
    assert parts[first].shape == (3, *space.shapes[0])
    assert parts[first].data_ptr() == W.data_ptr()  # a view, not a copy
    parts[first][1].zero_()
    assert (W[1, space.slice_of(first)] == 0).all()
    with pytest.raises(ValueError, match=f"length P={space.size}"):
        space.unflatten(torch.zeros(space.size + 1))


def test_tied_parameters_appear_once():
    model = tied()
    space = ParameterSpace(model)
    assert space.names == ("0.weight", "0.bias", "2.bias")
    assert space.size == 16 + 4 + 4


def test_buffers_frozen_parameters_and_fixed_state():
    model = net()
    model[0].bias.requires_grad_(False)
    space = ParameterSpace(model)
    assert "0.bias" not in space.names and "1.running_mean" not in space.names
    assert set(space.fixed_names) == {"0.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked"}
    fixed = space.fixed_state(model)
    assert torch.equal(fixed["0.bias"], model[0].bias) and not fixed["0.bias"].requires_grad
    with_buffers = ParameterSpace(model, include_buffers=True)
    assert "1.running_mean" in with_buffers.names and "1.running_var" in with_buffers.names
    assert "1.num_batches_tracked" in with_buffers.fixed_names  # integer buffers never enter the vector
    assert with_buffers.size == space.size + 6


def test_index_and_mask_select_tensors():
    model = net()
    space = ParameterSpace(model)
    index = space.index(["1.weight", "3.bias"])
    expected = torch.cat([torch.arange(space.slice_of(n).start, space.slice_of(n).stop) for n in ("1.weight", "3.bias")])
    assert torch.equal(index, expected)
    assert space.index([]).numel() == 0
    mask = space.mask(lambda spec: len(spec.shape) <= 1)
    assert int(mask.sum()) == sum(p.numel() for p in model.parameters() if p.dim() <= 1)


def test_errors_name_the_tensor():
    model = net()
    space = ParameterSpace(model)
    state = dict(model.state_dict())
    del state["3.bias"]
    with pytest.raises(CheckpointError, match="missing tensors for the parameter space: 3.bias"):
        space.flatten(state)
    state["3.bias"] = torch.zeros(5)
    with pytest.raises(CheckpointError, match=r"shape mismatch for '3.bias': expected \[4\], found \[5\]"):
        space.flatten(state)
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        ParameterSpace(frozen)


def test_something_that_is_not_a_model_is_named():
    from losslens.errors import ConfigError

    with pytest.raises(ConfigError, match="must be a torch.nn.Module, got str"):
        ParameterSpace("model")
    with pytest.raises(ConfigError, match="expected the model .* or its state dict, got Tensor"):
        ParameterSpace(tied()).flatten(torch.tensor(1.0))  # e.g. a loss passed where the model goes
