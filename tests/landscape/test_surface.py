"""Tests of losslens/landscape/surface.py: exact paraboloids, the lattice, files, resume, old files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from losslens.core.evaluator import Evaluator
from losslens.errors import LosslensError
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
    ev = Evaluator(nn.Linear(6, 1, bias=False), "mse", (X, y), metrics=(), dtype=torch.float64, device="cpu")
    dirs = random_directions(ev.space, ev.w0, n=2, normalization="none", ignore="none", seed=1)
    return ev, dirs, X, y


def paraboloid(X, y, w0, D, x, yc):
    """Closed form of the loss at w0 + x[i] d1 + y[j] d2 from the quadratic's minimum and Hessian."""
    N = len(X)
    A = 2.0 / N * X.T @ X
    w_star = torch.linalg.lstsq(X, y).solution[:, 0]
    loss_star = ((X @ w_star - y[:, 0]) ** 2).mean()
    a, b = np.meshgrid(x, yc, indexing="ij")
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
    assert s.ndim == 2 and s.loss.shape == (7, 5) and s.complete
    expected = paraboloid(X, y, ev.w0, dirs.vectors.double(), X_COORDS, Y_COORDS)
    np.testing.assert_allclose(s.loss, expected, rtol=1e-12)
    # loss[i, j] is at (x[i], y[j]): the curvatures along d1 and d2 differ, so a lattice with the
    # axes swapped or zig-zagging would not match
    curv_x = np.diff(expected, 2, axis=0).mean() / (X_COORDS[1] - X_COORDS[0]) ** 2
    curv_y = np.diff(expected, 2, axis=1).mean() / (Y_COORDS[1] - Y_COORDS[0]) ** 2
    assert abs(curv_x - curv_y) > 0.1 * max(curv_x, curv_y)
    assert s.meta["n_points"] == 35 and s.meta["n_done"] == 35 and s.meta["n_nonfinite"] == 0
    assert s.meta["loss"] == "mse" and s.meta["seed"] == 1 and s.meta["points_per_second"] > 0


def test_grid_centre_is_the_loss_at_w0(quadratic):
    ev, dirs, _, _ = quadratic
    s = surface_2d(ev, ev.w0, dirs, X_COORDS, Y_COORDS, progress=False)
    assert s.origin_index == (2, 2)
    assert s.loss[s.origin_index] == pytest.approx(float(ev.evaluate(ev.w0).loss[0]), rel=1e-13)


def test_line_equals_the_matching_row_and_column_of_the_plane(quadratic):
    ev, dirs, _, _ = quadratic
    plane = surface_2d(ev, ev.w0, dirs, X_COORDS, Y_COORDS, progress=False)
    i0, j0 = plane.origin_index
    along_d1 = surface_1d(ev, ev.w0, Directions(dirs.vectors[:1], "random", dirs.meta), X_COORDS, progress=False)
    along_d2 = surface_1d(ev, ev.w0, Directions(dirs.vectors[1:], "random", dirs.meta), Y_COORDS, progress=False)
    assert along_d1.ndim == 1 and along_d1.y is None and along_d1.origin_index == (i0,)
    np.testing.assert_allclose(along_d1.loss, plane.loss[:, j0], rtol=1e-12)
    np.testing.assert_allclose(along_d2.loss, plane.loss[i0, :], rtol=1e-12)


def test_chunk_size_does_not_change_the_values(quadratic):
    ev, dirs, _, _ = quadratic
    ref = surface_2d(ev, ev.w0, dirs, X_COORDS, Y_COORDS, progress=False)
    counting = Counting(ev)
    s = surface_2d(counting, ev.w0, dirs, X_COORDS, Y_COORDS, chunk=4, progress=False)
    np.testing.assert_allclose(s.loss, ref.loss, rtol=1e-12)
    assert counting.calls == 9 and [len(c) for c in counting.coeffs] == [4] * 8 + [3]
    # row-major order over (i, j)
    assert torch.equal(counting.coeffs[0], torch.tensor([[-1.0, -0.5], [-1.0, -0.25], [-1.0, 0.0], [-1.0, 0.25]], dtype=torch.float64))


