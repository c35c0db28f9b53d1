"""The report page: sections of figures, tables, warnings and provenance, as one self-contained HTML file.

The page needs nothing but itself: plotly.js is embedded once in the head (every plotly figure is a
``div`` drawn by it), static figures are PNGs in ``data:`` URIs, the style sheet is inline, and no
element loads anything from a URL. A table of contents links to every section's ``id``; each section
has its heading, figures, tables, warnings and a collapsible provenance (``<details>``) per result file.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from losslens import _io

PLOT_HEIGHT = "560px"
PNG_DPI = 96  # two 6.8-inch figures side by side on a 1400-pixel page


@dataclass(frozen=True)
class Table:
    """A table of figures: ``columns`` and one list of cells per row (numbers, strings or ``None``).

    Attributes:
        caption: what the table shows.
        columns: the column names.
        rows: one tuple of cells per row (numbers, strings or ``None``), in the order of ``columns``.
    """

    caption: str
    columns: tuple[str, ...]
    rows: tuple[tuple, ...]

    def as_dicts(self) -> list[dict]:
        return [dict(zip(self.columns, row)) for row in self.rows]


@dataclass(frozen=True)
class Plot:
    """An interactive plotly figure, as wide as the page or (``half``) half of it."""

    figure: object
    caption: str = ""
    half: bool = False


@dataclass(frozen=True)
class Image:
    """A static picture: PNG bytes."""

    png: bytes
    caption: str = ""

    @classmethod
    def of(cls, figure, caption: str = "") -> "Image":
        """A matplotlib figure as a PNG (``PNG_DPI``)."""
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=PNG_DPI)
        return cls(buffer.getvalue(), caption)


@dataclass(frozen=True)
class Provenance:
    """Where a result file came from: its path, what the report did with it, and its metadata."""

    path: str
    status: str
    meta: dict


@dataclass(frozen=True)
class Section:
    """One part of the report.

    Attributes:
        id: the HTML anchor. title: the heading. text: a short explanation (plain text).
        figures: ``Plot`` and ``Image`` items. tables: ``Table`` items.
        warnings: what the analysis warned about. provenance: one ``Provenance`` per result file.
        error: why the analysis failed (the section then holds only this), ``None`` otherwise.
        details: further text shown collapsed (e.g. a failure's traceback).

    Attributes:
        id: the HTML anchor.
        title: the heading.
        text: a short explanation (plain text).
        figures: ``Plot`` and ``Image`` items.
        tables: ``Table`` items.
        warnings: what the analysis warned about.
        provenance: one ``Provenance`` per result file.
        error: why the analysis failed (the section then holds only this), ``None`` otherwise.
        details: further text shown collapsed (e.g. a failure's traceback).
    """

    id: str
    title: str
    text: str = ""
    figures: tuple = ()
    tables: tuple[Table, ...] = ()
    warnings: tuple[str, ...] = ()
    provenance: tuple[Provenance, ...] = ()
    error: str | None = None
    details: str = ""


@dataclass(frozen=True)
class Report:
    """The sections of a report and its own provenance (``meta``: inputs, options, versions, files).

    Attributes:
        title: the page's title.
        sections: the ``Section`` items, in the page's order.
        meta: the report's own provenance: inputs, options, versions and the files written.
    """

    title: str
    sections: tuple[Section, ...]
    meta: dict = field(default_factory=dict)

    def section(self, id: str) -> Section:
        """The section with this ``id``.

        Raises:
            KeyError: no such section (the ids are listed).
        """
        for s in self.sections:
            if s.id == id:
                return s
        raise KeyError(f"no section {id!r}; sections: {', '.join(s.id for s in self.sections)}")

    def to_html(self) -> str:
        """The page, self-contained (see the module docstring)."""
        plots = [f for s in self.sections for f in s.figures if isinstance(f, Plot)]
        head = ['<!DOCTYPE html>', '<html lang="en">', "<head>", '<meta charset="utf-8">',
                f"<title>{_e(self.title)}</title>", f"<style>{_CSS}</style>"]
        if plots:
            from plotly.offline import get_plotlyjs

            head += ["<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>",
                     f'<script type="text/javascript">{get_plotlyjs()}</script>']
        body = ["</head>", "<body>", f"<h1>{_e(self.title)}</h1>", self._toc()]
        counter = iter(range(len(plots)))
        body += [_section(s, counter) for s in self.sections]
        body += [_provenance_block("Report provenance", self.meta)] + ([_REFIT] if plots else [])
        body += ["</body>", "</html>", ""]
        return "\n".join(head + body)

    def write(self, path: str | os.PathLike) -> Path:
        """Write the page to ``path`` (``_io.write_text``: parent directories created, atomically); returns
        the path."""
        return _io.write_text(path, self.to_html())

    def to_json(self) -> dict:
        """The tables and warnings of every section, and the report's provenance, as JSON-able data."""
        return {"format": "losslens-report", "title": self.title, "meta": self.meta, "sections": [
            {"id": s.id, "title": s.title, "error": s.error, "warnings": list(s.warnings),
             "tables": [{"caption": t.caption, "rows": t.as_dicts()} for t in s.tables],
             "files": [{"path": p.path, "status": p.status} for p in s.provenance]} for s in self.sections]}

    def _toc(self) -> str:
        items = []
        for s in self.sections:
            note = ""
            if s.error:
                note = ' <span class="bad">(failed)</span>'
            elif s.warnings:
                note = f' <span class="warn">({len(s.warnings)} warning{"s" if len(s.warnings) > 1 else ""})</span>'
            items.append(f'<li><a href="#{_e(s.id)}">{_e(s.title)}</a>{note}</li>')
        return '<nav id="contents"><h2>Contents</h2><ol>' + "".join(items) + "</ol></nav>"


def _section(s: Section, counter) -> str:
    parts = [f'<section id="{_e(s.id)}">', f"<h2>{_e(s.title)}</h2>"]
    if s.text:
        parts.append(f"<p>{_e(s.text)}</p>")
    if s.error:
        parts.append(f'<p class="bad">This analysis failed: {_e(s.error)}</p>')
    content = []
    if s.figures:
        content.append('<div class="figures">' + "".join(_figure(f, s.id, counter) for f in s.figures) + "</div>")
    if s.tables:
        content.append('<div class="tables">' + "".join(_table(t) for t in s.tables) + "</div>")
    if content:
        parts.append('<div class="content">' + "".join(content) + "</div>")
    if s.warnings:
        parts.append('<div class="warnings"><h3>Warnings</h3><ul>'
                     + "".join(f"<li>{_e(w)}</li>" for w in s.warnings) + "</ul></div>")
    elif not s.error:
        parts.append('<p class="ok">No warnings.</p>')
    if s.details:
        parts.append(f"<details><summary>Details</summary><pre>{_e(s.details)}</pre></details>")
    for p in s.provenance:
        parts.append(_provenance_block(f"Provenance of {p.path} ({p.status})", p.meta))
    parts.append("</section>")
    return "\n".join(parts)


def _figure(item, section_id: str, counter) -> str:
    caption = f"<figcaption>{_e(item.caption)}</figcaption>" if item.caption else ""
    if isinstance(item, Image):
        data = base64.b64encode(item.png).decode("ascii")
        alt = _e(item.caption or "figure")
        return f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">{caption}</figure>'
    div = item.figure.to_html(full_html=False, include_plotlyjs=False, div_id=f"{section_id}-plot{next(counter)}",
                              default_height=PLOT_HEIGHT, default_width="100%",
                              config={"responsive": True, "displaylogo": False})
    return f'<figure class="plot{" half" if item.half else ""}">{div}{caption}</figure>'


def _table(t: Table) -> str:
    head = "".join(f"<th>{_e(c).replace('_', '_<wbr>')}</th>" for c in t.columns)  # long names may wrap
    rows = "".join("<tr>" + "".join(f"<td>{_e(cell(v))}</td>" for v in row) + "</tr>" for row in t.rows)
    return (f'<div class="table-box"><table><caption>{_e(t.caption)}</caption><thead><tr>{head}</tr></thead>'
            f"<tbody>{rows}</tbody></table></div>")


def _provenance_block(summary: str, meta: dict) -> str:
    facts = key_facts(meta)
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts.items())
    text = json.dumps(meta, indent=1, default=str)
    return (f'<details class="provenance"><summary>{_e(summary)}</summary>'
            + (f'<div class="table-box"><table>{rows}</table></div>' if rows else "")
            + f"<details><summary>all metadata</summary><pre>{_e(text)}</pre></details></details>")


def key_facts(meta: dict) -> dict[str, str]:
    """The provenance a reader looks for first, from a result's metadata wherever it keeps it: model,
    checkpoint and its hash, data and split, subset, seed, BatchNorm mode, execution plan, versions."""
    out = {}
    ev = _find(meta, lambda d: "model" in d and "data" in d and "plan" in d)
    if ev:
        model, data, ckpt, plan = ev["model"] or {}, ev["data"] or {}, ev.get("checkpoint") or {}, ev["plan"] or {}
        out["model"] = (f"{model.get('name') or model.get('class')} {json.dumps(model.get('kwargs') or {})} "
                        f"(architecture {model.get('architecture')}, {ev.get('n_params')} parameters)")
        if ckpt:
            out["checkpoint"] = f"{ckpt.get('path')} (step {ckpt.get('step')}, epoch {ckpt.get('epoch')})"
            out["checkpoint sha256"] = str(ckpt.get("sha256"))
        subset = data.get("subset")
        out["data"] = (f"{data.get('name')}, {data.get('split')} split, {data.get('n_samples')} samples"
                       + (f" (a subset of {subset.get('of')}, seed {subset.get('seed')})" if isinstance(subset, dict)
                          else "") + f", fingerprint {data.get('fingerprint')}")
        out["loss, BatchNorm"] = f"{ev.get('loss')}, bn={ev.get('bn')}"
        out["execution plan"] = ", ".join(f"{k}={v}" for k, v in plan.items() if v not in (None, [], ()))
    seed = _find_key(meta, "seed")
    if seed is not None:
        out["seed"] = str(seed)
    versions = _find_key(meta, "versions")
    if isinstance(versions, dict):
        out["versions"] = ", ".join(f"{k} {v}" for k, v in versions.items() if v)
    return out


def cell(value) -> str:
    """A table cell: numbers to 4 significant digits, ``None`` as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(cell(v) for v in value)
    return str(value)


def _find(meta, test):
    """The first dict (breadth first, down to a few levels) that passes ``test``."""
    level = [meta]
    for _ in range(6):
        nxt = []
        for d in level:
            if isinstance(d, dict):
                if test(d):
                    return d
                nxt += [v for v in d.values() if isinstance(v, dict)]
        level = nxt
    return None


def _find_key(meta, key: str):
    found = _find(meta, lambda d: d.get(key) is not None)
    return None if found is None else found[key]


def _e(text) -> str:
    return html.escape(str(text), quote=True)


# Each plotly figure is drawn while the page is parsed, before the boxes after it exist (a table beside it
# narrows it later), and plotly's own "responsive" follows only the window: refit each one to its box
# whenever that box changes size, and once at load.
_REFIT = """<script>window.addEventListener("load", function () {
  if (!window.ResizeObserver || !window.Plotly) return;
  var refit = new ResizeObserver(function (entries) {
    entries.forEach(function (e) { if (e.target.offsetWidth) Plotly.Plots.resize(e.target); });
  });
  document.querySelectorAll(".js-plotly-plot").forEach(function (div) { refit.observe(div); });
});</script>"""

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1400px;margin:0 auto;padding:0 1.5em 3em;
color:#222;line-height:1.45;overflow-wrap:break-word}
h1{margin-top:.8em}h2{border-bottom:2px solid #446;padding-bottom:.2em;margin-top:2em}
nav#contents{background:#f4f5f8;padding:.5em 1.5em;border-radius:6px}nav#contents h2{margin-top:.5em}
nav#contents ol{columns:2 18em;column-gap:3em}nav#contents li{break-inside:avoid}
section{margin-bottom:2em}
.figures{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start;min-width:0}
.figures figure{flex:0 1 auto;margin:0;max-width:100%;min-width:0}.figures figure.plot{flex:1 1 100%}
.figures figure.half{flex:1 1 calc(50% - .5em)}figure img{max-width:100%;height:auto;border:1px solid #ddd}
.tables{display:flex;flex-wrap:wrap;gap:0 2.5em;align-items:flex-start;min-width:0;max-width:100%}
.table-box{max-width:100%;overflow-x:auto;min-width:0}
#summary .content{display:flex;flex-wrap:wrap;gap:2em;align-items:flex-start}
#summary .figures{flex:1 1 440px}#summary .tables{flex:0 1 auto}
figcaption{font-size:.9em;color:#555}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}caption{text-align:left;font-weight:600;padding:.3em 0}
th,td{border:1px solid #ccd;padding:.25em .6em;text-align:left;vertical-align:top}
td{max-width:40em}details.provenance td{word-break:break-all}
thead th{background:#eef}tbody tr:nth-child(even){background:#fafafd}
.warnings{background:#fff6e0;border-left:4px solid #e0a000;padding:.2em 1em;margin:1em 0}
.warn{color:#a06000}.bad{color:#b00020;font-weight:600}.ok{color:#2a7a2a}
details{margin:.4em 0}details.provenance>summary{cursor:pointer;color:#335}
pre{font-size:11px;background:#f7f7f7;padding:.6em;overflow-x:auto;max-height:30em}
@media (max-width:700px){body{padding:0 .75em 2em}.figures figure.half{flex-basis:100%}
#summary .figures{flex-basis:100%}}
"""
