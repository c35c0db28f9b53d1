"""Tests of losslens/landscape/surface.py: exact paraboloids on the claimed lattice, the reference
tool's layout both ways, resume and its refusals, crash safety, damaged files."""

from __future__ import annotations

import inspect
import os

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from losslens.core import reuse
from losslens.core.evaluator import Evaluator
from losslens.core.plan import Plan
from losslens.core.recipe import Recipe
from losslens.core.models import build_model
from losslens.errors import LosslensError
from losslens.landscape import grid_file as gf
from losslens.landscape.directions import Directions, random_directions
from losslens.landscape.surface import Surface, surface_1d, surface_2d

X_COORDS = np.linspace(-1.0, 2.0, 7)  # nx != ny, different ranges, both holding 0
Y_COORDS = np.linspace(-0.5, 0.5, 5)


@pytest.fixture(scope="module")
def quadratic():
    """A linear model with MSE: L(w) = mean((Xw - y)^2) = L* + 0.5 (w - w*)^T A (w - w*), A = 2/N X^T X."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, 6, generator=g, dtype=torch.float64)
    y = torch.randn(40, 1, generator=g, dtype=torch.float64)
    torch.manual_seed(0)
    ev = Evaluator(nn.Linear(6, 1, bias=False), "mse", (X, y), metrics=(),
                   plan=Plan(dtype=torch.float64, device="cpu"), recipe=Recipe(split="train"))
    dirs = random_directions(ev.space, ev.w0, n=2, normalization="none", ignore="none", seed=1)
    return ev, dirs, X, y


def paraboloid(X, y, w0, D, x, yc):
    """Closed form of the loss at w0 + x[ix] d1 + y[iy] d2, as a (ny, nx) array."""
    N = len(X)
    A = 2.0 / N * X.T @ X
    w_star = torch.linalg.lstsq(X, y).solution[:, 0]
    loss_star = ((X @ w_star - y[:, 0]) ** 2).mean()
    a, b = np.meshgrid(x, yc)  # (ny, nx)
    W = w0 + torch.from_numpy(a).reshape(-1, 1) * D[0] + torch.from_numpy(b).reshape(-1, 1) * D[1]
    delta = W - w_star
    values = loss_star + 0.5 * ((delta @ A) * delta).sum(dim=1)
    return values.reshape(a.shape).numpy()


class Counting:
    """An evaluator stand-in that counts the grid points it is asked for, and can fail on call n."""

    def __init__(self, evaluator, fail_on: int | None = None):
        self._ev, self.fail_on, self.calls, self.coeffs = evaluator, fail_on, 0, []

    def __getattr__(self, name):
        return getattr(self._ev, name)

    def evaluate_affine(self, w0, D, coeffs):
        self.calls += 1
        if self.calls == self.fail_on:
            raise KeyboardInterrupt
        self.coeffs.append(coeffs.clone())
        return self._ev.evaluate_affine(w0, D, coeffs)


def test_plane_is_the_exact_paraboloid_on_the_claimed_lattice(quadratic):
    ev, dirs, X, y = quadratic
    s = surface_2d(ev, ev.w0, dirs, X_COORDS, Y_COORDS, progress=False)
    assert s.ndim == 2 and s.loss.shape == (5, 7) and s.complete  # (ny, nx)
    expected = paraboloid(X, y, ev.w0, dirs.vectors.double(), X_COORDS, Y_COORDS)
    np.testing.assert_allclose(s.loss, expected, rtol=1e-12)
    # Z[iy, ix] is at (x[ix], y[iy]): the curvatures along d1 and d2 differ, so a lattice with the axes
    # swapped would not match
    curv_x = np.diff(expected, 2, axis=1).mean() / (X_COORDS[1] - X_COORDS[0]) ** 2
    curv_y = np.diff(expected, 2, axis=0).mean() / (Y_COORDS[1] - Y_COORDS[0]) ** 2
    assert abs(curv_x - curv_y) > 0.1 * max(curv_x, curv_y)
    assert s.meta["n_points"] == 35 and s.meta["n_done"] == 35 and s.meta["n_nonfinite"] == 0
    assert s.meta["loss"] == "mse" and s.meta["seed"] == 1 and s.meta["points_per_second"] > 0
    assert s.meta["shape"] == [5, 7] and s.split == "train"


def test_grid_centre_is_the_loss_at_w0(quadratic):
    ev, dirs, _, _ = quadratic
    s = surface_2d(ev, ev.w0, dirs, X_COORDS, Y_COORDS, progress=False)
    assert s.origin_index == (2, 2)
    assert s.loss[s.origin_index] == pytest.approx(float(ev.evaluate(ev.w0).loss[0]), rel=1e-13)
    off = surface_2d(ev, ev.w0, dirs, X_COORDS + 0.25, Y_COORDS, progress=False)
    assert off.origin_index is None  # no grid point at the origin: none is reported as one


def test_line_equals_the_matching_row_and_column_of_the_plane(quadratic):
    ev, dirs, _, _ = quadratic
    plane = surface_2d(ev, ev.w0, dirs, X_COORDS, Y_COORDS, progress=False)
    iy0, ix0 = plane.origin_index
    along_d1 = surface_1d(ev, ev.w0, Directions(dirs.vectors[:1], "random", dirs.meta), X_COORDS, progress=False)
    along_d2 = surface_1d(ev, ev.w0, Directions(dirs.vectors[1:], "random", dirs.meta), Y_COORDS, progress=False)
    assert along_d1.ndim == 1 and along_d1.y is None and along_d1.origin_index == (ix0,)
    np.testing.assert_allclose(along_d1.loss, plane.loss[iy0, :], rtol=1e-12)
    np.testing.assert_allclose(along_d2.loss, plane.loss[:, ix0], rtol=1e-12)


def test_chunk_size_does_not_change_the_values(quadratic):
    ev, dirs, _, _ = quadratic
    ref = surface_2d(ev, ev.w0, dirs, X_COORDS, Y_COORDS, progress=False)
    counting = Counting(ev)
    s = surface_2d(counting, ev.w0, dirs, X_COORDS, Y_COORDS, chunk=4, progress=False)
    np.testing.assert_allclose(s.loss, ref.loss, rtol=1e-12)
    assert counting.calls == 9 and [len(c) for c in counting.coeffs] == [4] * 8 + [3]
    # row-major order over (iy, ix): x runs fastest, as np.meshgrid(x, y).ravel()
    first = torch.tensor([[-1.0, -0.5], [-0.5, -0.5], [0.0, -0.5], [0.5, -0.5]], dtype=torch.float64)
    assert torch.equal(counting.coeffs[0], first)


def asymmetric():
    """A tiny MLP whose loss surface is not symmetric in its two directions."""
    g = torch.Generator().manual_seed(0)
    x, labels = torch.randn(30, 4, generator=g), torch.randint(0, 3, (30,), generator=g)
    torch.manual_seed(0)
    ev = Evaluator(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)), "cross_entropy", (x, labels),
                   plan=Plan(device="cpu", dtype=torch.float64), recipe=Recipe(split="train"))
    return ev, random_directions(ev.space, ev.w0, n=2, seed=0)


def test_reference_tool_reads_a_non_square_asymmetric_plane(tmp_path):
    """The two lines of the reference tool's plot_2D.py, on our file, give the right picture."""
    ev, dirs = asymmetric()
    x, y = np.linspace(-1.0, 2.0, 6), np.linspace(-0.5, 0.5, 4)
    path = tmp_path / "plane.h5"
    surface_2d(ev, ev.w0, dirs, x, y, path=path, progress=False)
    with h5py.File(path, "r") as f:  # as tomgoldstein/loss-landscape plot_2D.plot_2d_contour reads it
        X, Y = np.meshgrid(np.array(f["xcoordinates"][:]), np.array(f["ycoordinates"][:]))
        Z = np.array(f["train_loss"][:])
        acc = np.array(f["train_acc"][:])
    assert Z.shape == X.shape == (4, 6)
    D = dirs.vectors.double()
    for iy, ix in ((0, 0), (0, 5), (3, 1), (2, 4)):
        w = ev.w0 + X[iy, ix] * D[0] + Y[iy, ix] * D[1]
        res = ev.evaluate(w)
        assert Z[iy, ix] == pytest.approx(float(res.loss[0]), rel=1e-12)
        assert acc[iy, ix] == pytest.approx(100 * float(res.metrics["accuracy"][0]))
    from matplotlib.figure import Figure

    Figure().add_subplot().contour(X, Y, Z)  # its contour call works: shapes agree
    assert not np.allclose(Z[:, :4], Z[:, :4].T)  # asymmetric: a transposed file would differ


