"""Wavelet multiscale analysis against closed forms: reconstruction, Parseval, level numbering, orientation."""

import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
import pywt

from losslens.landscape.wavelets import Multiscale, default_level, multiscale

X61 = np.linspace(-1.0, 2.0, 81)  # nx = 81, ny = 61: non-square, asymmetric ranges
Y61 = np.linspace(-0.5, 0.5, 61)


def plane(Z, x=None, y=None):
    ny, nx = Z.shape
    return SimpleNamespace(x=np.linspace(-1, 1, nx) if x is None else x,
                           y=np.linspace(-2, 1, ny) if y is None else y, loss=Z, meta={"model": "toy"})


def line(values):
    return SimpleNamespace(x=np.linspace(-1, 1, len(values)), y=None, loss=values, meta={})


def noise(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape)


# Haar's taps are exact to rounding; pywt stores those of longer filters to about 1e-12 (sym4's
# reconstruction is off by 5e-12 relative), hence the looser bound for them.
@pytest.mark.parametrize("options, tol", [({}, 1e-14), ({"preset": "book"}, 1e-14),
                                          ({"wavelet": "db2", "mode": "symmetric", "level": 2}, 1e-10),
                                          ({"wavelet": "sym4", "detrend": "none"}, 1e-10),
                                          ({"wavelet": "bior2.2", "level": 1}, 1e-10)])
def test_parts_add_up_to_the_surface(options, tol):
    Z = noise((61, 81)) + np.add.outer(Y61**2, X61)
    result = multiscale(plane(Z, X61, Y61), **options)
    assert result.parts.shape == (result.level + 1, 61, 81)
    np.testing.assert_allclose(result.parts.sum(0) + result.trend, Z, rtol=0, atol=tol * np.abs(Z).max())


def test_line_parts_add_up_and_have_one_detail_per_level():
    values = noise(100)
    result = multiscale(line(values), detrend="none")
    np.testing.assert_allclose(result.parts.sum(0), values, atol=1e-12)
    assert all(set(d) == {"d"} for d in result.details)
    row = result.levels[0]
    assert row["energy_h"] is None and row["energy_v"] is None and row["energy_d"] > 0
    assert result.energy_approx + sum(r["energy"] for r in result.levels) == pytest.approx(result.energy_total,
                                                                                         rel=1e-12)


def test_61x81_is_extended_and_parseval_holds_on_the_extended_array():
    Z = noise((61, 81), seed=1)
    result = multiscale(plane(Z, X61, Y61), detrend="none")
    assert result.level == 3  # floor(log2 61) - 2
    assert result.meta["decomposed_shape"] == [64, 88] and result.meta["padding"] == [[1, 2], [3, 4]]
    extended = np.pad(Z, [[1, 2], [3, 4]], mode="symmetric")
    assert result.energy_total == pytest.approx(np.sum(extended**2), rel=1e-14)
    parts = result.energy_approx + sum(r["energy_h"] + r["energy_v"] + r["energy_d"] for r in result.levels)
    assert parts == pytest.approx(result.energy_total, rel=1e-12)
    assert "extended by symmetric reflection" in result.meta["extension"] and not result.meta["warnings"]
    # what pywt does alone: it pads silently, and its coefficients hold more energy than the surface
    raw = pywt.wavedecn(Z, "haar", mode="periodization", level=3)
    raw_energy = np.sum(raw[0] ** 2) + sum(np.sum(c**2) for d in raw[1:] for c in d.values())
    assert raw_energy / np.sum(Z**2) > 1.01


@pytest.mark.parametrize("wavelet", ["haar", "db2", "db4", "sym5"])
def test_orthogonal_wavelets_keep_parseval(wavelet):
    result = multiscale(plane(noise((40, 56), seed=2)), wavelet=wavelet)
    assert result.meta["energy_coefficients"] == pytest.approx(result.energy_total, rel=1e-9)
    assert not any("do not add up" in w for w in result.meta["warnings"])


def test_symmetric_mode_says_the_energies_do_not_add_up():
    result = multiscale(plane(noise((41, 41))), preset="book")
    assert any("do not add up" in w for w in result.meta["warnings"])


