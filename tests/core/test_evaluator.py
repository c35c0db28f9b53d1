"""The evaluator core against a plain sequential evaluation, point by point, batch by batch."""

import copy
import warnings

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.optim.swa_utils import update_bn

from losslens.core.derivatives import GradientGraph
from losslens.core.evaluator import Evaluator
from losslens.core.plan import Plan
from losslens.core.params import ParameterSpace
from losslens.errors import ConfigError

N, BATCH = 150, 32  # uneven last batch: the mean must be over samples, not over batch means


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 5))


def cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 2 * 2, 5))


def bn_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 8),
                        nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 5))
    with torch.no_grad():  # non-trivial running statistics
        for layer in (net[1], net[5]):
            layer.running_mean.uniform_(-0.5, 0.5)
            layer.running_var.uniform_(0.5, 2.0)
    return net


def dropout_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.Dropout(0.5), nn.ReLU(), nn.Linear(12, 5))


def tied_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 5))
    net[3].weight = net[1].weight
    return net


class Unbatchable(nn.Module):
    """Data-dependent control flow through ``.item()``: vmap cannot batch it."""

    def __init__(self):
        super().__init__()
        self.body = mlp()

    def forward(self, x):
        out = self.body(x)
        return out * 2 if out.abs().max().item() > 1e9 else out


MODELS = {"mlp": mlp, "cnn": cnn, "bn": bn_net, "dropout": dropout_net, "tied": tied_net}


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(N, 1, 4, 4, generator=g), torch.randint(0, 5, (N,), generator=g)


def points(space, model, k, scale=0.3, seed=2):
    w0 = space.flatten(model)
    g = torch.Generator().manual_seed(seed)
    return w0 + scale * torch.randn(k, space.size, generator=g)


def sequential(model, w, x, y, *, bn="eval", batch=BATCH, calib=None):
    """Reference: load ``w`` into a copy, run it batch by batch, average over samples."""
    net = copy.deepcopy(model)
    space = ParameterSpace(net)
    state = dict(net.named_parameters())
    with torch.no_grad():
        for name, t in space.unflatten(w).items():
            state[name].copy_(t)
    net.eval()
    if bn == "recalibrate":
        loader = torch.utils.data.DataLoader(calib, batch_size=batch)
        update_bn(loader, net)
        net.eval()
    if bn == "batch":
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.train()
    loss = correct = 0.0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out = net(x[i : i + batch])
            loss += nn.functional.cross_entropy(out, y[i : i + batch], reduction="sum").item()
            correct += (out.argmax(-1) == y[i : i + batch]).sum().item()
    return loss / len(x), correct / len(x)


def check(ev, model, W, x, y, **ref_kwargs):
    res = ev.evaluate(W)
    ref = torch.tensor([sequential(model, w, x, y, **ref_kwargs) for w in W], dtype=torch.float64)
    torch.testing.assert_close(res.loss, ref[:, 0], rtol=2e-6, atol=1e-6)
    torch.testing.assert_close(res.metrics["accuracy"], ref[:, 1])
    assert len(res) == len(W) and res.n_samples == len(x)
    return res


@pytest.mark.parametrize("vectorize", [False, True])
@pytest.mark.parametrize("name", ["mlp", "cnn", "dropout", "tied"])
def test_equals_sequential(name, vectorize, data):
    model = MODELS[name]()
    ev = Evaluator(model, "cross_entropy", data, plan=Plan(batch_size=BATCH, vectorize=vectorize, device="cpu"))
    W = points(ev.space, model, 5)
    check(ev, model, W, *data)
    check(ev, model, W[:1], *data)  # K = 1


@pytest.mark.parametrize("vectorize", [False, True])
@pytest.mark.parametrize("bn", ["eval", "batch", "recalibrate"])
def test_batchnorm_modes(bn, vectorize, data):
    model = bn_net()
    calibration = {"calibration_size": len(data[0])} if bn == "recalibrate" else {}
    ev = Evaluator(model, "cross_entropy", data, bn=bn, **calibration,
                   plan=Plan(batch_size=BATCH, vectorize=vectorize, device="cpu"))
    W = points(ev.space, model, 3)
    res = check(ev, model, W, *data, bn=bn, calib=data[0])
    assert res.bn == bn


def test_more_points_than_a_chunk(data):
    model = mlp()
    ev = Evaluator(model, "cross_entropy", data,
                   plan=Plan(batch_size=BATCH, memory_budget=1, vectorize=True, device="cpu"))
    assert ev._chunk_size(None) == 1
    check(ev, model, points(ev.space, model, 4), *data)


