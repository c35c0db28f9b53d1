"""Replays against closed forms and hand-written updates; the book's published fit; the options; the
batched evaluation; the result file and tables."""

import csv
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from losslens.errors import ConfigError
from losslens.landscape.fit import model_function
from losslens.trajectories.objectives import ReplayObjective, grid_objective
from losslens.trajectories.replay import OptimizerSpec, replay
from losslens.trajectories.replay_result import PATH_COLUMNS, SUMMARY_COLUMNS, Replay

# The book chapter's published Gaussian fit. Its offset is not published; the offset does not change
# gradients, and offset = A puts the minimum value at 0.
BOOK = {"A": 29.27164346, "x0": -0.0488573, "y0": -0.06687705, "s1": 0.7469189, "s2": 0.94904458}


def book_objective():
    f = model_function("gaussian", {"offset": BOOK["A"], **BOOK})
    return ReplayObjective(f, name="book fit", domain=((-2.0, 2.0), (-2.0, 2.0)), minimum=(BOOK["x0"], BOOK["y0"]),
                     min_value=0.0)


def himmelblau_grad(x, y):
    """By hand: d/dx = 4x(x^2 + y - 11) + 2(x + y^2 - 7), d/dy = 2(x^2 + y - 11) + 4y(x + y^2 - 7)."""
    return np.array([4 * x * (x * x + y - 11) + 2 * (x + y * y - 7), 2 * (x * x + y - 11) + 4 * y * (x + y * y - 7)])


