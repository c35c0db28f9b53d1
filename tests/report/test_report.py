"""The report of a tiny run: the page's structure, its numbers against their sources, and what a rerun reuses."""

from __future__ import annotations

import base64
import dataclasses
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from _report_page import by_id, parse, plotly_ids
from _report_tiny import TINY
from losslens.connectivity.barriers import DEFINITIONS
from losslens.core.evaluator import Evaluator
from losslens.core.provenance import file_sha256
from losslens.core.recipe import Recipe
from losslens.curvature.hessian import Eigenpairs
from losslens.curvature.operator import HessianOperator
from losslens.landscape.surface import Surface
from losslens.report import SECTIONS, build_report

FILES = ("surface.h5", "interpolation.h5", "eigenpairs.h5", "trace.h5", "spectrum.h5", "multiscale.h5", "topology.h5",
         "hessian_plane.h5", "fit.h5", "replay.h5", "trajectory_pca.h5", "trajectory.h5", "trajectory_surface.h5",
         "embedding_pca.h5", "embedding_tsne.h5", "dynamics.h5", "compare_surfaces.h5")
GRIDS = ("surface.h5", "interpolation.h5", "hessian_plane.h5", "trajectory_surface.h5")
EVALUATIONS = ("evaluate", "evaluate_affine", "gradient", "hvp", "values_and_gradients")
SMALL = dataclasses.replace(TINY, steps=9, interpolation_steps=9, plane_steps=7, trajectory_steps=7, density=False)


def _count_evaluations(monkeypatch) -> Counter:
    """Counts every call of the evaluator's public evaluations and of the Hessian operator's products
    (which keep their own gradient graph): every loss, gradient and curvature goes through one of them."""
    calls = Counter()
    for cls, name in [(Evaluator, n) for n in EVALUATIONS] + [(HessianOperator, "__matmul__")]:
        original = getattr(cls, name)

        def counting(self, *args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, counting)
    return calls


def _statuses(report) -> dict[str, str]:
    return {Path(p.path).name: p.status for s in report.sections for p in s.provenance if p.path.endswith(".h5")}


def _in_provenance(node) -> bool:
    """Whether a node lies in a provenance block (``<details>``), whose tables have no ``<tbody>``."""
    while node is not None and node.tag != "details":
        node = node.parent
    return node is not None


def _facts(section) -> dict[str, object]:
    """The ``figure -> value`` rows of a section's two-column tables."""
    return {row[0]: row[1] for t in section.tables if t.columns == ("figure", "value") for row in t.rows}


def test_the_page_has_every_section_with_its_figures_tables_and_provenance_and_loads_nothing(built):
    path = built.out / "report.html"
    text = path.read_text(encoding="utf-8")
    assert path.stat().st_size < 10 * 2**20  # default grid sizes: the default report's size
    root = parse(text)
    ids = by_id(root)
    sections = root.find_all("section")
    assert [s.attrs["id"] for s in sections] == ["summary", *(s for s in SECTIONS if s != "connectivity")]  # one subject
    for s in sections:
        assert s.find_all("h2"), s.attrs["id"]
        images = [i.attrs["src"] for i in s.find_all("img")]
        for src in images:
            assert src.startswith("data:image/png;base64,")
            assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
        assert s.find_all("div", "plotly-graph-div") or images, f"{s.attrs['id']} has no figure"
        tables = s.find_all("table")
        assert tables and all(t.find_all("tbody")[0].find_all("tr") for t in tables if not _in_provenance(t))
        assert s.find_all("details", "provenance"), f"{s.attrs['id']} has no provenance"
    toc = [a.attrs["href"] for a in ids["contents"].find_all("a")]
    assert toc == [f"#{s.attrs['id']}" for s in sections]
    # one copy of plotly.js, in the head, and one div per interactive figure, each with its own id
    banners = [s for s in root.find_all("script") if "plotly.js v" in s.all_text()]
    assert len(banners) == 1 and text.count("* plotly.js v") == 1
    assert len(plotly_ids(root)) == len(set(plotly_ids(root))) == 8
    # offline: nothing is loaded from anywhere but the page itself
    assert not root.find_all("link") and not root.find_all("iframe")
    for node in root.iter():
        for attr in ("src", "href", "srcset", "data"):
            if attr in node.attrs:
                assert node.attrs[attr].startswith(("#", "data:")), (node.tag, node.attrs[attr][:80])
    style = "".join(s.all_text() for s in root.find_all("style"))
    assert "url(" not in style and "@import" not in style


