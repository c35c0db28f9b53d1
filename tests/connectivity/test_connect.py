"""connect(): every loss from the core, the trained Bezier curve well below the line between two digits MLPs of
different seeds, the plane coordinates, and bad input refused in one line."""

import numpy as np
import pytest
import torch
from torch import nn

from _connect_helpers import tiny_evaluator
from losslens.connectivity.connect import PATHS, connect, plane_coordinates
from losslens.connectivity.connection import Connection
from losslens.core.checkpoints import load_checkpoint
from losslens.core.recipe import Recipe
from losslens.errors import ConfigError
from losslens.results import load_result


def _counted(monkeypatch):
    """A tiny evaluator whose ``evaluate`` and ``values_and_gradients`` record the rows of each call, its ``w0``
    and a point B away from it."""
    _, _, ev = tiny_evaluator()
    a = ev.w0
    b = a + torch.randn(a.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    calls = {"evaluate": [], "values_and_gradients": []}
    for name in calls:
        real = getattr(ev, name)
        monkeypatch.setattr(ev, name, lambda W, real=real, name=name: calls[name].append(len(W)) or real(W))
    return ev, a, b, calls


def test_every_loss_of_every_path_comes_from_the_core(monkeypatch):
    ev, a, b, calls = _counted(monkeypatch)
    result = connect(ev, a, b, path=["line", "bezier", "polychain"], points=7, steps=3, batch=4)
    assert calls["evaluate"] == [7, 7, 7]  # one batched call per path (one split)
    assert calls["values_and_gradients"] == [4] * 6  # one batched call per step of each trained bend
    assert [p["path"] for p in result.paths] == ["line", "bezier", "polychain"]


def test_the_neb_path_relaxes_its_pivots_through_the_core_and_joins_a_and_b(monkeypatch):
    ev, a, b, calls = _counted(monkeypatch)
    result = connect(ev, a, b, path="neb", points=7, steps=3, lr=0.01)
    assert "neb" in PATHS and calls["evaluate"] == [7]  # the path's points: one batched call
    record = result.paths[0]["training"]
    cycles = len(record["inserted"]) + 1
    assert len(calls["values_and_gradients"]) == cycles * (3 + 1) + 1  # one call per step, all pivots at once
    assert calls["values_and_gradients"][0] == 9 and record["pivots_final"] >= 9
    curve = result.curves[0]
    np.testing.assert_allclose(curve[[0, -1], 1], [0.0, float((b - a).norm())], atol=1e-9)  # from A to B


def test_no_model_call_happens_outside_the_evaluator(monkeypatch):
    """Counted at the model's forward: every forward runs inside an evaluator call."""
    model, _, ev = tiny_evaluator()
    a = ev.w0
    b = a + torch.randn(a.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    inside = {"depth": 0, "outside": 0}
    for name in ("evaluate", "values_and_gradients"):
        real = getattr(ev, name)

        def counted(W, real=real):
            inside["depth"] += 1
            try:
                return real(W)
            finally:
                inside["depth"] -= 1
        monkeypatch.setattr(ev, name, counted)
    forward = nn.Linear.forward

    def watched(self, x):
        inside["outside"] += inside["depth"] == 0
        return forward(self, x)
    monkeypatch.setattr(nn.Linear, "forward", watched)
    connect(ev, a, b, path=["line", "bezier"], points=5, steps=2)
    assert inside["outside"] == 0


def test_the_trained_bezier_curve_has_less_than_half_the_lines_barrier(two_minima, tmp_path):
    a, b = two_minima
    ev = Recipe.from_checkpoint(a, subset=None).evaluator(a)
    w_b = ev.space.flatten(load_checkpoint(b, ev.module_at(ev.w0)))
    result = connect(ev, ev.w0, w_b, path=["line", "bezier"], points=21, steps=100, lr=0.05, seed=0)
    line, curve = (p["barriers"]["train"]["loss"]["barrier"] for p in result.paths)
    assert line > 0.2 and curve < line / 2, (line, curve)
    error = [p["barriers"]["train"]["error"]["barrier"] for p in result.paths]
    assert error[1] < error[0]
    assert result.paths[1]["training"]["last_loss"] < result.paths[1]["training"]["first_loss"]
    back = load_result(result.save(tmp_path / "c.h5"))
    assert isinstance(back, Connection) and back.paths == result.paths
    np.testing.assert_array_equal(back.curves[1], result.curves[1])


def test_the_plane_coordinates_put_a_at_the_origin_b_on_the_x_axis_and_the_bend_above():
    g = torch.Generator().manual_seed(0)
    a, b, theta = (torch.randn(5, generator=g, dtype=torch.float64) for _ in range(3))
    xy = plane_coordinates(torch.stack([a, b, theta]), a, b, theta)
    assert xy[0] == pytest.approx([0, 0]) and xy[1] == pytest.approx([float((b - a).norm()), 0])
    assert xy[2][1] > 0 and np.hypot(*xy[2]) == pytest.approx(float((theta - a).norm()))
    assert plane_coordinates(torch.stack([a, b]), a, b, (a + b) / 2)[:, 1] == pytest.approx([0, 0])


def test_bad_input_is_refused_in_one_line():
    _, _, ev = tiny_evaluator()
    a = ev.w0
    b = a + 1.0
    with pytest.raises(ConfigError, match="path must be one of line, bezier, polychain, neb .got 'spline'"):
        connect(ev, a, b, path="spline")
    with pytest.raises(ConfigError, match=r"points must be an integer >= 3 \(got 1\)"):
        connect(ev, a, b, points=1)
    with pytest.raises(ConfigError, match="w_b must be a vector of the model's 51 parameters.*one architecture"):
        connect(ev, a, torch.zeros(44, dtype=torch.float64))