def test_file_keeps_the_reference_keys_and_all_metadata(tmp_path):
    ev, dirs = asymmetric()
    path = tmp_path / "plane.h5"
    s = surface_2d(ev, ev.w0, dirs, [-0.5, 0.0, 0.5], [-1.0, 0.0, 1.0, 2.0], path=path, progress=False,
                   meta={"note": "mine"})
    with h5py.File(path, "r") as f:
        assert f.attrs["losslens_kind"] == "surface" and f.attrs["losslens_format"] == 2
        np.testing.assert_array_equal(f["xcoordinates"][()], [-0.5, 0.0, 0.5])
        np.testing.assert_array_equal(f["ycoordinates"][()], [-1.0, 0.0, 1.0, 2.0])
        assert f["train_loss"].shape == (4, 3) and "test_loss" not in f
        assert f["done"][()].all() and f["progress_seconds"][()] > 0
        np.testing.assert_array_equal(f["directions/vectors"][()], dirs.vectors.numpy())
    loaded = Surface.load(path)
    np.testing.assert_array_equal(loaded.loss, s.loss)
    np.testing.assert_array_equal(loaded.metrics["accuracy"], s.metrics["accuracy"])
    assert 0.0 <= s.metrics["accuracy"].min() and s.metrics["accuracy"].max() <= 1.0
    assert loaded.directions.kind == "random" and loaded.directions.meta["seed"] == 0
    assert torch.equal(loaded.directions.vectors, dirs.vectors)
    np.testing.assert_array_equal(loaded.w0, ev.w0.numpy())
    assert loaded.meta["note"] == "mine" and loaded.meta["data"]["split"] == "train"
    assert loaded.meta["model"]["architecture"] == ev.meta()["model"]["architecture"]
    assert loaded.meta["bn"] == "eval" and loaded.meta["n_samples"] == 30 and loaded.meta["n_done"] == 12