def test_file_keeps_the_old_tool_keys_and_all_metadata(tmp_path):
    g = torch.Generator().manual_seed(0)
    x, labels = torch.randn(30, 4, generator=g), torch.randint(0, 3, (30,), generator=g)
    torch.manual_seed(0)
    ev = Evaluator(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)), "cross_entropy", (x, labels), device="cpu")
    dirs = random_directions(ev.space, ev.w0, n=2, seed=0)
    path = tmp_path / "plane.h5"
    caller = {"model": {"name": "mlp"}, "data": {"name": "random", "split": "test"}, "checkpoint": "none"}
    s = surface_2d(ev, ev.w0, dirs, [-0.5, 0.0, 0.5], [-1.0, 0.0, 1.0, 2.0], path=path, progress=False, meta=caller)
    with h5py.File(path, "r") as f:
        assert f.attrs["losslens_kind"] == "surface"
        np.testing.assert_array_equal(f["xcoordinates"][()], [-0.5, 0.0, 0.5])
        np.testing.assert_array_equal(f["ycoordinates"][()], [-1.0, 0.0, 1.0, 2.0])
        assert f["test_loss"].shape == (3, 4) and "train_loss" not in f
        np.testing.assert_allclose(f["test_acc"][()], 100.0 * f["metrics/accuracy"][()])
        assert f["done"][()].all()
        np.testing.assert_array_equal(f["directions/vectors"][()], dirs.vectors.numpy())
    loaded = Surface.load(path)
    np.testing.assert_array_equal(loaded.loss, s.loss)
    np.testing.assert_array_equal(loaded.metrics["accuracy"], s.metrics["accuracy"])
    assert 0.0 <= s.metrics["accuracy"].min() and s.metrics["accuracy"].max() <= 1.0
    assert loaded.directions.kind == "random" and loaded.directions.meta["seed"] == 0
    assert torch.equal(loaded.directions.vectors, dirs.vectors)
    np.testing.assert_array_equal(loaded.w0, ev.w0.numpy())
    assert loaded.meta["model"] == {"name": "mlp"} and loaded.meta["checkpoint"] == "none"
    assert loaded.meta["bn"] == "eval" and loaded.meta["n_samples"] == 30 and loaded.meta["n_done"] == 12


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

    second = Counting(ev)
    resumed = surface_2d(second, ev.w0, dirs, x, yc, path=path, chunk=3, progress=False)
    points = torch.cat(first.coeffs + second.coeffs)
    assert len(points) == 20 and len(torch.unique(points, dim=0)) == 20
    np.testing.assert_allclose(resumed.loss, ref.loss, rtol=1e-12)
    np.testing.assert_allclose(Surface.load(path).loss, ref.loss, rtol=1e-12)
    assert resumed.complete and resumed.meta["n_done"] == 20

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
    ev32 = Evaluator(nn.Linear(6, 1, bias=False), "mse", (X, y), metrics=(), device="cpu")
    with pytest.raises(ValueError, match="evaluator setting 'dtype' differs"):
        surface_2d(ev32, ev.w0, dirs, X_COORDS, Y_COORDS, path=path, progress=False)
    not_a_surface = tmp_path / "notes.h5"
    with h5py.File(not_a_surface, "w") as f:
        f["notes"] = np.ones(3)
    with pytest.raises(ValueError, match="not a surface file.*choose another path"):
        surface_2d(ev, ev.w0, dirs, X_COORDS, Y_COORDS, path=not_a_surface, progress=False)
    with pytest.raises(ValueError, match="plane"):
        surface_1d(ev, ev.w0, Directions(dirs.vectors[:1], "random", {}), X_COORDS, path=path, progress=False)


def test_nonfinite_losses_are_kept_counted_and_done(tmp_path):
    def sqrt_one_minus_mse(out, target):  # NaN wherever the MSE exceeds 1
        return torch.sqrt(1.0 - ((out - target) ** 2).mean())

    X, y = torch.eye(3, dtype=torch.float64), torch.zeros(3, 1, dtype=torch.float64)
    model = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    ev = Evaluator(model, sqrt_one_minus_mse, (X, y), metrics=(), dtype=torch.float64, device="cpu")
    d = torch.tensor([[1.0, 1.0, 1.0]], dtype=torch.float64)  # MSE along it: a^2
    x = np.array([-3.0, -0.5, 0.0, 0.5, 3.0])
    path = tmp_path / "nan.h5"
    s = surface_1d(ev, ev.w0, Directions(d, "between", {}), x, path=path, chunk=2, progress=False)
    assert np.isnan(s.loss[[0, 4]]).all()
    np.testing.assert_allclose(s.loss[1:4], np.sqrt(1.0 - x[1:4] ** 2), rtol=1e-12)
    assert s.meta["n_nonfinite"] == 2 and s.complete
    loaded = Surface.load(path)
    assert loaded.complete and loaded.meta["n_nonfinite"] == 2 and np.isnan(loaded.loss[0])


