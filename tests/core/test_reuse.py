"""The one reuse rule (losslens/core/reuse.py): a request binds an analysis's arguments, inputs by fingerprint;
a stored request answers only an equal one, but for the cover rules a caller names."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from losslens.core import reuse
from losslens.core.evaluator import Evaluator
from losslens.core.plan import Plan
from losslens.curvature.operator import HessianOperator


def analysis(x, n: int = 2, *, seed: int = 0, path=None, progress: bool = True, meta=None, **options):
    """A stand-in analysis: what it returns does not matter here."""
    return x


@dataclasses.dataclass(frozen=True)
class Result:
    values: np.ndarray
    name: str
    meta: dict


def _evaluator(subset: int = 32, scale: float = 1.0) -> Evaluator:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    with torch.no_grad():
        model[0].weight.mul_(scale)
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    return Evaluator(model, "cross_entropy", (x[:subset], y[:subset]), plan=Plan(dtype=torch.float64))


def test_a_request_binds_every_argument_with_its_default_and_leaves_out_what_never_changes_a_result():
    asked = reuse.request(analysis, 1.5, path="a.h5", progress=False, meta={"note": 1}, level=3)
    assert asked == {"analysis": f"{__name__}.analysis", "x": 1.5, "n": 2, "seed": 0, "level": 3}
    assert reuse.request(analysis, 1.5, 2) == reuse.request(analysis, x=1.5, seed=0)  # bound as a call binds
    assert "n" not in reuse.Call(analysis, 1.5).ignoring("n").request()
    with pytest.raises(TypeError):
        reuse.request(analysis, 1.5, 2, 3)  # seed is keyword-only: as a call, the request refuses it


def test_inputs_are_fingerprinted_by_content():
    a = np.linspace(0, 1, 12).reshape(3, 4)
    assert reuse.fingerprint_of(a) == reuse.fingerprint_of(a.copy())
    b = a.copy()
    b[2, 3] += 1e-12
    assert len({str(reuse.fingerprint_of(x)) for x in (a, b, a.T, a.astype(np.float32), torch.tensor(a))}) == 4
    result = Result(a, "r", meta={"seconds": 1.0})
    again = Result(a.copy(), "r", meta={"seconds": 2.0})  # how long it took is not what it is
    assert reuse.fingerprint_of(result) == reuse.fingerprint_of(again) != reuse.fingerprint_of(Result(b, "r", {}))
    assert reuse.fingerprint_of(Path("x") / "y.h5") == "x/y.h5"
    with pytest.raises(TypeError, match=r"argument x: a object has no fingerprint; name one with Call.naming"):
        reuse.request(analysis, object())
    assert reuse.Call(analysis, object()).naming(x={"run": "r1"}).request()["x"] == {"run": "r1"}


def test_an_evaluator_and_an_operator_are_named_by_their_identity_and_weights():
    ev = _evaluator()
    assert reuse.fingerprint_of(ev) == reuse.fingerprint_of(_evaluator())
    for other in (_evaluator(subset=16), _evaluator(scale=2.0)):  # other data, other weights
        assert reuse.fingerprint_of(other) != reuse.fingerprint_of(ev)
    op = HessianOperator(ev)
    assert reuse.fingerprint_of(op)["evaluator"] == reuse.fingerprint_of(ev)
    assert reuse.fingerprint_of(HessianOperator(ev, ev.w0 + 1)) != reuse.fingerprint_of(op)


def test_a_stored_request_answers_only_an_equal_one_and_names_what_differs():
    stored = reuse.request(analysis, 1.5, level={"a": 1, "b": 2})
    assert reuse.answers(stored, reuse.request(analysis, 1.5, level={"b": 2, "a": 1}))
    asked = reuse.request(analysis, 1.5, n=3, level={"a": 1, "b": 5}, extra=0)
    assert reuse.differences(stored, asked) == [("extra", None, 0), ("level.b", 2, 5), ("n", 2, 3)]
    assert not reuse.answers(stored, asked)
    assert reuse.differences([1], [2]) == [("the whole request", [1], [2])]


def test_cover_rules_let_more_answer_less_and_nothing_else():
    """``k`` eigenpairs answer a request for fewer (``AT_LEAST``); a tolerance answers a looser one (``AT_MOST``)."""
    covers = {"n": reuse.AT_LEAST, "seed": reuse.AT_MOST}
    stored = reuse.request(analysis, 1.5, n=4, seed=1)
    assert reuse.answers(stored, reuse.request(analysis, 1.5, n=2, seed=3), covers)
    assert reuse.differences(stored, reuse.request(analysis, 1.5, n=5, seed=0), covers) == [("n", 4, 5), ("seed", 1, 0)]
    assert not reuse.answers(stored, reuse.request(analysis, 1.5, n=2, seed=3))  # without the rules: equal only
    assert not reuse.answers({**stored, "n": None}, stored, covers)
