"""Figures of losslens results: matplotlib for images, plotly for interactive pages.

Every function takes a result object (or the path of its file) and returns a figure; nothing here
computes a loss. ``figures`` draws any result's named figures (the registry of ``render.py``); ``render``,
``write_html`` and ``write_vtp`` (a surface for ParaView) write files, and only where they are told.
"""

from losslens.plot.export import write_vtp
from losslens.plot.fit import plot_fit, plot_residuals
from losslens.plot.hessian import plot_density, plot_eigenvalues
from losslens.plot.interactive import plotly_figure, write_html
from losslens.plot.render import figures, render
from losslens.plot.replay import animate_paths, plot_convergence, plot_replay_paths
from losslens.plot.summaries import (
    plot_directions, plot_explained_variance, plot_final_losses, plot_stability, plot_surface_metrics, plot_trace,
    plotly_distances,
)
from losslens.plot.surfaces import plot_1d, plot_3d, plot_contour
from losslens.plot.topology import plot_barcode, plot_basins, plot_diagrams
from losslens.plot.trajectories import (
    plot_dynamics, plot_embedding, plot_embeddings, plot_path_losses, plot_trajectory_paths, plotly_embedding,
    plotly_paths,
)
from losslens.plot.wavelets import plot_coefficients, plot_energy

__all__ = [
    # loss lines and surfaces (matplotlib)
    "plot_1d", "plot_contour", "plot_3d",
    # Hessian spectra (matplotlib)
    "plot_density", "plot_eigenvalues", "plot_trace",
    # directions, comparisons, spreads
    "plot_directions", "plot_stability", "plot_surface_metrics", "plotly_distances", "plot_explained_variance",
    "plot_final_losses",
    # multiscale and topology of a surface
    "plot_coefficients", "plot_energy", "plot_diagrams", "plot_barcode", "plot_basins",
    # fits and replays
    "plot_fit", "plot_residuals", "plot_replay_paths", "plot_convergence", "animate_paths",
    # trajectories
    "plot_embedding", "plot_embeddings", "plot_trajectory_paths", "plot_path_losses", "plot_dynamics",
    # interactive (plotly)
    "plotly_figure", "plotly_paths", "plotly_embedding", "write_html",
    # every figure of any result, from one registry (drawn, or written to files)
    "figures", "render",
    # a surface for ParaView
    "write_vtp",
]
