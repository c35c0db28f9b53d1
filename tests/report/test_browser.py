"""The report in a real browser: headless Chromium, no network, every plotly figure drawn.

Skipped where neither ``chromium`` nor ``chromium-browser`` is on PATH (``.ci/run`` installs Debian's
``chromium`` when it is missing, so CI runs it).
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from _report_page import by_id, parse, plotly_ids

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(BROWSER is None, reason="no chromium or chromium-browser on PATH: install Debian's chromium "
                    "(apt-get install chromium) to render the report in a browser")
def test_headless_chromium_draws_every_plotly_figure_without_network(built, tmp_path):
    page = built.out / "report.html"
    command = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run",
               f"--user-data-dir={tmp_path / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND",
               "--virtual-time-budget=20000", "--dump-dom", page.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = by_id(parse(done.stdout))
    figures = plotly_ids(parse(page.read_text(encoding="utf-8")))
    assert len(figures) == 8
    for figure in figures:
        node = dom[figure]
        assert "js-plotly-plot" in node.classes, f"plotly did not draw {figure}"
        assert node.find_all("div", "plot-container") and node.find_all("svg", "main-svg"), f"{figure} is empty"
    for section in ("summary", "surface", "hessian", "fit", "trajectory", "dynamics", "comparison"):
        assert dom[section].tag == "section"