@pytest.mark.parametrize("name", ["mlp", "cnn", "bn", "tied"])
@pytest.mark.parametrize("vectorize", [False, True])
def test_affine_equals_general(name, vectorize, data):
    model = MODELS[name]()
    ev = Evaluator(model, "cross_entropy", data, plan=Plan(batch_size=BATCH, vectorize=vectorize, device="cpu"))
    g = torch.Generator().manual_seed(3)
    D = 0.2 * torch.randn(2, ev.space.size, generator=g)
    coeffs = torch.randn(7, 2, generator=g)
    fast = ev.evaluate_affine(ev.w0, D, coeffs)
    slow = ev.evaluate(ev.w0 + coeffs @ D)
    torch.testing.assert_close(fast.loss, slow.loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast.metrics["accuracy"], slow.metrics["accuracy"])


def test_affine_fast_path_engages_for_a_wide_first_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = torch.randn(40, 1, 8, 8), torch.randint(0, 3, (40,))
    ev = Evaluator(model, "cross_entropy", (x, y), plan=Plan(device="cpu"))
    D = 0.3 * torch.randn(2, ev.space.size)
    coeffs = torch.randn(6, 2)
    for directions in (D, D, 2 * D):  # the first layer's outputs are reused for the same plane only
        fast = ev.evaluate_affine(ev.w0, directions, coeffs)
        slow = ev.evaluate(ev.w0 + coeffs @ directions)
        assert fast.path == "first-layer" and slow.path == "direct"
        torch.testing.assert_close(fast.loss, slow.loss, rtol=1e-5, atol=1e-6)  # float32 sums in another order


def test_fallback_for_a_model_vmap_cannot_batch(data):
    model = Unbatchable()
    ev = Evaluator(model, "cross_entropy", data, plan=Plan(batch_size=BATCH, vectorize=True, device="cpu"))
    W = points(ev.space, model, 3)
    with pytest.warns(UserWarning, match="cannot be vmapped"):
        res = ev.evaluate(W)
    assert ev.plan.vectorize is False and "vmap failed" in ev.plan.fallbacks[0]
    assert ev.meta()["plan"]["vectorize"] is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once only
        ev.evaluate(W)
    ref = torch.tensor([sequential(model, w, *data)[0] for w in W], dtype=torch.float64)
    torch.testing.assert_close(res.loss, ref, rtol=2e-6, atol=1e-6)


def test_float64_and_nonfinite_losses_are_kept(data):
    model = mlp()
    ev = Evaluator(model, "cross_entropy", data, plan=Plan(dtype=torch.float64, device="cpu"))
    W = points(ev.space, model, 3).double()
    W[1] = float("nan")
    W[2] = 1e300  # overflows to inf/nan in the forward
    res = ev.evaluate(W)
    assert torch.isfinite(res.loss[0]) and not torch.isfinite(res.loss[1]) and not torch.isfinite(res.loss[2])
    assert res.n_nonfinite == 2
    assert res.loss[0] == pytest.approx(sequential(model.double(), W[0], data[0].double(), data[1])[0], rel=1e-12)


def flat_loss(model, x, y):
    space = ParameterSpace(model)
    return lambda w: nn.functional.cross_entropy(functional_call(model, space.unflatten(w), (x,)), y)


def test_gradient_and_hvp_match_torch_func_in_float64():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    x, y = torch.randn(50, 3, dtype=torch.float64), torch.randint(0, 3, (50,))
    ev = Evaluator(model, "cross_entropy", (x, y), plan=Plan(dtype=torch.float64, batch_size=16, device="cpu"))
    f = flat_loss(model, x, y)
    w = ev.w0 + 0.1 * torch.randn(ev.space.size, dtype=torch.float64)
    H = torch.func.hessian(f)(w)
    V = torch.randn(4, ev.space.size, dtype=torch.float64)
    torch.testing.assert_close(ev.gradient(w), torch.func.grad(f)(w))
    torch.testing.assert_close(ev.hvp(w, V), V @ H)  # forward-over-reverse
    torch.testing.assert_close(ev.hvp(w, V[0]), H @ V[0])
    graph = GradientGraph(ev, w)  # double backward through a kept graph
    torch.testing.assert_close(graph.hvp(V), V @ H)


