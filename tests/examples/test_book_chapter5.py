"""The book's chapter 5 example and its notebook script run at small size, and their numbers hold up: the
book's published fit replays to its published end points, the fits' curvature is the closed form, the
stability flags follow 2/lambda_max, the true loss's in-plane Hessian is the eigenvalues, the replays on the
fit end at its minimum."""

import importlib.util
import json
import math
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SMALL = ["--epochs", "1", "--grid", "9", "--steps", "100"]  # 100 steps: the book's; a replay on a fit is cheap


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def gaussian_curvature(fit):
    """At the centre of an axis-aligned Gaussian bowl, the Hessian is diag(A/s1^2, A/s2^2)."""
    p = fit.parameters
    return sorted([p["A"] / p["s1"] ** 2, p["A"] / p["s2"] ** 2], reverse=True)


def check_published(r):
    """The issue's figures: the book's momentum ends near (-0.0489, -0.0669), Adam near (-0.0522, -0.0692),
    SGD at 0.1 leaves the basin and is flagged above 2/lambda_max = 2 s1^2 / A = 0.038."""
    for label, end in (("momentum 0.8 (book)", (-0.0489, -0.0669)), ("Adam", (-0.0522, -0.0692))):
        p = r.path(label)
        assert abs(p["x"][-1] - end[0]) < 1e-3 and abs(p["y"][-1] - end[1]) < 1e-3, label
    sgd = next(row for row in r.summary_rows() if row["optimizer"] == "SGD")
    assert np.abs(r.path("SGD")["x"]).max() > 1.5 and sgd["lr_above_2_over_lambda_minimum"]
    assert 2 / sgd["lambda_max_minimum"] == pytest.approx(2 * 0.7469189**2 / 29.27164346, rel=1e-8)


def check_fit_replay(r, fit):
    """On the book-style fit: momentum and Adam end at the fit's minimum; SGD's flag is lr > 2/lambda_max."""
    for label, tol in (("momentum 0.8 (book)", 1e-3), ("Adam", 2e-2)):  # Adam still circles at lr 0.1
        p = r.path(label)
        assert math.dist((p["x"][-1], p["y"][-1]), fit.minimum) < tol, label
    sgd = next(row for row in r.summary_rows() if row["optimizer"] == "SGD")
    assert sgd["lambda_max_minimum"] == pytest.approx(gaussian_curvature(fit)[0], rel=1e-6)
    assert sgd["lr_above_2_over_lambda_minimum"] is (0.1 > 2 / gaussian_curvature(fit)[0])


def check_true_replay(r, surface):
    """On the true loss: the start (-1, 1) is a grid point (9 points on [-2, 2]), where every path's loss is the
    surface's; every optimizer ends at the bottom of the grid (within 1% of the drop; the plane's minimum lies
    between grid points, so a path may end below the lowest grid value)."""
    ix, iy = list(surface.x).index(-1.0), list(surface.y).index(1.0)
    bottom = np.nanmin(surface.loss)
    for label in r.labels:
        loss = r.path(label)["loss"]
        assert loss[0] == pytest.approx(surface.loss[iy, ix], rel=1e-6)
        assert loss[-1] < bottom + 0.01 * (loss[0] - bottom), label
    assert r.meta["objective"]["kind"] == "true-loss"


def test_book_chapter5(tmp_path, capsys):
    result = load("book_chapter5").main(["--out", str(tmp_path)] + SMALL)
    fits, replays, surface = result["fits"], result["replays"], result["surface"]
    assert fits["book"].parameters["offset"] == pytest.approx(np.nanmax(surface.loss))  # the book's choice
    assert fits["free"].rss <= fits["book"].rss * (1 + 1e-9)  # a free offset fits at least as well
    for fit in fits.values():
        np.testing.assert_allclose(fit.curvature, gaussian_curvature(fit), rtol=1e-6)
    # the in-plane Hessian of the true loss at w0 is diag of the Hessian's eigenvalues (unit eigenvectors)
    np.testing.assert_allclose(result["true_curvature"][0], result["directions"].meta["eigenvalues"], rtol=1e-3)
    check_published(replays["published"])
    check_fit_replay(replays["fit"], fits["book"])
    check_true_replay(replays["true"], surface)

    c = json.loads((tmp_path / "comparison.json").read_text())
    assert 0 < c["fits"]["book"]["indefinite_share"] < 1  # a Gaussian bowl: convex near its centre only
    assert c["fits"]["book"]["stable_lr"] == pytest.approx(fits["book"].stable_lr)
    assert c["replays"]["published"]["SGD"]["max_abs_x"] > 1.5
    stdout = capsys.readouterr().out
    assert "the book: offset at the max" in stdout and "on the true loss in the plane" in stdout
    for name in ("hessian_plane.h5", "hessian_plane.png", "fit_book_3d.png", "fit_book_residuals.png",
                 "fit_free_residuals.png", "replay.png", "replay_published.png", "replay_convergence.png",
                 "replay_true.html", "replay_true.h5"):
        assert (tmp_path / name).stat().st_size > 0, name


def test_book_chapter5_notebook_runs_as_a_script(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["book_chapter5_notebook.py", "--out", str(tmp_path)] + SMALL)
    g = runpy.run_path(str(EXAMPLES / "book_chapter5_notebook.py"), run_name="__main__")
    check_published(g["on_published"])
    check_fit_replay(g["on_fit"], g["book_fit"])
    check_true_replay(g["on_true"], g["surface"])
    np.testing.assert_allclose(g["true_curvature"][0], g["dirs"].meta["eigenvalues"], rtol=1e-3)
    assert 0 < g["indefinite"] < 1
    for name in ("hessian_plane.png", "fit_book_3d.png", "replay_fit.png", "replay_true.png", "replay_published.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert "the fit's minimum" in capsys.readouterr().out


def test_the_notebook_is_a_jupytext_percent_script():
    text = (EXAMPLES / "book_chapter5_notebook.py").read_text()
    assert "format_name: percent" in text and text.count("# %% [markdown]") >= 5
    assert text.count("\n# %%\n") >= 5  # code cells
