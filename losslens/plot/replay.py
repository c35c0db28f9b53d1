"""Figures of optimizer replays: paths over the contours, convergence curves, and an animated page.

Every optimizer of the ``Replay`` gets its own colour and its own legend entry, made from its label,
learning rate, and how it ended (so any number of optimizers show; none is hard-coded). A learning rate
above the gradient-descent stability limit :math:`2/\\lambda_{max}` (at the start or at the minimum) is
flagged in its legend entry, and the limits are in the title. The start is a black circle, each end a
cross of the path's colour.

Orientation: ``background`` is ``(x, y, z)`` with ``z[iy, ix]`` at ``(x[ix], y[iy])``, as matplotlib's
``contour(x, y, z)`` and plotly's ``Contour(x=x, y=y, z=z)`` take it.
"""

from __future__ import annotations

import math

import numpy as np

from losslens.plot._base import new_axes, new_figure
from losslens.plot.levels import LOG_FLOOR, colour_bar, contour_levels, log_axis
from losslens.trajectories.replay_result import Replay

MAX_FRAMES = 200  # an animation longer than this shows every k-th step
LOG_SPAN = 10.0


def plot_replay_paths(replay: Replay, *, ax=None, levels=30, log: bool | None = None):
    """The paths of a replay over the contours of its objective.

    Args:
        replay: a ``Replay``.
        ax: axes to draw on (default: a new figure).
        levels: contour levels (a number of evenly spaced ones, or the values).
        log: contours of :math:`\\log_{10} (f - f_{min})` (``f_min`` the background's minimum, the
            values floored at the 1st percentile of the positive differences),
            which shows a valley floor's shape; ``None`` chooses them when the values above the minimum
            span more than ``LOG_SPAN`` times their median (as on Rosenbrock's function).

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    _check(replay, "plot_replay_paths")
    fig, ax = _axes(ax, len(replay.labels) + 2)
    if replay.background is not None:
        x, y, z = replay.background
        if log is None:
            gap = z[np.isfinite(z)] - np.nanmin(np.where(np.isfinite(z), z, np.nan))
            log = bool(len(gap)) and gap.max() > LOG_SPAN * max(float(np.median(gap)), LOG_FLOOR)
        z = _log_gap(z) if log else z
        scheme = contour_levels(z, levels)
        cs = ax.contour(x, y, np.ma.masked_invalid(z), levels=scheme.values, cmap="viridis", linewidths=0.8)
        colour_bar(fig, ax, cs, scheme, f"log10 ({replay.value_name} - min)" if log else replay.value_name)
        ax.set_xlim(x[0], x[-1])
        ax.set_ylim(y[0], y[-1])
    start = replay.meta["start"]
    ax.plot(*start, "o", color="black", markersize=8, label=f"start ({start[0]:.3g}, {start[1]:.3g})", zorder=5)
    for k, (label, text) in enumerate(zip(replay.labels, legend_entries(replay))):
        p = replay.path(label)
        color = f"C{k % 10}"
        ax.plot(p["x"], p["y"], "-", marker=".", markersize=3, linewidth=1.2, color=color, label=text, zorder=3)
        ax.plot(p["x"][-1], p["y"][-1], "X", color=color, markersize=9, markeredgecolor="white", zorder=6)
    if replay.meta.get("minimum") is not None:  # on top of every path and end, outlined
        ax.plot(*replay.meta["minimum"], "*", color="red", markersize=20, markeredgecolor="black",
                markeredgewidth=1.2, label="minimum", zorder=10)
    xlabel, ylabel = axis_names(replay)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(_title(replay), fontsize="medium")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize="small")
    return fig


def plot_convergence(replay: Replay, *, ax=None, log: bool | None = None):
    """Loss against step, one curve per optimizer.

    Args:
        replay: a ``Replay``.
        ax: axes to draw on (default: a new figure).
        log: logarithmic loss axis; ``None`` chooses it when every finite loss is positive.

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    _check(replay, "plot_convergence")
    fig, ax = _axes(ax, len(replay.labels))
    losses = np.concatenate([p[:, 3] for p in replay.paths])
    finite = losses[np.isfinite(losses)]
    if log is None:
        log = bool(len(finite)) and bool((finite > 0).all())
    limits = _calm_limits(replay, log)  # a diverged curve leaves through the top, the others stay readable
    for k, (label, text) in enumerate(zip(replay.labels, legend_entries(replay))):
        p = replay.path(label)
        loss = np.where(np.isfinite(p["loss"]), p["loss"], np.nan)
        if log:
            loss = np.clip(loss, LOG_FLOOR, None)
        if limits is not None:  # far above the axes: drawn as leaving it, without overflowing the scale
            loss = np.minimum(loss, limits[1] + 10 * (limits[1] - limits[0]))
        ax.plot(p["step"], loss, color=f"C{k % 10}", label=text)
    if limits is not None:
        ax.set_ylim(*limits)
    if log:
        log_axis(ax.yaxis)
    ax.set_xlabel("step")
    ax.set_ylabel(replay.value_name + (" (log scale)" if log else ""))
    ax.set_title(_title(replay), fontsize="medium")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize="small")
    return fig


