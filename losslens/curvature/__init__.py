"""Curvature: the Hessian of the loss as an operator that is never formed, its extreme eigenpairs,
its trace and its eigenvalue density, all from the evaluator core's Hessian-vector products (with
PyHessian as an optional second backend). The next curvature operators and sharpness measures go here.

What is drawn on a grid stays in ``losslens.landscape``: Hessian directions
(``landscape.hessian_directions``) and the curvature map over a plane (``landscape.curvature_map``) are
built from this package, which imports nothing of ``landscape``.
"""

from losslens.curvature.hessian import Eigenpairs, eigenpairs
from losslens.curvature.operator import HessianOperator
from losslens.curvature.spectrum import Spectrum, density
from losslens.curvature.trace_estimation import TraceEstimate, trace

__all__ = [
    # the operator
    "HessianOperator",
    # extreme eigenpairs
    "Eigenpairs", "eigenpairs",
    # trace and eigenvalue density
    "TraceEstimate", "trace", "Spectrum", "density",
]
