"""Training the bend: its gradient equals autograd through w(t), a killed run resumes to the same bend, and a
line or a recalibrating evaluator is refused."""

import pytest
import torch
from torch.func import functional_call

from _connect_helpers import tiny_evaluator
from losslens.connectivity.connect import connect
from losslens.connectivity.curves import Bezier, Line, Polychain
from losslens.connectivity.train_bend import BendTraining, bend_gradient, train_bend
from losslens.errors import ConfigError


def _endpoints(ev, seed=5):
    g = torch.Generator().manual_seed(seed)
    return ev.w0, ev.w0 + 0.7 * torch.randn(ev.space.size, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("cls", [Bezier, Polychain])
def test_the_bends_gradient_equals_autograd_through_w_of_t(cls):
    model, (x, y), ev = tiny_evaluator()
    a, b = _endpoints(ev)
    theta = (a + b) / 2 + 0.3 * torch.randn(ev.space.size, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    t = torch.tensor([0.1, 0.35, 0.5, 0.8], dtype=torch.float64)
    losses, grad = bend_gradient(ev, cls(a, b, theta), t)

    bend = theta.clone().requires_grad_(True)
    points = cls(a, b, bend).points(t, bend)  # w(t) as a function of the bend
    reference = torch.stack([torch.nn.functional.cross_entropy(functional_call(model, ev.space.unflatten(w), (x,)), y)
                             for w in points])
    reference.mean().backward()
    assert losses.numpy() == pytest.approx(reference.detach().numpy(), rel=1e-12)
    assert torch.allclose(grad, bend.grad, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_killed_run_resumes_to_the_bend_of_an_uninterrupted_one(tmp_path, monkeypatch, optimizer):
    _, _, ev = tiny_evaluator()
    a, b = _endpoints(ev)
    options = BendTraining(steps=12, lr=0.1, save_every=4, batch=3, seed=7, optimizer=optimizer)
    whole, whole_losses = train_bend(ev, Bezier(a, b), options=options)

    calls = {"n": 0}
    real = ev.values_and_gradients

    def dies_at_the_seventh(W):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return real(W)

    monkeypatch.setattr(ev, "values_and_gradients", dies_at_the_seventh)
    with pytest.raises(KeyboardInterrupt):
        train_bend(ev, Bezier(a, b), options=options, checkpoint=tmp_path / "bend.safetensors")
    assert calls["n"] == 7
    monkeypatch.setattr(ev, "values_and_gradients", real)
    resumed, losses = train_bend(ev, Bezier(a, b), options=options, checkpoint=tmp_path / "bend.safetensors")
    assert torch.equal(resumed.bend, whole.bend) and losses.tolist() == whole_losses.tolist()
    assert not torch.equal(whole.bend, (a + b) / 2)


def test_a_checkpoint_of_other_options_is_refused(tmp_path):
    _, _, ev = tiny_evaluator()
    a, b = _endpoints(ev)
    train_bend(ev, Bezier(a, b), options=BendTraining(steps=2), checkpoint=tmp_path / "bend.safetensors")
    with pytest.raises(ConfigError, match="bend.safetensors holds the training of another curve"):
        train_bend(ev, Bezier(a, b), options=BendTraining(steps=2, lr=0.01), checkpoint=tmp_path / "bend.safetensors")


def test_a_line_has_no_bend_to_train_and_bad_options_are_refused():
    _, _, ev = tiny_evaluator()
    with pytest.raises(ConfigError, match="a line has no bend to train"):
        train_bend(ev, Line(*_endpoints(ev)))
    with pytest.raises(ConfigError, match="optimizer must be one of sgd, adam"):
        BendTraining(optimizer="lbfgs")


def test_batchnorm_paths_are_evaluated_recalibrated_and_trained_with_batch_statistics():
    _, _, ev = tiny_evaluator(bn=True, mode="eval")
    a, b = _endpoints(ev)
    with pytest.raises(ConfigError, match="the model has BatchNorm: evaluate the paths with bn='recalibrate'"):
        connect(ev, a, b, path="line", points=5)
    _, _, recal = tiny_evaluator(bn=True, mode="recalibrate")
    with pytest.raises(ConfigError, match="pass train_evaluator= an evaluator with bn='batch'"):
        connect(recal, a, b, path="bezier", points=5)
    _, _, batch = tiny_evaluator(bn=True, mode="batch")
    result = connect(recal, a, b, path=["line", "bezier"], points=5, steps=2, train_evaluator=batch)
    assert result.meta["bn"] == "recalibrate" and result.meta["evaluator"]["bn"] == "recalibrate"
