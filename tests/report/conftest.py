"""A tiny training run and its report, built once for the report tests.

The run: a 610-parameter MLP trained for 2 epochs on 128 digits (3 checkpoints). The report evaluates
100 samples, with the default grid sizes (41 x 41 surface and PCA plane, 21 x 21 Hessian plane, 41-point
line), so the page is as large as the default report's, and small budgets for the Hessian estimators,
t-SNE and the replay, so that it is built in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from _report_tiny import TINY, tiny_run
from losslens.report import build_report


@dataclass
class Built:
    run: Path
    out: Path
    report: object
    lines: list[str]


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("report-run") / "run")


@pytest.fixture(scope="session")
def built(run_dir, tmp_path_factory) -> Built:
    """The full report of the tiny run (every section), written once; tests must not change its folder."""
    out = tmp_path_factory.mktemp("report-out")
    lines: list[str] = []
    report = build_report([run_dir], out, options=TINY, progress=False, say=lines.append)
    return Built(run_dir, out, report, lines)
