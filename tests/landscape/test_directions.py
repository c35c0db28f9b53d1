"""Tests of losslens.landscape.directions against ground truth: norms, seeds, Hessian eigenvectors."""

import numpy as np
import pytest
import torch
from torch import nn

from losslens.core.evaluator import Evaluator
from losslens.core.plan import Plan
from losslens.core.params import ParameterSpace
from losslens.errors import LosslensError
from losslens.landscape.directions import Directions, between, hessian_directions, random_directions


def conv_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 5)
    )


@pytest.fixture
def space_w0():
    model = conv_net()
    space = ParameterSpace(model)
    return space, space.flatten(model)


def parts(space, vec):
    return space.unflatten(vec)


def test_filter_normalization_gives_each_filter_the_weights_norm(space_w0):
    space, w0 = space_w0
    dirs = random_directions(space, w0, 2, normalization="filter", seed=1)
    assert dirs.vectors.shape == (2, space.size) and dirs.vectors.dtype == torch.float32
    assert dirs.kind == "random" and len(dirs) == 2
    w = parts(space, w0)
    checked = 0
    for row in dirs.vectors:
        for name, d in parts(space, row).items():
            if d.dim() > 1:
                torch.testing.assert_close(d.flatten(1).norm(dim=1), w[name].flatten(1).norm(dim=1), rtol=1e-6, atol=0)
                checked += d.shape[0]
            else:  # conv bias, BN weight and bias, linear bias: ignored
                assert torch.all(d == 0), name
    assert checked == 2 * (3 + 5)


def test_filter_ignore_none_copies_the_one_dimensional_weights(space_w0):
    space, w0 = space_w0
    dirs = random_directions(space, w0, 2, normalization="filter", ignore="none")
    w = parts(space, w0)
    for row in dirs.vectors:
        for name, d in parts(space, row).items():
            if d.dim() <= 1:
                assert torch.equal(d, w[name])


def test_layer_and_model_normalization(space_w0):
    space, w0 = space_w0
    w = parts(space, w0)
    layer = random_directions(space, w0, 2, normalization="layer", seed=3)
    for row in layer.vectors:
        for name, d in parts(space, row).items():
            expected = torch.zeros(()) if d.dim() <= 1 else w[name].norm()
            torch.testing.assert_close(d.norm(), expected, rtol=1e-6, atol=0)
    layer_all = random_directions(space, w0, 1, normalization="layer", ignore="none")
    for name, d in parts(space, layer_all.vectors[0]).items():
        torch.testing.assert_close(d.norm(), w[name].norm(), rtol=1e-6, atol=0)
    model = random_directions(space, w0, 3, normalization="model", seed=3)
    torch.testing.assert_close(model.vectors.norm(dim=1), w0.norm().expand(3), rtol=1e-6, atol=0)
    bias_mask = space.mask(lambda s: len(s.shape) <= 1)
    assert torch.all(model.vectors[:, bias_mask] == 0)


def test_none_is_the_raw_seeded_gaussian(space_w0):
    space, w0 = space_w0
    raw = torch.randn(2, space.size, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    dirs = random_directions(space, w0, 2, normalization="none", ignore="none", seed=5)
    assert torch.equal(dirs.vectors, raw.float())
    dirs64 = random_directions(space, w0.double(), 2, normalization="none", ignore="none", seed=5)
    assert dirs64.vectors.dtype == torch.float64 and torch.equal(dirs64.vectors, raw)


def test_seeds_and_global_rng(space_w0):
    space, w0 = space_w0
    state = torch.get_rng_state()
    a = random_directions(space, w0, seed=7)
    b = random_directions(space, w0, seed=7)
    c = random_directions(space, w0, seed=8)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.vectors, b.vectors) and a.meta == b.meta
    assert not torch.allclose(a.vectors, c.vectors)


def test_directions_are_not_orthogonalized_and_cosines_are_recorded(space_w0):
    space, w0 = space_w0
    dirs = random_directions(space, w0, 2, seed=0)
    cos = dirs.cosine()
    v = dirs.vectors.double()
    expected = (v[0] @ v[1]) / (v[0].norm() * v[1].norm())
    torch.testing.assert_close(cos[0, 1], expected)
    torch.testing.assert_close(cos.diagonal(), torch.ones(2, dtype=torch.float64))
    assert cos[0, 1] != 0
    assert np.allclose(dirs.meta["cosine"], cos.numpy(), rtol=1e-6)


def test_zero_filter_gets_a_zero_direction():
    model = conv_net()
    with torch.no_grad():
        model[0].weight[1].zero_()
    space = ParameterSpace(model)
    dirs = random_directions(space, space.flatten(model), 2)
    assert torch.all(parts(space, dirs.vectors)["0.weight"][:, 1] == 0)
    assert torch.all(torch.isfinite(dirs.vectors))


