"""The connectivity section: a report of two or more checkpoints connects them (line and Bezier curve, raw and
weight-matched) with the numbers ``connect`` gives called directly; a rerun reuses ``connect-<A>-<B>.h5`` and a
changed option recomputes it; a report of one subject has no connectivity section."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from _report_tiny import TINY
from losslens.cli.main import main
from losslens.connectivity.alignment import align
from losslens.connectivity.barriers import DEFINITIONS, NAMES
from losslens.connectivity.connect import connect
from losslens.core.checkpoints import load_checkpoint
from losslens.errors import ConfigError
from losslens.report import ReportOptions, build_report, several

FAST = dataclasses.replace(TINY, connect_points=5, bend_updates=3)


@pytest.fixture(scope="module")
def ends(run_dir):
    """The first and the last checkpoint of the tiny run."""
    checkpoints = sorted(run_dir.glob("step_*.safetensors"))
    return checkpoints[0], checkpoints[-1]


def _section(report, id: str = "connectivity"):
    (section,) = [s for s in report.sections if s.id == id]
    return section


def _table(section, caption: str):
    (table,) = [t for t in section.tables if t.caption == caption]
    return table


def _direct(a, b) -> dict:
    """``{(path, align): loss and error barriers}`` of ``connect`` called directly on A and B (B weight-matched
    to A by ``align`` for ``weights``)."""
    ev = FAST.recipe(str(a)).evaluator(str(a), device="cpu", threads=1)
    w_b = ev.space.flatten(load_checkpoint(str(b), ev.module_at(ev.w0)))
    model_b = ev.module_at(w_b)
    matched = ev.space.flatten(align(ev.module_at(ev.w0), model_b, "weights", data=ev.data.x).apply(model_b),
                               dtype=ev.dtype)
    out = {}
    for how, target in (("none", w_b), ("weights", matched)):
        c = connect(ev, ev.w0, target, path=["line", "bezier"], points=5, steps=3, lr=0.05, seed=0, align=how)
        for p in c.paths:
            found = p["barriers"]["train"]
            out[(p["path"], how)] = [found["loss"][n] for n in NAMES] + [found["error"][n] for n in NAMES]
    return out


def test_two_checkpoints_have_a_connectivity_section_with_the_barriers_of_connect(ends, tmp_path):
    a, b = ends
    report = build_report([a, b], tmp_path, sections=["connectivity"], options=FAST, progress=False,
                          say=lambda text: None)
    assert [s.id for s in report.sections] == ["summary", "connectivity"]
    section = _section(report)
    assert section.error is None and not section.warnings
    rows = _table(section, "Barriers").rows
    assert _table(section, "Barriers").columns[4:] == tuple(f"{k} {n}" for k in ("loss", "error") for n in NAMES)
    direct = _direct(a, b)
    assert {(r[1], r[2]) for r in rows} == set(direct) and len(rows) == 4
    for row in rows:
        assert row[0] == f"{a.stem} - {b.stem}" and row[3] == "train"
        np.testing.assert_allclose(row[4:], direct[(row[1], row[2])], rtol=1e-12, atol=1e-15)
    assert set(_table(section, "Definitions").rows) >= set(DEFINITIONS.items())
    (aligned,) = _table(section, "Alignments").rows
    assert aligned[1] == "weights" and aligned[2] < 1e-5  # the permutation keeps B's function
    assert len(section.figures) == 2  # the pair's figures: along t, and on the plane (no matrix for two)
    assert [p.path for p in section.provenance] == [str(tmp_path / f"connect-{a.stem}-{b.stem}.h5")]


def test_a_rerun_reuses_the_connection_and_a_changed_option_recomputes_it(ends, tmp_path):
    a, b = ends
    path = tmp_path / f"connect-{a.stem}-{b.stem}.h5"
    for options, line in ((FAST, f"  wrote {path}"), (FAST, f"  reused {path}"),
                          (dataclasses.replace(FAST, bend_updates=4),
                           f"  recomputing {path}: it answers another request (differing: steps)"),
                          (dataclasses.replace(FAST, bend_updates=4, connect_paths=("line",)),
                           f"  recomputing {path}: it answers another request (differing: paths, train_evaluator)")):
        lines = []
        build_report([a, b], tmp_path, sections=["connectivity"], options=options, progress=False, say=lines.append)
        assert line in lines, lines


def test_one_subject_has_no_connectivity_section(ends, tmp_path):
    report = build_report([ends[1]], tmp_path, sections=["connectivity", "surface"],
                          options=dataclasses.replace(FAST, steps=5), progress=False, say=lambda text: None)
    assert [s.id for s in report.sections] == ["summary", "surface"]
    assert "connectivity (it needs two or more checkpoints or runs)" in report.sections[0].text
    assert not list(tmp_path.glob("connect-*.h5"))


def test_a_model_whose_permutations_do_not_derive_is_connected_raw_only_and_says_why(ends, tmp_path, monkeypatch):
    def underivable(model):
        raise ConfigError("module 'net.0': no permutation structure")

    monkeypatch.setattr(several, "permutation_spec", underivable)
    report = build_report(list(ends), tmp_path, sections=["connectivity"], options=FAST, progress=False,
                          say=lambda text: None)
    section = _section(report)
    assert {r[2] for r in _table(section, "Barriers").rows} == {"none"}
    assert "B is not weight-matched to A: module 'net.0': no permutation structure" in section.warnings


def test_three_subjects_show_the_barrier_matrix_of_their_lines(run_dir, tmp_path):
    checkpoints = sorted(run_dir.glob("step_*.safetensors"))
    options = dataclasses.replace(FAST, connect_paths=("line",))
    report = build_report(checkpoints, tmp_path, sections=["connectivity"], options=options, progress=False,
                          say=lambda text: None)
    section = _section(report)
    rows = _table(section, "Barriers").rows
    assert len({r[0] for r in rows}) == 3 and len(section.figures) == 3 * 2 + 1  # every pair, and the matrix
    assert several.pairs(4) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert several.pairs(5) == [(0, 1), (1, 2), (2, 3), (3, 4)]


def test_the_cli_report_takes_the_connectivity_section_and_its_options(ends, tmp_path, capsys):
    a, b = ends
    assert main(["report", str(a), str(b), "--out", str(tmp_path), "--sections", "connectivity", "--subset", "100",
                 "--device", "cpu", "--threads", "1", "--no-progress", "--connect-paths", "line",
                 "--connect-points", "5", "--bend-updates", "2", "--bend-lr", "0.1"]) == 0
    stdout = capsys.readouterr().out
    path = tmp_path / f"connect-{a.stem}-{b.stem}.h5"
    assert "[connectivity] Connectivity: are the minima connected?" in stdout and f"wrote {path}" in stdout
    from losslens.connectivity.connection import Connection

    request = Connection.load(path).meta["report"]["request"]
    assert (request["paths"], request["points"], request["steps"], request["lr"]) == (["line"], 5, 2, 0.1)


def test_bad_connect_options_are_refused_in_one_line():
    with pytest.raises(ConfigError, match="unknown connect_paths 'curve'; valid: line, bezier, polychain, neb"):
        ReportOptions(connect_paths=("line", "curve"))
    with pytest.raises(ConfigError, match="connect_points must be an integer >= 3, got 2"):
        ReportOptions(connect_points=2)
