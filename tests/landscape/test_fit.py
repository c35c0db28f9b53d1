"""Surface fits against synthetic surfaces whose parameters are known.

Grids are non-square with asymmetric ranges (and every true centre off the diagonal), so a transposed
loss would put ``x0`` and ``y0`` in each other's place and fail.
"""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from losslens.errors import ConfigError
from losslens.landscape.fit import SurfaceFit, fit_surface, model_function

X = np.linspace(-2.0, 2.5, 37)
Y = np.linspace(-1.5, 2.0, 29)
TRUE = {"offset": 3.0, "A": 2.5, "x0": 0.4, "y0": -0.3, "s1": 0.8, "s2": 0.5}
NOISE = 0.02


def plane(fn, noise=0.0, seed=0, x=X, y=Y, meta=None):
    """A surface namespace with ``loss[iy, ix] = fn(x[ix], y[iy])`` plus Gaussian noise."""
    Xg, Yg = np.meshgrid(x, y)
    loss = fn(Xg, Yg) + noise * np.random.default_rng(seed).standard_normal(Xg.shape)
    return SimpleNamespace(x=x, y=y, loss=loss, meta=meta or {})


def gaussian(x, y, offset, A, x0, y0, s1, s2):
    return offset - A * np.exp(-((x - x0) ** 2 / (2 * s1**2) + (y - y0) ** 2 / (2 * s2**2)))


@pytest.fixture(scope="module")
def noisy():
    s = plane(lambda x, y: gaussian(x, y, **TRUE), NOISE)
    s.loss[0, :3] = np.nan  # three excluded points, and one inf
    s.loss[5, 7] = np.inf
    return s, fit_surface(s, "gaussian")


def test_gaussian_recovers_its_parameters_within_their_standard_errors(noisy):
    s, fit = noisy
    assert fit.names == ("offset", "A", "x0", "y0", "s1", "s2")
    for name, true in TRUE.items():
        value, err = fit.parameters[name], fit.stderr[fit.names.index(name)]
        assert 0 < err < 0.01 * abs(true) + 1e-3
        assert abs(value - true) < 4 * err, (name, value, true, err)
    assert fit.n_excluded == 4 and fit.n_points == s.loss.size - 4


def test_goodness_of_fit_is_the_textbook_one(noisy):
    s, fit = noisy
    keep = np.isfinite(s.loss)
    Xg, Yg = np.meshgrid(X, Y)
    model = gaussian(Xg, Yg, **fit.parameters)
    rss = ((s.loss[keep] - model[keep]) ** 2).sum()
    tss = ((s.loss[keep] - s.loss[keep].mean()) ** 2).sum()
    assert fit.r2 == pytest.approx(1 - rss / tss, rel=1e-10) and fit.r2 > 0.99
    assert fit.rmse == pytest.approx(math.sqrt(rss / keep.sum()), rel=1e-10)
    assert fit.rmse == pytest.approx(NOISE, rel=0.1)  # the residuals are the noise
    assert fit.residuals.shape == (len(Y), len(X))
    assert np.array_equal(np.isnan(fit.residuals), ~keep)
    np.testing.assert_allclose(fit.residuals[keep], (s.loss - model)[keep], atol=1e-12)


def test_fitted_minimum_and_curvature_are_the_centre_and_A_over_s_squared(noisy):
    _, fit = noisy
    p = fit.parameters
    np.testing.assert_allclose(fit.minimum, [p["x0"], p["y0"]], atol=1e-9)
    assert fit.minimum_value == pytest.approx(p["offset"] - p["A"], abs=1e-12)
    np.testing.assert_allclose(fit.hessian, np.diag([p["A"] / p["s1"] ** 2, p["A"] / p["s2"] ** 2]), rtol=1e-9,
                               atol=1e-9)
    assert fit.curvature.tolist() == pytest.approx([p["A"] / p["s2"] ** 2, p["A"] / p["s1"] ** 2], rel=1e-9)
    assert fit.stable_lr == pytest.approx(2 * p["s2"] ** 2 / p["A"], rel=1e-9)
    assert not fit.meta["minimum_on_boundary"]


