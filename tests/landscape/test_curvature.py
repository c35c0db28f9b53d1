"""The Hessian's extreme eigenvalues over a plane (the reference tool's plot_hessian_eigen.py): a quadratic's
constant Hessian, a tiny network against dense float64 Hessians, saving, resuming and the command."""

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, hessian

from losslens.cli.main import main
from losslens.core.checkpoints import save_checkpoint
from losslens.core.evaluator import Evaluator
from losslens.core.plan import Plan
from losslens.core.models import build_model
from losslens.core.provenance import CheckpointMeta
from losslens.landscape import curvature
from losslens.landscape.curvature import CurvatureMap, curvature_map
from losslens.results import load_result


@pytest.fixture(scope="module")
def quadratic():
    """Least squares ``mean (X w - y)^2``: its Hessian ``2 X^T X / N`` is the same at every point."""
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(40, 5, generator=g, dtype=torch.float64), torch.randn(40, 1, generator=g, dtype=torch.float64)
    torch.manual_seed(0)
    ev = Evaluator(nn.Linear(5, 1, bias=False).double(), "mse", (X, y), plan=Plan(dtype=torch.float64))
    lam = torch.linalg.eigvalsh(2 * X.T @ X / 40)
    return ev, float(lam[-1]), float(lam[0])


def test_a_quadratic_has_the_same_eigenvalues_everywhere_and_the_map_resumes(tmp_path, quadratic, monkeypatch):
    ev, lam_max, lam_min = quadratic
    D = torch.randn(2, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x, y = np.linspace(-1, 1, 3), np.linspace(-2, 2, 4)
    real = curvature._at_point
    calls = []

    def interrupted(*args):
        if len(calls) == 5:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(curvature, "_at_point", interrupted)
    with pytest.raises(KeyboardInterrupt):
        curvature_map(ev, ev.w0, D, x, y, path=tmp_path / "c.h5", progress=False)
    calls.clear()
    monkeypatch.setattr(curvature, "_at_point", lambda *a: (calls.append(1), real(*a))[1])
    m = curvature_map(ev, ev.w0, D, x, y, path=tmp_path / "c.h5", progress=False)
    assert len(calls) == 12 - 5  # resumed: only the points not done
    assert m.shape == (4, 3) and m.complete
    np.testing.assert_allclose(m.max_eigenvalue, lam_max, rtol=1e-5)
    np.testing.assert_allclose(m.min_eigenvalue, lam_min, rtol=1e-5)
    np.testing.assert_allclose(m.eigenvalue_ratio, abs(lam_min / lam_max), rtol=1e-5)
    assert np.all(m.metrics["max_residual"] < 1e-8) and np.all(m.metrics["min_residual"] < 1e-8)
    X, Y = np.meshgrid(x, y)
    w = ev.w0.numpy()[None, None] + X[..., None] * D[0].numpy() + Y[..., None] * D[1].numpy()
    Xd, yd = ev.data.x.numpy(), ev.data.y.numpy()
    np.testing.assert_allclose(m.loss, (((w @ Xd.T) - yd[:, 0]) ** 2).mean(-1), rtol=1e-10)
    loaded = load_result(tmp_path / "c.h5")
    assert type(loaded) is CurvatureMap and loaded.meta["lanczos"]["maxiter"] == 100
    assert np.array_equal(loaded.eigenvalue_ratio, m.eigenvalue_ratio)
    copied = CurvatureMap.load(m.save(tmp_path / "copy.h5"))
    assert all(np.array_equal(copied.metrics[k], m.metrics[k]) for k in m.metrics)
    calls.clear()
    assert np.array_equal(curvature_map(ev, ev.w0, D, x, y, path=tmp_path / "c.h5", progress=False).max_eigenvalue,
                          m.max_eigenvalue) and not calls  # complete: nothing computed again
    with pytest.raises(ValueError, match="tol differs"):
        curvature_map(ev, ev.w0, D, x, y, path=tmp_path / "c.h5", progress=False, tol=1e-3)


def test_a_network_matches_dense_float64_hessians_at_two_points(net):
    model, ev, _, _ = net
    D = torch.randn(2, ev.space.size, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    D = D / D.norm(dim=1, keepdim=True)
    x, y = np.array([0.0, 0.7]), np.array([-0.5, 0.0])
    m = curvature_map(ev, ev.w0, D, x, y, tol=0, progress=False)
    ref = copy.deepcopy(model).double()
    data_x, data_y = ev.data.x.double(), ev.data.y

    def loss(w):
        return nn.functional.cross_entropy(functional_call(ref, ev.space.unflatten(w), (data_x,)), data_y)

    for iy, ix in ((1, 0), (0, 1)):  # the origin and a point away from it
        w = ev.w0.double() + x[ix] * D[0] + y[iy] * D[1]
        lam = torch.linalg.eigvalsh(hessian(loss)(w))
        assert lam[0] < 0 < lam[-1]  # indefinite: the ratio is a real question here
        assert m.max_eigenvalue[iy, ix] == pytest.approx(float(lam[-1]), rel=1e-8)
        assert m.min_eigenvalue[iy, ix] == pytest.approx(float(lam[0]), rel=1e-6)
        assert m.eigenvalue_ratio[iy, ix] == pytest.approx(abs(float(lam[0] / lam[-1])), rel=1e-6)


def test_command_writes_the_map_and_its_pictures(tmp_path, capsys):
    meta = CheckpointMeta(model="mlp", model_kwargs={"hidden": [4]}, data="digits").to_metadata()
    ckpt = save_checkpoint(build_model("mlp", input_shape=(1, 8, 8), num_classes=10, seed=0, hidden=[4]),
                           tmp_path / "m.safetensors", metadata=meta)
    out = tmp_path / "out"
    assert main(["curvature-map", str(ckpt), "--steps", "2", "--subset", "30", "--device", "cpu", "--no-progress",
                 "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    m = load_result(out / "curvature_map.h5")
    assert isinstance(m, CurvatureMap) and m.complete and m.shape == (2, 2)
    assert np.all(m.max_eigenvalue >= m.min_eigenvalue)
    for name in ("curvature_map.h5", "curvature_map_ratio.png", "curvature_map_max_eigenvalue.png",
                 "curvature_map_min_eigenvalue.png"):
        assert f"wrote {out / name}" in stdout and (out / name).stat().st_size > 0
    assert "|lambda_min / lambda_max| from" in stdout
    assert main(["plot", str(out / "curvature_map.h5"), "--out", str(tmp_path / "re")]) == 0
    assert (tmp_path / "re" / "curvature_map_ratio.png").is_file()
    assert main(["curvature-map", str(ckpt), "--lanczos-tol", "-1", "--out", str(out)]) == 2
    assert "--lanczos-tol must be >= 0" in capsys.readouterr().err


def test_a_reused_map_is_returned_as_its_file_holds_it(tmp_path, quadratic):
    """Directions and w0 equal to rounding reuse the file; the map returned holds the file's (as ``surface_2d``)."""
    ev = quadratic[0]
    D = torch.randn(2, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = np.linspace(-1, 1, 2)
    curvature_map(ev, ev.w0, D, x, x, path=tmp_path / "c.h5", progress=False)
    again = curvature_map(ev, ev.w0 * (1 + 1e-9), D * (1 + 1e-9), x, x, path=tmp_path / "c.h5", progress=False)
    stored = load_result(tmp_path / "c.h5")
    assert torch.equal(again.directions.vectors, stored.directions.vectors)
    np.testing.assert_array_equal(again.w0, stored.w0)
