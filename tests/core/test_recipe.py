"""The recipe: what an evaluation evaluates, by name, read from a checkpoint or a run with only built-in names."""

import dataclasses

import pytest

from losslens.core.checkpoints import save_checkpoint
from losslens.core.data import load_dataset, subset
from losslens.core.models import build_model
from losslens.core.plan import Plan
from losslens.core.provenance import CheckpointMeta
from losslens.core.recipe import Recipe
from losslens.core.train import train
from losslens.errors import ConfigError


@pytest.fixture
def checkpoint(tmp_path):
    model = build_model("mlp", input_shape=(1, 8, 8), seed=0, hidden=[16])
    meta = CheckpointMeta(model="mlp", model_kwargs={"hidden": [16]}, data="digits")
    return save_checkpoint(model, tmp_path / "m.safetensors", metadata=meta.to_metadata())


def _with_meta(tmp_path, **fields):
    model = build_model("mlp", input_shape=(1, 8, 8), seed=0)
    return save_checkpoint(model, tmp_path / "x.safetensors", metadata=CheckpointMeta(**fields).to_metadata())


def test_stored_names_are_used_when_built_in(checkpoint):
    recipe = Recipe.from_checkpoint(checkpoint)
    assert (recipe.model, recipe.model_kwargs, recipe.data) == ("mlp", {"hidden": [16]}, "digits")
    assert recipe.split == "train"
    assert Recipe.from_checkpoint(None) == Recipe(model="mlp", data="digits")  # no file: the defaults


def test_overrides_win_over_stored_names(checkpoint):
    recipe = Recipe.from_checkpoint(checkpoint, model="cnn", data="synthetic-classification", split="test",
                                    subset=10, loss="mse", bn="batch")
    assert (recipe.model, recipe.model_kwargs, recipe.data) == ("cnn", {}, "synthetic-classification")
    assert (recipe.split, recipe.subset, recipe.loss, recipe.bn) == ("test", 10, "mse", "batch")
    assert Recipe.from_checkpoint(checkpoint, model_kwargs={"hidden": [8]}).model_kwargs == {"hidden": [8]}
    assert Recipe.from_checkpoint(checkpoint, model="mlp").model_kwargs == {}  # a model given: the options given
    # None: not given
    assert Recipe.from_checkpoint(checkpoint, model=None, data=None) == Recipe.from_checkpoint(checkpoint)


@pytest.mark.parametrize("field, flag", [("model", "--model"), ("data", "--data")])
def test_an_import_string_in_the_metadata_is_refused_naming_the_field_and_the_flag(tmp_path, field, flag):
    path = _with_meta(tmp_path, **{field: "evil.module:f"})
    what = "model" if field == "model" else "data set"
    with pytest.raises(ConfigError, match=f"names the {what} 'evil.module:f', which is not built in; .*never imports "
                                          f"code .* pass {flag} evil.module:f explicitly"):
        Recipe.from_checkpoint(path)
    assert getattr(Recipe.from_checkpoint(path, **{field: "mlp" if field == "model" else "digits"}), field)


@pytest.mark.parametrize("field", ["model", "data", "loss"])
def test_an_import_string_in_run_json_is_refused_unless_not_read(field):
    info = {"model": "mlp", "data": "digits", "loss": "cross_entropy", field: "evil.module:f"}
    with pytest.raises(ConfigError, match=f"run/run.json names the .*'evil.module:f'.* pass {field}= evil.module:f"):
        Recipe.from_run(info, where="run")
    assert getattr(Recipe.from_run(info, read=tuple(n for n in ("model", "data", "loss") if n != field)), field) is None


def test_a_recipe_is_frozen_and_keeps_its_own_options():
    options = {"hidden": [16]}
    recipe = Recipe(model="mlp", model_kwargs=options)
    options["hidden"] = [32]
    assert recipe.model_kwargs == {"hidden": [16]}
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.split = "test"


def test_equal_recipes_are_one_reuse_key(checkpoint):
    a, b = Recipe.from_checkpoint(checkpoint), Recipe.from_checkpoint(checkpoint)
    assert a == b and Recipe(**a.as_dict()) == a
    for change in ({"split": "test"}, {"subset": 5}, {"seed": 1}, {"bn": "batch"}, {"loss": "mse"},
                   {"model_kwargs": {"hidden": [8]}}, {"units": "samples"}, {"output_key": "logits"}):
        assert dataclasses.replace(a, **change) != a, change


def test_a_runs_recipe_equals_its_checkpoints(tmp_path):
    data = (subset(load_dataset("digits", "train"), 32), subset(load_dataset("digits", "test"), 16))
    run = train("mlp", data, epochs=1, batch_size=16, seed=0, out=tmp_path / "run", model_kwargs={"hidden": [4]},
                progress=False)
    from_run = Recipe.from_run(run.out)
    assert (from_run.model, from_run.model_kwargs, from_run.data) == ("mlp", {"hidden": [4]}, "digits")
    # a checkpoint's metadata does not record the loss (the run's does); the rest is the same
    for path in run.checkpoints:
        assert Recipe.from_checkpoint(path, loss=from_run.loss) == from_run


def test_the_evaluator_of_a_recipe_records_it(checkpoint):
    recipe = Recipe.from_checkpoint(checkpoint, split="test", subset=50, seed=2)
    ev = recipe.evaluator(checkpoint, device="cpu", threads=1)
    meta = ev.meta()
    assert ev.recipe == recipe and meta["model"]["kwargs"] == {"hidden": [16]} and meta["model"]["name"] == "mlp"
    assert meta["data"]["split"] == "test" and meta["data"]["subset"] == {"of": 450, "seed": 2}
    assert meta["checkpoint"]["path"] == str(checkpoint) and ev.plan.threads == 1 and ev.loss_name == "cross_entropy"
    with pytest.raises(ConfigError, match="unknown plan option 'batch'; valid: device, dtype"):
        recipe.evaluator(checkpoint, batch=4)


def test_a_plan_is_checked_and_taken_as_a_dict():
    assert Plan.of({"device": "cpu", "threads": 2}) == Plan(device="cpu", threads=2) and Plan.of(None) == Plan()
    for bad, message in (({"vectorize": "yes"}, "vectorize must be one of"), ({"batch_size": 0}, "batch_size"),
                         ({"dtype": "float32"}, "dtype must be a floating torch dtype")):
        with pytest.raises(ValueError, match=message):
            Plan(**bad)