def test_function_is_the_fit_in_torch_with_autograd(noisy):
    _, fit = noisy
    f = fit.function()
    Xg, Yg = np.meshgrid(X, Y)
    pts = torch.as_tensor(np.stack([Xg.ravel(), Yg.ravel()], axis=1))
    np.testing.assert_allclose(f(pts).detach().numpy().reshape(Xg.shape), fit.fitted, rtol=1e-12)
    q = torch.tensor([[0.1, 0.2]], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(f(q).sum(), q)
    h = 1e-6
    fd = [(f(q.detach() + h * e) - f(q.detach() - h * e)).item() / (2 * h) for e in torch.eye(2, dtype=torch.float64)]
    np.testing.assert_allclose(g[0].numpy(), fd, rtol=1e-6)
    with pytest.raises(ValueError, match=r"\(K, 2\)"):
        f(torch.zeros(3, dtype=torch.float64))


def test_offset_max_is_the_books_fixed_constant():
    s = plane(lambda x, y: gaussian(x, y, **TRUE), NOISE)
    fit = fit_surface(s, "gaussian", offset="max")
    assert fit.parameters["offset"] == s.loss.max() and fit.stderr[0] == 0.0
    fixed = fit_surface(s, "gaussian", offset=3.0)
    assert fixed.parameters["offset"] == 3.0 and abs(fixed.parameters["A"] - 2.5) < 0.01


def test_rotated_recovers_the_angle_and_the_curvature():
    theta, A, s1, s2, x0, y0 = 0.5, 2.0, 0.9, 0.4, 0.3, 0.2

    def rotated(x, y):
        u = math.cos(theta) * (x - x0) + math.sin(theta) * (y - y0)
        v = -math.sin(theta) * (x - x0) + math.cos(theta) * (y - y0)
        return 1.0 - A * np.exp(-(u**2 / (2 * s1**2) + v**2 / (2 * s2**2)))

    fit = fit_surface(plane(rotated, 0.01), "rotated")
    p = fit.parameters
    assert p["theta"] == pytest.approx(theta, abs=0.01)
    assert [p["s1"], p["s2"], p["x0"], p["y0"]] == pytest.approx([s1, s2, x0, y0], abs=0.01)
    assert fit.curvature.tolist() == pytest.approx([A / s2**2, A / s1**2], rel=0.02)
    assert fit_surface(plane(rotated, 0.01), "gaussian").r2 < fit.r2  # an axis-aligned bowl fits worse


def test_mixture_finds_two_separated_wells_and_the_criterion_chooses_two():
    wells = [(1.0, -1.0, 1.0, 0.3), (0.6, 1.3, -0.6, 0.4)]  # depth, x, y, width

    def two(x, y):
        return 1.0 - sum(a * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * w**2)) for a, cx, cy, w in wells)

    s = plane(two, 0.01)
    fit = fit_surface(s, "mixture", max_components=3)
    assert fit.meta["criterion"]["chosen"] == 2 and fit.meta["options"]["components"] == 2
    found = sorted((fit.parameters[f"A_{k}"], fit.parameters[f"x0_{k}"], fit.parameters[f"y0_{k}"]) for k in (1, 2))
    for (a, cx, cy), (ta, tx, ty, _) in zip(found[::-1], wells):
        assert (a, cx, cy) == pytest.approx((ta, tx, ty), abs=0.02)
    np.testing.assert_allclose(fit.minimum, [-1.0, 1.0], atol=0.01)  # the deeper well
    assert fit.r2 > 0.99 > fit_surface(s, "gaussian").r2
    assert fit_surface(s, "mixture", components=2).names[1] == "A_1"
    crit = fit.meta["criterion"]
    assert crit["name"] == "bic" and min(crit["bic"], key=crit["bic"].get) == "2"
    assert int(min(crit["aic"], key=crit["aic"].get)) >= 2  # AIC penalizes less: it may take a third
    n, rss2 = fit.n_points, fit.rss  # BIC of K = 2 by hand: n ln(RSS/n) + p ln n, p = 1 + 2 * 5
    assert crit["bic"]["2"] == pytest.approx(n * math.log(rss2 / n) + 11 * math.log(n), rel=1e-9)
    assert crit["aic"]["2"] == pytest.approx(n * math.log(rss2 / n) + 22, rel=1e-9)


