"""Matplotlib figures of Hessian spectra: the eigenvalue density and the top eigenvalues.

The density is the smoothed stochastic-Lanczos-quadrature estimate of ``Spectrum`` (Ghorbani,
Krishnan, Xiao 2019, "An investigation into neural net optimization via Hessian eigenvalue
density"), drawn on a logarithmic density axis by default, as in that paper: the bulk near zero and
the few outliers differ by orders of magnitude. The eigenvalues are those of ``Eigenpairs``, with
their residual norms :math:`\\lVert Hv_i - \\lambda_i v_i \\rVert`, which bound the distance from each
value to the true spectrum, as error bars.

Like ``losslens.plot.surfaces``: results or file paths in, a new ``Figure`` (or the given ``ax``'s) out.
"""

from __future__ import annotations

import numpy as np

from losslens.curvature.hessian import Eigenpairs
from losslens.curvature.spectrum import Spectrum
from losslens.plot._base import load_as, new_axes
from losslens.plot.levels import log_axis
from losslens.plot.surfaces import title_of

DENSITY_FLOOR = 1e-10  # on a log axis the density is clipped at this fraction of its maximum


def plot_density(spectrum, *, ax=None, log: bool = True):
    """The Hessian eigenvalue density, with :math:`\\lambda_{max}` marked.

    Args:
        spectrum: a ``Spectrum`` or the path of a file holding one.
        ax: axes to draw on (default: a new figure).
        log: logarithmic density axis; the density is clipped at ``DENSITY_FLOOR`` times its maximum
            (its Gaussian tails fall to zero, which a log axis cannot show).

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    spectrum = load_as(spectrum, (Spectrum,), "plot_density")
    fig, ax = new_axes(ax)
    density = spectrum.density
    if log:
        density = np.clip(density, DENSITY_FLOOR * float(np.max(density, initial=0.0)) or DENSITY_FLOOR, None)
    ax.plot(spectrum.grid, density, color="C0", label="density")
    ax.axvline(spectrum.lambda_max, color="C3", linestyle="--", label=f"λmax ≈ {spectrum.lambda_max:.4g}")
    if log:
        log_axis(ax.yaxis)
    ax.set_xlabel("eigenvalue λ")
    ax.set_ylabel("density" + (" (log scale)" if log else ""))
    m = spectrum.meta
    ax.set_title(_with_provenance(m, f"Hessian eigenvalue density (SLQ: {m.get('n_vectors', '?')} vectors × "
                                     f"{m.get('n_lanczos', '?')} steps, σ = {spectrum.sigma:.3g})"), fontsize="medium")
    ax.legend(loc="best", fontsize="small")
    return fig


def plot_eigenvalues(eigenpairs, ax=None):
    """The eigenvalues of ``Eigenpairs`` as bars, their residual norms as error bars.

    Args:
        eigenpairs: an ``Eigenpairs`` or the path of a file holding one.
        ax: axes to draw on (default: a new figure).

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    pairs = load_as(eigenpairs, (Eigenpairs,), "plot_eigenvalues")
    values = np.asarray(pairs.values, dtype=np.float64)
    residuals = np.asarray(pairs.meta.get("residual_norms", np.zeros_like(values)), dtype=np.float64)
    fig, ax = new_axes(ax)
    index = np.arange(1, len(values) + 1)
    bars = ax.bar(index, values, yerr=residuals, capsize=4, color="C0")
    ax.bar_label(bars, fmt="%.4g", fontsize="small")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(index, [f"λ{i}" for i in index])
    ax.set_ylabel("eigenvalue")
    ax.set_title(_with_provenance(pairs.meta, f"{pairs.which} {len(values)} Hessian eigenvalues "
                                  f"({pairs.meta.get('backend', '?')}; error bars: residual ‖Hv − λv‖)"),
                 fontsize="medium")
    return fig


def _with_provenance(meta: dict, what: str) -> str:
    """``what`` under the title lines of the provenance (model, checkpoint, data, split)."""
    return "\n".join(p for p in (title_of(meta), what) if p)
