"""Bad models, inputs and targets are refused before the first forward, each in one line; diverged
points get NaN metrics, not fake ones; non-finite weights are named."""

import math

import pytest
import torch
from torch import nn

from losslens.core.evaluator import Evaluator
from losslens.core.plan import Plan
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
        Evaluator(mlp(), "cross_entropy", (X, targets), plan=Plan(device="cpu"))


def test_class_probabilities_are_accepted_and_exact():
    p = torch.softmax(torch.randn(30, 5, generator=torch.Generator().manual_seed(2)), dim=1)
    model = mlp()
    ev = Evaluator(model, "cross_entropy", (X, p), metrics=(), plan=Plan(device="cpu", dtype=torch.float64))
    with torch.no_grad():
        expected = nn.functional.cross_entropy(model.double()(X.double()), p.double())
    assert float(ev.evaluate(ev.w0).loss[0]) == pytest.approx(float(expected), rel=1e-12)


def test_bad_inputs_and_options_are_named():
    with pytest.raises(ConfigError, match=r"cannot take the data's inputs \(samples of shape \[1, 3, 3\], dtype float32\)"):
        Evaluator(mlp(), "cross_entropy", (torch.randn(30, 1, 3, 3), Y), plan=Plan(device="cpu"))
    with pytest.raises(ConfigError, match="must be a torch.nn.Module, got function"):
        Evaluator(lambda x: x, "cross_entropy", (X, Y))
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=r"batch_size must be an integer >= 1 or None \(got "):
            Evaluator(mlp(), "cross_entropy", (X, Y), plan=Plan(batch_size=bad))
    with pytest.raises(ConfigError, match=r"mse needs float targets of the model's output shape \[5\]"):
        Evaluator(mlp(), "mse", (X, Y), metrics=())
    with pytest.raises(ConfigError, match="accuracy needs integer class labels"):
        Evaluator(mlp(), "mse", (X, torch.randn(30, 5)), metrics=("accuracy",))
    with pytest.raises(ValueError, match="vectorize must be one of"):
        Evaluator(mlp(), "cross_entropy", (X, Y), plan=Plan(vectorize="yes"))


@pytest.mark.parametrize("vectorize", [False, True])
def test_diverged_points_have_no_accuracy(vectorize):
    ev = Evaluator(mlp(), "cross_entropy", (X, Y), plan=Plan(device="cpu", vectorize=vectorize))
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
        Evaluator(model, "cross_entropy", (X, Y), plan=Plan(device="cpu"))


# -- seeds, batch sizes and points of any integer or array type (attacks on the Python API) ---------

@pytest.mark.parametrize("seed", [None, -1, 1.5, 2**70, True, "3"])
def test_every_seeded_entry_point_refuses_a_seed_no_generator_takes(seed, tmp_path):
    import numpy as np

    import losslens
    from losslens.core.data import TensorData

    data = TensorData(X, Y, name="toy", split="train", task="classification", num_classes=5, input_shape=(1, 4, 4))
    H = torch.eye(4, dtype=torch.float64)
    calls = {
        "subset": lambda: losslens.subset(data, 5, seed=seed),
        "eigenpairs": lambda: losslens.eigenpairs(H, 1, seed=seed),
        "trace": lambda: losslens.trace(H, seed=seed),
        "density": lambda: losslens.density(H, n_lanczos=2, seed=seed),
        "replay": lambda: losslens.replay("rosenbrock", ["sgd"], steps=2, seed=seed),
        "train": lambda: losslens.train(mlp(), data, epochs=1, seed=seed, out=tmp_path / "run", progress=False),
        "random_directions": lambda: losslens.random_directions(losslens.ParameterSpace(mlp()), losslens.ParameterSpace(
            mlp()).flatten(mlp()), seed=seed),
    }
    for name, call in calls.items():
        with pytest.raises(ConfigError, match=r"seed must be an integer from 0 to 2\*\*63 - 1"):
            call()
    assert not (tmp_path / "run").exists()
    assert losslens.random_directions(losslens.ParameterSpace(mlp()), losslens.ParameterSpace(mlp()).flatten(mlp()),
                                      seed=np.int64(3)).meta["seed"] == 3


def test_embeddings_take_the_seeds_numpys_generator_takes():
    """t-SNE's ``random_state`` is numpy's RandomState: 2**32 and above are refused before scikit-learn sees them."""
    from losslens.trajectories import embed

    with pytest.raises(ConfigError, match=r"seed must be an integer from 0 to 2\*\*32 - 1 \(got 4294967296\)"):
        embed(torch.randn(6, 5), "tsne", perplexity=2, seed=2**32)


def test_numpy_integer_batch_size_is_a_batch_size():
    import numpy as np

    ev = Evaluator(mlp(), "cross_entropy", (X, Y), plan=Plan(batch_size=np.int64(7)))
    assert ev.plan.batch_size == 7


@pytest.mark.parametrize("W, found", [(None, "got NoneType"), (torch.ones(1, 1, dtype=torch.bool), "dtype bool"),
                                      (torch.ones(1, 1, dtype=torch.complex64), "dtype complex64"), ("abc", "got str")])
def test_points_that_are_not_real_numbers_are_named(W, found):
    ev = Evaluator(mlp(), "cross_entropy", (X, Y))
    if isinstance(W, torch.Tensor):
        W = W.expand(1, ev.space.size)
    with pytest.raises(ValueError, match=f"W: .*{found}"):
        ev.evaluate(W)


def test_batch_statistics_never_see_a_batch_of_one():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 3))
    x, y = torch.randn(21, 4), torch.randint(0, 3, (21,))
    with pytest.raises(ValueError, match="batch_size=4 over 21 samples leaves a batch of 1"):
        Evaluator(model, "cross_entropy", (x, y), bn="batch", plan=Plan(batch_size=4))
    with pytest.raises(ValueError, match="calibration_size must be an integer of at least 2"):
        Evaluator(model, "cross_entropy", (x, y), bn="recalibrate", calibration_size=1)
    ev = Evaluator(model, "cross_entropy", (x, y), bn="batch", plan=Plan(batch_size=7))  # 3 batches of 7
    assert torch.isfinite(ev.evaluate(ev.w0).loss).all()


def test_unsigned_byte_labels_are_class_labels():
    ev = Evaluator(mlp(), "cross_entropy", (X, Y.to(torch.uint8)))
    ref = nn.functional.cross_entropy(mlp()(X), Y)
    assert float(ev.evaluate(ev.w0).loss[0]) == pytest.approx(float(ref.detach()), abs=1e-5)


def test_a_model_of_mixed_dtypes_is_told_that_it_runs_in_one():
    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(16, 6), nn.Linear(6, 5).double()

        def forward(self, x):
            return self.b(self.a(x.flatten(1)).double())

    with pytest.warns(UserWarning, match="parameters mix float32, float64; the evaluator runs all of them in float32"):
        with pytest.raises(ConfigError, match="cannot take the data's inputs"):
            Evaluator(Mixed(), "cross_entropy", (X, Y))


def test_next_token_loss_on_one_label_per_sample_is_named():
    with pytest.raises(ConfigError, match=r"causal_lm predicts each next token: .* found one target per sample"):
        Evaluator(mlp(), "causal_lm", (X, Y), plan=Plan(device="cpu"))


def test_a_target_key_for_batches_of_pairs_is_refused_not_ignored():
    with pytest.raises(ValueError, match="target_key='label' names the target in dict batches; these batches are"):
        Evaluator(mlp(), "cross_entropy", (X, Y), target_key="label", plan=Plan(device="cpu"))
