"""Multiscale analysis of a loss surface: its discrete wavelet decomposition and energy per scale.

A surface :math:`Z` (``(ny, nx)``, or ``(nx,)`` for a line), optionally detrended by its least-squares
quadratic :math:`q(x, y)`, is decomposed to level :math:`L` (Mallat 1989, "A theory for multiresolution
signal decomposition: the wavelet representation"):

.. math::  R = Z - q = A_L + \\sum_{j=1}^{L} (H_j + V_j + D_j)

with the approximation :math:`A_L` and the details at level :math:`j` along ``y`` (:math:`H_j`,
horizontal features; pywt's ``cH``), along ``x`` (:math:`V_j`, vertical features; ``cV``) and both
(:math:`D_j`, ``cD``). **Level 1 is the finest** (pywt's ``wavedec2`` lists it last). For an orthogonal
wavelet in ``periodization`` mode the transform is orthogonal, so energies add up (Parseval):

.. math::  \\lVert R \\rVert^2 = \\lVert a_L \\rVert^2 + \\sum_j (\\lVert h_j \\rVert^2 + \\lVert v_j \\rVert^2
           + \\lVert d_j \\rVert^2), \\qquad \\text{roughness} = 1 - \\lVert a_L \\rVert^2 / \\lVert R \\rVert^2,

and the roughness of level :math:`j` is its detail energy over the total. pywt pads a side that is not a
multiple of :math:`2^L` on its own, which breaks that sum (the coefficients of 61x81 white noise hold
1.07x its energy at level 3; the excess depends on the values at the edges): here such a side is
extended first by symmetric reflection, split between its two ends, to the next multiple of
:math:`2^L`, and the energies are those of this extended array (its shape is in the result). In the other modes pywt's own extension applies and the parts do not add
up; the result says by how much.

Defaults, and why:

- ``haar``: orthogonal, and its two-tap filter never wraps around the edge in ``periodization`` mode
  once the sides are multiples of :math:`2^L`, so no coefficient mixes the two opposite edges of a
  surface (longer filters such as ``db2`` do, turning a bowl's edges into spurious detail energy).
- ``detrend="quadratic"``: near a minimum a loss surface is a bowl; undetrended, the bowl's
  approximation holds nearly all the energy (roughness about 0 for every model) and its slopes leak
  into the details of a one-vanishing-moment wavelet. After removing the best quadratic, what is
  decomposed is the structure beyond the bowl, and Haar sees no detail in the removed part.
- level: the largest whose coarsest approximation keeps at least 4 samples along the shorter side,
  :math:`L = \\max(1, \\lfloor \\log_2 n_{min} \\rfloor - 2)`, capped at ``pywt.dwt_max_level`` for longer
  filters; so the extension adds fewer than :math:`2^L \\le n_{min}/4` samples per side.
- non-finite values are refused (a wavelet energy is a sum over every point); ``nonfinite="fill"``
  fills them as ``losslens.landscape._grid_values`` says and records a warning.

The ``book`` preset (Haar, level 2, mode ``symmetric``, no detrending) reproduces the book chapter's
decomposition, with its levels numbered as here (finest = 1).
"""

from __future__ import annotations

import importlib.metadata
import warnings as _warnings
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np

from losslens.checks import check_choice, check_int
from losslens.landscape._grid_values import (
    describe_nonfinite, fill_nonfinite, grid_values, nonfinite_counts, source_meta,
)
from losslens.results import Result, Stored, array, attr, stored

WAVELET = "haar"
MODE = "periodization"
DETRENDS: tuple[str, ...] = ("none", "quadratic")
DETREND = "quadratic"
NONFINITE: tuple[str, ...] = ("raise", "fill")
PRESETS: dict[str, dict] = {"book": {"wavelet": "haar", "level": 2, "mode": "symmetric", "detrend": "none"}}
COARSEST_SAMPLES = 4  # the default level keeps at least this many approximation samples along the shorter side
ZERO_RESIDUAL = 1e-12  # a detrended residual whose RMS is below this fraction of the surface's is rounding
PARSEVAL_RTOL = 1e-9  # coefficient energies within this of the total count as adding up
ORIENTATIONS_2D: dict[str, str] = {"h": "da", "v": "ad", "d": "dd"}  # ours -> pywt.wavedecn keys (axis 0 = y)
ORIENTATIONS_1D: dict[str, str] = {"d": "d"}
LEVEL_NUMBERING = "level 1 is the finest scale (pywt's wavedec lists it last); level L the coarsest"