def test_the_numbers_are_those_of_the_result_files_and_of_an_independent_evaluation(built):
    report = built.report
    last = sorted(built.run.glob("step_*.safetensors"))[-1]
    ev = Recipe.from_checkpoint(str(last), data="digits", split="train", subset=100).evaluator(str(last), device="cpu")
    loss_w0 = float(ev.evaluate(ev.w0[None]).loss[0])
    assert _facts(report.section("surface"))["loss at w0"] == pytest.approx(loss_w0, rel=1e-6)
    summary = dict(report.section("summary").tables[0].rows)
    assert summary["loss at w0 (report's data)"] == pytest.approx(loss_w0, rel=1e-6)
    assert summary["checkpoint sha256"] == file_sha256(last)[:16]
    pairs = Eigenpairs.load(built.out / "eigenpairs.h5")
    eig_rows = report.section("hessian").tables[0].rows
    assert [r[1] for r in eig_rows] == pairs.values.tolist()
    assert [r[2] for r in eig_rows] == pairs.meta["residual_norms"]
    line = Surface.load(built.out / "interpolation.h5")
    facts = _facts(report.section("interpolation"))
    assert facts["loss at the checkpoint (t = 1)"] == pytest.approx(loss_w0, rel=1e-6)
    assert facts["distance |w1 - w0| in weight space"] == pytest.approx(line.directions.meta["norm"])
    inside = (line.x >= 0) & (line.x <= 1)
    loss, t = line.loss[inside], line.x[inside]  # each barrier's row names its definition
    assert facts[f"barrier_max: {DEFINITIONS['barrier_max']}"] == pytest.approx(max(loss) - max(loss[0], loss[-1]))
    assert facts[f"barrier_mean: {DEFINITIONS['barrier_mean']}"] == pytest.approx(max(loss) - (loss[0] + loss[-1]) / 2)
    assert facts[f"barrier: {DEFINITIONS['barrier']}"] == pytest.approx(max(loss - ((1 - t) * loss[0] + t * loss[-1])))
    assert summary[f"barrier_max from the initialization: {DEFINITIONS['barrier_max']}"] == pytest.approx(
        max(loss) - max(loss[0], loss[-1]))
    # the provenance names the checkpoint and its hash, the data and split, for every file shown
    root = parse((built.out / "report.html").read_text(encoding="utf-8"))
    surface = by_id(root)["surface"]
    block = surface.find_all("details", "provenance")[0]
    rows = {tr.find_all("th")[0].all_text(): tr.find_all("td")[0].all_text() for tr in block.find_all("tr")}
    assert rows["checkpoint sha256"] == file_sha256(last)
    assert rows["data"].startswith("digits, train split, 100 samples")
    assert "bn=eval" in rows["loss, BatchNorm"] and "torch" in rows["versions"]


def test_every_trace_estimate_in_the_report_has_its_error_bar(built):
    from losslens.curvature.spectrum import Spectrum
    from losslens.curvature.trace_estimation import TraceEstimate

    spectrum, tr = Spectrum.load(built.out / "spectrum.h5"), TraceEstimate.load(built.out / "trace.h5")
    per_vector = spectrum.meta["n_params"] * (spectrum.weights * spectrum.nodes).sum(axis=1)  # 2 start vectors
    facts = _facts(built.report.section("hessian"))
    slq = f"{per_vector.mean():.6g} ± {per_vector.std(ddof=1) / np.sqrt(2):.2g} (SLQ, 2 start vectors)"
    assert facts["trace from the density's start vectors"] in (slq, f"not resolved: error larger than value ({slq})")
    assert facts["trace"].startswith(f"{tr.value:.6g} ± {tr.stderr:.2g} (hutch++")
    P = spectrum.meta["n_params"]
    assert facts["mean eigenvalue trace / P"] == f"{tr.value / P:.6g} ± {tr.stderr / P:.2g}"


