"""Bad models, inputs and targets are refused before the first forward, each in one line; diverged
points get NaN metrics, not fake ones; non-finite weights are named."""

import math

import pytest
import torch
from torch import nn

from losslens.core.evaluator import Evaluator
from losslens.errors import ConfigError


def mlp(classes=5):
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, classes))


X = torch.randn(30, 1, 4, 4, generator=torch.Generator().manual_seed(0))
Y = torch.randint(0, 5, (30,), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("targets, message", [
    (torch.arange(30) % 7, r"class labels range over \[0, 6\] but the model has 5 outputs"),
    (-(torch.arange(30) % 2), r"class labels range over \[-1, 0\]"),
    (torch.rand(30), r"float targets of shape \[\] per sample"),
    (Y[:, None], r"labels of shape \[\] per sample .* found labels of shape \[1\]"),
    (torch.rand(30, 5), "not class probabilities"),
])
def test_bad_class_targets_are_named(targets, message):
    with pytest.raises(ConfigError, match=message):
        Evaluator(mlp(), "cross_entropy", (X, targets), device="cpu")


def test_class_probabilities_are_accepted_and_exact():
    p = torch.softmax(torch.randn(30, 5, generator=torch.Generator().manual_seed(2)), dim=1)
    model = mlp()
    ev = Evaluator(model, "cross_entropy", (X, p), device="cpu", metrics=(), dtype=torch.float64)
    with torch.no_grad():
        expected = nn.functional.cross_entropy(model.double()(X.double()), p.double())
    assert float(ev.evaluate(ev.w0).loss[0]) == pytest.approx(float(expected), rel=1e-12)


def test_bad_inputs_and_options_are_named():
    with pytest.raises(ConfigError, match=r"cannot take the data's inputs \(samples of shape \[1, 3, 3\], dtype float32\)"):
        Evaluator(mlp(), "cross_entropy", (torch.randn(30, 1, 3, 3), Y), device="cpu")
    with pytest.raises(ConfigError, match="must be a torch.nn.Module, got function"):
        Evaluator(lambda x: x, "cross_entropy", (X, Y))
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            Evaluator(mlp(), "cross_entropy", (X, Y), batch_size=bad)
    with pytest.raises(ConfigError, match=r"mse needs float targets of the model's output shape \[5\]"):
        Evaluator(mlp(), "mse", (X, Y), metrics=())
    with pytest.raises(ConfigError, match="accuracy needs integer class labels"):
        Evaluator(mlp(), "mse", (X, torch.randn(30, 5)), metrics=("accuracy",))
    with pytest.raises(ValueError, match="vectorize must be one of"):
        Evaluator(mlp(), "cross_entropy", (X, Y), vectorize="yes")


@pytest.mark.parametrize("vectorize", [False, True])
def test_diverged_points_have_no_accuracy(vectorize):
    ev = Evaluator(mlp(), "cross_entropy", (X, Y), device="cpu", vectorize=vectorize)
    W = ev.w0.repeat(2, 1)
    W[1, 0] = float("nan")
    res = ev.evaluate(W)
    assert math.isfinite(res.loss[0]) and 0 <= res.metrics["accuracy"][0] <= 1
    assert math.isnan(res.loss[1]) and math.isnan(res.metrics["accuracy"][1])  # not the share of class 0


def test_nonfinite_weights_are_named_with_their_counts():
    model = mlp()
    with torch.no_grad():
        model[1].weight[0, :3] = float("nan")
        model[3].bias[1] = float("inf")
    with pytest.warns(UserWarning, match=r"1.weight \(3 of 192\), 3.bias \(1 of 5\)"):
        Evaluator(model, "cross_entropy", (X, Y), device="cpu")


def test_next_token_loss_on_one_label_per_sample_is_named():
    with pytest.raises(ConfigError, match=r"causal_lm predicts each next token: .* found one target per sample"):
        Evaluator(mlp(), "causal_lm", (X, Y), device="cpu")


def test_a_target_key_for_batches_of_pairs_is_refused_not_ignored():
    with pytest.raises(ValueError, match="target_key='label' names the target in dict batches; these batches are"):
        Evaluator(mlp(), "cross_entropy", (X, Y), device="cpu", target_key="label")
