"""Landscapes: directions, 1D/2D surfaces, lines between checkpoints, the Hessian, analytic test
functions, and the analyses of surfaces (fits, multiscale, topology, comparisons)."""

from losslens._distributed import init_distributed_from_env
from losslens.landscape.compare import SurfaceComparison, compare_surfaces
from losslens.landscape.curvature import CurvatureMap, curvature_map
from losslens.landscape.directions import Directions, between, hessian_directions, random_directions
from losslens.landscape.fit import SurfaceFit, fit_surface, model_function
from losslens.landscape.functions import FUNCTIONS, AnalyticFunction, get_function
from losslens.landscape.hessian import Eigenpairs, eigenpairs
from losslens.landscape.interpolation import barrier, interpolate
from losslens.landscape.multiscale import Multiscale, multiscale
from losslens.landscape.operator import HessianOperator
from losslens.landscape.spectrum import Spectrum, TraceEstimate, density, trace
from losslens.landscape.surface import Surface, surface_1d, surface_2d
from losslens.landscape.topology import (
    Basin, Topology, TopologyStability, bottleneck, topology, topology_stability, wasserstein,
)

__all__ = [
    # directions
    "Directions", "random_directions", "hessian_directions", "between",
    # surfaces and lines
    "Surface", "surface_1d", "surface_2d", "interpolate", "barrier", "init_distributed_from_env",
    # the Hessian
    "HessianOperator", "Eigenpairs", "eigenpairs", "TraceEstimate", "trace", "Spectrum", "density",
    "CurvatureMap", "curvature_map",
    # analyses of surfaces
    "Multiscale", "multiscale", "Topology", "Basin", "topology", "bottleneck", "wasserstein", "TopologyStability",
    "topology_stability", "SurfaceComparison", "compare_surfaces", "SurfaceFit", "fit_surface", "model_function",
    # analytic test functions
    "AnalyticFunction", "FUNCTIONS", "get_function",
]