def test_a_replay_on_the_fit_reports_the_fits_value_not_the_loss(built):
    summary = dict(built.report.section("summary").tables[0].rows)
    best = min(built.report.section("replay").tables[0].as_dicts(), key=lambda row: row["final_fitted_loss"])
    assert summary["replay: lowest final fitted loss"] == f"{best['optimizer']} ({best['final_fitted_loss']:.4g})"
    assert all("fitted loss" in label for label in summary if label.startswith("replay") and "loss" in label)


def test_a_degenerate_fit_is_flagged_with_its_reasons():
    from types import SimpleNamespace

    from losslens.report.checks import degenerate

    why = "offset = 1152 ± 3.2e+04: the standard error exceeds the value"
    assert degenerate(SimpleNamespace(model="gaussian", degenerate=True, warnings=(why,))) == [
        f"the gaussian fit is degenerate: {why}"]
    assert degenerate(SimpleNamespace(model="gaussian", degenerate=False, warnings=())) == []
    assert degenerate(SimpleNamespace(model="quadratic")) == []  # a fit that records no such flag


def test_warnings_of_the_analyses_are_in_their_sections(built):
    hessian = built.report.section("hessian")
    assert any("standard error" in w for w in hessian.warnings)  # 12 products: a noisy trace, flagged
    root = parse((built.out / "report.html").read_text(encoding="utf-8"))
    block = by_id(root)["hessian"].find_all("div", "warnings")
    assert block and "standard error" in block[0].all_text()


def test_a_rerun_evaluates_nothing_and_rewrites_no_result(built, monkeypatch):
    assert {p.name for p in built.out.glob("*.h5")} == set(FILES)
    stamps = {name: (built.out / name).stat().st_mtime_ns for name in FILES if name not in GRIDS}
    grids = {name: Surface.load(built.out / name) for name in GRIDS}
    calls = _count_evaluations(monkeypatch)
    lines: list[str] = []
    report = build_report([built.run], built.out, options=TINY, progress=False, say=lines.append)
    assert sum(calls.values()) == 0, calls
    assert {name: (built.out / name).stat().st_mtime_ns for name in stamps} == stamps  # not rewritten
    for name, before in grids.items():  # opened to resume, found finished: the same values and metadata
        after = Surface.load(built.out / name)
        np.testing.assert_array_equal(after.loss, before.loss)
        assert after.meta == before.meta
    assert _statuses(report) == {name: "reused" for name in FILES}
    assert not [line for line in lines if line.strip().startswith(("wrote", "recomputing", "replacing"))
                and not line.endswith(("report.html", "report.json")) and "report.html (" not in line]
    assert [s.warnings for s in report.sections] == [s.warnings for s in built.report.sections]


