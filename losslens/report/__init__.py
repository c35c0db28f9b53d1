"""One self-contained HTML page of everything losslens computes about a checkpoint or a training run.

``build_report(inputs, out)`` runs the analyses of the chosen sections (2D surface, interpolation from
the initialization, Hessian, multiscale, topology, fit, replay, trajectory, dynamics, and a comparison of
the planes), reusing the result files already in ``out``, and writes ``out/report.html``: plotly figures
sharing one embedded plotly.js, static PNGs, tables, every warning and the provenance of every result.
It sits above the analyses and the plots; nothing below it imports it.
"""

from losslens.report.build import build_report
from losslens.report.options import SECTIONS, ReportOptions
from losslens.report.page import Report, Section, Table

__all__ = ["build_report", "ReportOptions", "SECTIONS", "Report", "Section", "Table"]
