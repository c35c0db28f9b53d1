import sys
import types

import pytest
import torch
from torch import nn

from losslens.core.models import MODEL_NAMES, build_model
from losslens.errors import ConfigError


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 28, 28)])
def test_builtin_forward_shapes(name, shape):
    model = build_model(name, input_shape=shape, num_classes=7, seed=0).eval()
    out = model(torch.randn(5, *shape))
    assert out.shape == (5, 7)
    assert torch.isfinite(out).all()


def test_mlp_first_parametrized_module_is_linear_on_flat_input():
    model = build_model("mlp", input_shape=(1, 8, 8), hidden=(16,), seed=0)
    first = next(m for m in model.modules() if any(True for _ in m.parameters(recurse=False)))
    assert isinstance(first, nn.Linear) and first.in_features == 64 and first.out_features == 16
    assert [type(m) for m in model] == [nn.Flatten, nn.Linear, nn.ReLU, nn.Linear]


def test_mlp_takes_flat_features():
    model = build_model("mlp", input_shape=(20,), num_classes=4, seed=0)
    assert model(torch.randn(3, 20)).shape == (3, 4)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_seed_gives_identical_init_and_leaves_global_rng(name):
    state = torch.random.get_rng_state()
    a = build_model(name, seed=3).state_dict()
    b = build_model(name, seed=3).state_dict()
    c = build_model(name, seed=4).state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


@pytest.mark.parametrize("blocks", [1, 2])
def test_resnet_noskip_has_same_parameters_and_differs_in_output(blocks):
    skip = build_model("resnet", seed=0, blocks_per_stage=blocks)
    noskip = build_model("resnet-noskip", seed=0, blocks_per_stage=blocks)
    a, b = skip.state_dict(), noskip.state_dict()
    assert list(a) == list(b)
    assert all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)
    assert any(isinstance(m, nn.BatchNorm2d) for m in skip.modules())
    x = torch.randn(4, 1, 8, 8)
    assert not torch.allclose(skip.eval()(x), noskip.eval()(x))


def test_resnet_blocks_per_stage_adds_blocks():
    n1 = sum(p.numel() for p in build_model("resnet", blocks_per_stage=1).parameters())
    n2 = sum(p.numel() for p in build_model("resnet", blocks_per_stage=2).parameters())
    assert n2 > n1


def test_unknown_name_lists_builtins():
    with pytest.raises(ConfigError, match="unknown model 'vgg'.*mlp, cnn, resnet, resnet-noskip"):
        build_model("vgg")


def test_unknown_option_lists_valid_ones():
    with pytest.raises(ConfigError, match="no option width.*hidden"):
        build_model("mlp", width=3)


@pytest.mark.parametrize("name, options, message", [
    ("mlp", {"hidden": [10**12]}, r"hidden=\[1000000000000\] would have 7.5e\+13 parameters, more than the 2e\+09"),
    ("mlp", {"hidden": [1e12]}, "hidden must be a list of positive layer widths"),
    ("mlp", {"hidden": [True]}, "hidden must be a list of positive layer widths"),
    ("resnet", {"blocks_per_stage": 10**9}, r"blocks_per_stage=1000000000 would have 9.72e\+13 parameters"),
    ("resnet-noskip", {"blocks_per_stage": "2"}, "blocks_per_stage must be an integer of at least 1, got '2'"),
    ("resnet", {"blocks_per_stage": 0}, "blocks_per_stage must be an integer of at least 1"),
])
def test_options_are_checked_before_anything_is_allocated(name, options, message):
    with pytest.raises(ConfigError, match=message):
        build_model(name, input_shape=(1, 8, 8), **options)


def test_options_from_a_checkpoints_metadata_give_one_line(tmp_path, capsys):
    import json

    from losslens.cli.main import main
    from losslens.core.checkpoints import save_checkpoint

    path = save_checkpoint(build_model("mlp", input_shape=(64,)), tmp_path / "m.safetensors",
                           metadata={"model": "mlp", "model_kwargs": json.dumps({"hidden": [10**12]})})
    assert main(["evaluate", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "hidden=[1000000000000] would have" in err


def test_image_models_need_image_inputs():
    with pytest.raises(ConfigError, match=r"\(C, H, W\).*\[20\]"):
        build_model("cnn", input_shape=(20,))


@pytest.fixture
def user_module(monkeypatch):
    mod = types.ModuleType("losslens_test_user_models")
    mod.tiny = lambda: nn.Linear(3, 2)
    mod.not_a_module = lambda: "nope"
    mod.CONSTANT = 3
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    return mod.__name__


def test_import_string_factory(user_module):
    a = build_model(f"{user_module}:tiny", seed=1)
    b = build_model(f"{user_module}:tiny", seed=1)
    assert isinstance(a, nn.Linear)
    assert torch.equal(a.weight, b.weight)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("no_such_pkg_xyz.models:net", "module 'no_such_pkg_xyz.models' not found"),
        ("{mod}:missing", "has no attribute 'missing'"),
        ("{mod}:not_a_module", "returned a str, not an nn.Module"),
        ("{mod}:CONSTANT", r"is not callable \(type int\)"),
    ],
)
def test_import_string_errors(user_module, spec, message):
    with pytest.raises(ConfigError, match=message):
        build_model(spec.format(mod=user_module))


def test_import_string_takes_no_options(user_module):
    with pytest.raises(ConfigError, match="takes no options"):
        build_model(f"{user_module}:tiny", hidden=(3,))