def test_two_splits_in_one_file(tmp_path):
    g = torch.Generator().manual_seed(0)
    x, labels = torch.randn(40, 4, generator=g), torch.randint(0, 3, (40,), generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    train = Evaluator(model, "cross_entropy", (x[:30], labels[:30]), plan=Plan(device="cpu"),
                      recipe=Recipe(split="train"))
    test = Evaluator(model, "cross_entropy", (x[30:], labels[30:]), plan=Plan(device="cpu"),
                     recipe=Recipe(split="test"))
    dirs = random_directions(train.space, train.w0, n=2, seed=0)
    path = tmp_path / "both.h5"
    s = surface_2d([train, test], train.w0, dirs, [-1.0, 0.0, 1.0], [0.0, 1.0], path=path, progress=False)
    assert s.split == "train" and list(s.values) == ["train", "test"]
    with h5py.File(path, "r") as f:
        assert {"train_loss", "train_acc", "test_loss", "test_acc"} <= set(f)
    loaded = Surface.load(path)
    np.testing.assert_array_equal(loaded.values["test"]["loss"], s.values["test"]["loss"])
    assert loaded.values["test"]["loss"][1, 1] == pytest.approx(float(test.evaluate(test.w0 + dirs.vectors[1]).loss[0]))


def test_interrupted_grid_resumes_without_evaluating_a_point_twice(quadratic, tmp_path):
    ev, dirs, _, _ = quadratic
    x, yc = np.linspace(-1, 1, 5), np.linspace(-1, 1, 4)
    ref = surface_2d(ev, ev.w0, dirs, x, yc, progress=False)
    path = tmp_path / "resume.h5"
    first = Counting(ev, fail_on=3)
    with pytest.raises(KeyboardInterrupt):
        surface_2d(first, ev.w0, dirs, x, yc, path=path, chunk=3, progress=False)
    partial = Surface.load(path)
    assert not partial.complete and partial.meta["n_done"] == 6
    assert partial.done.reshape(-1)[:6].all() and not partial.done.reshape(-1)[6:].any()
    assert np.isnan(partial.loss.reshape(-1)[6:]).all()
    np.testing.assert_allclose(partial.loss.reshape(-1)[:6], ref.loss.reshape(-1)[:6], rtol=1e-12)
    with h5py.File(path, "r") as f:
        header = f.attrs["meta"]

    second = Counting(ev)
    resumed = surface_2d(second, ev.w0, dirs, x, yc, path=path, chunk=3, progress=False)
    points = torch.cat(first.coeffs + second.coeffs)
    assert len(points) == 20 and len(torch.unique(points, dim=0)) == 20
    np.testing.assert_allclose(resumed.loss, ref.loss, rtol=1e-12)
    np.testing.assert_allclose(Surface.load(path).loss, ref.loss, rtol=1e-12)
    assert resumed.complete and resumed.meta["n_done"] == 20
    with h5py.File(path, "r") as f:
        assert f.attrs["meta"] == header  # the header is never rewritten on resume

    third = Counting(ev)  # a finished file is only read
    surface_2d(third, ev.w0, dirs, x, yc, path=path, progress=False)
    assert third.calls == 0


def test_resuming_a_file_of_another_grid_names_what_differs(quadratic, tmp_path):
    ev, dirs, X, y = quadratic
    path = tmp_path / "grid.h5"
    surface_2d(ev, ev.w0, dirs, X_COORDS, Y_COORDS, path=path, progress=False)
    with pytest.raises(ValueError, match="x coordinates differ.*delete the file"):
        surface_2d(ev, ev.w0, dirs, X_COORDS[:-1], Y_COORDS, path=path, progress=False)
    other = random_directions(ev.space, ev.w0, n=2, normalization="none", ignore="none", seed=2)
    with pytest.raises(ValueError, match="direction vectors differ"):
        surface_2d(ev, ev.w0, other, X_COORDS, Y_COORDS, path=path, progress=False)
    with pytest.raises(ValueError, match="origin w0 differ"):
        surface_2d(ev, ev.w0 + 1.0, dirs, X_COORDS, Y_COORDS, path=path, progress=False)
    not_a_surface = tmp_path / "notes.h5"
    with h5py.File(not_a_surface, "w") as f:
        f["notes"] = np.ones(3)
    with pytest.raises(LosslensError, match="notes.h5: holds an HDF5 file that is not a losslens result.*will not "
                       "overwrite"):
        surface_2d(ev, ev.w0, dirs, X_COORDS, Y_COORDS, path=not_a_surface, progress=False)
    with h5py.File(not_a_surface) as f:
        assert list(f) == ["notes"]  # left as it was
    with pytest.raises(ValueError, match="plane"):
        surface_1d(ev, ev.w0, Directions(dirs.vectors[:1], "random", {}), X_COORDS, path=path, progress=False)


GRID_ARGUMENTS = [name for name in inspect.signature(surface_2d).parameters if name not in reuse.IGNORED]


@pytest.mark.parametrize("argument", GRID_ARGUMENTS)
def test_a_grid_resumes_only_the_same_request_and_a_refusal_names_the_argument(quadratic, tmp_path, argument):
    """Every argument of ``surface_2d`` that changes its values, changed in turn, refuses the file (the reuse rule)."""
    ev, dirs, X, y = quadratic
    path = tmp_path / "grid.h5"
    given = {"evaluator": ev, "w0": ev.w0, "directions": dirs, "x": X_COORDS, "y": Y_COORDS}
    assert set(given) == set(GRID_ARGUMENTS)
    surface_2d(**given, path=path, progress=False)
    changed = {"evaluator": Evaluator(nn.Linear(6, 1, bias=False), "mse", (X[:30], y[:30]), metrics=(),
                                      plan=Plan(dtype=torch.float64, device="cpu"), recipe=Recipe(split="train")),
               "w0": ev.w0 + 1.0, "directions": Directions(dirs.vectors.flip(0), "random", {}),
               "x": X_COORDS + 0.5, "y": Y_COORDS[:-1]}
    with pytest.raises(ValueError, match=rf"holds a different grid \(argument {argument}: "):
        surface_2d(**{**given, argument: changed[argument]}, path=path, progress=False)
    assert surface_2d(**given, path=path, progress=False).complete  # the same request: resumed, finished


def test_a_reused_grid_is_returned_as_its_file_holds_it(quadratic, tmp_path):
    """Directions or w0 equal to rounding reuse the file (``gf._close``); the surface returned is then the
    file's: its directions and origin, so that a request naming it (``core.reuse``: a fit of it, in the
    report) is the same whichever way it was got, and does not change when the same plane's eigenvectors are
    recomputed (``report --top-k``)."""
    ev, dirs, _, _ = quadratic
    path = tmp_path / "grid.h5"
    surface_2d(ev, ev.w0, dirs, X_COORDS, Y_COORDS, path=path, progress=False)
    nudged = Directions(dirs.vectors * (1 + 1e-9), dirs.kind, dirs.meta)
    assert not torch.equal(nudged.vectors, dirs.vectors)
    again = surface_2d(ev, ev.w0 * (1 + 1e-9), nudged, X_COORDS, Y_COORDS, path=path, progress=False)
    stored = Surface.load(path)
    assert torch.equal(again.directions.vectors, stored.directions.vectors)
    np.testing.assert_array_equal(again.w0, stored.w0)
    assert reuse.fingerprint_of(again) == reuse.fingerprint_of(stored)


def evaluator(**kwargs):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(48, 1, 6, 6, generator=g), torch.randint(0, 4, (48,), generator=g)
    options = {"device": "cpu", "split": "train", "threads": 1} | kwargs
    model = options.pop("model", None) or build_model("resnet", input_shape=(1, 6, 6), num_classes=4, seed=0)
    data = options.pop("data", (x, y))
    plan = Plan(**{k: options.pop(k) for k in list(options) if k in Plan.__dataclass_fields__})
    return Evaluator(model, options.pop("loss", "cross_entropy"), data, plan=plan,
                     recipe=Recipe(split=options.pop("split")), **options)


@pytest.mark.parametrize("change, named", [
    ({"model": build_model("resnet-noskip", input_shape=(1, 6, 6), num_classes=4, seed=0)}, "model.architecture"),
    ({"data": (torch.randn(48, 1, 6, 6), torch.randint(0, 4, (48,)))}, "data.fingerprint"),
    ({"data": (torch.randn(40, 1, 6, 6), torch.randint(0, 4, (40,)))}, "n_samples"),
    ({"loss": lambda out, y: nn.functional.cross_entropy(out, y)}, "loss"),
    ({"metrics": ()}, "metrics"),
    ({"bn": "batch"}, "bn"),
    ({"dtype": torch.float64}, "dtype"),
    ({"split": "test"}, "evaluated splits"),
])
def test_resume_refuses_another_model_data_or_setting(tmp_path, change, named):
    base = evaluator()
    dirs = random_directions(base.space, base.w0, n=2, seed=0)
    path = tmp_path / "grid.h5"
    with pytest.raises(KeyboardInterrupt):
        surface_2d(Counting(base, fail_on=2), base.w0, dirs, [-1.0, 0.0, 1.0], [0.0, 1.0], path=path, chunk=2,
                   progress=False)
    other = evaluator(**change)
    with pytest.raises(ValueError, match=f"{named} diff"):
        surface_2d(other, base.w0, dirs, [-1.0, 0.0, 1.0], [0.0, 1.0], path=path, progress=False)


def test_batch_statistics_resume_only_with_the_same_batches(tmp_path):
    base = evaluator(bn="batch", batch_size=16)
    dirs = random_directions(base.space, base.w0, n=2, seed=0)
    path = tmp_path / "grid.h5"
    with pytest.raises(KeyboardInterrupt):
        surface_2d(Counting(base, fail_on=2), base.w0, dirs, [-1.0, 0.0, 1.0], [0.0, 1.0], path=path, chunk=2,
                   progress=False)
    with pytest.raises(ValueError, match="batch_size differs"):
        surface_2d(evaluator(bn="batch", batch_size=24), base.w0, dirs, [-1.0, 0.0, 1.0], [0.0, 1.0], path=path,
                   progress=False)
    resumed = surface_2d(evaluator(bn="batch", batch_size=16), base.w0, dirs, [-1.0, 0.0, 1.0], [0.0, 1.0],
                         path=path, progress=False)
    assert resumed.complete


def test_interrupted_creation_leaves_nothing_that_blocks_a_rerun(quadratic, tmp_path, monkeypatch):
    ev, dirs, _, _ = quadratic
    path = tmp_path / "grid.h5"
    original = gf.set_header

    def killed_while_laying_out(f, kind, meta):
        original(f, kind, meta)
        raise KeyboardInterrupt

    monkeypatch.setattr(gf, "set_header", killed_while_laying_out)
    with pytest.raises(KeyboardInterrupt):
        surface_2d(ev, ev.w0, dirs, X_COORDS, Y_COORDS, path=path, progress=False)
    assert sorted(os.listdir(tmp_path)) == []  # neither the file nor its temporary
    monkeypatch.setattr(gf, "set_header", original)
    stale = tmp_path / ".grid.h5.writing-999999999"  # a process killed with SIGKILL left this
    stale.write_bytes(b"\x89HDF half")
    s = surface_2d(ev, ev.w0, dirs, X_COORDS, Y_COORDS, path=path, progress=False)
    assert s.complete and sorted(os.listdir(tmp_path)) == ["grid.h5"]


def test_files_without_points_or_unreadable_are_started_over(quadratic, tmp_path):
    ev, dirs, _, _ = quadratic
    path = tmp_path / "grid.h5"
    with pytest.raises(KeyboardInterrupt):
        surface_2d(Counting(ev, fail_on=1), ev.w0, dirs, X_COORDS, Y_COORDS, path=path, progress=False)
    with pytest.warns(UserWarning, match="holds no computed point; starting it over"):
        assert surface_2d(ev, ev.w0, dirs, X_COORDS, Y_COORDS, path=path, progress=False).complete
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])  # a truncated file: damaged, kept aside, never deleted
    with pytest.warns(UserWarning, match="damaged.*kept it as .*grid.h5.damaged and starting over"):
        assert surface_2d(ev, ev.w0, dirs, X_COORDS, Y_COORDS, path=path, progress=False).complete
    assert (tmp_path / "grid.h5.damaged").read_bytes() == data[: len(data) // 3]
    with pytest.raises(LosslensError, match=f"{path.name}"):
        path.write_bytes(data[: len(data) // 3])
        Surface.load(path)


def test_nonfinite_losses_are_kept_counted_and_done(tmp_path):
    def sqrt_one_minus_mse(out, target):  # NaN wherever the MSE exceeds 1
        return torch.sqrt(1.0 - ((out - target) ** 2).mean())

    X, y = torch.eye(3, dtype=torch.float64), torch.zeros(3, 1, dtype=torch.float64)
    model = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    ev = Evaluator(model, sqrt_one_minus_mse, (X, y), metrics=(), plan=Plan(dtype=torch.float64, device="cpu"))
    d = torch.tensor([[1.0, 1.0, 1.0]], dtype=torch.float64)  # MSE along it: a^2
    x = np.array([-3.0, -0.5, 0.0, 0.5, 3.0])
    path = tmp_path / "nan.h5"
    s = surface_1d(ev, ev.w0, Directions(d, "between", {}), x, path=path, chunk=2, progress=False)
    assert np.isnan(s.loss[[0, 4]]).all()
    np.testing.assert_allclose(s.loss[1:4], np.sqrt(1.0 - x[1:4] ** 2), rtol=1e-12)
    assert s.meta["n_nonfinite"] == 2 and s.complete
    loaded = Surface.load(path)
    assert loaded.complete and loaded.meta["n_nonfinite"] == 2 and np.isnan(loaded.loss[0])
    with h5py.File(path, "r") as f:  # data of unknown split: unprefixed keys
        assert "loss" in f and "train_loss" not in f


def test_in_memory_surface_saves_and_loads(quadratic, tmp_path):
    ev, dirs, _, _ = quadratic
    s = surface_1d(ev, ev.w0, Directions(dirs.vectors[:1], "random", dirs.meta), X_COORDS, progress=False)
    path = s.save(tmp_path / "line.h5")
    with h5py.File(path, "r") as f:
        assert f["train_loss"].shape == (7,) and "ycoordinates" not in f
    loaded = Surface.load(path)
    assert loaded.ndim == 1 and loaded.meta["data"]["split"] == "train"
    np.testing.assert_array_equal(loaded.loss, s.loss)
    np.testing.assert_array_equal(loaded.x, s.x)


def test_reads_files_of_the_reference_tool(tmp_path):
    square, line = tmp_path / "square.h5", tmp_path / "line.h5"
    loss = np.arange(9.0).reshape(3, 3) + 1.0
    loss[2, 1] = -1.0  # the reference tool's mark of a point not computed yet
    with h5py.File(square, "w") as f:
        f["dir_file"] = "directions.h5"
        f["xcoordinates"], f["ycoordinates"] = np.linspace(-1, 1, 3), np.array([0.0, 1.0, 2.0])
        f["train_loss"], f["train_acc"] = loss, np.full((3, 3), 50.0)
    with h5py.File(line, "w") as f:
        f["xcoordinates"], f["test_loss"] = np.linspace(-1, 1, 4), np.ones(4)
    s = Surface.load(square)
    assert s.directions is None and s.meta["legacy"] == "loss-landscape" and s.meta["dir_file"] == "directions.h5"
    assert s.loss[0, 2] == 3.0  # [iy, ix]: as its plot_2D.py reads it
    assert np.isnan(s.loss[2, 1]) and not s.done[2, 1] and s.meta["n_done"] == 8
    np.testing.assert_allclose(s.metrics["accuracy"][:2], 0.5)
    resaved = Surface.load(s.save(tmp_path / "resaved.h5"))
    assert resaved.directions is None and resaved.meta["n_done"] == 8
    np.testing.assert_array_equal(resaved.done, s.done)
    np.testing.assert_array_equal(resaved.metrics["accuracy"], s.metrics["accuracy"])
    old_line = Surface.load(line)
    assert old_line.ndim == 1 and old_line.split == "test" and old_line.complete


def test_non_square_reference_files_are_read_in_the_order_its_writer_fills_them(tmp_path):
    """Its plot_surface.py allocates (nx, ny) but fills the flat order of np.meshgrid(x, y)."""
    x, y = np.linspace(-1, 1, 3), np.array([0.0, 1.0])
    X, Y = np.meshgrid(x, y)
    truth = 10 * X + Y  # (ny, nx)
    path = tmp_path / "wide.h5"
    with h5py.File(path, "w") as f:
        f["xcoordinates"], f["ycoordinates"] = x, y
        f["train_loss"] = truth.ravel().reshape(len(x), len(y))  # what its writer leaves
    with pytest.warns(UserWarning, match="read in the order the reference tool fills it"):
        s = Surface.load(path)
    np.testing.assert_array_equal(s.loss, truth)


def test_reads_surfaces_of_losslens_0_1(tmp_path):
    """Format 1 stored loss[ix, iy] with shape (nx, ny): read transposed, never resumed."""
    import json

    path = tmp_path / "old.h5"
    x, y = np.array([-1.0, 0.0, 1.0]), np.array([0.0, 1.0])
    X, Y = np.meshgrid(x, y)
    truth = 10 * X + Y
    with h5py.File(path, "w") as f:
        f.attrs["losslens_kind"], f.attrs["losslens_format"] = "surface", 1
        f.attrs["meta"] = json.dumps({"data": {"split": "test"}, "metrics": []})
        f["xcoordinates"], f["ycoordinates"] = x, y
        f["test_loss"], f["done"] = truth.T, np.ones((3, 2), dtype=bool)
    s = Surface.load(path)
    np.testing.assert_array_equal(s.loss, truth)
    assert s.split == "test"


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(LosslensError, match="no such file"):
        Surface.load(tmp_path / "missing.h5")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["something"] = np.ones(2)
    with pytest.raises(LosslensError, match="other.h5: not a surface file"):
        Surface.load(other)
    broken = tmp_path / "broken.h5"
    with h5py.File(broken, "w") as f:
        f.attrs["losslens_kind"], f.attrs["losslens_format"], f.attrs["meta"] = "surface", 2, "{}"
    with pytest.raises(LosslensError, match="broken.h5: damaged surface file: dataset xcoordinates is missing"):
        Surface.load(broken)


def test_bad_inputs_raise_clear_errors(quadratic):
    ev, dirs, _, _ = quadratic
    with pytest.raises(ValueError, match=r"1D surface needs 1 direction"):
        surface_1d(ev, ev.w0, dirs, X_COORDS, progress=False)
    with pytest.raises(ValueError, match="x must be a non-empty 1-D array"):
        surface_2d(ev, ev.w0, dirs, np.zeros((2, 2)), Y_COORDS, progress=False)
    with pytest.raises(ValueError, match="finite"):
        surface_2d(ev, ev.w0, dirs, X_COORDS, [0.0, np.nan], progress=False)
    with pytest.raises(ValueError, match="strictly increasing"):
        surface_2d(ev, ev.w0, dirs, X_COORDS[::-1], Y_COORDS, progress=False)
    with pytest.raises(ValueError, match=r"chunk must be an integer >= 1 or None \(got 0\)"):
        surface_2d(ev, ev.w0, dirs, X_COORDS, Y_COORDS, chunk=0, progress=False)
    with pytest.raises(ValueError, match=r"meta keys \['loss'\]"):
        surface_2d(ev, ev.w0, dirs, X_COORDS, Y_COORDS, progress=False, meta={"loss": "mine"})
    with pytest.raises(ValueError, match=r"w0 must have shape \(6,\)"):
        surface_2d(ev, ev.w0[:3], dirs, X_COORDS, Y_COORDS, progress=False)
    zero = dirs.vectors.clone()
    zero[1] = 0
    with pytest.raises(ValueError, match="direction 2 is zero"):
        surface_2d(ev, ev.w0, zero, X_COORDS, Y_COORDS, progress=False)
    zero[1] = float("nan")
    with pytest.raises(ValueError, match="direction 2 holds NaN"):
        surface_2d(ev, ev.w0, zero, X_COORDS, Y_COORDS, progress=False)
    parallel = torch.stack([dirs.vectors[0], 2 * dirs.vectors[0]])
    with pytest.warns(UserWarning, match="nearly parallel"):
        surface_2d(ev, ev.w0, parallel, X_COORDS, Y_COORDS, progress=False)


def test_progress_bar_shows_points_per_second(quadratic, capsys):
    ev, dirs, _, _ = quadratic
    surface_2d(ev, ev.w0, dirs, X_COORDS, Y_COORDS, progress=True)
    assert "pt/s" in capsys.readouterr().err
    surface_2d(ev, ev.w0, dirs, X_COORDS, Y_COORDS, progress=False)
    assert capsys.readouterr().err == ""


def test_plain_tensor_directions_are_wrapped_as_custom(quadratic):
    ev, dirs, X, y = quadratic
    s = surface_2d(ev, ev.w0, dirs.vectors.clone(), X_COORDS, Y_COORDS, progress=False)
    assert s.directions.kind == "custom"
    np.testing.assert_allclose(s.loss, paraboloid(X, y, ev.w0, dirs.vectors.double(), X_COORDS, Y_COORDS), rtol=1e-12)


def test_a_surface_refuses_repeated_or_decreasing_coordinates(tmp_path):
    """Built from arrays or read from a file (here the reference tool's layout): one error naming the axis,
    the value and, for a file, the file."""
    Z = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"^x coordinates must be strictly increasing: 0\.5 is repeated "
                                         r"\(x\[1\] = x\[2\]\)$"):
        Surface.from_arrays([0.0, 0.5, 0.5, 1.0], [0.0, 1.0, 2.0], Z)
    with pytest.raises(ValueError, match=r"^y coordinates must be strictly increasing: y\[2\] = 0\.5 follows "
                                         r"y\[1\] = 1\.0$"):
        Surface.from_arrays([0.0, 0.5, 0.7, 1.0], [0.0, 1.0, 0.5], Z)
    path = tmp_path / "dup.h5"
    with h5py.File(path, "w") as f:
        f["xcoordinates"], f["ycoordinates"], f["train_loss"] = [0.0, 0.5, 0.7, 1.0], [0.0, 0.0, 1.0], Z
    with pytest.raises(LosslensError, match=rf"^{path}: y coordinates must be strictly increasing: 0\.0 is repeated"):
        Surface.load(path)


def test_surface_names_a_missing_evaluator_and_a_non_finite_origin(quadratic):
    ev, dirs, _, _ = quadratic
    with pytest.raises(TypeError, match="needs an Evaluator .*got NoneType"):
        surface_1d(None, ev.w0, dirs.vectors[:1], [0.0, 1.0], progress=False)
    w0 = ev.w0.clone()
    w0[2] = float("nan")
    with pytest.raises(ValueError, match="w0 holds NaN or infinite entries"):
        surface_1d(ev, w0, dirs.vectors[:1], [0.0, 1.0], progress=False)
