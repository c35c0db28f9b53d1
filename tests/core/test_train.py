import json

import pytest
import torch
from torch import nn

from losslens.core.checkpoints import load_checkpoint, load_metadata
from losslens.core.data import load_dataset, subset
from losslens.core.evaluator import Evaluator
from losslens.core.plan import Plan
from losslens.core.models import build_model
from losslens.core.train import TrainRun, train
from losslens.errors import ConfigError


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return train("mlp", "digits", epochs=2, lr=3e-3, seed=0, out=out, save_every_steps=10, progress=False)


def test_train_loss_decreases_and_history_is_complete(digits_run):
    history = digits_run.history
    assert [h["epoch"] for h in history] == [0, 1, 2]
    losses = [h["train_loss"] for h in history]
    assert losses[0] > losses[1] > losses[2]
    assert history[-1]["train_accuracy"] > history[0]["train_accuracy"]
    assert {"test_loss", "test_accuracy"} <= set(history[-1])


def test_checkpoint_files_and_metadata(digits_run):
    steps_per_epoch = 22  # ceil(1347 / 64)
    expected = sorted({0, 10, 20, 22, 30, 40, 44})
    names = [p.name for p in digits_run.checkpoints]
    assert names == [f"step_{s:06d}.safetensors" for s in expected]
    assert names == sorted(p.name for p in digits_run.out.glob("*.safetensors"))
    meta = load_metadata(digits_run.checkpoints[-1])
    assert (meta["step"], float(meta["epoch"]), meta["model"], meta["data"]) == ("44", 2.0, "mlp", "digits")
    assert float(load_metadata(digits_run.out / "step_000010.safetensors")["epoch"]) == 10 / steps_per_epoch


def test_run_json(digits_run):
    info = json.loads((digits_run.out / "run.json").read_text())
    for key, value in [("model", "mlp"), ("model_kwargs", {}), ("data", "digits"), ("optimizer", "Adam"),
                       ("lr", 3e-3), ("seed", 0), ("epochs", 2), ("batch_size", 64), ("loss", "cross_entropy")]:
        assert info[key] == value, key
    assert info["optimizer_kwargs"] == {"weight_decay": 0.0}
    assert [(c["step"], c["epoch"]) for c in info["checkpoints"]][-1] == (44, 2.0)
    assert len(info["history"]) == 3
    loaded = TrainRun.load(digits_run.out)
    assert loaded.checkpoints == digits_run.checkpoints and loaded.history == digits_run.history
    assert loaded.metadata["optimizer"] == "Adam" and "history" not in loaded.metadata


def test_history_matches_the_evaluator_on_the_last_checkpoint(digits_run):
    model = build_model("mlp")
    model.load_state_dict(load_checkpoint(digits_run.checkpoints[-1], model))
    ev = Evaluator(model, "cross_entropy", load_dataset("digits", "test"), plan=Plan(device="cpu"))
    res = ev.evaluate(ev.w0[None])
    assert float(res.loss[0]) == pytest.approx(digits_run.history[-1]["test_loss"], rel=1e-6)
    assert float(res.metrics["accuracy"][0]) == pytest.approx(digits_run.history[-1]["test_accuracy"])


def test_same_seed_gives_bitwise_identical_checkpoints(tmp_path):
    data = (subset(load_dataset("digits", "train"), 200), subset(load_dataset("digits", "test"), 100))
    runs = [train("cnn", data, epochs=1, batch_size=32, seed=5, out=tmp_path / name, progress=False)
            for name in ("a", "b")]
    other = train("cnn", data, epochs=1, batch_size=32, seed=6, out=tmp_path / "c", progress=False)
    for pa, pb in zip(runs[0].checkpoints, runs[1].checkpoints):
        assert pa.name == pb.name and pa.read_bytes() == pb.read_bytes()
    assert runs[0].checkpoints[-1].read_bytes() != other.checkpoints[-1].read_bytes()