def test_a_changed_request_recomputes_what_depends_on_it_and_says_why(built, tmp_path, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(built.out, out)
    calls = _count_evaluations(monkeypatch)
    lines: list[str] = []
    options = dataclasses.replace(TINY, steps=21, trace_samples=16)
    report = build_report([built.run], out, options=options, sections=["surface", "hessian", "multiscale", "topology"],
                          progress=False, say=lines.append)
    assert _statuses(report) == {"surface.h5": "recomputed", "eigenpairs.h5": "reused", "trace.h5": "recomputed",
                                 "spectrum.h5": "reused", "multiscale.h5": "recomputed", "topology.h5": "recomputed"}
    said = "\n".join(lines)
    assert f"replacing {out / 'surface.h5'}" in said and "x coordinates differ" in said
    assert f"recomputing {out / 'trace.h5'}: it answers another request (differing: n_matvec)" in said
    assert f"recomputing {out / 'multiscale.h5'}: it answers another request (differing: surface)" in said
    assert calls["evaluate_affine"] > 0 and calls["__matmul__"] > 0
    assert Surface.load(out / "surface.h5").shape == (21, 21)


def test_a_run_and_a_checkpoint_side_by_side(run_dir, tmp_path):
    init = run_dir / "step_000000.safetensors"
    out = tmp_path / "out"
    report = build_report([run_dir, init], out, options=SMALL, names=["trained", "init"], progress=False,
                          sections=["surface", "interpolation", "fit", "comparison"], say=lambda text: None)
    assert [s.id for s in report.sections] == ["summary", "trained-surface", "trained-interpolation", "trained-fit",
                                               "init-surface", "init-fit", "comparison"]
    assert "interpolation of init (it needs a run directory, not a checkpoint)" in report.section("summary").text
    assert report.section("summary").tables[0].columns == ("figure", "trained", "init")
    assert all((out / who / name).is_file() for who in ("trained", "init") for name in ("surface.h5", "fit.h5"))
    names = [row[0] for row in report.section("comparison").tables[0].rows]
    assert names == ["trained/surface", "trained/hessian_plane", "init/surface", "init/hessian_plane"]
    distances = report.section("comparison").tables[1]  # one global basin per plane: no class left over
    column = distances.columns.index("essential_count_difference_h0")
    assert len(distances.rows) == 6 and all(row[column] == 0 for row in distances.rows)
    # the sharpness of each plane is its subject's top Hessian eigenvalue
    top = Eigenpairs.load(out / "init" / "eigenpairs.h5").values[0].item()
    assert report.section("comparison").tables[0].rows[2][-1] == pytest.approx(top)
    # each subject's own numbers: the untrained network's loss at its weights is the higher
    loss = {who: _facts(report.section(f"{who}-surface"))["loss at w0"] for who in ("init", "trained")}
    assert loss["init"] > loss["trained"]


def test_a_failing_analysis_is_shown_with_its_error_and_the_others_go_on(run_dir, tmp_path, monkeypatch):
    import losslens.landscape.fit as fit_module

    def refuse(*args, **kwargs):
        raise RuntimeError("no fit today")

    monkeypatch.setattr(fit_module, "fit_surface", refuse)
    lines: list[str] = []
    report = build_report([run_dir], tmp_path / "out", options=SMALL, sections=["surface", "fit", "replay"],
                          progress=False, say=lines.append)
    assert report.section("surface").error is None and report.section("surface").figures
    assert report.section("fit").error == "RuntimeError: no fit today"
    assert "no fit today" in report.section("fit").details  # the traceback
    assert report.section("replay").error == "it needs fit, which failed: RuntimeError: no fit today"
    assert "(failed)" in (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert lines[-1].startswith("failed: Fit of the Hessian-eigenvector plane; Optimizers replayed")
    # the plane the fit needed was computed and kept, so a rerun reuses it
    assert (tmp_path / "out" / "hessian_plane.h5").is_file()


def test_replay_falls_back_to_the_quadratic_without_the_fit(run_dir, tmp_path):
    report = build_report([run_dir], tmp_path / "out", options=SMALL, sections=["replay"], progress=False,
                          say=lambda text: None)
    from losslens.trajectories.replay_result import Replay

    r = Replay.load(tmp_path / "out" / "replay.h5")
    assert r.meta["objective"]["function"] == "quadratic" and r.meta["minimum"] == [0.0, 0.0]
    assert not (tmp_path / "out" / "fit.h5").exists() and [s.id for s in report.sections] == ["summary", "replay"]


def test_inputs_are_checked_up_front(tmp_path):
    from losslens.errors import ConfigError

    with pytest.raises(ConfigError, match="needs a checkpoint or a run directory"):
        build_report([], tmp_path)
    with pytest.raises(ConfigError, match="no such checkpoint file or run directory"):
        build_report([tmp_path / "missing.safetensors"], tmp_path)
    with pytest.raises(ConfigError, match="not a training run directory"):
        build_report([tmp_path], tmp_path)
    with pytest.raises(ConfigError, match="unknown report section 'surfaces'; valid: surface, interpolation"):
        build_report([tmp_path], tmp_path, sections=["surfaces"])



def test_the_dynamics_section_shows_lambda_max_against_the_optimizers_edge_by_default(built):
    """By default the report computes the bounded sharpness: the table has it, and the text names the limit
    of the run's optimizer (the tiny run trains with Adam: (2 + 2 beta1) / ((1 - beta1) lr))."""
    (section,) = [s for s in built.report.sections if s.id == "dynamics"]
    (table,) = section.tables
    assert table.columns[-2:] == ("sharpness", "stability_threshold")
    sharpness = [row[-2] for row in table.rows]
    assert len(sharpness) == 3 and all(np.isfinite(sharpness)) and min(sharpness) > 0
    assert [row[-1] for row in table.rows] == pytest.approx([3800.0] * 3)  # 38 / lr, lr = 1e-2
    assert "edge of stability" in section.text and "2/lr" not in section.text
