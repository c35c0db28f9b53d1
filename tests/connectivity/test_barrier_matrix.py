"""The matrix of line barriers between weight vectors (losslens/connectivity/barrier_matrix.py): zero diagonal,
each pair's value the barrier of its line computed directly (raw, and after weight matching), one batched call of
the evaluator core per line."""

import numpy as np
import pytest
import torch
from torch import nn

from losslens.connectivity.alignment import align
from losslens.connectivity.barrier_matrix import barrier_matrix
from losslens.connectivity.barriers import barriers
from losslens.core.evaluator import Evaluator
from losslens.errors import ConfigError


@pytest.fixture(scope="module")
def three():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 5, generator=g), torch.randint(0, 3, (64,), generator=g)
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3)))
    ev = Evaluator(models[0], "cross_entropy", (x, y), plan={"device": "cpu"})
    return ev, models, [ev.space.flatten(m).to(ev.w0.dtype) for m in models]


def _direct(ev, w_a, w_b, points):
    """The line's barrier from one evaluation per point."""
    t = np.linspace(0, 1, points)
    loss = [float(ev.evaluate(((1 - s) * w_a + s * w_b)[None]).loss[0]) for s in t]
    return barriers(t, loss)["barrier"]


def test_diagonal_zero_and_each_pair_the_barrier_of_its_line(three, monkeypatch):
    ev, models, weights = three
    calls = []
    evaluate = ev.evaluate
    monkeypatch.setattr(ev, "evaluate", lambda W: calls.append(len(W)) or evaluate(W))
    m = barrier_matrix(ev, weights, ["a", "b", "c"], points=7)
    assert calls == [7] * 6  # one batched call per line: 3 pairs, raw and aligned
    monkeypatch.undo()
    assert np.all(np.diag(m.raw) == 0) and np.all(np.diag(m.aligned) == 0)
    np.testing.assert_array_equal(m.raw, m.raw.T)
    for i, j in ((0, 1), (0, 2), (1, 2)):
        assert m.raw[i, j] == pytest.approx(_direct(ev, weights[i], weights[j], 7), rel=1e-9, abs=1e-12)
        matched = ev.space.flatten(align(models[i], models[j], "weights").apply(models[j])).to(ev.w0.dtype)
        assert m.aligned[i, j] == pytest.approx(_direct(ev, weights[i], matched, 7), rel=1e-6, abs=1e-9)
    assert m.barrier == "barrier" and "Frankle" in m.meta["definition"] and m.meta["points"] == 7
    rows = m.rows()
    assert m.columns() == ("alignment", "barrier", "run", "a", "b", "c") and len(rows) == 6
    assert [(r["alignment"], r["run"]) for r in rows[2:4]] == [("none", "c"), ("weights", "a")]
    assert rows[3]["b"] == m.aligned[0, 1]


def test_bad_requests(three):
    ev, _, weights = three
    with pytest.raises(ConfigError, match="two or more weight vectors with one distinct label each"):
        barrier_matrix(ev, weights[:2], ["a", "a"])
    with pytest.raises(ConfigError, match="barrier must be one of barrier, barrier_mean, barrier_max"):
        barrier_matrix(ev, weights, ["a", "b", "c"], barrier="height")
    with pytest.raises(ConfigError, match="points must be an integer >= 3"):
        barrier_matrix(ev, weights, ["a", "b", "c"], points=2, aligned=False)