def test_caller_module_is_unchanged_and_global_rng_untouched(tmp_path):
    model = build_model("resnet", seed=0, blocks_per_stage=1)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.random.get_rng_state()
    data = subset(load_dataset("digits", "train"), 64)
    run = train(model, data, optimizer="SGD", lr=0.1, optimizer_kwargs={"momentum": 0.9}, epochs=1,
                batch_size=32, out=tmp_path, progress=False)
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    trained = load_checkpoint(run.checkpoints[-1], model)
    assert not torch.equal(trained["conv1.weight"], before["conv1.weight"])
    assert int(trained["bn1.num_batches_tracked"]) == 2  # BatchNorm trained, buffers saved
    assert run.metadata["model"] is None and run.metadata["model_class"].endswith("ResNet")
    assert "test_loss" not in run.history[-1]


@pytest.mark.parametrize(
    "name, lr, kwargs",
    [("sgd", 0.01, {"momentum": 0.9}), ("LBFGS", 1.0, {"line_search_fn": "strong_wolfe"}), ("RMSprop", 0.01, {})],
)
def test_any_torch_optimizer_by_name(tmp_path, name, lr, kwargs):
    data = subset(load_dataset("synthetic-regression", "train"), 64)
    run = train("mlp", data, optimizer=name, lr=lr, optimizer_kwargs=kwargs, epochs=2, batch_size=32, out=tmp_path,
                progress=False, model_kwargs={"hidden": [8]})
    assert run.metadata["loss"] == "mse" and "train_accuracy" not in run.history[-1]
    assert run.history[-1]["train_loss"] < run.history[0]["train_loss"]
    assert run.metadata["model_kwargs"] == {"hidden": [8]}


def test_option_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown optimizer 'adamx'.*Adam, .*SGD"):
        train("mlp", out=tmp_path / "x", optimizer="adamx")
    assert not (tmp_path / "x").exists()  # nothing written for a bad option
    with pytest.raises(ConfigError, match=r"loss must be one of cross_entropy, mse \(got 'hinge'\)"):
        train("mlp", out=tmp_path, loss="hinge")
    with pytest.raises(ConfigError, match="loss 'mse' is for regression"):
        train("mlp", out=tmp_path, loss="mse")
    with pytest.raises(ConfigError, match="LBFGS has no weight_decay"):
        train("mlp", out=tmp_path, optimizer="lbfgs", weight_decay=0.1)
    with pytest.raises(ConfigError, match="SGD does not take the options"):
        train("mlp", out=tmp_path, optimizer="sgd", optimizer_kwargs={"betas": (0.9, 0.99)})
    with pytest.raises(ConfigError, match="epochs must be positive"):
        train("mlp", out=tmp_path, epochs=0)
    with pytest.raises(ConfigError, match=r"lr must be below 3.4e\+38 \(the largest float32\), got 1e\+300"):
        train("mlp", out=tmp_path, lr=1e300)


def test_existing_run_is_not_overwritten_silently(tmp_path):
    data = subset(load_dataset("synthetic-classification", "train"), 32)
    train(nn.Linear(20, 4), data, epochs=1, out=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="already holds a training run"):
        train(nn.Linear(20, 4), data, epochs=1, out=tmp_path, progress=False)
    run = train(nn.Linear(20, 4), data, epochs=1, batch_size=16, out=tmp_path, overwrite=True, progress=False)
    assert [p.name for p in run.checkpoints] == ["step_000000.safetensors", "step_000002.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"] + [p.name for p in run.checkpoints]


@pytest.mark.parametrize("text, found", [("[1, 2]", "a JSON list"), ('"run"', "a JSON str")])
def test_a_run_json_that_is_not_an_object_is_named(tmp_path, text, found):
    (tmp_path / "run.json").write_text(text)
    with pytest.raises(ConfigError, match=rf"not the run.json of a training run \(TypeError: it holds {found}"):
        TrainRun.load(tmp_path)