def test_constant_surface_has_no_detail_energy():
    result = multiscale(plane(np.full((30, 50), 3.7)), detrend="none")
    assert all(r["energy"] == 0.0 for r in result.levels) and result.roughness == 0.0
    assert result.energy_approx == pytest.approx(result.energy_total) and result.energy_total > 0
    periodic = multiscale(plane(np.full((32, 48), 3.7)), detrend="none", wavelet="db2")
    assert all(r["energy"] < 1e-20 * periodic.energy_total for r in periodic.levels)


def test_quadratic_after_detrending_has_no_energy_and_its_coefficients_are_found():
    X, Y = np.meshgrid(X61, Y61)  # (61, 81)
    Z = 1.0 + 2.0 * X - 3.0 * Y + 0.5 * X**2 + 1.5 * X * Y + 4.0 * Y**2
    result = multiscale(plane(Z, X61, Y61))
    assert result.energy_total == 0.0 and result.roughness == 0.0
    assert any("fits the surface to rounding" in w for w in result.meta["warnings"])
    expected = {"1": 1.0, "x": 2.0, "y": -3.0, "x^2": 0.5, "xy": 1.5, "y^2": 4.0}
    for name, value in expected.items():  # x and y not swapped on a non-square grid
        assert result.meta["trend_coefficients"][name] == pytest.approx(value, abs=1e-9)
    bumped = multiscale(plane(Z + 1e-6 * noise(Z.shape), X61, Y61))  # a small residual is kept, not zeroed
    assert bumped.energy_total > 0 and bumped.roughness > 0.5


def test_white_noise_puts_most_energy_at_the_finest_level():
    # iid noise under an orthogonal transform: each level's share is its share of the coefficients,
    # 3/4 at level 1 in 2D (1/2 in 1D), with a relative spread of about sqrt(2/N).
    result = multiscale(plane(noise((128, 128), seed=3)), detrend="none")
    shares = [r["roughness"] for r in result.levels]
    assert shares[0] == pytest.approx(0.75, abs=0.03) and shares[0] == max(shares)
    assert shares[1] == pytest.approx(0.1875, abs=0.02)
    one = multiscale(line(noise(4096, seed=4)), detrend="none")
    assert one.levels[0]["roughness"] == pytest.approx(0.5, abs=0.03)


def test_level_one_is_the_finest():
    x = np.arange(64)
    period2 = np.tile(np.where(x % 2 == 0, 1.0, -1.0), (16, 1))  # alternates along x at every sample
    period4 = np.tile(np.where(x % 4 < 2, 1.0, -1.0), (16, 1))
    r2 = multiscale(plane(period2), detrend="none", level=3)
    r4 = multiscale(plane(period4), detrend="none", level=3)
    assert r2.levels[0]["energy"] == pytest.approx(r2.energy_total) and r2.levels[1]["energy"] == 0.0
    assert r4.levels[1]["energy"] == pytest.approx(r4.energy_total) and r4.levels[0]["energy"] == 0.0
    assert r2.meta["level_numbering"].startswith("level 1 is the finest")


def test_orientation_follows_the_axes_of_a_non_square_surface():
    f = noise(81, seed=5)  # a function of x only: constant along y, so only vertical features
    Z = np.tile(f, (61, 1))
    result = multiscale(plane(Z, X61, Y61), detrend="none")
    assert all(r["energy_h"] == 0.0 and r["energy_d"] == 0.0 and r["energy_v"] > 0 for r in result.levels)
    result_t = multiscale(plane(Z.T.copy(), Y61, X61), detrend="none")  # the same function of y: horizontal
    assert all(r["energy_v"] == 0.0 and r["energy_h"] > 0 for r in result_t.levels)


@pytest.mark.parametrize("shape, wavelet, level", [((41, 41), "haar", 3), ((61, 81), "haar", 3), ((8, 8), "haar", 1),
                                                   ((2, 5), "haar", 1), ((256, 300), "haar", 6),
                                                   ((41, 41), "db4", 2), ((100,), "haar", 4)])
def test_default_level_rule(shape, wavelet, level):
    assert default_level(shape, wavelet) == level