@pytest.mark.parametrize("bn", ["eval", "batch"])
def test_gradient_is_the_derivative_of_evaluate(bn, data):
    """Central differences of ``evaluate`` (float64): the same function, batch statistics included."""
    model = bn_net().double()
    x, y = data[0].double(), data[1]
    ev = Evaluator(model, "cross_entropy", (x, y), bn=bn,
                   plan=Plan(batch_size=BATCH, dtype=torch.float64, device="cpu"))
    v = torch.randn(ev.space.size, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    eps = 1e-7  # batch statistics of small batches curve the loss strongly
    losses = ev.evaluate(torch.stack([ev.w0 + eps * v, ev.w0 - eps * v])).loss
    assert (ev.gradient(ev.w0) @ v).item() == pytest.approx(((losses[0] - losses[1]) / (2 * eps)).item(), rel=1e-6)


@pytest.mark.parametrize("bn", ["eval", "batch", "recalibrate"])
def test_callers_model_is_unchanged(bn, data):
    model = bn_net().train()
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [(m.training, getattr(m, "momentum", None), getattr(m, "track_running_stats", None)) for m in model.modules()]
    ev = Evaluator(model, "cross_entropy", data, bn=bn, plan=Plan(batch_size=BATCH, device="cpu"))
    W = points(ev.space, model, 2)
    ev.evaluate(W)
    ev.evaluate_affine(ev.w0, W - ev.w0, torch.eye(2))
    if bn == "recalibrate":  # the statistics would have to be differentiated too: refused
        with pytest.raises(ValueError, match="recalibrate"):
            ev.gradient(ev.w0)
    else:
        ev.gradient(ev.w0)
        ev.hvp(ev.w0, W)
    ev.module_at(W[0])
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert flags == [(m.training, getattr(m, "momentum", None), getattr(m, "track_running_stats", None)) for m in model.modules()]
    assert all(torch.equal(p.grad, torch.full_like(p, 7.0)) for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())


def test_buffers_in_the_vector(data):
    model = bn_net()
    ev = Evaluator(model, "cross_entropy", data, include_buffers=True, plan=Plan(batch_size=BATCH, device="cpu"))
    assert ev.space.size == ParameterSpace(model).size + 2 * (4 + 8)
    w = ev.w0.clone()
    w[ev.space.slice_of("1.running_var")] = 4.0
    shifted = copy.deepcopy(model)
    shifted[1].running_var.fill_(4.0)
    assert ev.evaluate(w).loss[0].item() == pytest.approx(sequential(shifted, ParameterSpace(model).flatten(model), *data)[0], rel=1e-6)


def test_bad_input_gives_clear_errors(data):
    model = mlp()
    with pytest.raises(ValueError, match="eval, batch, recalibrate"):
        Evaluator(model, "cross_entropy", data, bn="train")
    with pytest.raises(ConfigError, match="cross_entropy"):
        Evaluator(model, "hinge", data)
    ev = Evaluator(model, "cross_entropy", data, plan=Plan(device="cpu"))
    with pytest.raises(ValueError, match=f"\\(K, {ev.space.size}\\)"):
        ev.evaluate(torch.zeros(2, ev.space.size + 1))
    with pytest.raises(ValueError, match="coeffs"):
        ev.evaluate_affine(ev.w0, torch.zeros(2, ev.space.size), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="K >= 1"):
        ev.evaluate_affine(ev.w0, torch.zeros(2, ev.space.size), torch.zeros(0, 2))
    with pytest.raises(ValueError, match="K >= 1"):
        ev.evaluate(torch.zeros(0, ev.space.size))


def test_compiled_equals_uncompiled(data):
    model = mlp()
    plain = Evaluator(model, "cross_entropy", data, plan=Plan(device="cpu", compile=False))
    compiled = Evaluator(model, "cross_entropy", data, plan=Plan(device="cpu", compile=True))
    D = 0.2 * torch.randn(2, plain.space.size, generator=torch.Generator().manual_seed(4))
    coeffs = torch.randn(5, 2, generator=torch.Generator().manual_seed(5))
    W = plain.w0 + coeffs @ D
    torch.testing.assert_close(compiled.evaluate(W).loss, plain.evaluate(W).loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(compiled.evaluate_affine(plain.w0, D, coeffs).loss, plain.evaluate(W).loss, rtol=1e-5, atol=1e-6)
    assert compiled.plan.compile and compiled.runner.compiled_calls > 0  # the compiled path ran
    assert plain.runner.compiled_calls == 0


@pytest.mark.parametrize("vectorize", [False, True])
def test_values_and_gradients_at_several_points(vectorize):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    x, y = torch.randn(50, 3, dtype=torch.float64), torch.randint(0, 3, (50,))
    ev = Evaluator(model, "cross_entropy", (x, y),
                   plan=Plan(dtype=torch.float64, batch_size=16, device="cpu", vectorize=vectorize))
    f = flat_loss(model, x, y)
    W = ev.w0 + 0.1 * torch.randn(3, ev.space.size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    losses, grads = ev.values_and_gradients(W)
    for k in range(3):
        assert float(losses[k]) == pytest.approx(float(f(W[k])), rel=1e-12)
        torch.testing.assert_close(grads[k], torch.func.grad(f)(W[k]))
