import sys
import types

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from losslens.core.data import DATASET_NAMES, TensorData, as_tensors, load_dataset, subset
from losslens.errors import ConfigError


def test_digits_split_sizes_shapes_and_scaling():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert (len(train), len(test)) == (1347, 450)
    assert train.x.shape == (1347, 1, 8, 8) and train.x.dtype == torch.float32
    assert train.y.shape == (1347,) and train.y.dtype == torch.int64
    assert train.x.min() == 0 and train.x.max() == 1
    assert (train.task, train.num_classes, train.input_shape) == ("classification", 10, (1, 8, 8))
    assert (train.name, train.split, test.split) == ("digits", "train", "test")


def test_digits_split_is_stratified_disjoint_and_complete():
    from sklearn.datasets import load_digits

    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    # every class keeps about a quarter of its samples in the test split
    counts_test = torch.bincount(test.y, minlength=10)
    counts_all = counts_test + torch.bincount(train.y, minlength=10)
    assert ((counts_test.double() / counts_all - 0.25).abs() < 0.01).all()
    # together the two splits are exactly the 1797 digits, each once
    all_x = torch.from_numpy(load_digits().data / 16).float().reshape(-1, 64)
    both = torch.cat([train.x.reshape(-1, 64), test.x.reshape(-1, 64)])
    assert sorted(map(tuple, both.tolist())) == sorted(map(tuple, all_x.tolist()))


def test_digits_is_deterministic():
    a, b = load_dataset("digits", "test"), load_dataset("digits", "test")
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


def test_synthetic_sets():
    cls = load_dataset("synthetic-classification", "train")
    assert cls.task == "classification" and cls.x.dim() == 2 and cls.num_classes == int(cls.y.max()) + 1
    reg = load_dataset("synthetic-regression", "test")
    assert reg.task == "regression" and reg.num_classes is None
    assert reg.y.dtype == torch.float32 and reg.y.shape == (len(reg), 1) and reg.num_outputs == 1
    # linear targets: least squares explains nearly all of the variance
    x1 = torch.cat([reg.x, torch.ones(len(reg), 1)], 1).double()
    resid = reg.y.double() - x1 @ torch.linalg.lstsq(x1, reg.y.double()).solution
    assert resid.var() < 0.05 * reg.y.double().var()


def test_synthetic_seed_changes_data_deterministically():
    a = load_dataset("synthetic-regression", seed=0)
    assert torch.equal(a.x, load_dataset("synthetic-regression", seed=0).x)
    assert not torch.equal(a.x, load_dataset("synthetic-regression", seed=1).x)


def test_bad_names_list_choices():
    with pytest.raises(ConfigError, match=r"split must be one of train, test \(got 'val'\)"):
        load_dataset("digits", "val")
    with pytest.raises(ConfigError, match="unknown data set 'mnist'.*" + ", ".join(DATASET_NAMES)):
        load_dataset("mnist")


def test_subset_is_deterministic_ordered_and_full_when_large():
    data = load_dataset("digits", "test")
    a, b, c = subset(data, 50, seed=1), subset(data, 50, seed=1), subset(data, 50, seed=2)
    assert len(a) == 50 and torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)
    # the subset keeps the original order: its rows appear in data in increasing positions
    flat = data.x.reshape(len(data), -1)
    positions = [int((flat == row).all(1).nonzero()[0]) for row in a.x.reshape(50, -1)]
    assert positions == sorted(positions)
    assert subset(data, None) is data and subset(data, 10_000) is data
    with pytest.raises(ConfigError):
        subset(data, 0)


def test_as_tensors_accepts_tensordata_and_the_other_forms():
    data = load_dataset("digits", "test")
    x, y = as_tensors(data)
    assert x is data.x and y is data.y
    for form in ((x, y), TensorDataset(x, y), DataLoader(TensorDataset(x, y), batch_size=64)):
        x2, y2 = as_tensors(form)
        assert torch.equal(x2, x) and torch.equal(y2, y)
    with pytest.raises(ConfigError, match="cannot use int as data"):
        as_tensors(3)


@pytest.fixture
def user_data(monkeypatch):
    mod = types.ModuleType("losslens_test_user_data")
    x = torch.randn(12, 3)
    mod.pair = lambda: (x, torch.arange(12) % 3)
    mod.regression = lambda: TensorDataset(x, x.sum(1))
    mod.by_split = lambda split: DataLoader(TensorDataset(x, torch.full((12,), 0 if split == "train" else 1)))
    mod.broken = lambda: "not data"
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    return mod.__name__


def test_user_dataset_by_import_string(user_data):
    cls = load_dataset(f"{user_data}:pair", "train")
    assert isinstance(cls, TensorData)
    assert (cls.task, cls.num_classes, cls.input_shape, len(cls)) == ("classification", 3, (3,), 12)
    reg = load_dataset(f"{user_data}:regression")
    assert reg.task == "regression" and reg.num_classes is None and reg.y.shape == (12, 1)
    assert int(load_dataset(f"{user_data}:by_split", "test").y[0]) == 1
    assert int(load_dataset(f"{user_data}:by_split", "train").y[0]) == 0


def test_user_dataset_errors(user_data):
    with pytest.raises(ConfigError, match="returned unusable data"):
        load_dataset(f"{user_data}:broken")
    with pytest.raises(ConfigError, match="has no attribute 'nothing'"):
        load_dataset(f"{user_data}:nothing")
    with pytest.raises(ConfigError, match="module 'no_such_pkg_xyz' not found"):
        load_dataset("no_such_pkg_xyz:data")


def test_a_function_with_required_arguments_is_refused_before_it_is_called():
    with pytest.raises(ConfigError, match=r"'os:system' cannot be called with no arguments .*'command'"):
        load_dataset("os:system")