def test_preset_and_explicit_options():
    Z = noise((41, 41))
    book = multiscale(plane(Z), preset="book")
    assert (book.meta["wavelet"], book.level, book.meta["mode"], book.meta["detrend"]) == ("haar", 2, "symmetric",
                                                                                          "none")
    assert book.meta["decomposed_shape"] == [41, 41] and book.meta["extension"] is None  # only for periodization
    assert multiscale(plane(Z), preset="book", level=1).level == 1  # an explicit option wins


@pytest.mark.parametrize("options, message", [
    ({"wavelet": "nope"}, "wavelet must be a discrete wavelet of pywt.wavelist(kind='discrete'), e.g. haar"),
    ({"wavelet": "mexh"}, "bior2.2 (got 'mexh')"),  # continuous
    ({"mode": "wrap"}, "mode must be one of zero, constant, symmetric"),
    ({"detrend": "linear"}, "detrend must be one of none, quadratic (got 'linear')"),
    ({"preset": "paper"}, "preset must be one of book (got 'paper')"),
    ({"level": 0}, "level must be an integer >= 1 or None (got 0)"),
    ({"level": True}, "level must be an integer >= 1 or None (got True)"),
    ({"level": 6}, "level 6 is too deep for a surface of shape [41, 41]: valid levels are 1..5"),
    ({"nonfinite": "zero"}, "nonfinite must be one of raise, fill (got 'zero')"),
])
def test_bad_options_name_the_valid_choices(options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        multiscale(plane(noise((41, 41))), **options)


def test_transposed_surface_is_refused():
    with pytest.raises(ValueError, match=r"surface.loss has shape \[81, 61\], expected \[61, 81\]"):
        multiscale(SimpleNamespace(x=X61, y=Y61, loss=noise((81, 61)), meta={}))


def test_nonfinite_values_are_refused_or_filled_and_counted():
    Z = noise((32, 40))
    Z[3, 4], Z[10, 11] = np.nan, np.inf
    with pytest.raises(ValueError, match=r"2 non-finite values \(1 NaN, 1 inf\) of 1280"):
        multiscale(plane(Z))
    result = multiscale(plane(Z), nonfinite="fill")
    assert result.meta["nonfinite"] == {"nan": 1, "inf": 1}
    assert any("2 non-finite values" in w for w in result.meta["warnings"])
    assert np.isfinite(result.parts).all() and np.isfinite(result.energy_total)
    filled = Z.copy()
    filled[3, 4] = max(Z[2, 4], Z[4, 4], Z[3, 3], Z[3, 5])
    filled[10, 11] = max(Z[9, 11], Z[11, 11], Z[10, 10], Z[10, 12])
    np.testing.assert_allclose(result.parts.sum(0) + result.trend, filled, atol=1e-12)


def test_save_load_and_json(tmp_path):
    result = multiscale(plane(noise((61, 81)), X61, Y61))
    back = Multiscale.load(result.save(tmp_path / "m.h5"))
    assert back.level == result.level and back.meta == result.meta and back.energy_total == result.energy_total
    np.testing.assert_array_equal(back.parts, result.parts)
    assert back.levels == result.levels
    for a, b in zip(back.details, result.details):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    doc = json.loads(json.dumps(result.to_json(), allow_nan=False))
    assert [r["level"] for r in doc["levels"]] == [1, 2, 3]
    assert {"level", "energy_h", "energy_v", "energy_d"} <= doc["levels"][0].keys()
    total = doc["energy_approx"] + sum(r["energy_h"] + r["energy_v"] + r["energy_d"] for r in doc["levels"])
    assert total == pytest.approx(doc["energy_total"], rel=1e-12)
    assert doc["roughness"] == pytest.approx(1 - doc["energy_approx"] / doc["energy_total"], rel=1e-12)
    assert doc["source"] == {"model": "toy"} and doc["decomposed_shape"] == [64, 88]
    assert result.summary()["roughness"] == result.roughness and result.summary()["level"] == 3
    line_result = multiscale(line(noise(50)))
    assert Multiscale.load(line_result.save(tmp_path / "l.h5")).y is None
