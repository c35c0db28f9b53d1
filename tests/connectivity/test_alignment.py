"""Permutation alignment (losslens/connectivity/permutation.py, alignment.py): the groups derived from the graph
keep the function when permuted (MLP, CNN with BatchNorm, a small ResNet), weight and activation matching recover
a known permutation exactly, weight matching removes most of the line barrier between two trained digits MLPs,
models whose structure cannot be derived get one error naming the module, and the caller's models are left alone."""

import numpy as np
import pytest
import torch
from torch import nn

from losslens.connectivity.alignment import Alignment, align
from losslens.connectivity.permutation import apply_permutation, permutation_spec
from losslens.errors import ConfigError
from losslens.results import load_result


class Block(nn.Module):
    """conv-BN-relu-conv-BN plus a shortcut (identity, or a strided 1x1 conv with BatchNorm), then relu."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out)
        self.conv2, self.bn2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity() if stride == 1 else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                                                       nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + self.shortcut(x))


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.layer1, self.layer2 = Block(4, 4, 1), Block(4, 6, 2)
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(6, 3)

    def forward(self, x):
        out = self.layer2(self.layer1(torch.relu(self.bn(self.conv(x)))))
        return self.fc(torch.flatten(self.pool(out), 1))


def _mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 10), nn.Tanh(),
                         nn.Linear(10, 3))


def _cnn():
    return nn.Sequential(nn.Conv2d(1, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(5, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(),
                         nn.Linear(6 * 4 * 4, 7), nn.ReLU(), nn.Dropout(0.1), nn.Linear(7, 3))


MODELS = {"mlp": _mlp, "cnn": _cnn, "resnet": TinyResNet}


def _model(kind):
    """A model with random weights and random BatchNorm statistics, in eval mode."""
    torch.manual_seed(0)
    model = MODELS[kind]()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.weight.normal_(), m.bias.normal_(), m.running_mean.normal_(), m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _known(model):
    g = torch.Generator().manual_seed(1)
    return {group.name: torch.randperm(group.size, generator=g).numpy() for group in permutation_spec(model).groups}


X = torch.randn(40, 1, 8, 8, generator=torch.Generator().manual_seed(2))


def test_the_groups_follow_the_graph():
    groups = {g.name: g for g in permutation_spec(_model("resnet")).groups}
    assert {n: g.size for n, g in groups.items()} == {"conv": 4, "layer1.conv1": 4, "layer2.conv1": 6,
                                                      "layer2.conv2": 6}
    stream = {a.tensor for a in groups["conv"].axes}  # the residual stream: stem, block 1's output, its input
    assert {"conv.weight", "bn.running_var", "layer1.conv2.weight", "layer1.bn2.running_mean",
            "layer2.conv1.weight", "layer2.shortcut.0.weight"} <= stream
    out = {(a.tensor, a.axis) for a in groups["layer2.conv2"].axes}  # joined with the shortcut by the addition
    assert {("layer2.conv2.weight", 0), ("layer2.shortcut.0.weight", 0), ("layer2.shortcut.1.bias", 0),
            ("fc.weight", 1)} <= out
    flat = [a for a in permutation_spec(_model("cnn")).groups[1].axes if a.tensor == "8.weight"]
    assert [(a.axis, a.block) for a in flat] == [(1, 16)]  # a channel is a block of 4x4 features after flatten


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_permuting_hidden_units_keeps_the_outputs(kind):
    model = _model(kind)
    permuted = apply_permutation(model, _known(model))
    before, after = model(X), permuted(X)
    assert (after - before).abs().max() <= 1e-5 * before.abs().max()
    changed = [n for n, p in model.state_dict().items() if not torch.equal(p, permuted.state_dict()[n])]
    assert len(changed) > 4  # the permutation did move weights


@pytest.mark.parametrize("method", ["weights", "activations"])
@pytest.mark.parametrize("kind", sorted(MODELS))
def test_alignment_recovers_a_known_permutation(kind, method):
    a = _model(kind)
    known = _known(a)
    b = apply_permutation(a, known)  # unit i of b is unit known[i] of a
    result = align(a, b, method, X, seed=3)
    assert isinstance(result, Alignment) and result.method == method
    assert {g: p.tolist() for g, p in result.permutations.items()} == {g: np.argsort(p).tolist()
                                                                      for g, p in known.items()}
    back = result.apply(b)
    for name, t in a.state_dict().items():
        torch.testing.assert_close(back.state_dict()[name], t, rtol=0, atol=0)
    assert result.output_change < 1e-5
    if method == "weights":
        assert result.meta["converged"] and np.all(np.diff(result.objective) >= -1e-9)
        touched = {axis.tensor for g in permutation_spec(a).groups for axis in g.axes}
        params = dict(a.named_parameters())  # matched exactly: the objective is sum ||W_A||^2
        assert result.objective[-1] == pytest.approx(sum(float((params[n].detach().double() ** 2).sum())
                                                         for n in touched if n in params))


def _digits_mlp(data, seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    order = torch.Generator().manual_seed(seed)
    for _ in range(5):
        for idx in torch.randperm(len(data.x), generator=order).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(data.x[idx]), data.y[idx]).backward()
            opt.step()
    return model


def test_weight_matching_removes_most_of_the_barrier_between_two_trained_mlps():
    """64-64-64-10 MLPs on digits from seeds 1 and 2 (SGD 0.05, momentum 0.9, batch 64, 5 epochs; a few seconds):
    the line barrier falls from about 0.69 to 0.05 (0.01-0.07 over other seed pairs)."""
    from losslens.connectivity.barrier_matrix import line_barrier
    from losslens.core.data import load_dataset
    from losslens.core.evaluator import Evaluator

    data = load_dataset("digits", "train")
    a, b = _digits_mlp(data, 1), _digits_mlp(data, 2)
    ev = Evaluator(a, "cross_entropy", data)
    result = align(a, b, "weights", data)
    raw = line_barrier(ev, ev.space.flatten(a), ev.space.flatten(b), points=11)
    matched = line_barrier(ev, ev.space.flatten(a), ev.space.flatten(result.apply(b)), points=11)
    assert raw > 0.3 and matched < raw / 4
    assert result.output_change < 1e-5


def test_unsupported_models_get_one_error_naming_the_module():
    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.attn, self.head = nn.Linear(4, 8), nn.MultiheadAttention(8, 2, batch_first=True), nn.Linear(8, 2)

        def forward(self, x):
            h = self.embed(x)
            return self.head(self.attn(h, h, h)[0])

    class Reshaped(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(4, 2)

        def forward(self, x):
            return self.fc2(self.fc1(x).view(-1, 2, 4))

    class Branching(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(x) if x.sum() > 0 else -self.fc(x)

    class Scaled(nn.Module):  # a parameter multiplying the units would have to be permuted with them
        def __init__(self):
            super().__init__()
            self.fc1, self.scale, self.fc2 = nn.Linear(4, 8), nn.Parameter(torch.ones(8)), nn.Linear(8, 2)

        def forward(self, x):
            return self.fc2(self.fc1(x) * self.scale)

    with pytest.raises(ConfigError, match=r"operation mul \(mul\) in Scaled.forward may mix hidden units"):
        permutation_spec(Scaled())
    with pytest.raises(ConfigError, match=r"module 'attn' \(MultiheadAttention\)"):
        permutation_spec(Attention())
    with pytest.raises(ConfigError, match=r"operation view \(view\) in Reshaped.forward may"):
        align(Reshaped(), Reshaped())
    with pytest.raises(ConfigError, match="Branching: torch.fx cannot trace it"):
        align(Branching(), Branching())
    from losslens.core.models import build_model  # the built-in ResNet pads its shortcut's channels with zeros

    with pytest.raises(ConfigError, match=r"operation getitem \(getitem\) in module 'layer2.0' \(BasicBlock\)"):
        permutation_spec(build_model("resnet"))
    assert len(permutation_spec(build_model("resnet-noskip")).groups) == 7


def test_bad_input_is_refused():
    with pytest.raises(ConfigError, match="must be of one architecture"):
        align(_model("mlp"), _model("cnn"))
    with pytest.raises(ConfigError, match="activation matching needs data"):
        align(_model("mlp"), _model("mlp"), "activations")
    with pytest.raises(ConfigError, match="method must be one of weights, activations"):
        align(_model("mlp"), _model("mlp"), "random")
    with pytest.raises(ConfigError, match="groups \\['nope'\\]"):
        apply_permutation(_model("mlp"), {"nope": np.arange(3)})
    with pytest.raises(ConfigError, match="must be a permutation of 0..11"):
        apply_permutation(_model("mlp"), {"1": np.zeros(12, dtype=int)})


@pytest.mark.parametrize("method", ["weights", "activations"])
def test_the_callers_models_are_unchanged(method):
    a, b = _model("cnn").train(), _model("cnn").train()
    b.requires_grad_(False)
    a(X).sum().backward()
    states = [{n: t.clone() for n, t in m.state_dict().items()} for m in (a, b)]
    grads = {n: p.grad.clone() for n, p in a.named_parameters()}
    align(a, b, method, X)
    for model, state in zip((a, b), states):
        assert model.training and all(torch.equal(t, state[n]) for n, t in model.state_dict().items())
    assert all(p.requires_grad and torch.equal(p.grad, grads[n]) for n, p in a.named_parameters())
    assert not any(p.requires_grad for p in b.parameters())


def test_inputs_follow_the_models_dtype():
    a = _model("cnn").double()
    b = apply_permutation(a, _known(a))
    result = align(a, b, "activations", (X, torch.zeros(len(X), dtype=torch.long)))
    assert result.output_change < 1e-12 and result.meta["samples"] == len(X)


def test_an_alignment_file_reads_back_and_applies(tmp_path):
    a = _model("cnn")
    b = apply_permutation(a, _known(a))
    result = align(a, b, "weights", X)
    loaded = load_result(result.save(tmp_path / "alignment.h5"))
    assert loaded.permutations.keys() == result.permutations.keys() and loaded.output_change == result.output_change
    torch.testing.assert_close(loaded.apply(b)(X), a(X))