def test_in_memory_surface_saves_and_loads(quadratic, tmp_path):
    ev, dirs, _, _ = quadratic
    s = surface_1d(ev, ev.w0, Directions(dirs.vectors[:1], "random", dirs.meta), X_COORDS, progress=False,
                   meta={"data": {"split": "train"}})
    path = s.save(tmp_path / "line.h5")
    with h5py.File(path, "r") as f:
        assert f["train_loss"].shape == (7,) and "ycoordinates" not in f
    loaded = Surface.load(path)
    assert loaded.ndim == 1 and loaded.meta["data"] == {"split": "train"}
    np.testing.assert_array_equal(loaded.loss, s.loss)
    np.testing.assert_array_equal(loaded.x, s.x)


def test_reads_files_of_the_older_tool(tmp_path):
    plane, line = tmp_path / "old_plane.h5", tmp_path / "old_line.h5"
    loss = np.arange(6.0).reshape(3, 2) + 1.0
    loss[2, 1] = -1.0  # the older tool's mark of a point not computed yet
    with h5py.File(plane, "w") as f:
        f["dir_file"] = "directions.h5"
        f["xcoordinates"], f["ycoordinates"] = np.linspace(-1, 1, 3), np.array([0.0, 1.0])
        f["train_loss"], f["train_acc"] = loss, np.full((3, 2), 50.0)
    with h5py.File(line, "w") as f:
        f["xcoordinates"], f["test_loss"] = np.linspace(-1, 1, 4), np.ones(4)
    s = Surface.load(plane)
    assert s.directions is None and s.meta["legacy"] == "loss-landscape" and s.meta["dir_file"] == "directions.h5"
    assert s.loss.shape == (3, 2) and np.isnan(s.loss[2, 1]) and not s.done[2, 1] and s.meta["n_done"] == 5
    np.testing.assert_allclose(s.metrics["accuracy"][:2], 0.5)
    resaved = Surface.load(s.save(tmp_path / "resaved.h5"))
    assert resaved.directions is None and resaved.meta["n_done"] == 5
    np.testing.assert_array_equal(resaved.done, s.done)
    np.testing.assert_array_equal(resaved.metrics["accuracy"], s.metrics["accuracy"])
    old_line = Surface.load(line)
    assert old_line.ndim == 1 and old_line.meta["data"] == {"split": "test"} and old_line.complete


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(LosslensError, match="no such file"):
        Surface.load(tmp_path / "missing.h5")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["something"] = np.ones(2)
    with pytest.raises(LosslensError, match="not a surface file"):
        Surface.load(other)


def test_bad_inputs_raise_clear_errors(quadratic):
    ev, dirs, _, _ = quadratic
    with pytest.raises(ValueError, match=r"1D surface needs 1 direction"):
        surface_1d(ev, ev.w0, dirs, X_COORDS, progress=False)
    with pytest.raises(ValueError, match="x must be a non-empty 1-D array"):
        surface_2d(ev, ev.w0, dirs, np.zeros((2, 2)), Y_COORDS, progress=False)
    with pytest.raises(ValueError, match="finite"):
        surface_2d(ev, ev.w0, dirs, X_COORDS, [0.0, np.nan], progress=False)
    with pytest.raises(ValueError, match="chunk must be a positive"):
        surface_2d(ev, ev.w0, dirs, X_COORDS, Y_COORDS, chunk=0, progress=False)
    with pytest.raises(ValueError, match=r"meta keys \['loss'\]"):
        surface_2d(ev, ev.w0, dirs, X_COORDS, Y_COORDS, progress=False, meta={"loss": "mine"})
    with pytest.raises(ValueError, match="unknown data split 'val'.*train, test"):
        surface_2d(ev, ev.w0, dirs, X_COORDS, Y_COORDS, progress=False, meta={"data": {"split": "val"}})
    with pytest.raises(ValueError, match=r"w0 must have shape \(6,\)"):
        surface_2d(ev, ev.w0[:3], dirs, X_COORDS, Y_COORDS, progress=False)


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
