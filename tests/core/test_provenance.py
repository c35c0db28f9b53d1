"""Provenance: the checkpoint metadata schema, identities of models and data, and what an evaluator records."""

import pytest
import torch
from torch import nn

from losslens.core.checkpoints import save_checkpoint
from losslens.core.data import load_dataset, subset
from losslens.core.evaluator import Evaluator
from losslens.core.plan import Plan
from losslens.core.recipe import Recipe
from losslens.core.models import build_model
from losslens.core.provenance import CheckpointMeta, checkpoint_info, fingerprint, model_identity, trusted_name
from losslens.errors import ConfigError


def test_checkpoint_meta_round_trips_through_safetensors(tmp_path):
    meta = CheckpointMeta(model="mlp", model_kwargs={"hidden": [8]}, data="digits", split="train", step=12,
                          epoch=1.5, optimizer="Adam", optimizer_kwargs={"betas": [0.9, 0.99]}, lr=3e-3, seed=4)
    path = save_checkpoint(nn.Linear(2, 2), tmp_path / "c.safetensors", metadata=meta.to_metadata())
    assert CheckpointMeta.read(path) == meta
    assert CheckpointMeta.read(tmp_path / "missing.safetensors") == CheckpointMeta()


def test_unparsable_metadata_values_are_dropped():
    meta = CheckpointMeta.from_metadata({"step": "twelve", "epoch": "2", "model_kwargs": "[1]", "data": "digits"})
    assert meta == CheckpointMeta(epoch=2.0, data="digits")


def test_names_from_files_never_import_code():
    assert trusted_name("mlp", ("mlp", "cnn"), what="model", flag="--model") == "mlp"
    assert trusted_name(None, ("mlp",), what="model", flag="--model") is None
    with pytest.raises(ConfigError, match="never imports code named by a file: .* pass --model evil.module:f"):
        trusted_name("evil.module:f", ("mlp",), what="model", flag="--model")


def test_architecture_hash_tells_apart_models_with_the_same_parameters():
    skip = build_model("resnet", input_shape=(1, 8, 8), seed=0)
    noskip = build_model("resnet-noskip", input_shape=(1, 8, 8), seed=0)
    assert [(n, p.shape) for n, p in skip.named_parameters()] == [(n, p.shape) for n, p in noskip.named_parameters()]
    assert model_identity(skip)["architecture"] != model_identity(noskip)["architecture"]
    again = build_model("resnet", input_shape=(1, 8, 8), seed=1)  # other weights, same architecture
    assert model_identity(skip)["architecture"] == model_identity(again)["architecture"]
    ident = model_identity(skip, "resnet", {"blocks_per_stage": 1})
    assert ident["name"] == "resnet" and ident["class"] == "losslens.core.models.ResNet"


def test_fingerprint_follows_the_content():
    a = torch.arange(6.0)
    assert fingerprint([a]) == fingerprint([a.clone()])
    assert fingerprint([a]) != fingerprint([a + 1e-6])
    assert fingerprint([a]) != fingerprint([a.double()])


def test_evaluator_records_what_it_evaluates(tmp_path):
    data = subset(load_dataset("digits", "train"), 200, seed=3)
    model = build_model("mlp", input_shape=data.input_shape, seed=0)
    path = save_checkpoint(model, tmp_path / "run" / "step_5.safetensors",
                           metadata=CheckpointMeta(model="mlp", step=5, epoch=0.5).to_metadata())
    ev = Evaluator(model, "cross_entropy", data, checkpoint=path, plan=Plan(device="cpu"), recipe=Recipe(model="mlp"))
    meta = ev.meta()
    assert meta["data"]["split"] == "train" and meta["data"]["n_samples"] == 200
    assert meta["data"]["subset"] == {"of": 1347, "seed": 3}
    assert meta["checkpoint"]["label"] == "run/step_5.safetensors" and meta["checkpoint"]["step"] == 5
    assert meta["checkpoint"]["sha256"] == checkpoint_info(path)["sha256"]
    assert meta["model"]["name"] == "mlp" and meta["model"]["architecture"]
    other = Evaluator(model, "cross_entropy", subset(load_dataset("digits", "train"), 200, seed=4),
                      plan=Plan(device="cpu"))
    assert other.meta()["data"]["fingerprint"] != meta["data"]["fingerprint"]
    plain = Evaluator(model, "cross_entropy", (data.x, data.y), plan=Plan(device="cpu"), recipe=Recipe(split="test"))
    assert plain.meta()["data"]["split"] == "test" and plain.meta()["data"]["name"] is None
    with pytest.raises(ValueError, match="split='test' was given for data whose split is 'train'"):
        Evaluator(model, "cross_entropy", data, recipe=Recipe(split="test"))


def test_evaluator_from_a_checkpoint_uses_only_built_in_names(tmp_path):
    model = build_model("mlp", input_shape=(1, 8, 8), seed=0, hidden=[16])
    meta = CheckpointMeta(model="mlp", model_kwargs={"hidden": [16]}, data="digits")
    path = save_checkpoint(model, tmp_path / "m.safetensors", metadata=meta.to_metadata())
    ev = Recipe.from_checkpoint(path, split="test", subset=100).evaluator(path, device="cpu")
    assert ev.meta()["model"]["kwargs"] == {"hidden": [16]} and ev.meta()["data"]["split"] == "test"
    torch.testing.assert_close(ev.w0, ev.space.flatten(model))
    evil = save_checkpoint(model, tmp_path / "evil.safetensors",
                           metadata=CheckpointMeta(model="os:system").to_metadata())
    with pytest.raises(ConfigError, match="never imports code"):
        Recipe.from_checkpoint(evil)
