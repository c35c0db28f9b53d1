"""How results show themselves: a one-line repr of key figures, an HTML table in Jupyter, pandas tables
with the CSV files' columns, and figures that Jupyter shows inline without pyplot."""

from pathlib import Path

import numpy as np
import pandas
import pytest
from matplotlib import _pylab_helpers

from losslens.landscape.surface_comparison import compare_surfaces
from losslens.landscape.surface import Surface
from losslens.plot import plot_contour, plot_dynamics, plot_replay_paths
from losslens.trajectories.dynamics import DYNAMICS_COLUMNS, Dynamics
from losslens.trajectories.paths import PATHS_COLUMNS, TrajectoryPaths
from losslens.trajectories.replay import replay
from losslens.trajectories.replay_result import PATH_COLUMNS
from losslens.trajectories.series import Checkpoint


def _surface(n=41):
    x = np.linspace(-1, 1, n)
    loss = 0.1 + x[None, :] ** 2 + 2 * x[:, None] ** 2
    return Surface.from_arrays(x, x, loss, {"accuracy": np.ones((n, n))},
                               meta={"model": {"name": "mlp"}, "data": {"name": "digits", "split": "train",
                                                                      "n_samples": 64}})


def test_surface_repr_is_one_short_line_of_key_figures():
    text = repr(_surface())
    assert "\n" not in text and len(text) < 160, text
    assert text.startswith("Surface(kind=plane, shape=(41, 41), split=train, loss=0.1 to 3.1")
    assert "done=1681/1681" in text


def test_result_html_is_a_table_with_provenance():
    page = _surface()._repr_html_()
    assert page.startswith("<table>") and "<caption>Surface</caption>" in page
    for text in ("shape", "(41, 41)", "model (provenance)", "mlp", "digits", "64"):
        assert text in page, text


def test_dynamics_repr_and_to_pandas_match_its_rows():
    n = 4
    values = {c: np.linspace(1, 2, n) for c in DYNAMICS_COLUMNS[1:]}
    d = Dynamics(("step",) * n, values)
    assert len(repr(d)) < 160
    frame = d.to_pandas()
    assert isinstance(frame, pandas.DataFrame)
    assert list(frame.columns) == list(DYNAMICS_COLUMNS) and len(frame) == n
    np.testing.assert_allclose(frame["loss"], values["loss"])


def test_replay_and_paths_to_pandas():
    r = replay("quadratic", ["sgd", "adam"], lr=0.05, steps=5)
    frame = r.to_pandas()
    assert list(frame.columns) == list(PATH_COLUMNS) and len(frame) == sum(len(p) for p in r.paths)
    np.testing.assert_allclose(frame[frame.optimizer == "adam"]["x"], r.path("adam")["x"])
    assert list(r.to_pandas("summary")["optimizer"]) == list(r.labels)
    with pytest.raises(ValueError, match=r"table must be one of paths, summary \(got 'nope'\)"):
        r.to_pandas("nope")
    checkpoints = tuple(Checkpoint("sgd", i, 10 * i, None, Path(f"s{i}.safetensors")) for i in range(3))
    paths = TrajectoryPaths(checkpoints, np.zeros((3, 2)), np.zeros(3), np.ones(3), np.ones(3), np.arange(3.0),
                            np.ones(3), np.ones(3), meta={"threshold": 0.1})
    table = paths.to_pandas()
    assert list(table.columns) == list(PATHS_COLUMNS) and list(table["step"]) == [0, 10, 20]
    assert len(repr(paths)) < 200


def test_compare_surfaces_to_pandas():
    c = compare_surfaces([_surface(9), _surface(9)], names=["a", "b"])
    assert list(c.to_pandas()["name"]) == ["a", "b"]
    assert list(c.to_pandas("distances")[["a", "b"]].iloc[0]) == ["a", "b"]


def test_figures_show_inline_without_pyplot():
    before = _pylab_helpers.Gcf.get_num_fig_managers()
    r = replay("quadratic", ["sgd"], lr=0.05, steps=3)
    n = 4
    dynamics = Dynamics(("step",) * n, {c: np.linspace(1, 2, n) for c in DYNAMICS_COLUMNS[1:]})
    for fig in (plot_contour(_surface(9)), plot_replay_paths(r), plot_dynamics(dynamics)):
        png = fig._repr_png_()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    assert _pylab_helpers.Gcf.get_num_fig_managers() == before  # nothing kept in pyplot's global state