def test_quadratic_is_exact_on_a_quadratic():
    H = np.array([[3.0, 1.0], [1.0, 2.0]])

    def q(x, y):
        return 0.7 + 0.5 * x - 0.2 * y + 0.5 * (H[0, 0] * x * x + 2 * H[0, 1] * x * y + H[1, 1] * y * y)

    fit = fit_surface(plane(q), "quadratic")
    assert list(fit.parameters.values()) == pytest.approx([0.7, 0.5, -0.2, 3.0, 1.0, 2.0], abs=1e-10)
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(fit.curvature, np.linalg.eigvalsh(H)[::-1], rtol=1e-9)
    np.testing.assert_allclose(fit.minimum, np.linalg.solve(H, [-0.5, 0.2]), atol=1e-6)


def test_lines_fit_too():
    x = np.linspace(-1.5, 2.5, 41)
    loss = 2.0 - 1.5 * np.exp(-((x - 0.5) ** 2) / (2 * 0.6**2)) + 0.01 * np.random.default_rng(1).standard_normal(41)
    fit = fit_surface(SimpleNamespace(x=x, y=None, loss=loss, meta={}), "gaussian")
    assert fit.ndim == 1 and fit.names == ("offset", "A", "x0", "s1")
    assert [fit.parameters[k] for k in ("A", "x0", "s1")] == pytest.approx([1.5, 0.5, 0.6], abs=0.02)
    assert fit.curvature[0] == pytest.approx(fit.parameters["A"] / fit.parameters["s1"] ** 2, rel=1e-9)
    assert fit.function()(torch.tensor([[0.5]], dtype=torch.float64)).shape == (1,)
    quad = fit_surface(SimpleNamespace(x=x, y=None, loss=1 + 2 * (x - 0.3) ** 2, meta={}), "quadratic")
    assert list(quad.parameters.values()) == pytest.approx([1.18, -1.2, 4.0], abs=1e-10)
    with pytest.raises(ConfigError, match="rotated.*plane"):
        fit_surface(SimpleNamespace(x=x, y=None, loss=loss, meta={}), "rotated")


def test_surface_eigenvalues_are_read_from_the_directions_metadata():
    import torch

    from losslens.landscape.directions import Directions
    from losslens.landscape.surface import Surface

    fn = lambda x, y: gaussian(x, y, **TRUE)  # noqa: E731
    hessian = Directions(torch.eye(2, 5), "hessian", {"eigenvalues": [12.95, 10.74]})
    fit = fit_surface(Surface.from_arrays(X, Y, plane(fn).loss, directions=hessian))
    assert fit.surface_eigenvalues.tolist() == [12.95, 10.74]
    assert "12.95, 10.74" in fit.summary()
    assert fit_surface(plane(fn)).surface_eigenvalues is None


def test_save_and_load_round_trip(tmp_path, noisy):
    s, fit = noisy
    loaded = SurfaceFit.load(fit.save(tmp_path / "fit.h5"))
    assert loaded.model == fit.model and loaded.names == fit.names and loaded.meta == fit.meta
    for name in ("params", "stderr", "x", "y", "data", "fitted", "minimum", "hessian"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(fit, name))
    assert loaded.r2 == fit.r2 and loaded.n_excluded == 4 and loaded.surface_eigenvalues is None
    assert fit.to_dict()["parameters"] == fit.parameters and fit.to_dict()["n_excluded"] == 4