def animate_paths(replay: Replay, *, max_frames: int = MAX_FRAMES):
    """An animated plotly figure: each optimizer's point moving along its path (drawn faint) over the
    contours, one frame per step, with a play button and a step slider.

    Args:
        replay: a ``Replay``.
        max_frames: at most this many frames (every k-th step beyond it; the last step always shown).

    Returns:
        A ``plotly.graph_objects.Figure`` (write it with ``losslens.plot.write_html``).
    """
    import plotly.graph_objects as go

    _check(replay, "animate_paths")
    n_steps = max(int(p[-1, 0]) for p in replay.paths)
    shown = np.unique(np.linspace(0, n_steps, min(n_steps + 1, max_frames)).round().astype(int))
    traces = []
    if replay.background is not None:
        x, y, z = replay.background
        traces += _contour_lines(x, y, z, name=replay.value_name)
    start = replay.meta["start"]
    traces.append(go.Scatter(x=[start[0]], y=[start[1]], mode="markers", name="start",
                             marker={"color": "black", "size": 10}))
    colors = _colors(len(replay.labels))
    paths = [replay.path(label) for label in replay.labels]
    for p, color, text in zip(paths, colors, legend_entries(replay)):
        traces.append(go.Scatter(x=p["x"], y=p["y"], mode="lines", name=text, opacity=0.45,
                                 line={"color": color, "width": 1.5}, hoverinfo="skip"))

    def points(t: int):
        """Each optimizer's point at step t (its last one once it has stopped), one marker trace for all."""
        at = [min(int(np.searchsorted(p["step"], t, side="right")) - 1, len(p["step"]) - 1) for p in paths]
        return go.Scatter(
            x=[p["x"][i] for p, i in zip(paths, at)], y=[p["y"][i] for p, i in zip(paths, at)], mode="markers",
            marker={"color": colors, "size": 11, "line": {"color": "white", "width": 1}}, showlegend=False,
            hovertext=[f"{label}: step {int(p['step'][i])}, {replay.value_name} {p['loss'][i]:.4g}"
                       for label, p, i in zip(replay.labels, paths, at)], hoverinfo="text")

    frames = [go.Frame(data=[points(int(t))], traces=[len(traces)], name=str(int(t))) for t in shown]
    fig = go.Figure(data=traces + [points(int(shown[0]))], frames=frames)
    play = {"frame": {"duration": 60, "redraw": False}, "fromcurrent": True, "transition": {"duration": 0}}
    fig.update_layout(
        title={"text": _title(replay).replace("\n", "<br>")},
        xaxis={"title": {"text": axis_names(replay)[0]}}, yaxis={"title": {"text": axis_names(replay)[1]}},
        updatemenus=[{"type": "buttons", "showactive": False, "x": 0.0, "y": -0.12, "xanchor": "left",
                      "buttons": [{"label": "play", "method": "animate", "args": [None, play]},
                                  {"label": "pause", "method": "animate",
                                   "args": [[None], {"frame": {"duration": 0, "redraw": False}, "mode": "immediate"}]}]}],
        sliders=[{"active": 0, "x": 0.15, "len": 0.85, "y": -0.05, "currentvalue": {"prefix": "step "},
                  "steps": [{"label": str(int(t)), "method": "animate",
                             "args": [[str(int(t))], {"frame": {"duration": 0, "redraw": False}, "mode": "immediate"}]}
                            for t in shown]}],
    )
    if replay.background is not None:
        fig.update_xaxes(range=[float(x[0]), float(x[-1])])
        fig.update_yaxes(range=[float(y[0]), float(y[-1])])
    return fig


def _contour_lines(x: np.ndarray, y: np.ndarray, z: np.ndarray, n_levels: int = 24, name: str = "loss") -> list:
    """The loss's contour lines as plain scatter traces, one per level (viridis colours), and the colour
    bar of their loss scale (on an invisible point).

    A plotly ``Contour`` trace vanishes when the frames of an animation redraw the figure; scatter
    lines stay, so the paths move over a picture that keeps its contours.
    """
    import contourpy
    import matplotlib
    import plotly.graph_objects as go

    finite = np.isfinite(z)
    if not finite.any():
        return []
    levels = np.linspace(float(z[finite].min()), float(z[finite].max()), n_levels + 2)[1:-1]
    generator = contourpy.contour_generator(x, y, np.ma.masked_invalid(z))
    cmap = matplotlib.colormaps["viridis"]
    traces = [go.Scatter(x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
                         marker={"color": [levels[0]], "colorscale": "Viridis", "cmin": levels[0], "cmax": levels[-1],
                                 "showscale": True, "colorbar": {"title": {"text": name, "side": "right"}}})]
    for k, level in enumerate(levels):
        lines = generator.lines(level)
        if not lines:
            continue
        xs = np.concatenate([np.append(line[:, 0], np.nan) for line in lines])
        ys = np.concatenate([np.append(line[:, 1], np.nan) for line in lines])
        r, g, b, _ = cmap(k / max(1, len(levels) - 1))
        traces.append(go.Scatter(x=xs, y=ys, mode="lines", line={"color": f"rgb({r * 255:.0f},{g * 255:.0f},{b * 255:.0f})",
                                 "width": 1}, hoverinfo="skip", showlegend=k == 0, name="loss contours",
                                 legendgroup="contours"))
    return traces


