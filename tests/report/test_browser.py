"""The report in a real browser: headless Chromium, no network, every plotly figure drawn, and a layout
that reads at 420, 800 and 1400 px (measured in the DOM by ``_layout.js``, with a screenshot of each).

Skipped where neither ``chromium`` nor ``chromium-browser`` is on PATH (``.ci/run`` installs Debian's
``chromium`` when it is missing, so CI runs it).
"""

from __future__ import annotations

import dataclasses
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from _report_page import by_id, parse, plotly_ids

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
NEEDS_BROWSER = pytest.mark.skipif(BROWSER is None, reason="no chromium or chromium-browser on PATH: install Debian's "
                                   "chromium (apt-get install chromium) to render the report in a browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=20000"]
HEIGHT = 3000


@NEEDS_BROWSER
def test_headless_chromium_draws_every_plotly_figure_without_network(built, tmp_path):
    page = built.out / "report.html"
    command = [BROWSER, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()]
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


def _two_columns(report):
    """The report with a second subject's column in its key figures (a copy of the first): as wide as the
    summary of a report on two runs, without computing a second one."""
    summary = report.sections[0]
    table = summary.tables[0]
    wide = dataclasses.replace(table, columns=table.columns + ("second-run-with-a-long-name",),
                               rows=tuple(row + (row[1],) for row in table.rows))
    return dataclasses.replace(report, sections=(dataclasses.replace(summary, tables=(wide,)),) + report.sections[1:])


def layout(report, width: int, where: Path) -> dict:
    """The faults ``_layout.js`` finds in the page drawn ``width`` CSS pixels wide (in an iframe: headless
    Chromium's window is at least 500 px wide), with a screenshot in ``where/layout-<width>.png``."""
    script = (Path(__file__).parent / "_layout.js").read_text(encoding="utf-8")
    page = report.to_html().replace("</body>", f"<script>{script}</script></body>")
    probe = where / f"probe-{width}.html"
    probe.write_text(f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body style="margin:0">'
                     f'<iframe style="border:0;display:block;width:{width}px;height:{HEIGHT}px" '
                     f'srcdoc="{html.escape(page, quote=True)}"></iframe></body></html>', encoding="utf-8")
    shot = where / f"layout-{width}.png"
    command = [BROWSER, *FLAGS, f"--user-data-dir={where / 'profile'}", f"--window-size={max(width, 500)},{HEIGHT}",
               "--hide-scrollbars", f"--screenshot={shot}", "--dump-dom", probe.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.findall(r'<pre id="layout-check">(.*?)</pre>', done.stdout, re.S)
    assert found, "the layout script did not run"
    assert shot.stat().st_size > 10_000  # a picture of the page, to look at
    return json.loads(html.unescape(found[-1]))


@NEEDS_BROWSER
@pytest.mark.parametrize(("width", "columns"), [(420, 1), (800, 2), (1400, 2)])
def test_the_page_reads_at_420_800_and_1400_px(built, tmp_path, width, columns):
    """No box passes the window's right edge (tables scroll inside their own box), nothing is clipped,
    no table, figure, caption, warning or paragraph overlaps another, and no plotly figure is drawn wider
    than its box; the summary's key figures need no scrolling from 800 px on."""
    report = built.report if columns == 1 else _two_columns(built.report)
    found = layout(report, width, tmp_path)
    assert found["width"] == width and found["scrollWidth"] == width, found
    assert found["outside"] == [] and found["clipped"] == [] and found["overlap"] == [], found
    if width >= 800:
        assert not [s for s in found["scrollers"] if "section#summary" in s], found["scrollers"]
