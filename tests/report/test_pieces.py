"""The reuse of result files by request, the capture of warnings, the options' checks, and the page's pieces."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from losslens.core import reuse
from losslens.core.provenance import fingerprint
from losslens.curvature.trace_estimation import TraceEstimate, trace
from losslens.errors import ConfigError
from losslens.report import _store
from losslens.report.options import ReportOptions, check_sections
from losslens.report.page import Image, Report, Section, Table, cell, key_facts

H = torch.diag(torch.arange(1.0, 7.0, dtype=torch.float64))  # trace 21


def _estimate(H, n: int = 4, evaluator: dict | None = None, calls: list | None = None):
    """A trace estimate that counts its calls and warns (``evaluator``: a stand-in input)."""
    calls.append(1)
    warnings.warn("losslens: a warning raised while computing")
    return trace(H, method="hutchinson", n_matvec=n, seed=0)


def _trace(path, calls: list, **arguments):
    """``(result, log, lines said)`` of a trace estimate kept in ``path`` for its arguments."""
    log, said = _store.Log(), []
    call = reuse.Call(_estimate, H, calls=calls, **arguments).ignoring("calls")
    return _store.result(path, TraceEstimate, call, log, said.append), log, said


def test_a_result_is_reused_only_for_the_same_request_and_keeps_its_warnings(tmp_path):
    path, calls = tmp_path / "trace.h5", []
    a, first, _ = _trace(path, calls, n=4, evaluator={"data": "x"})
    assert first.files == [(path, "computed")] and first.warnings == ["a warning raised while computing"]
    request = a.meta["report"]["request"]
    assert request == {"analysis": f"{__name__}._estimate", "H": {"sha256": fingerprint([H])}, "evaluator": {"data": "x"},
                       "n": 4} and a.meta["report"]["versions"]["torch"]
    b, again, _ = _trace(path, calls, evaluator={"data": "x"}, n=4)  # the same request, arguments in another order
    assert len(calls) == 1 and again.files == [(path, "reused")] and b.value == a.value
    assert again.warnings == first.warnings  # stored with the result
    _, other, said = _trace(path, calls, n=4, evaluator={"data": "y"})
    assert len(calls) == 2 and other.files == [(path, "recomputed")]
    assert said[0] == f"  recomputing {path}: it answers another request (differing: evaluator)"


def test_another_commands_file_or_an_unreadable_one_is_kept_and_the_result_goes_beside_it(tmp_path):
    path, beside, calls = tmp_path / "trace.h5", tmp_path / "report-trace.h5", []
    trace(H, method="hutchinson", n_matvec=4, seed=0).save(path)  # as losslens hessian writes it
    kept = path.read_bytes()
    _, log, said = _trace(path, calls)
    assert len(calls) == 1 and path.read_bytes() == kept and log.files == [(beside, "computed")]
    assert said[0] == (f"  keeping {path} (it is not the report's and does not answer _estimate): the report's "
                       f"result goes to {beside}")
    _, log, _ = _trace(path, calls)  # the report's own file beside it is reused
    assert len(calls) == 1 and log.files == [(beside, "reused")]
    path.write_bytes(b"not hdf5")
    _, log, _ = _trace(path, calls)
    assert path.read_bytes() == b"not hdf5" and log.files == [(beside, "reused")]
    trace(H, method="hutchinson", n_matvec=4, seed=0).save(beside)  # a file the report did not write, on its name
    with pytest.raises(ConfigError, match="report-trace.h5: the report writes its own results under this name"):
        _trace(path, calls)


def test_another_commands_file_that_answers_is_reused_as_it_is(tmp_path):
    path, calls = tmp_path / "trace.h5", []
    trace(H, method="hutchinson", n_matvec=4, seed=0).save(path)
    kept = path.read_bytes()
    log = _store.Log()
    call = reuse.Call(_estimate, H, calls=calls).ignoring("calls")
    value = _store.result(path, TraceEstimate, call, log, print, answers=lambda old: old if old.n_matvec == 4 else None)
    assert not calls and log.files == [(path, "reused")] and path.read_bytes() == kept and value.n_matvec == 4


def test_capture_records_warnings_once_each_and_shows_none(recwarn):
    log = _store.Log()
    with _store.WarningCapture(log):
        for _ in range(2):
            warnings.warn("losslens: the same   thing\ntwice")
        warnings.warn("another", RuntimeWarning)
    assert log.warnings == ["the same thing twice", "another"] and len(recwarn) == 0


def test_options_are_checked_with_the_valid_choices():
    with pytest.raises(ConfigError, match="unknown split 'val'; valid: train, test"):
        ReportOptions(split="val")
    with pytest.raises(ConfigError, match="unknown fit_model 'cubic'; valid: gaussian, rotated, mixture, quadratic"):
        ReportOptions(fit_model="cubic")
    with pytest.raises(ConfigError, match="top_k must be an integer >= 2, got 1"):
        ReportOptions(top_k=1)
    with pytest.raises(ConfigError, match="range must be two finite numbers A < B, got 1 -1"):
        ReportOptions(range=(1, -1))
    with pytest.raises(ConfigError, match="optimizers must be a non-empty sequence"):
        ReportOptions(optimizers="sgd")
    assert ReportOptions(range=[-2, 2]).range == (-2.0, 2.0)
    assert check_sections(["fit,surface", "surface"]) == ("surface", "fit")  # the report's order, each once
    with pytest.raises(ConfigError, match="no report section asked for"):
        check_sections([" , "])


def test_cells_and_key_facts():
    assert [cell(v) for v in (None, True, 0.123456, float("nan"), [1.0, 2.5], "x", 3)] == \
        ["–", "yes", "0.1235", "–", "1, 2.5", "x", "3"]
    ev = {"model": {"name": "mlp", "kwargs": {}, "architecture": "abc"}, "n_params": 10, "loss": "mse", "bn": "eval",
          "data": {"name": "digits", "split": "test", "n_samples": 5, "subset": {"of": 450, "seed": 3},
                   "fingerprint": "f"},
          "checkpoint": {"path": "r/c.pt", "sha256": "0123", "step": 4, "epoch": 1.0},
          "plan": {"device": "cpu", "dtype": "float32", "fallbacks": []}}
    facts = key_facts({"source": {"nested": ev}, "seed": 7, "versions": {"gudhi": "3.13"}})
    assert facts["checkpoint sha256"] == "0123" and facts["seed"] == "7" and facts["versions"] == "gudhi 3.13"
    assert facts["data"] == "digits, test split, 5 samples (a subset of 450, seed 3), fingerprint f"
    assert facts["execution plan"] == "device=cpu, dtype=float32" and facts["loss, BatchNorm"] == "mse, bn=eval"
    assert key_facts({}) == {}


def test_a_page_without_plotly_has_no_plotly_js_and_escapes_text(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure()
    fig.add_subplot().plot([0, 1])
    section = Section("a-b", "<b>title</b>", "x < y", (Image.of(fig, "c"),), (Table("t", ("k",), (("<v>",),)),),
                      ("careful & <quick>",))
    page = Report("r", (section,), {"k": "<meta>"}).to_html()
    assert "plotly" not in page and page.count("<img src=\"data:image/png;base64,") == 1
    assert "&lt;b&gt;title&lt;/b&gt;" in page and "careful &amp; &lt;quick&gt;" in page and "&lt;v&gt;" in page
    assert '<a href="#a-b">' in page and '<section id="a-b">' in page


def test_eigenpair_checks_flag_large_residuals_and_undetermined_eigenvectors():
    from losslens.report.checks import eigenpair_checks

    assert eigenpair_checks([10.0, 7.0], [1e-6, 2e-6]) == []
    large = eigenpair_checks([10.0, 7.0], [0.02, 1e-6])  # 2e-3 of lambda_1, and sin(angle) <= 0.02 / 3
    assert large == ["eigenpair 1: the residual |Hv - lambda v| = 0.02 is 0.002 of |lambda_1|: lambda_1 is "
                     "uncertain by up to 0.02"]
    close = eigenpair_checks([10.0, 10.0 - 1e-6, 3.0], [1e-6, 1e-6, 1e-9])  # a double eigenvalue: bound 1
    assert [w.split(":")[0] for w in close] == ["eigenvector 1 is not determined", "eigenvector 2 is not determined"]
    assert "sin(angle) <= 1" in close[0] and eigenpair_checks([5.0, 5.0], [0.0, 0.0])[0].endswith("are arbitrary")


def test_an_estimate_whose_error_exceeds_it_is_said_to_be_not_resolved():
    from losslens.report.checks import estimate

    assert estimate(52.41, 0.23) == "52.41 ± 0.23"
    assert estimate(12.23, 16) == "not resolved: error larger than value (12.23 ± 16)"
    assert estimate(-3.0, 3.0).startswith("not resolved")
    assert not TraceEstimate(12.23, 16.0, 8, "hutch++").resolved and TraceEstimate(52.41, 0.23, 8, "hutch++").resolved


def test_the_slq_trace_has_the_standard_error_of_its_per_vector_estimates():
    from losslens.curvature.spectrum import Spectrum

    def spectrum(nodes, weights):
        return Spectrum(np.linspace(0, 5, 10), np.zeros(10), np.array(nodes), np.array(weights), 0.1, {"n_params": 10})

    two = spectrum([[1.0, 3.0], [4.0, 4.0]], [[0.5, 0.5], [0.5, 0.5]])  # per vector: 10 * 2 = 20 and 10 * 4 = 40
    assert two.trace_estimate == pytest.approx(30.0) and two.trace_stderr == pytest.approx(10.0)
    assert spectrum([[1.0, 3.0]], [[0.5, 0.5]]).trace_stderr is None  # one vector: no spread, no error bar


def test_training_curves_tick_the_log_loss_axis_at_readable_values_only():
    """The loss axis is logarithmic and labelled at 1-2-5 values, never at every minor tick ("2 1 9 8 7")."""
    from pathlib import Path
    from types import SimpleNamespace

    from losslens.report.figures import plotly_history

    history = [{"epoch": e, "train_loss": 2.3 * 0.6 ** e, "test_loss": 2.3 * 0.65 ** e, "train_accuracy": 0.1 + 0.08 * e}
               for e in range(11)]
    run = SimpleNamespace(history=history, metadata={"optimizer": "Adam", "lr": 3e-3, "batch_size": 64}, out=Path("r"))
    layout = plotly_history(run).layout
    assert layout.yaxis.type == "log" and layout.yaxis.title.text == "loss (log scale)"
    ticks = list(layout.yaxis.tickvals)
    assert 3 <= len(ticks) <= 9 and set(np.round(ticks / 10.0 ** np.floor(np.log10(ticks)), 6)) <= {1.0, 2.0, 5.0}
    assert list(layout.yaxis.ticktext) == [f"{t:.4g}" for t in ticks]
    assert list(layout.yaxis2.ticktext)[-1].endswith("%")  # accuracy in percent