def test_model_function_of_published_parameters():
    f = model_function("gaussian", TRUE)
    assert float(f(torch.tensor([[0.4, -0.3]], dtype=torch.float64))) == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="offset, A, x0, y0, s1, s2"):
        model_function("gaussian", {"A": 1.0})


def test_bad_options_and_shapes_are_refused():
    s = plane(lambda x, y: gaussian(x, y, **TRUE))
    with pytest.raises(ConfigError, match=r"^model must be one of gaussian, rotated, mixture, quadratic \(got 'cubic'"):
        fit_surface(s, "cubic")
    with pytest.raises(ConfigError, match="components applies to the mixture"):
        fit_surface(s, "gaussian", components=2)
    with pytest.raises(ConfigError, match=r"criterion must be one of bic, aic \(got 'hqc'\)"):
        fit_surface(s, "mixture", criterion="hqc")
    with pytest.raises(ConfigError, match="offset must be"):
        fit_surface(s, "gaussian", offset="min")
    with pytest.raises(ValueError, match=r"shape \[37, 29\], expected \[29, 37\]"):
        fit_surface(SimpleNamespace(x=X, y=Y, loss=s.loss.T, meta={}))
    with pytest.raises(ValueError, match="finite loss values"):
        fit_surface(SimpleNamespace(x=X, y=Y, loss=np.full_like(s.loss, np.nan), meta={}))
    repeated = np.concatenate([Y[:3], Y[2:-1]])  # y[2] twice: two rows of points in one place
    with pytest.raises(ValueError, match=r"y coordinates must be strictly increasing: .* is repeated \(y\[2\] = y\[3\]\)"):
        fit_surface(SimpleNamespace(x=X, y=repeated, loss=s.loss, meta={}))


SMALL = np.linspace(-1.0, 1.0, 15)


def flat_bottomed(x, y):
    """A non-negative loss whose flat bottom (0.02 within 0.4 of (0.1, -0.1)) a free Gaussian overshoots below 0."""
    return 0.02 + 2 * np.maximum(np.hypot(x - 0.1, y + 0.1) - 0.4, 0) ** 2


@pytest.mark.parametrize("model, options", [("gaussian", {}), ("rotated", {}), ("mixture", {"components": 2})])
def test_a_fit_of_a_non_negative_loss_stays_non_negative(model, options):
    s = plane(flat_bottomed, x=SMALL, y=SMALL, meta={"loss": "cross_entropy"})
    if model == "gaussian":
        free = fit_surface(s, model, nonnegative=False)
        assert free.minimum_value < -0.1 and not free.meta["options"]["nonnegative"]  # what was shown before
    fit = fit_surface(s, model, **options)
    assert fit.meta["options"]["nonnegative"] and fit.minimum_value >= 0 and fit.fitted.min() >= 0
    far = torch.as_tensor(np.random.default_rng(0).uniform(-5, 5, (4000, 2)))
    assert float(fit.function()(far).min()) >= -1e-12  # everywhere, not only on the grid
    assert fit.degenerate and any("well's bottom is at 0" in w for w in fit.warnings)
    assert "degenerate fit: " in fit.summary()


def test_the_loss_named_in_the_metadata_decides_before_the_values():
    s = plane(flat_bottomed, x=SMALL, y=SMALL, meta={"loss": "mse"})
    s.loss[0, 0] = -1e-7  # float rounding of a loss that cannot be negative
    assert fit_surface(s).minimum_value >= 0
    s.meta["loss"] = "my_score"  # not known non-negative, and one value below 0: not held
    assert fit_surface(s).minimum_value < -0.1
    with pytest.raises(ConfigError, match="values down to -1.5"):
        fit_surface(plane(lambda x, y: x - 0.5 + 0 * y, x=SMALL, y=SMALL), nonnegative=True)