@pytest.mark.parametrize("kappa, lr", [(10.0, 0.05), (10.0, 0.15), (3.0, 0.5)])
def test_sgd_on_the_quadratic_is_the_closed_form(kappa, lr):
    x0, y0, T = -1.3, 0.8, 40
    r = replay("quadratic" if kappa == 10 else _quadratic(kappa), ["sgd"], lr=lr, start=(x0, y0), steps=T)
    p = r.path("sgd")
    t = np.arange(T + 1)
    assert p["step"].tolist() == t.tolist()
    np.testing.assert_allclose(p["x"], (1 - lr) ** t * x0, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(p["y"], (1 - lr * kappa) ** t * y0, rtol=1e-11, atol=1e-300)
    np.testing.assert_allclose(p["loss"], (p["x"] ** 2 + kappa * p["y"] ** 2) / 2, rtol=1e-12)
    np.testing.assert_allclose(p["grad_norm"], np.hypot(p["x"], kappa * p["y"]), rtol=1e-12)
    assert (p["lr"] == lr).all() and r.status == ("completed",)


def _quadratic(kappa):
    from losslens.landscape.functions import quadratic

    return quadratic(kappa)


def test_momentum_and_adam_equal_hand_written_updates_for_20_steps():
    start, lr, T = np.array([0.5, -1.0]), 0.01, 20
    r = replay("himmelblau", ["momentum", "adam"], lr=lr, start=tuple(start), steps=T)
    p, v = start.copy(), np.zeros(2)  # heavy ball, torch's form: v <- 0.9 v + g (v_1 = g_1), p <- p - lr v
    for t in range(T):
        v = himmelblau_grad(*p) if t == 0 else 0.9 * v + himmelblau_grad(*p)
        p = p - lr * v
        np.testing.assert_allclose([r.path("momentum")[c][t + 1] for c in "xy"], p, rtol=1e-12)
    p, m, s = start.copy(), np.zeros(2), np.zeros(2)  # Adam (Kingma & Ba 2015), eps outside the root
    for t in range(1, T + 1):
        g = himmelblau_grad(*p)
        m, s = 0.9 * m + 0.1 * g, 0.999 * s + 0.001 * g * g
        p = p - lr * (m / (1 - 0.9**t)) / (np.sqrt(s / (1 - 0.999**t)) + 1e-8)
        np.testing.assert_allclose([r.path("adam")[c][t] for c in "xy"], p, rtol=1e-12)


def test_adam_reaches_the_rosenbrock_minimum_within_its_documented_budget():
    r = replay("rosenbrock", ["adam"], lr=0.05, steps=2000)  # the budget in functions.rosenbrock's docstring
    p = r.path("adam")
    assert math.hypot(p["x"][-1] - 1, p["y"][-1] - 1) < 1e-3
    assert r.meta["start"] == [-1.2, 1.0]


def test_the_books_published_fit():
    r = replay(book_objective(), [OptimizerSpec("book-momentum", 0.05), OptimizerSpec("adam", 0.1),
                                  OptimizerSpec("sgd", 0.1)], start=(-1.0, 1.0), steps=100)
    assert r.meta["optimizers"][0]["options"] == {"momentum": 0.8, "dampening": 0.8, "weight_decay": 0.0}
    for label, (x, y) in (("book-momentum", (-0.0489, -0.0669)), ("adam", (-0.0522, -0.0692))):
        p = r.path(label)
        assert abs(p["x"][-1] - x) < 1e-3 and abs(p["y"][-1] - y) < 1e-3, label
    assert np.abs(r.path("sgd")["x"]).max() > 1.5  # SGD at 0.1 leaves the basin
    rows = {row["optimizer"]: row for row in r.summary_rows()}
    lam = BOOK["A"] / BOOK["s1"] ** 2  # the fit's top curvature at its minimum, 52.47: 2/lambda = 0.038
    assert rows["sgd"]["lambda_max_minimum"] == pytest.approx(lam, rel=1e-9)
    assert rows["sgd"]["lr_above_2_over_lambda_minimum"] and 0.1 / (2 / lam) == pytest.approx(2.62, abs=0.01)
    assert "2/lambda_max = 0.03812" in r.summary()


@pytest.mark.parametrize("lr, above", [(0.19, False), (0.21, True)])
def test_stability_flag_on_the_quadratic_where_lambda_max_is_kappa(lr, above):
    r = replay("quadratic", ["sgd"], lr=lr, steps=30)
    row = r.summary_rows()[0]
    assert row["lambda_max_start"] == pytest.approx(10.0, abs=1e-12)
    assert row["lambda_max_minimum"] == pytest.approx(10.0, abs=1e-12)
    assert row["lr_above_2_over_lambda_start"] is above and row["lr_above_2_over_lambda_minimum"] is above
    ys = np.abs(r.path("sgd")["y"])
    assert bool(ys[-1] > ys[0]) is above  # and gradient descent does grow above the limit
    assert replay("quadratic", ["sgd"], lr=lr, steps=3, lambda_max=1.0).summary_rows()[0]["lambda_max_start"] == 1.0


def test_summary_figures_by_hand():
    # kappa = 1: p_t = (1 - lr)^t p_0. At lr 1.5 every step turns back; at 0.5 none does.
    f = _quadratic(1.0)
    p0 = np.array([0.6, -0.8])  # |p_0| = 1
    r = replay(f, [OptimizerSpec("sgd", 1.5, label="back"), OptimizerSpec("sgd", 0.5, label="on")],
               start=tuple(p0), steps=10, tol=1e-4)
    rows = {row["optimizer"]: row for row in r.summary_rows()}
    assert rows["back"]["oscillation"] == 9 and rows["on"]["oscillation"] == 0
    # step t moves by lr |p_t| = lr 0.5^t
    assert rows["on"]["path_length"] == pytest.approx(0.5 * sum(0.5**t for t in range(10)), rel=1e-12)
    assert rows["back"]["path_length"] == pytest.approx(1.5 * sum(0.5**t for t in range(10)), rel=1e-12)
    # loss_t = 0.5^(2t) / 2 <= 1e-4 first at t = 7
    assert rows["on"]["steps_to_tol"] == 7 and rows["on"]["final_loss"] == pytest.approx(0.5**20 / 2)
    assert rows["on"]["status"] == "completed" and rows["on"]["steps"] == 10


def test_steps_to_tol_uses_the_lowest_loss_reached_when_the_minimum_is_unknown():
    obj = ReplayObjective(lambda p: (p**2).sum(dim=1) + 5.0, name="bowl")  # minimum value not given
    r = replay(obj, [OptimizerSpec("sgd", 0.25, label="a"), OptimizerSpec("sgd", 0.1, label="b")], start=(1.0, 0.0),
               steps=5, tol=1e-9)
    assert r.target == pytest.approx(5.0 + 0.5 ** (2 * 5))  # a halves x each step: the lowest loss reached
    assert [row["steps_to_tol"] for row in r.summary_rows()] == [5, None]


def test_warmup_cosine_and_step_schedules_give_their_closed_forms():
    lr, T, w = 0.1, 20, 4
    r = replay("quadratic", ["sgd"], lr=lr, steps=T, schedule="cosine", warmup=w)
    t = np.arange(T + 1)
    expected = np.where(t <= w, lr * (t + 1) / (w + 1), lr * (1 + np.cos(np.pi * (t - w) / (T - w))) / 2)
    np.testing.assert_allclose(r.path("sgd")["lr"], expected, atol=1e-12)
    r = replay("quadratic", ["adam"], lr=lr, steps=T, schedule="step", step_size=6, gamma=0.5)
    np.testing.assert_allclose(r.path("adam")["lr"], lr * 0.5 ** (t // 6), rtol=1e-12)
    # and the rate recorded at step t is the one that moved the point from step t to t + 1 (SGD: x_{t+1} = (1 - lr_t) x_t)
    r = replay("quadratic", ["sgd"], lr=lr, steps=T, schedule="step", step_size=6, gamma=0.5)
    p = r.path("sgd")
    np.testing.assert_allclose(p["x"][1:], (1 - p["lr"][:-1]) * p["x"][:-1], rtol=1e-12)


def test_clipping_caps_the_step():
    r = replay("quadratic", ["sgd"], lr=0.01, start=(-1.0, 1.0), steps=3, clip=2.0)
    p = r.path("sgd")
    g = np.array([-1.0, 10.0])  # the gradient at the start, norm 10.05 > 2
    np.testing.assert_allclose([p["x"][1], p["y"][1]], np.array([-1.0, 1.0]) - 0.01 * 2.0 * g / np.linalg.norm(g),
                               rtol=1e-12)
    assert p["grad_norm"][0] == pytest.approx(math.hypot(1, 10))  # recorded before clipping
    free = replay("quadratic", ["sgd"], lr=0.01, start=(0.1, 0.01), steps=1, clip=2.0).path("sgd")
    assert free["x"][1] == pytest.approx(0.1 * 0.99)  # a small gradient is untouched


def test_noise_is_the_seeded_draw_shared_by_all_optimizers_and_reproducible():
    flat = ReplayObjective(lambda p: 0.0 * p.sum(dim=1), name="flat")
    r = replay(flat, [OptimizerSpec("sgd", 0.1, label="a"), OptimizerSpec("sgd", 0.1, label="b")], start=(0.0, 0.0),
               steps=5, noise=0.3, seed=7)
    gen = torch.Generator().manual_seed(7)
    xi = torch.stack([torch.randn(2, generator=gen, dtype=torch.float64) for _ in range(5)]).numpy()
    expected = -0.1 * 0.3 * np.cumsum(xi, axis=0)
    for label in ("a", "b"):
        np.testing.assert_allclose(np.stack([r.path(label)["x"][1:], r.path(label)["y"][1:]], axis=1), expected,
                                   rtol=1e-12)
    again = replay(flat, ["sgd"], lr=0.1, start=(0.0, 0.0), steps=5, noise=0.3, seed=7)
    np.testing.assert_array_equal(again.paths[0], r.paths[0])
    other = replay(flat, ["sgd"], lr=0.1, start=(0.0, 0.0), steps=5, noise=0.3, seed=8)
    assert not np.array_equal(other.paths[0], r.paths[0])
    before = torch.random.get_rng_state()
    replay("quadratic", ["sgd"], lr=0.1, steps=3, noise=0.3)
    assert torch.equal(torch.random.get_rng_state(), before)  # the global RNG is left alone


def test_divergence_stops_one_path_cleanly():
    r = replay("quadratic", [OptimizerSpec("sgd", 1e3, label="wild"), OptimizerSpec("sgd", 0.05, label="calm")],
               steps=200)
    assert r.status == ("diverged", "completed")
    wild = r.path("wild")
    assert not np.isfinite(wild["loss"][-1]) and np.isfinite(wild["loss"][:-1]).all()
    assert len(wild["step"]) < 201 and len(r.path("calm")["step"]) == 201
    assert r.meta["stops"][0]["reason"] in ("diverged", "non-finite loss or gradient")


def test_a_path_never_leaves_the_grid():
    x = np.linspace(0.0, 1.0, 5)
    Xg, Yg = np.meshgrid(x, x)
    slope = grid_objective(SimpleNamespace(x=x, y=x, loss=-Xg + 0 * Yg, meta={}))  # descent goes to +x
    r = replay(slope, ["sgd"], lr=0.25, start=(0.125, 0.5), steps=10)
    p = r.path("sgd")
    assert r.status == ("left the domain",)
    assert p["x"].tolist() == pytest.approx([0.125, 0.375, 0.625, 0.875]) and p["step"].tolist() == [0, 1, 2, 3]
    assert r.meta["stops"][0]["step"] == 4 and r.meta["stops"][0]["point"][0] == pytest.approx(1.125)
    with pytest.raises(ConfigError, match="outside the domain"):
        replay(slope, ["sgd"], lr=0.25, start=(1.5, 0.5))


def test_replay_on_the_grid_records_the_surface_value_at_a_grid_point():
    x, y = np.linspace(0.0, 1.0, 6), np.linspace(-1.0, 0.5, 4)
    loss = np.random.default_rng(0).uniform(1, 2, (4, 6))
    r = replay(SimpleNamespace(x=x, y=y, loss=loss, meta={}), ["sgd", "adam"], lr=1e-3, start=(x[4], y[1]), steps=2)
    assert r.path("sgd")["loss"][0] == pytest.approx(loss[1, 4], abs=1e-12)  # loss[iy, ix] at (x[ix], y[iy])
    assert r.meta["objective"]["kind"] == "grid"


class Counting(ReplayObjective):
    """Counts calls and the points of each call."""

    def __init__(self, fn, **kw):
        super().__init__(fn, **kw)
        self.calls = []

    def value_and_grad(self, points):
        self.calls.append(len(points))
        return super().value_and_grad(points)


def test_all_optimizers_share_one_batched_call_per_step():
    f = _quadratic(10.0)
    obj = Counting(f, name="counting")
    replay(obj, ["sgd", "momentum", "adam", "rmsprop"], lr=0.01, start=(1.0, 1.0), steps=15)
    assert obj.calls == [4] * 16
    obj.calls.clear()
    replay(obj, [OptimizerSpec("sgd", 1e3, label="wild"), OptimizerSpec("adam", 0.01)], start=(1.0, 1.0), steps=150)
    assert obj.calls[0] == 2 and obj.calls[-1] == 1 and len(obj.calls) == 151  # the diverged one drops out


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph")  # the reference's own usage
def test_sophiah_gets_exact_hessian_vector_products():
    pytest.importorskip("pytorch_optimizer")
    from pytorch_optimizer import SophiaH

    f = _quadratic(10.0)
    r = replay(f, [OptimizerSpec("sophiah", 0.5, label="s1"), OptimizerSpec("sophiah", 0.5, label="s2"),
                   "adam"], lr=0.1, start=(-1.0, 1.0), steps=12, seed=3)
    # the reference: SophiaH the usual way, loss.backward(create_graph=True), under the same seed
    p = torch.nn.Parameter(torch.tensor([-1.0, 1.0], dtype=torch.float64))
    opt = SophiaH([p], lr=0.5)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        for t in range(12):
            opt.zero_grad()
            f(p[None])[0].backward(create_graph=True)
            opt.step()
            np.testing.assert_allclose([r.path("s1")["x"][t + 1], r.path("s1")["y"][t + 1]], p.detach().numpy(),
                                       rtol=1e-12)
    assert r.status == ("completed",) * 3 and np.array_equal(r.paths[0], r.paths[1])

    class External(ReplayObjective):
        def value_and_grad(self, points):
            return f(points), points * torch.tensor([1.0, 10.0], dtype=torch.float64)

    with pytest.raises(ConfigError, match="s need Hessian-vector products.*value_grad_hessian"):
        replay(External(name="external", start=(1.0, 1.0)), [OptimizerSpec("sophiah", 0.1, label="s")])
    out = replay(External(name="external", start=(1.0, 1.0)), ["sgd"], lr=0.05, steps=3)
    assert out.summary_rows()[0]["lambda_max_start"] is None and out.background is None


def test_options_are_validated_up_front():
    with pytest.raises(ConfigError, match="LBFGS"):
        replay("quadratic", ["lbfgs"])
    with pytest.raises(ConfigError, match="unknown optimizer 'adamm'"):
        replay("quadratic", ["adamm"])
    with pytest.raises(ConfigError, match="lr given for adam, which are not among"):
        replay("quadratic", ["sgd"], lr={"sgd": 0.1, "adam": 0.1})
    with pytest.raises(ConfigError, match="no learning rate for 'sgd'"):
        replay("quadratic", ["sgd", "adam"], lr={"adam": 0.1})
    with pytest.raises(ConfigError, match=r"schedule must be one of constant, cosine, step \(got 'linear'\)"):
        replay("quadratic", ["sgd"], schedule="linear")
    with pytest.raises(ConfigError, match="step_size"):
        replay("quadratic", ["sgd"], schedule="step")
    with pytest.raises(ConfigError, match="warmup"):
        replay("quadratic", ["sgd"], steps=5, warmup=5)
    with pytest.raises(ConfigError, match="clip"):
        replay("quadratic", ["sgd"], clip=0)
    with pytest.raises(ConfigError, match="noise"):
        replay("quadratic", ["sgd"], noise=-1)
    with pytest.raises(ConfigError, match="start"):
        replay(ReplayObjective(lambda p: p.sum(dim=1)), ["sgd"])
    with pytest.raises(ConfigError, match="does not take the options"):
        replay("quadratic", ["sgd"], options={"sgd": {"betas": [0.9, 0.99]}})
    with pytest.raises(ConfigError, match="'sparseadam' \\(SparseAdam\\) failed at step 0: .*dense gradients"):
        replay("quadratic", ["sparseadam"])


def test_per_optimizer_rates_options_and_labels():
    r = replay("quadratic", ["sgd", "momentum", OptimizerSpec("sgd", 0.01)], lr={"sgd": 0.1, "momentum": 0.02},
               options={"momentum": {"momentum": 0.5}}, steps=2)
    assert r.labels == ("sgd lr=0.1", "momentum", "sgd lr=0.01")
    assert [o["lr"] for o in r.meta["optimizers"]] == [0.1, 0.02, 0.01]
    assert r.meta["optimizers"][1]["options"]["momentum"] == 0.5
    with pytest.raises(KeyError, match="labels: sgd lr=0.1, momentum, sgd lr=0.01"):
        r.path("sgd")


def test_save_load_and_tables(tmp_path):
    r = replay("gaussian-mixture", ["sgd", "adam"], lr=0.1, steps=10)
    loaded = Replay.load(r.save(tmp_path / "replay.h5"))
    assert loaded.labels == r.labels and loaded.status == r.status and loaded.meta == r.meta
    for a, b in zip(loaded.paths, r.paths):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(loaded.background, r.background):
        np.testing.assert_array_equal(a, b)
    with open(r.to_csv(tmp_path / "paths.csv")) as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == PATH_COLUMNS == ("optimizer", "step", "x", "y", "loss", "grad_norm", "lr")
    assert len(rows) == 1 + 2 * 11 and rows[1][:2] == ["sgd", "0"] and float(rows[12][4]) == r.path("adam")["loss"][0]
    with open(r.to_csv(tmp_path / "summary.csv", "summary")) as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == SUMMARY_COLUMNS and [row["optimizer"] for row in rows] == ["sgd", "adam"]
    with pytest.raises(ValueError, match=r"table must be one of paths, summary \(got .steps.\)"):
        r.to_csv(tmp_path / "x.csv", "steps")


def test_a_replay_on_a_fit_calls_its_values_the_fitted_loss(tmp_path):
    from losslens.landscape.fit import fit_surface
    from losslens.plot.replay import plot_convergence

    g = np.linspace(-1.0, 1.0, 9)
    X, Y = np.meshgrid(g, g)
    fit = fit_surface(SimpleNamespace(x=g, y=g, loss=1.0 - np.exp(-(X**2 + Y**2)), meta={}))
    r = Replay.load(replay(fit, ["sgd"], lr=0.1, steps=3).save(tmp_path / "replay.h5"))
    assert r.value_name == "fitted loss" and replay("quadratic", ["sgd"], steps=1).value_name == "loss"
    assert "fitted_loss" in r.columns("paths") and "final_fitted_loss" in r.columns("summary")
    with open(r.to_csv(tmp_path / "summary.csv", "summary")) as f:
        header = next(csv.reader(f))
    assert "final_fitted_loss" in header and "final_loss" not in header
    assert "final fitted loss" in r.summary() and "not the model's loss" in r.summary()
    assert plot_convergence(r).axes[0].get_ylabel().startswith("fitted loss")


def test_background_covers_the_domain_and_the_paths_and_has_the_plane_layout():
    r = replay(book_objective(), [OptimizerSpec("sgd", 0.1)], start=(-1.0, 1.0), steps=100)
    x, y, z = r.background
    assert x[0] == -2.0 and x[-1] == pytest.approx(2.0) and y[0] == -2.0  # the path stays within the box
    f = model_function("gaussian", {"offset": BOOK["A"], **BOOK})
    assert z[7, 90] == pytest.approx(float(f(torch.tensor([[x[90], y[7]]], dtype=torch.float64))))


def test_an_external_objective_in_float32_is_read_as_float64_and_shapes_are_checked():
    class Float32(ReplayObjective):  # as an evaluator working in float32 would answer
        def value_and_grad(self, points):
            p = points.float()
            return (p**2).sum(dim=1) / 2, p

    r = replay(Float32(name="f32", start=(1.0, -1.0)), ["sgd"], lr=0.5, steps=3)
    assert r.path("sgd")["x"].tolist() == [1.0, 0.5, 0.25, 0.125]

    class Wrong(ReplayObjective):
        def value_and_grad(self, points):
            return points.sum(dim=1), points.sum(dim=1)

    with pytest.raises(ValueError, match=r"'wrong' returned a gradient of shape \[1\] for 1 points, expected \[1, 2\]"):
        replay(Wrong(name="wrong", start=(1.0, 1.0)), ["sgd"], lr=0.1, steps=2)
