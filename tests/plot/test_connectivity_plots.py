"""The figures of a ``Connection`` say which curve is which: a colour per kind of path, a line style per alignment,
the endpoints named, each path's barrier in the legend."""

import numpy as np
from matplotlib.colors import to_hex

from losslens.connectivity.connection import Connection
from losslens.plot.connectivity import plot_connection, plot_connection_plane


def _connection() -> Connection:
    """The line and a Bezier curve between A and B, and the line to B aligned by weights, on two splits."""
    t = np.linspace(0.0, 1.0, 5)
    rows, curves = [], []
    for path, align, height in (("line", "none", 1.0), ("bezier", "none", 0.3), ("line", "weights", 0.1)):
        bump = height * 4 * t * (1 - t)
        y = bump if path == "bezier" else np.zeros_like(t)
        curves.append(np.column_stack([t, t * (0.5 if align == "weights" else 1.0), y, 0.1 + bump, 0.2 + bump,
                                       0.9 - bump / 2, 0.8 - bump / 2]))
        found = {s: {"loss": {"barrier": height, "barrier_mean": height, "barrier_max": height}, "error": None}
                 for s in ("train", "test")}
        rows.append({"path": path, "align": align, "splits": ["train", "test"], "barriers": found, "training": None})
    return Connection(tuple(rows), tuple(curves), {"weights": {"output_change": 1e-7, "objective": [1.0]}}, {})


def _lines(ax) -> dict:
    """``{label: line}`` of the axes' labelled curves."""
    return {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}


def test_paths_are_told_apart_by_colour_and_alignments_by_style():
    fig = plot_connection(_connection())
    loss_axes = fig.axes[0]
    lines = _lines(loss_axes)
    raw, bezier, aligned = (lines[f"{name} (train): barrier {b:.3g}"]
                            for name, b in (("line", 1.0), ("bezier", 0.3), ("line, aligned by weights", 0.1)))
    assert to_hex(raw.get_color()) == to_hex(aligned.get_color()) != to_hex(bezier.get_color())
    assert raw.get_linestyle() == bezier.get_linestyle() != aligned.get_linestyle()
    test_split = lines["line (test): barrier 1"]
    assert test_split.get_linewidth() < raw.get_linewidth()
    legend = [text.get_text() for text in fig.legends[0].get_texts()]
    assert legend == list(lines) and len(legend) == 6  # one legend for both panels, every curve in it


def test_endpoints_are_marked_and_named():
    fig = plot_connection(_connection())
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "accuracy"]
    for ax in fig.axes:
        assert sorted(text.get_text() for text in ax.texts) == ["A", "B"]
        dots = [line for line in ax.get_lines() if line.get_marker() == "o"]
        assert sorted(float(line.get_xdata()[0]) for line in dots) == [0.0, 1.0]
        assert all(to_hex(line.get_color()) == "#000000" for line in dots)
    plane = plot_connection_plane(_connection()).axes[0]
    assert sorted(text.get_text() for text in plane.texts) == ["A", "B", "B aligned by weights"]