def axis_names(replay: Replay) -> tuple[str, str]:
    """The names of a replay's two coordinates: a test function's variables ``x`` and ``y``, else the
    directions of the plane its objective lives on (``direction 1 (α)``, with their kind when known)."""
    objective = replay.meta["objective"]
    if objective.get("kind") in ("function", "callable"):
        return "x", "y"
    source = objective.get("source") or {}
    if objective.get("kind") == "fit":  # a fit's meta holds the fitted surface's as its own source
        source = source.get("source") or {}
    kind = (objective.get("directions") or {}).get("kind") or source.get("directions_kind")
    what = f", {kind}" if kind else ""
    return f"direction 1 (α{what})", f"direction 2 (β{what})"


def _calm_limits(replay: Replay, log: bool) -> tuple[float, float] | None:
    """Loss-axis limits that hold the paths that did not diverge and every start, when some path diverged."""
    if "diverged" not in replay.status:
        return None
    calm = np.concatenate([p[:, 3] for p, s in zip(replay.paths, replay.status) if s != "diverged"]
                          + [p[:1, 3] for p in replay.paths])
    calm = calm[np.isfinite(calm) & ((calm > 0) if log else True)]
    if not len(calm):
        return None
    lo, hi = float(calm.min()), float(calm.max())
    if log:
        return lo / (hi / lo) ** 0.05, hi * 10
    pad = 0.05 * (hi - lo) or 0.05 * abs(hi) or 1.0
    return lo - pad, hi + 2 * pad


def legend_entries(replay: Replay) -> list[str]:
    """One legend text per optimizer: label, learning rate, how the path ended, and the stability flag."""
    out = []
    for row in replay.summary_rows():
        text = row["optimizer"] + ("" if f"lr={row['lr']:g}" in row["optimizer"] else f" (lr {row['lr']:g})")
        if row["status"] != "completed":
            text += f", {row['status']} at step {row['steps']}"
        where = [w for w in ("start", "minimum") if row[f"lr_above_2_over_lambda_{w}"]]
        if where:
            text += f", lr > 2/λmax at the {' and '.join(where)}"
        out.append(text)
    return out


def _axes(ax, legend_rows: int):
    """``(figure, axes)``: those of ``ax``, or a new figure tall enough for a legend of ``legend_rows`` below."""
    if ax is not None:
        return new_axes(ax)
    fig = new_figure(figsize=(7.0, 5.0 + 0.22 * legend_rows))
    return fig, fig.add_subplot()


def _title(replay: Replay) -> str:
    m = replay.meta
    lam = m.get("lambda_max") or {}
    limits = [f"2/λmax = {2 / lam[w]:.3g} at the {w}" for w in ("start", "minimum")
              if lam.get(w) is not None and lam[w] > 0 and math.isfinite(lam[w])]
    head = f"{m['objective'].get('name', 'objective')}, {m['steps']} steps"
    note = m["objective"].get("note")  # what the picture shows, when it is not the objective itself
    return head + ("\n" + "; ".join(limits) if limits else "") + (f"\n{note}" if note else "")


def _log_gap(z: np.ndarray) -> np.ndarray:
    """:math:`\\log_{10}(z - z_{min})`, floored at the 1st percentile of the positive gaps (so that the
    levels are not spent between an exact zero and the floor)."""
    gap = z - np.nanmin(np.where(np.isfinite(z), z, np.nan))
    positive = gap[np.isfinite(gap) & (gap > 0)]
    floor = max(float(np.percentile(positive, 1)), LOG_FLOOR) if len(positive) else LOG_FLOOR
    return np.log10(np.clip(gap, floor, None))


def _colors(n: int) -> list[str]:
    from matplotlib import colors
    from matplotlib import rcParams

    cycle = rcParams["axes.prop_cycle"].by_key()["color"]
    return [colors.to_hex(cycle[k % len(cycle)]) for k in range(n)]


def _check(replay, caller: str) -> None:
    if not isinstance(replay, Replay):
        raise ValueError(f"{caller} draws a Replay, not a {type(replay).__name__}")
