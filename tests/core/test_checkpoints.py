import argparse
import json
import pickle

import pytest
import torch
from safetensors.torch import save_file, save_model
from torch import nn

from losslens.core.checkpoints import WRAPPER_KEYS, load_checkpoint, load_metadata, load_model, save_checkpoint
from losslens.core.models import build_model
from losslens.errors import CheckpointError


def make_model(width: int = 5) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, 3))
    model.train()(torch.randn(8, 4))  # non-trivial running statistics and num_batches_tracked = 1
    return model


def assert_same(state: dict, reference: dict) -> None:
    assert list(state) == list(reference)
    for k, v in reference.items():
        assert state[k].dtype == v.dtype and torch.equal(state[k], v), k


class TiedNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(6, 4)
        self.head = nn.Linear(4, 6, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, x):
        return self.head(self.embed(x))


class Marker:
    """Unpickling this creates a file: stands in for a payload that runs a command."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


# -- formats that load ------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True])
def test_raw_state_dict(tmp_path, legacy):
    model = make_model()
    path = tmp_path / "raw.pt"
    torch.save(model.state_dict(), path, _use_new_zipfile_serialization=not legacy)
    assert_same(load_checkpoint(path), model.state_dict())
    assert_same(load_checkpoint(path, model), model.state_dict())


@pytest.mark.parametrize("key", WRAPPER_KEYS)
def test_wrapper_keys(tmp_path, key):
    model = make_model()
    path = tmp_path / "wrapped.pth"
    torch.save({key: model.state_dict(), "epoch": 7, "optimizer": {"lr": 0.1}, "note": "x"}, path)
    assert_same(load_checkpoint(path, model), model.state_dict())


def test_lightning_checkpoint_prefix_stripped_with_model(tmp_path):
    model = make_model()
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    path = tmp_path / "epoch=3-step=100.ckpt"
    torch.save({"epoch": 3, "global_step": 100, "pytorch-lightning_version": "2.4.0", "state_dict": state,
                "hyper_parameters": {"lr": 0.01, "hidden": [5]}, "optimizer_states": [{"state": {}}]}, path)
    assert_same(load_checkpoint(path, model), model.state_dict())
    assert list(load_checkpoint(path)) == list(state)  # without a model there is nothing to match


def test_lightning_checkpoint_with_other_submodules(tmp_path):
    model = make_model()
    state = {f"net.{k}": v for k, v in model.state_dict().items()}
    state["criterion.weight"] = torch.ones(3)
    path = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": state}, path)
    assert_same(load_checkpoint(path, model), model.state_dict())


def test_two_prefixes_that_both_fit_are_refused(tmp_path):
    model = make_model()
    state = {f"{p}.{k}": v for p in ("student", "teacher") for k, v in model.state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "two.ckpt")
    with pytest.raises(CheckpointError, match="'student.', 'teacher.'.*cannot tell"):
        load_checkpoint(tmp_path / "two.ckpt", model)


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod.", "_orig_mod.module."])
def test_wrapper_prefixes_stripped(tmp_path, prefix):
    model = make_model()
    path = tmp_path / "ddp.pt"
    torch.save({"model_state_dict": {prefix + k: v for k, v in model.state_dict().items()}}, path)
    assert_same(load_checkpoint(path), model.state_dict())
    assert_same(load_checkpoint(path, model), model.state_dict())


def test_compiled_submodule_inside_lightning(tmp_path):
    model = make_model()
    path = tmp_path / "compiled.ckpt"
    torch.save({"state_dict": {f"model._orig_mod.{k}": v for k, v in model.state_dict().items()}}, path)
    assert_same(load_checkpoint(path, model), model.state_dict())


@pytest.mark.parametrize("name", ["weights.safetensors", "weights.bin"])
def test_safetensors(tmp_path, name):
    model = make_model()
    path = tmp_path / name  # found by its content too, whatever its name
    save_file(model.state_dict(), str(path))
    assert_same(load_checkpoint(path, model), model.state_dict())


def test_load_does_not_change_the_model(tmp_path):
    model = make_model()
    other = make_model(5)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    torch.save(other.state_dict(), tmp_path / "other.pt")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = load_checkpoint(tmp_path / "other.pt", model)
    assert_same(model.state_dict(), before)
    assert model.training and not torch.equal(state["0.weight"], model[0].weight)


def test_unsafe_pickle_loads_trusted_objects(tmp_path):
    model = make_model()
    path = tmp_path / "with_args.pt"
    torch.save({"state_dict": model.state_dict(), "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(CheckpointError, match=r"arbitrary Python objects \(argparse.Namespace\)"):
        load_checkpoint(path, model)
    assert_same(load_checkpoint(path, model, unsafe_pickle=True), model.state_dict())


def test_pickled_module_with_unsafe_pickle(tmp_path):
    model = make_model()
    torch.save(model, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="unsafe_pickle=True"):
        load_checkpoint(tmp_path / "model.pt")
    assert_same(load_checkpoint(tmp_path / "model.pt", model, unsafe_pickle=True), model.state_dict())


# -- save_checkpoint / load_metadata ------------------------------------------------------------


def test_save_round_trip_with_metadata_and_integer_buffers(tmp_path):
    model = make_model()
    path = save_checkpoint(model, tmp_path / "sub" / "ck.safetensors", metadata={"epoch": "2", "step": "40"})
    state = load_checkpoint(path, model)
    assert_same(state, model.state_dict())
    assert state["1.num_batches_tracked"].dtype == torch.int64 and int(state["1.num_batches_tracked"]) == 1
    assert load_metadata(path) == {"epoch": "2", "step": "40"}


def test_save_tied_and_non_contiguous_tensors(tmp_path):
    model = TiedNet()
    path = save_checkpoint(model, tmp_path / "tied.safetensors")
    assert_same(load_checkpoint(path, model), model.state_dict())
    t = torch.arange(12.0).reshape(3, 4)
    save_checkpoint({"t": t.T, "row": t[1]}, tmp_path / "views.safetensors")
    state = load_checkpoint(tmp_path / "views.safetensors")
    assert torch.equal(state["t"], t.T) and torch.equal(state["row"], t[1])


def test_tied_tensor_stored_once_is_filled_in(tmp_path):
    model = TiedNet()
    save_model(model, str(tmp_path / "hf.safetensors"))  # keeps one of the two tied names
    assert_same(load_checkpoint(tmp_path / "hf.safetensors", model), model.state_dict())


def test_save_rejects_bad_metadata_and_non_tensors(tmp_path):
    with pytest.raises(CheckpointError, match="strings to strings"):
        save_checkpoint(make_model(), tmp_path / "a.safetensors", metadata={"epoch": 2})
    with pytest.raises(CheckpointError, match="'x'.*not a tensor"):
        save_checkpoint({"x": 3}, tmp_path / "b.safetensors")


def test_load_metadata_of_a_pickle_is_an_error(tmp_path):
    torch.save(make_model().state_dict(), tmp_path / "raw.pt")
    with pytest.raises(CheckpointError, match="raw.pt: not a safetensors file"):
        load_metadata(tmp_path / "raw.pt")


# -- bad checkpoints ------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="nothere.pt: no such file"):
        load_checkpoint(tmp_path / "nothere.pt")


def test_directory(tmp_path):
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize(
    "name, content",
    [
        ("garbage.pt", bytes(range(256)) * 8),
        ("config.json", json.dumps({"lr": 0.1, "layers": [1, 2]}).encode()),
        ("empty.pt", b""),
    ],
)
def test_not_a_checkpoint(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(CheckpointError, match=f"{name}: not a checkpoint"):
        load_checkpoint(tmp_path / name)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_truncated(tmp_path, suffix):
    full = tmp_path / f"full{suffix}"
    if suffix == ".pt":
        torch.save(make_model().state_dict(), full)
    else:
        save_checkpoint(make_model(), full)
    data = full.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.(pt|safetensors): not a (valid safetensors file|checkpoint)"):
        load_checkpoint(cut)


def test_pickle_without_tensors(tmp_path):
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "hparams.pt")
    with pytest.raises(CheckpointError, match="hparams.pt: holds no state dict: a dict with keys epoch, lr"):
        load_checkpoint(tmp_path / "hparams.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="holds a list, not a state dict"):
        load_checkpoint(tmp_path / "list.pt")


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    model = make_model()
    state = dict(model.state_dict())
    del state["0.weight"], state["3.bias"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "keys.pt")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "keys.pt", model)
    message = str(info.value)
    assert "keys.pt" in message
    assert "2 missing key(s): 0.weight, 3.bias" in message
    assert "1 unexpected key(s): extra.weight" in message


def test_long_key_lists_are_truncated(tmp_path):
    model = make_model()
    torch.save({f"junk{i}": torch.zeros(1) for i in range(25)}, tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="25 unexpected key\\(s\\): junk0, .*junk9 and 15 more"):
        load_checkpoint(tmp_path / "junk.pt", model)


def test_shape_mismatch_names_key_and_both_shapes(tmp_path):
    torch.save(make_model(width=7).state_dict(), tmp_path / "wide.pt")
    with pytest.raises(CheckpointError, match=r"wide.pt.*shape mismatch for '0.weight': the model expects \[5, 4\], "
                       r"the checkpoint has \[7, 4\]"):
        load_checkpoint(tmp_path / "wide.pt", make_model(width=5))


# -- unsafe pickles -------------------------------------------------------------------------------


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, writer):
    marker = tmp_path / "pwned"
    payload = {"state_dict": make_model().state_dict(), "x": Marker(marker)}
    path = tmp_path / "evil.pt"
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    assert not marker.exists()
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, make_model())
    message = str(info.value)
    assert "evil.pt" in message and "arbitrary Python objects" in message
    assert "unsafe_pickle=True" in message and "--unsafe-pickle" in message and "only if you trust the file" in message
    assert not marker.exists()


def test_load_model_builds_the_model_with_the_checkpoint_weights(tmp_path):
    trained = build_model("mlp", input_shape=(1, 8, 8), num_classes=10, seed=3)
    save_checkpoint(trained, tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors", "mlp", input_shape=(1, 8, 8), num_classes=10, seed=4)
    for (name, a), (_, b) in zip(trained.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    with pytest.raises(CheckpointError, match="shape"):
        load_model(tmp_path / "m.safetensors", "mlp", input_shape=(1, 8, 8), num_classes=3)


# -- tied weights (GPT-2's lm_head.weight is transformer.wte.weight) ---------------------------


def test_tied_tensor_is_written_once_as_save_model_writes_it(tmp_path):
    from safetensors.torch import load_file, load_model as st_load_model

    model = TiedNet()
    save_checkpoint(model, tmp_path / "ours.safetensors")
    save_model(model, str(tmp_path / "theirs.safetensors"))
    assert set(load_file(tmp_path / "ours.safetensors")) == set(load_file(tmp_path / "theirs.safetensors")) == {
        "embed.weight"}
    other = TiedNet()
    nn.init.zeros_(other.embed.weight)
    st_load_model(other, tmp_path / "ours.safetensors")  # strict: the duplicate name would be "unexpected"
    assert torch.equal(other.head.weight, model.head.weight)
    assert_same(load_checkpoint(tmp_path / "ours.safetensors", model), model.state_dict())


def test_a_missing_key_without_a_tie_partner_is_still_an_error(tmp_path):
    untied = nn.ModuleDict({"embed": nn.Embedding(6, 4), "head": nn.Linear(4, 6, bias=False)})
    save_model(TiedNet(), str(tmp_path / "tied.safetensors"))  # holds embed.weight only
    with pytest.raises(CheckpointError, match=r"1 missing key\(s\): head.weight"):
        load_checkpoint(tmp_path / "tied.safetensors", untied)


class NextToken(nn.Module):
    """A tiny GPT-2 (tied embedding and head) predicting the token after a sequence."""

    def __init__(self, seed):
        import transformers

        super().__init__()
        torch.manual_seed(seed)
        config = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=30, n_positions=8,
                                         bos_token_id=0, eos_token_id=0)
        self.lm = transformers.GPT2LMHeadModel(config).eval()

    def forward(self, x):
        return self.lm(input_ids=x).logits[:, -1]


def test_gpt2_trained_by_the_trainer_and_saved_by_the_user_loads_with_equal_outputs(tmp_path):
    pytest.importorskip("transformers")
    from safetensors.torch import load_model as st_load_model

    from losslens.core.data import TensorData
    from losslens.core.train import train

    model = NextToken(seed=0)
    assert model.lm.lm_head.weight is model.lm.transformer.wte.weight
    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(1, 30, (8, 5), generator=g), torch.randint(0, 30, (8,), generator=g)
    data = TensorData(x, y, "tokens", "train", "classification", 30, (5,))
    run = train(model, data, optimizer="sgd", lr=0.5, epochs=1, batch_size=8, out=tmp_path / "run", progress=False)
    trained = NextToken(seed=1)
    trained.load_state_dict(load_checkpoint(run.checkpoints[-1], trained))
    by_safetensors = NextToken(seed=2)
    st_load_model(by_safetensors, run.checkpoints[-1])
    assert torch.equal(trained(x), by_safetensors(x)) and not torch.equal(trained(x), model(x))  # one step taken
    assert trained.lm.lm_head.weight is trained.lm.transformer.wte.weight

    save_model(trained, str(tmp_path / "user.safetensors"))  # the user's file: one of the tied names
    loaded = NextToken(seed=3)
    loaded.load_state_dict(load_checkpoint(tmp_path / "user.safetensors", loaded))
    assert torch.equal(loaded(x), trained(x))


def test_save_checkpoint_names_what_is_neither_model_nor_state_dict(tmp_path):
    from losslens.errors import ConfigError

    with pytest.raises(ConfigError, match="needs a model or a state dict, got str"):
        save_checkpoint("model", tmp_path / "m.safetensors")


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64])
def test_weights_that_are_not_real_floats_are_refused_not_cast(tmp_path, dtype):
    model = nn.Linear(3, 2)
    path = tmp_path / "w.safetensors"
    save_file({"weight": model.weight.detach().to(dtype), "bias": model.bias.detach()}, str(path))
    with pytest.raises(CheckpointError, match=rf"1 tensor\(s\) not of real floating point.*: weight \({dtype}\)$"):
        load_checkpoint(path, model)
    save_file({k: v.detach().half() for k, v in model.state_dict().items()}, str(path))
    assert load_checkpoint(path, model)["weight"].dtype == torch.float16  # another float: cast by the loader
