"""Colour levels, readable ticks and log axes: what every contour and every log-scale picture shares,
matplotlib and plotly alike.

Colour levels (``levels``): ``"auto"`` is log-spaced when every value is positive (a loss basin spans
decades: linear levels spend them all on the walls) and at quantiles of the values otherwise;
``"log"``, ``"quantile"``, ``"linear"``, a number of linear levels, explicit values, or the reference
tool's ``vmin``/``vmax``/``vlevel`` (``np.arange(vmin, vmax, vlevel)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOG_FLOOR = 1e-12  # values are clipped here before taking logs
LEVEL_MODES = ("auto", "log", "quantile", "linear")
_N_LEVELS = 30

@dataclass(frozen=True)
class ContourLevels:
    """The contour levels of a picture and its colour bar, the same for matplotlib and plotly.

    Attributes:
        values: ``(n,)`` increasing level values, in the units drawn.
        ticks: readable colour-bar ticks within ``[values[0], values[-1]]`` (1, 2, 5 times a power of
            ten on a log scale; steps of 1, 2, 2.5 or 5 times a power of ten otherwise).
        log: the levels are log-spaced (equal ratios): the colour bar is a log scale, and says so.
    """

    values: np.ndarray
    ticks: np.ndarray
    log: bool

    def label(self, what: str) -> str:
        """The colour bar's title: ``what``, with ``(log scale)`` when the levels are log-spaced."""
        return f"{what} (log scale)" if self.log else what

    def index(self, values: np.ndarray) -> np.ndarray:
        """``values`` as fractional level numbers ``0 .. n-1`` (piecewise linear between levels, NaN kept,
        clipped at both ends): the colour coordinate of a renderer that takes evenly spaced contours."""
        values = np.asarray(values, dtype=np.float64)
        return np.where(np.isnan(values), np.nan, np.interp(values, self.values, np.arange(len(self.values))))


def contour_levels(Z: np.ndarray, levels="auto", vmin=None, vmax=None, vlevel=None) -> ContourLevels:
    """The ``ContourLevels`` of the values ``Z`` (``levels`` and ``vmin``/``vmax``/``vlevel`` as in the
    module docstring); every contour picture of a surface, PNG or HTML, takes its levels from here."""
    values = _level_values(Z, levels, vmin, vmax, vlevel)
    ratios = values[1:] / values[:-1] if len(values) > 2 and values[0] > 0 else np.array([])
    log = bool(len(ratios)) and np.allclose(ratios, ratios[0], rtol=1e-6) and ratios[0] > 1 + 1e-9
    return ContourLevels(values, readable_ticks(float(values[0]), float(values[-1]), log), log)


def readable_ticks(lo: float, hi: float, log: bool) -> np.ndarray:
    """Ticks within ``[lo, hi]`` at readable values: 1, 2, 5 times powers of ten (or only the powers,
    every k-th of them when there are many; 1 to 9 times them over less than a decade) on a log scale,
    steps of 1, 2, 2.5, 5 times a power of ten on a linear one."""
    from matplotlib.ticker import MaxNLocator

    if log:
        decades = 10.0 ** np.arange(np.floor(np.log10(lo)), np.ceil(np.log10(hi)) + 1)

        def inside(mantissas):
            ticks = (decades[:, None] * np.array(mantissas, dtype=np.float64)).ravel()
            return ticks[(ticks >= lo * (1 - 1e-9)) & (ticks <= hi * (1 + 1e-9))]

        for mantissas in ((1, 2, 5), (1,), (1, 2, 3, 4, 5, 6, 7, 8, 9)):
            ticks = inside(mantissas)
            if 3 <= len(ticks) <= 9:
                return ticks
        powers = inside((1,))
        if len(powers) > 9:
            return powers[:: int(np.ceil(len(powers) / 8))]
        return ticks if len(ticks) >= 2 else np.array([lo, hi])
    ticks = MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
    return ticks[(ticks >= lo - 1e-9 * abs(hi - lo)) & (ticks <= hi + 1e-9 * abs(hi - lo))]


def log_axis(axis) -> None:
    """A logarithmic matplotlib ``axis`` labelled only at readable values (``readable_ticks`` of its
    view), its minor ticks unlabelled."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    axis.axes.set_xscale("log") if axis.axis_name == "x" else axis.axes.set_yscale("log")

    class Readable(FixedLocator):
        def __call__(self):
            lo, hi = sorted(axis.get_view_interval())
            return readable_ticks(max(lo, LOG_FLOOR), max(hi, 2 * LOG_FLOOR), True) if hi > 0 else []

    axis.set_major_locator(Readable([]))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_locator(LogLocator(base=10, subs=np.arange(2, 10)))
    axis.set_minor_formatter(NullFormatter())


def fraction_axis(axis, values: np.ndarray) -> None:
    """Ticks at readable values (``MaxNLocator`` steps 1, 2, 2.5, 5), as percentages when every finite
    value is a fraction in ``[0, 1]`` (accuracy)."""
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    axis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))
    finite = values[np.isfinite(values)]
    if len(finite) and finite.min() >= 0 and finite.max() <= 1:
        axis.set_major_formatter(PercentFormatter(1.0, decimals=0 if np.ptp(finite) > 0.05 else None))


def colour_bar(fig, ax, mappable, scheme: ContourLevels, what: str):
    """A colour bar for contours drawn at ``scheme``'s levels, ticked at its readable values and
    titled ``scheme.label(what)``; returns the ``Colorbar``."""
    bar = fig.colorbar(mappable, ax=ax, label=scheme.label(what))
    bar.set_ticks(scheme.ticks, labels=[f"{t:g}" for t in scheme.ticks])
    bar.minorticks_off()
    bar.ax.tick_params(labelsize="small")
    return bar


def _level_values(Z: np.ndarray, levels, vmin, vmax, vlevel) -> np.ndarray:
    """Increasing level values (see the module docstring)."""
    if (vmin, vmax, vlevel) != (None, None, None):
        if None in (vmin, vmax, vlevel) or not (vlevel > 0 and vmax > vmin):
            raise ValueError("vmin, vmax and vlevel go together, with vmax > vmin and vlevel > 0 "
                             "(levels np.arange(vmin, vmax, vlevel), as the reference tool draws)")
        return np.arange(vmin, vmax, vlevel)
    finite = Z[np.isfinite(Z)]
    lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:  # a flat surface: one band around its value
        pad = max(abs(lo), 1.0) * 1e-6
        return np.array([lo - pad, lo + pad])
    if isinstance(levels, (int, np.integer)) and not isinstance(levels, bool):
        if levels < 2:
            raise ValueError(f"levels as a number of levels must be at least 2, got {levels}")
        return np.linspace(lo, hi, int(levels))
    if not isinstance(levels, str):
        values = np.asarray(levels, dtype=np.float64)
        if values.ndim != 1 or not len(values) or not np.isfinite(values).all() or np.any(np.diff(values) <= 0):
            raise ValueError(f"levels as values must be finite and strictly increasing, got {levels!r}")
        return values
    if levels not in LEVEL_MODES:
        raise ValueError(f"unknown levels {levels!r}; valid: {', '.join(LEVEL_MODES)}, a number or values")
    if levels == "auto":
        levels = "log" if lo > 0 else "quantile"
    if levels == "log":
        if lo <= 0:
            raise ValueError("log-spaced levels need positive values; use levels='quantile' or 'linear'")
        return np.geomspace(lo, hi, _N_LEVELS)
    if levels == "quantile":
        return np.unique(np.quantile(finite, np.linspace(0, 1, _N_LEVELS)))
    return np.linspace(lo, hi, _N_LEVELS)
