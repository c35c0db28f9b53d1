"""Landscapes: directions, 1D/2D surfaces, lines between checkpoints, and the Hessian."""

from losslens.landscape._distributed import init_distributed_from_env
from losslens.landscape.directions import (
    Directions, between, checkpoint_vectors, hessian_directions, pca_directions, project, random_directions,
)
from losslens.landscape.hessian import Eigenpairs, eigenpairs
from losslens.landscape.interpolation import barrier, interpolate
from losslens.landscape.operator import HessianOperator
from losslens.landscape.spectrum import Spectrum, TraceEstimate, density, trace
from losslens.landscape.surface import Surface, surface_1d, surface_2d

__all__ = [
    # directions
    "Directions", "random_directions", "hessian_directions", "pca_directions", "between", "project",
    "checkpoint_vectors",
    # surfaces and lines
    "Surface", "surface_1d", "surface_2d", "interpolate", "barrier", "init_distributed_from_env",
    # the Hessian
    "HessianOperator", "Eigenpairs", "eigenpairs", "TraceEstimate", "trace", "Spectrum", "density",
]
