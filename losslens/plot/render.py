"""Draw any result into files: the pictures ``losslens plot`` makes, and the report reuses.

``render(result, out, stem)`` picks the pictures by the result's ``KIND`` and writes them as
``out/stem<suffix>`` (PNG at 150 dpi, HTML with plotly.js embedded once), returning the paths:

- a plane (``Surface``, 2D): ``_contour.png`` (filled contours), ``_3d.png``, ``.html``;
- a line (``Surface``, 1D, or a plane of one row or column): ``_1d.png`` (or ``.png`` for a line
  between two checkpoints), ``.html``;
- ``Spectrum``: ``_density.png``; ``Eigenpairs``: ``_eigenvalues.png``;
- ``CurvatureMap``: ``_ratio.png``, ``_max_eigenvalue.png``, ``_min_eigenvalue.png`` (filled contours of
  |λ_min / λ_max|, λ_max and λ_min).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

RENDERED_KINDS = ("surface", "spectrum", "eigenpairs", "curvature_map")
CURVATURE_PICTURES = {  # file suffix: (value, colour-bar label)
    "_ratio.png": ("eigenvalue_ratio", "|λ_min / λ_max| of the Hessian"),
    "_max_eigenvalue.png": ("max_eigenvalue", "λ_max of the Hessian"),
    "_min_eigenvalue.png": ("min_eigenvalue", "λ_min of the Hessian"),
}


def render(result, out: str | Path, stem: str, *, log: bool = False) -> list[Path]:
    """Write the pictures of ``result`` into ``out`` (created if needed); returns the paths written.

    Args:
        result: a result object (see the module docstring for the kinds drawn).
        out: the output directory.
        stem: the start of every file name.
        log: logarithmic loss scale (surfaces only).

    Raises:
        ValueError: a kind of result that is not drawn, or ``log`` for one that is not a surface.
    """
    from losslens.plot.interactive import plotly_figure, write_html

    kind = getattr(result, "KIND", None)
    if kind not in RENDERED_KINDS:
        raise ValueError(f"cannot draw a {type(result).__name__}; drawn kinds: {', '.join(RENDERED_KINDS)}")
    if log and kind != "surface":
        raise ValueError(f"a log scale applies to loss surfaces and lines, not to a {type(result).__name__} "
                         "(a density is drawn on a log scale already)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, make in _pictures(result, log).items():
        path = out / f"{stem}{suffix}"
        make().savefig(path, dpi=150)
        written.append(path)
    if kind == "surface":
        written.append(write_html(plotly_figure(result, log=log), out / f"{stem}.html", title=f"losslens {stem}",
                                  provenance=result.meta))
    return written


def _pictures(result, log: bool) -> dict[str, Callable]:
    from losslens.plot.hessian import plot_density, plot_eigenvalues
    from losslens.plot.surfaces import plot_1d, plot_3d, plot_contour

    if result.KIND == "spectrum":
        return {"_density.png": lambda: plot_density(result)}
    if result.KIND == "eigenpairs":
        return {"_eigenvalues.png": lambda: plot_eigenvalues(result)}
    if result.KIND == "curvature_map":
        return {suffix: (lambda name=name, label=label: _labelled(
            plot_contour(result, filled=True, levels="linear", metric=name), label))
            for suffix, (name, label) in CURVATURE_PICTURES.items()}
    if result.ndim == 2 and min(result.shape) >= 2:
        return {"_contour.png": lambda: plot_contour(result, filled=True, log=log),
                "_3d.png": lambda: plot_3d(result, log=log)}
    between = result.directions is not None and result.directions.kind == "between"
    return {(".png" if between else "_1d.png"): lambda: plot_1d(result, log=log)}


def _labelled(fig, label: str):
    """``fig`` with its colour bar (the last axes) labelled ``label``."""
    fig.axes[-1].set_ylabel(label)
    return fig