def test_buffers_in_the_space_are_ignored_like_biases():
    model = conv_net()
    space = ParameterSpace(model, include_buffers=True)
    dirs = random_directions(space, space.flatten(model), 1)
    d = parts(space, dirs.vectors[0])
    assert torch.all(d["1.running_mean"] == 0) and torch.all(d["1.running_var"] == 0)


@pytest.mark.parametrize(
    "kwargs, valid",
    [({"normalization": "filer"}, "normalization must be one of filter, layer, model, none \\(got 'filer'\\)"),
     ({"ignore": "bias"}, "ignore must be one of biasbn, none \\(got 'bias'\\)")],
)
def test_unknown_options_list_the_valid_ones(space_w0, kwargs, valid):
    space, w0 = space_w0
    with pytest.raises(ValueError, match=valid):
        random_directions(space, w0, **kwargs)


def test_bad_arguments(space_w0):
    space, w0 = space_w0
    with pytest.raises(ValueError, match=rf"w0 .*\({space.size},\).*\[{space.size - 1}\]"):
        random_directions(space, w0[:-1])
    with pytest.raises(ValueError, match=r"n must be an integer >= 1 \(got 0\)"):
        random_directions(space, w0, 0)
    with pytest.raises(ValueError, match="kind"):
        Directions(torch.zeros(1, 3), "randm")


def test_between():
    w_a, w_b = torch.randn(10), torch.randn(10)
    dirs = between(w_a, w_b, names=("a.safetensors", "b.safetensors"))
    assert dirs.kind == "between" and len(dirs) == 1
    torch.testing.assert_close(dirs.vectors[0], w_b - w_a)
    assert dirs.meta["norm"] == pytest.approx(float((w_b.double() - w_a.double()).norm()))
    assert dirs.meta["endpoints"] == ["a.safetensors", "b.safetensors"]
    with pytest.raises(ValueError, match=r"w_b .*\(10,\).*\[9\]"):
        between(w_a, w_b[:9])


def test_save_load_round_trip(tmp_path, space_w0):
    space, w0 = space_w0
    for dirs in (random_directions(space, w0, 2, seed=4),):
        path = dirs.save(tmp_path / f"{dirs.kind}.h5")
        back = Directions.load(path)
        assert torch.equal(back.vectors, dirs.vectors) and back.vectors.dtype == dirs.vectors.dtype
        assert back.kind == dirs.kind and back.meta == dirs.meta
    with pytest.raises(LosslensError, match="no such file"):
        Directions.load(tmp_path / "missing.h5")


def test_hessian_directions_are_top_eigenvectors():
    pytest.importorskip("losslens.curvature.hessian")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    ev = Evaluator(model, "cross_entropy", (x, y), metrics=(), plan=Plan(dtype=torch.float64))
    dirs = hessian_directions(ev, k=2)
    assert dirs.kind == "hessian" and dirs.vectors.dtype == torch.float64
    H = ev.hvp(ev.w0, torch.eye(ev.space.size, dtype=torch.float64))  # dense Hessian, (P, P)
    top = torch.linalg.eigvalsh((H + H.T) / 2).flip(0)[:2]
    values = torch.tensor(dirs.meta["eigenvalues"], dtype=torch.float64)
    torch.testing.assert_close(values, top, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(dirs.vectors.norm(dim=1), torch.ones(2, dtype=torch.float64))
    Hd = ev.hvp(ev.w0, dirs.vectors)
    torch.testing.assert_close(Hd, values[:, None] * dirs.vectors, rtol=1e-5, atol=1e-7)
    again = hessian_directions(ev, k=2)
    assert torch.allclose(again.vectors, dirs.vectors, atol=1e-8)
    for seed in range(1, 6):  # another start vector, the same directions: the sign is fixed
        other = hessian_directions(ev, k=2, seed=seed)
        assert torch.allclose(other.vectors, dirs.vectors, atol=1e-6)
    largest = dirs.vectors.gather(1, dirs.vectors.abs().argmax(dim=1, keepdim=True))
    assert (largest > 0).all()


def test_random_directions_refuse_a_non_finite_origin():
    torch.manual_seed(0)
    space = ParameterSpace(nn.Linear(3, 2))
    w0 = torch.ones(space.size)
    w0[0] = float("inf")
    with pytest.raises(ValueError, match="w0 holds 1 NaN or infinite entries"):
        random_directions(space, w0)


def test_random_directions_name_a_space_that_is_not_one():
    with pytest.raises(TypeError, match="space must be a ParameterSpace .*got str"):
        random_directions("space", torch.ones(3))