def test_a_degenerate_fit_says_so_and_keeps_saying_it(tmp_path, noisy):
    assert not noisy[1].degenerate and noisy[1].warnings == ()
    flat = plane(lambda x, y: 1.0 + 0 * x, 0.01, seed=1, x=SMALL, y=SMALL)  # no well: nothing is determined
    fit = fit_surface(flat, "gaussian")
    assert fit.degenerate
    assert any(w.startswith("offset = ") and "standard error exceeds the value" in w for w in fit.warnings)
    assert any("is at its bound" in w for w in fit.warnings)
    loaded = SurfaceFit.load(fit.save(tmp_path / "fit.h5"))
    assert loaded.degenerate and loaded.warnings == fit.warnings
    assert fit.to_dict()["degenerate"] is True and fit.to_dict()["warnings"] == list(fit.warnings)


@pytest.mark.parametrize("steps, model, options, message", [
    (2, "gaussian", {}, "6 free parameters.*4 finite points"),
    (2, "quadratic", {}, "6 free parameters.*4 finite points"),
    (5, "mixture", {"components": 100}, "of 100 components has 501 free parameters.*25 finite points"),
])
def test_fits_with_no_more_points_than_parameters_are_refused(steps, model, options, message):
    g = np.linspace(-1.0, 1.0, steps)
    with pytest.raises(ConfigError, match=message):
        fit_surface(plane(lambda x, y: x**2 + y**2, x=g, y=g), model, **options)


def test_a_mixtures_components_are_capped_at_what_the_points_support():
    g = np.linspace(-1.0, 1.0, 3)  # 9 points: K = 1 has 6 parameters, K = 2 has 11
    fit = fit_surface(plane(lambda x, y: x**2 + y**2, x=g, y=g), "mixture", max_components=4)
    assert fit.meta["options"]["max_components"] == 1 and fit.meta["options"]["components"] == 1
    assert np.isfinite(fit.stderr).all()


@pytest.mark.parametrize("model, theta, d", [
    ("gaussian", [3.0, 2.5, 0.4, -0.3, 0.8, 0.5], 2),
    ("gaussian", [3.0, 2.5, 0.4, 0.8], 1),
    ("mixture", [1.0, 1.0, -1.0, 1.0, 0.3, 0.4, 0.6, 1.3, -0.6, 0.5, 0.45], 2),
    ("rotated", [1.0, 2.0, 0.3, 0.2, 0.9, 0.4, 0.5], 2),
    ("quadratic", [0.7, 0.5, -0.2, 3.0, 1.0, 2.0], 2),
    ("quadratic", [0.7, 0.5, 3.0], 1),
])
def test_closed_form_jacobians_match_finite_differences(model, theta, d):
    from losslens.landscape.fit_models import _evaluate, _jacobian

    pts = torch.as_tensor(np.random.default_rng(0).uniform(-1.5, 1.5, (50, d)))
    t = torch.tensor(theta, dtype=torch.float64)
    h = 1e-6
    fd = torch.stack([(_evaluate(model, t + h * e, pts) - _evaluate(model, t - h * e, pts)) / (2 * h)
                      for e in torch.eye(len(t), dtype=torch.float64)], dim=1)
    np.testing.assert_allclose(_jacobian(model, t, pts).numpy(), fd.numpy(), rtol=1e-6, atol=1e-8)


def test_a_flat_surface_leaves_the_wells_shape_undetermined_and_says_so():
    """A constant loss fits exactly (RSS 0) with depth 0, where centre and widths are free: their
    standard errors are infinite, not 0, and the fit is degenerate."""
    fit = fit_surface(plane(lambda x, y: np.ones_like(x)), "gaussian")
    assert fit.parameters["offset"] == pytest.approx(1.0, abs=1e-9)
    err = dict(zip(fit.names, fit.stderr))
    assert all(math.isinf(err[n]) for n in ("x0", "y0", "s1", "s2"))
    assert fit.degenerate and any("non-finite standard error" in w for w in fit.warnings)


def test_fit_names_what_is_not_a_surface():
    with pytest.raises(TypeError, match="needs a Surface .*got str"):
        fit_surface("surface.h5")
