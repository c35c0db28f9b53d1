"""The report's own checks of results, each a list of warnings (empty when the result passes), and how it
writes an estimate with its error."""

from __future__ import annotations

import math

import numpy as np

RESIDUAL_RTOL = 1e-3  # an eigenpair whose residual exceeds this fraction of |lambda_1| is flagged
ANGLE_BOUND = 0.1  # an eigenvector whose Davis-Kahan bound sin(angle) <= r / gap exceeds this is flagged
TRACE_RTOL = 0.1  # a trace whose standard error exceeds this fraction of it is flagged
FIT_R2 = 0.9  # a fit explaining less of the variance than this is flagged


def eigenpair_checks(values: list[float], residuals: list[float]) -> list[str]:
    """Warnings about eigenpairs: a residual :math:`r_i = \\lVert Hv_i - \\lambda_i v_i \\rVert` large against
    :math:`|\\lambda_1|` (the eigenvalue is uncertain by up to :math:`r_i`), and an eigenvector that its
    residual leaves undetermined: by Davis and Kahan (1970), its angle to the true eigenvector obeys
    :math:`\\sin\\theta_i \\le r_i / \\delta_i`, with :math:`\\delta_i` the gap to the nearest other eigenvalue
    (here: among those computed), so nearly equal eigenvalues give directions that are an arbitrary basis of
    their common eigenspace (a Hessian plane then turns from run to run)."""
    top = abs(values[0]) or 1.0
    out = []
    for i, (value, r) in enumerate(zip(values, residuals), start=1):
        if r > RESIDUAL_RTOL * top:
            out.append(f"eigenpair {i}: the residual |Hv - lambda v| = {r:.3g} is {r / top:.2g} of |lambda_1|: "
                       f"lambda_{i} is uncertain by up to {r:.3g}")
        gap = min((abs(value - other) for j, other in enumerate(values, start=1) if j != i), default=math.inf)
        bound = r / gap if gap > 0 else math.inf
        if bound > ANGLE_BOUND:
            out.append(f"eigenvector {i} is not determined: lambda_{i} = {value:.6g} lies within {gap:.3g} of another "
                       f"eigenvalue, against a residual of {r:.3g} (Davis-Kahan: sin(angle) <= {bound:.2g}); "
                       "directions along it are arbitrary")
    return out


def degenerate(fit) -> list[str]:
    """Why a fit is degenerate (a parameter at its bound, a standard error larger than its value), as
    ``SurfaceFit`` records it; empty when it is not, or when the fit records no such flag."""
    if not getattr(fit, "degenerate", False):
        return []
    return [f"the {fit.model} fit is degenerate: {w}" for w in getattr(fit, "warnings", ())] or [
        f"the {fit.model} fit is degenerate"]


def estimate(value: float, stderr: float) -> str:
    """``value ± stderr``, said to be not resolved when the standard error is not smaller than the value."""
    text = f"{value:.6g} ± {stderr:.2g}"
    return text if stderr < abs(value) else f"not resolved: error larger than value ({text})"


def surface_checks(s) -> list[str]:
    """NaN/inf points and an unfinished grid."""
    out = []
    bad = int(np.sum(s.done & ~np.isfinite(s.loss)))
    if bad:
        out.append(f"{bad} of {s.loss.size} grid points ({s.meta.get('directions_kind')} directions) have a NaN or "
                   "infinite loss (the model diverged there)")
    if not s.complete:
        out.append(f"the grid is partial: {int(s.done.sum())} of {s.loss.size} points are computed")
    return out
