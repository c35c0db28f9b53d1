"""Figures of losslens results: matplotlib for images, plotly for interactive pages.

Every function takes a result object (or the path of its file) and returns a figure; nothing here
computes a loss. ``render`` and ``write_html`` write files, and only where they are told.
"""

from losslens.plot.hessian import plot_density, plot_eigenvalues
from losslens.plot.interactive import plotly_figure, write_html
from losslens.plot.render import render
from losslens.plot.surfaces import plot_1d, plot_3d, plot_contour

__all__ = [
    # loss lines and surfaces (matplotlib)
    "plot_1d",
    "plot_contour",
    "plot_3d",
    # Hessian spectra (matplotlib)
    "plot_density",
    "plot_eigenvalues",
    # interactive (plotly)
    "plotly_figure",
    "write_html",
    # every picture of a result, written to files
    "render",
]
