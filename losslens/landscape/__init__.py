"""Landscapes: what is drawn on a grid: directions, 1D/2D surfaces, lines between checkpoints, curvature
maps, analytic test functions, and the analyses of surfaces (fits, multiscale, topology, comparisons).

The Hessian operator, its eigenpairs, trace and density live in ``losslens.curvature``."""

from losslens._distributed import init_distributed_from_env
from losslens.landscape.curvature import CurvatureMap, curvature_map
from losslens.landscape.directions import Directions, between, hessian_directions, random_directions
from losslens.landscape.fit import SurfaceFit, fit_surface, model_function
from losslens.landscape.functions import FUNCTIONS, AnalyticFunction, get_function
from losslens.landscape.interpolation import interpolate
from losslens.landscape.surface import Surface, surface_1d, surface_2d
from losslens.landscape.surface_comparison import SurfaceComparison, compare_surfaces
from losslens.landscape.diagram_distances import bottleneck, wasserstein
from losslens.landscape.topology import Basin, Topology, topology
from losslens.landscape.topology_stability import TopologyStability, topology_stability
from losslens.landscape.wavelets import Multiscale, multiscale

__all__ = [
    # directions
    "Directions", "random_directions", "hessian_directions", "between",
    # surfaces and lines
    "Surface", "surface_1d", "surface_2d", "interpolate", "init_distributed_from_env",
    # curvature on a plane (the Hessian itself is in losslens.curvature)
    "CurvatureMap", "curvature_map",
    # analyses of surfaces
    "Multiscale", "multiscale", "Topology", "Basin", "topology", "bottleneck", "wasserstein", "TopologyStability",
    "topology_stability", "SurfaceComparison", "compare_surfaces", "SurfaceFit", "fit_surface", "model_function",
    # analytic test functions
    "AnalyticFunction", "FUNCTIONS", "get_function",
]