class Levels(Stored):
    """The detail coefficients, level ``j`` (1 finest) of orientation ``o`` stored as ``details/level<j>/<o>``;
    the levels read are the ``meta["level"]`` of the header."""

    def put(self, name, value, arrays, header):
        for j, coefficients in enumerate(value, start=1):
            arrays.update({f"{name}/level{j}/{o}": c for o, c in coefficients.items()})

    def take(self, name, arrays, header):
        keys = [[f"{name}/level{j}/{o}" for o in ORIENTATIONS_2D] for j in range(1, int(header["meta"]["level"]) + 1)]
        return tuple({key.rpartition("/")[2]: arrays[key] for key in level if key in arrays} for level in keys)


@dataclass(frozen=True, repr=False)
class Multiscale(Result):
    """The wavelet decomposition of a (detrended) surface, per level and orientation.

    Attributes:
        x: ``(nx,)`` the surface's first coordinates.
        y: ``(ny,)`` its second coordinates (``None`` for a line).
        approx: the coarsest approximation coefficients :math:`a_L`.
        details: ``details[j - 1]`` holds level ``j`` (1 = finest): ``{"h", "v", "d"}`` coefficient
            arrays for a plane, ``{"d"}`` for a line.
        parts: ``(L + 1, *shape)``: ``parts[0]`` the approximation :math:`A_L`, ``parts[j]`` the detail of
            level ``j`` (all orientations), each reconstructed alone and cropped to the surface's shape;
            ``parts.sum(0) + trend`` is the surface.
        trend: the quadratic removed (zeros without detrending), of the surface's shape.
        energy_total: :math:`\\lVert R \\rVert^2` of the array decomposed (detrended and extended).
        meta: ``wavelet``, ``mode``, ``level``, ``detrend``, ``preset``, ``trend_coefficients``,
            ``surface_shape``, ``decomposed_shape``, ``padding`` (``[before, after]`` per axis), ``extension``
            (how the surface was extended, ``None`` when it was not),
            ``energy_coefficients``, ``level_numbering``, ``nonfinite`` counts, ``warnings``, ``source``
            (the surface's meta) and ``versions``.
    """

    KIND: ClassVar[str] = "multiscale"

    x: np.ndarray = array()
    y: np.ndarray | None = array(optional=True)
    approx: np.ndarray = array()
    details: tuple[dict[str, np.ndarray], ...] = stored(Levels())
    parts: np.ndarray = array()
    trend: np.ndarray = array()
    energy_total: float = attr(float)
    meta: dict = field(default_factory=dict)

    @property
    def level(self) -> int:
        """The number of levels :math:`L`."""
        return len(self.details)

    @property
    def energy_approx(self) -> float:
        """:math:`\\lVert a_L \\rVert^2`."""
        return float(np.sum(self.approx**2))

    @property
    def levels(self) -> list[dict]:
        """Per level, finest first: ``level``, ``energy_h``, ``energy_v``, ``energy_d`` (``None`` for the
        orientations a line lacks), ``energy`` (their sum) and ``roughness`` (``energy / energy_total``)."""
        rows = []
        for j, coefficients in enumerate(self.details, start=1):
            energies = {o: float(np.sum(c**2)) for o, c in coefficients.items()}
            total = sum(energies.values())
            rows.append({"level": j, **{f"energy_{o}": energies.get(o) for o in ORIENTATIONS_2D},
                         "energy": total, "roughness": _ratio(total, self.energy_total)})
        return rows

    @property
    def roughness(self) -> float:
        """Detail energy over total energy (0 for an array of zero energy)."""
        return _ratio(sum(row["energy"] for row in self.levels), self.energy_total)

    def summary(self) -> dict:
        """Headline figures: ``roughness``, ``finest_roughness`` (level 1), ``dominant_level`` (the level
        holding most detail energy), ``energy_total``, ``energy_approx``, ``level``, ``wavelet``, ``mode``,
        ``detrend``."""
        rows = self.levels
        return {"roughness": self.roughness, "finest_roughness": rows[0]["roughness"],
                "dominant_level": max(rows, key=lambda r: r["energy"])["level"],
                "energy_total": self.energy_total, "energy_approx": self.energy_approx, "level": self.level,
                **{k: self.meta[k] for k in ("wavelet", "mode", "detrend")}}

    def to_json(self) -> dict:
        """The content of ``multiscale.json``: ``levels`` (level 1 finest), ``energy_approx``,
        ``energy_total``, ``roughness``, the options and shapes, ``warnings`` and the metadata."""
        m = self.meta
        return {"format": "losslens-multiscale", "level_numbering": LEVEL_NUMBERING, "levels": self.levels,
                "energy_approx": self.energy_approx, "energy_total": self.energy_total,
                "energy_coefficients": m["energy_coefficients"], "roughness": self.roughness,
                **{k: m[k] for k in ("wavelet", "mode", "level", "detrend", "preset", "trend_coefficients",
                                     "surface_shape", "decomposed_shape", "padding", "extension", "nonfinite")},
                "warnings": m["warnings"], "source": m["source"], "versions": m["versions"]}


def multiscale(
    surface,
    *,
    wavelet: str | None = None,
    level: int | None = None,
    mode: str | None = None,
    detrend: Literal["none", "quadratic"] | None = None,
    preset: Literal["book"] | None = None,
    nonfinite: Literal["raise", "fill"] = "raise",
) -> Multiscale:
    """Wavelet decomposition of a surface, with energy and roughness per level (level 1 finest).

    Options left ``None`` come from ``preset`` when one is given, else from the defaults (``haar``,
    the level rule of the module docstring, ``periodization``, ``quadratic``); options given explicitly
    override the preset's.

    Args:
        surface: a plane (``loss`` ``(ny, nx)``) or a line (``(nx,)``) with ``x``, ``y``, ``meta``.
        wavelet: a discrete wavelet of ``pywt.wavelist(kind="discrete")``; an orthogonal one keeps Parseval.
        level: decomposition levels, ``1 <= level <= floor(log2(shorter side))``.
        mode: a ``pywt.Modes.modes`` signal extension; only ``periodization`` extends the surface to
            multiples of ``2**level`` and keeps Parseval.
        detrend: ``"quadratic"`` removes the least-squares quadratic in the coordinates first; ``"none"``.
        preset: ``"book"`` (``haar``, level 2, ``symmetric``, no detrending).
        nonfinite: ``"raise"`` (refuse NaN/inf) or ``"fill"`` (each takes the largest of its finite
            4-neighbours; counted in ``meta["nonfinite"]`` and warned about).

    Returns:
        A ``Multiscale``.

    Raises:
        ConfigError: an invalid option (the valid ones are listed).
        ValueError: a bad surface, a level too deep for it, or non-finite values with ``nonfinite="raise"``.
    """
    import pywt

    opts = _options(wavelet, level, mode, detrend, preset, nonfinite)
    x, y, Z = grid_values(surface, "multiscale")
    warnings: list[str] = []
    Z, counts = _filled(Z, opts["nonfinite"], warnings)
    trend, trend_coefficients, residual = _detrended(x, y, Z, opts["detrend"], warnings)
    wave = pywt.Wavelet(opts["wavelet"])
    L = _level(opts["level"], Z.shape, wave, warnings)
    padding, A, extension = _extended(residual, L, opts["mode"])
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore", UserWarning)  # pywt's level warning: recorded by _level
        coefficients = pywt.wavedecn(A, wave, mode=opts["mode"], level=L)
    keys = ORIENTATIONS_2D if Z.ndim == 2 else ORIENTATIONS_1D
    details = tuple({o: coefficients[-j][k] for o, k in keys.items()} for j in range(1, L + 1))
    parts = np.stack([_part(coefficients, i, wave, opts["mode"], padding, Z.shape) for i in range(L + 1)])
    energy_total, energy_coefficients = _energies(A, coefficients[0], details, opts["mode"], wave, warnings)
    meta = {
        "wavelet": wave.name, "mode": opts["mode"], "level": L, "detrend": opts["detrend"], "preset": preset,
        "trend_coefficients": trend_coefficients, "surface_shape": list(Z.shape),
        "decomposed_shape": list(A.shape), "padding": padding, "extension": extension,
        "energy_coefficients": energy_coefficients,
        "level_numbering": LEVEL_NUMBERING, "nonfinite": counts, "warnings": warnings,
        "source": source_meta(surface), "versions": {"pywavelets": importlib.metadata.version("PyWavelets")},
    }
    return Multiscale(x, y, coefficients[0], details, parts, trend, energy_total, meta)


def _energies(A: np.ndarray, approximation: np.ndarray, details: tuple, mode: str, wave,
              warnings: list[str]) -> tuple[float, float]:
    """``(sum A**2, sum of the squared coefficients)``, with a warning when they differ (Parseval holds only
    for an orthogonal wavelet with mode ``periodization``)."""
    energy_total = float(np.sum(A**2))
    energy_coefficients = float(np.sum(approximation**2) + sum(np.sum(c**2) for d in details for c in d.values()))
    if abs(energy_coefficients - energy_total) > PARSEVAL_RTOL * max(energy_total, np.finfo(float).tiny):
        warnings.append(f"the coefficients hold {energy_coefficients / energy_total:.6g}x the energy of the array "
                        f"decomposed (mode {mode!r}, wavelet {wave.name}): per-level energies do not add up "
                        "to energy_total; use an orthogonal wavelet with mode 'periodization' for that")
    return energy_total, energy_coefficients


def _filled(Z: np.ndarray, nonfinite: str, warnings: list[str]) -> tuple[np.ndarray, dict]:
    """``(Z, its counts of NaN and inf)``, each NaN/inf of ``Z`` replaced by the largest of its finite
    4-neighbours (``nonfinite="fill"``), or a ValueError when there is one and ``nonfinite="raise"``."""
    counts = nonfinite_counts(Z)
    if not counts["nan"] + counts["inf"]:
        return Z, counts
    message = describe_nonfinite(counts, Z.size)
    if nonfinite == "raise":
        raise ValueError(f"multiscale: the surface has {message}; a wavelet decomposition needs every point: "
                         "crop it to its finite part, or fill them (nonfinite='fill', --fill-nonfinite)")
    warnings.append(f"{message} replaced by the largest of their finite 4-neighbours")
    return fill_nonfinite(Z), counts


def _detrended(x: np.ndarray, y: np.ndarray | None, Z: np.ndarray, detrend: str, warnings: list[str]):
    """``(trend, its coefficients or None, Z - trend)``; the residual is zero when the quadratic fits ``Z`` to
    rounding (no structure left to decompose)."""
    trend, trend_coefficients = (np.zeros_like(Z), None) if detrend == "none" else _quadratic_trend(x, y, Z)
    residual = Z - trend
    if trend_coefficients is not None and _rms(residual) <= ZERO_RESIDUAL * _rms(Z):
        residual = np.zeros_like(Z)
        warnings.append("the quadratic fits the surface to rounding: no structure is left to decompose")
    return trend, trend_coefficients, residual


def _level(level: int | None, shape: tuple[int, ...], wave, warnings: list[str]) -> int:
    """The number of levels: ``level``, or the default rule; a ValueError when the coarsest approximation
    would keep no sample, a warning when it is deeper than pywt's own maximum for the wavelet."""
    import pywt

    L = level or default_level(shape, wave)
    if L > _max_level(shape):
        raise ValueError(f"level {L} is too deep for a surface of shape {list(shape)}: valid levels are "
                         f"1..{_max_level(shape)} (the coarsest approximation keeps at least one sample)")
    pywt_max = pywt.dwt_max_level(min(shape), wave.dec_len)
    if L > pywt_max:
        warnings.append(f"level {L} is deeper than pywt.dwt_max_level for {wave.name} on {min(shape)} samples "
                        f"({pywt_max}): its coarse coefficients all feel the edges")
    return L


def _extended(residual: np.ndarray, L: int, mode: str) -> tuple[list, np.ndarray, str | None]:
    """``(padding, array, description)``: with ``mode="periodization"`` the residual is extended by symmetric
    reflection to multiples of ``2**L`` (``padding`` ``[before, after]`` per axis); else kept as it is."""
    padding = [[p // 2, p - p // 2] for p in ((-n) % 2**L for n in residual.shape)] if mode == "periodization" \
        else [[0, 0] for _ in residual.shape]
    A = np.pad(residual, padding, mode="symmetric")
    extension = None if A.shape == residual.shape else (
        f"shape {list(residual.shape)} is not a multiple of 2**{L}: extended by symmetric reflection (half-sample, "
        f"the edge value repeated) to {list(A.shape)}, padding {padding} [before, after] per axis; energies are of "
        "the extended array")
    return padding, A, extension


def default_level(shape: tuple[int, ...], wavelet) -> int:
    """:math:`\\max(1, \\min(\\lfloor \\log_2 n_{min} \\rfloor - 2,\\ \\text{pywt.dwt\\_max\\_level}))`:
    the coarsest approximation keeps at least ``COARSEST_SAMPLES`` (4) samples along the shorter side."""
    import pywt

    n = min(shape)
    wave = wavelet if isinstance(wavelet, pywt.Wavelet) else pywt.Wavelet(wavelet)
    return max(1, min(int(np.log2(n / COARSEST_SAMPLES)), pywt.dwt_max_level(n, wave.dec_len)))


def _max_level(shape: tuple[int, ...]) -> int:
    return int(np.floor(np.log2(min(shape))))


def _options(wavelet, level, mode, detrend, preset, nonfinite) -> dict:
    """The options after the preset and the defaults, each validated."""
    import pywt

    if preset is not None:
        check_choice("preset", preset, PRESETS)
    base = PRESETS.get(preset, {"wavelet": WAVELET, "level": None, "mode": MODE, "detrend": DETREND})
    given = {"wavelet": wavelet, "level": level, "mode": mode, "detrend": detrend}
    opts = {k: base[k] if v is None else v for k, v in given.items()} | {"nonfinite": nonfinite}
    check_choice("wavelet", opts["wavelet"], pywt.wavelist(kind="discrete"), describe="a discrete wavelet of "
                 "pywt.wavelist(kind='discrete'), e.g. haar, db2, db4, sym4, coif1 (orthogonal), bior2.2")
    check_choice("mode", opts["mode"], pywt.Modes.modes)
    check_choice("detrend", opts["detrend"], DETRENDS)
    check_choice("nonfinite", nonfinite, NONFINITE)
    opts["level"] = check_int("level", opts["level"], minimum=1, none=True)
    return opts


def _quadratic_trend(x: np.ndarray, y: np.ndarray | None, Z: np.ndarray) -> tuple[np.ndarray, dict]:
    """The least-squares quadratic in the coordinates, of ``Z``'s shape, and its coefficients by monomial."""
    if y is None:
        names, columns = ("1", "x", "x^2"), [np.ones_like(x), x, x**2]
    else:
        X, Y = np.meshgrid(x, y)  # (ny, nx), like Z
        names, columns = ("1", "x", "y", "x^2", "xy", "y^2"), [np.ones_like(X), X, Y, X**2, X * Y, Y**2]
    design = np.stack([c.reshape(-1) for c in columns], axis=1)
    coef = np.linalg.lstsq(design, Z.reshape(-1), rcond=None)[0]
    return (design @ coef).reshape(Z.shape), {n: float(c) for n, c in zip(names, coef)}


def _part(coefficients: list, index: int, wave, mode: str, padding: list, shape: tuple[int, ...]) -> np.ndarray:
    """The reconstruction from the approximation alone (``index`` 0) or the details of level ``index``
    alone, cropped to the surface (pywt's output may be one sample longer on odd sides)."""
    import pywt

    keep = 0 if index == 0 else len(coefficients) - index
    alone = [c if i == keep else (np.zeros_like(c) if i == 0 else {k: np.zeros_like(v) for k, v in c.items()})
             for i, c in enumerate(coefficients)]
    full = pywt.waverecn(alone, wave, mode=mode)
    return full[tuple(slice(p[0], p[0] + n) for p, n in zip(padding, shape))]


def _ratio(part: float, total: float) -> float:
    return float(part / total) if total > 0 else 0.0


def _rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(a**2)))
