"""Interactive plotly figures of loss surfaces and lines, and one standalone HTML page for several.

``plotly_figure`` draws a plane as a rotatable 3D surface (its contours projected on the floor) beside
a contour map, and a line (or a plane of one row or column) as a curve with its metrics on a second
axis. ``write_html`` puts any number of figures in one self-contained page that embeds plotly.js
once (about 4.8 MB), so the page opens offline; each figure fills the window's height, and the
page states the provenance of what it shows.

Orientation: plotly's ``z[r][c]`` is the value at ``(x[c], y[r])``, rows along ``y``: the ``(ny, nx)``
``Z[iy, ix]`` of a ``Surface`` as it is.

Static images come from matplotlib (``losslens.plot.surfaces``); plotly's own image export needs
kaleido, which losslens does not depend on.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

import numpy as np

from losslens import _io
from losslens.landscape.surface import Surface
from losslens.plot._base import load_as
from losslens.plot.levels import LOG_FLOOR, ContourLevels, contour_levels, readable_ticks
from losslens.plot.surfaces import _as_line, _finite_values, _is_between, _values, axis_label, title_of, value_label

_MARGIN = {"l": 90, "r": 40, "t": 110, "b": 80}


def plotly_figure(result, *, log: bool = False):
    """An interactive figure of a surface (a plane or a line).

    Args:
        result: a ``Surface`` or the path of a file holding one.
        log: draw :math:`\\log_{10} \\max(L, 10^{-12})` (planes) or a logarithmic loss axis (lines).

    Returns:
        A ``plotly.graph_objects.Figure``.

    Raises:
        ValueError: a surface with no finite value.
    """
    surface = load_as(result, (Surface,), "plotly_figure")
    if surface.ndim == 2 and min(surface.shape) >= 2:
        return _plane(surface, log)
    return _line(surface, log)


def write_html(figures, path: str | os.PathLike, title: str | None = None, provenance: dict | None = None) -> Path:
    """Write plotly figures into one standalone HTML page, embedding plotly.js once.

    The first figure carries the library (``include_plotlyjs=True``), the others only their data,
    so a page of several figures is barely larger than a page of one. Each figure is as tall as the
    window (``90vh``) and as wide as the page.

    Args:
        figures: a plotly figure or a list of them, drawn one below the other.
        path: the HTML file to write (parent directories are created).
        title: the page's title and heading (default: no heading, title ``losslens``).
        provenance: shown under the figures as indented JSON (what the results were computed from).

    Returns:
        The path written.

    Raises:
        ValueError: no figures.
    """
    figures = list(figures) if isinstance(figures, (list, tuple)) else [figures]
    if not figures:
        raise ValueError("write_html needs at least one figure")
    divs = [fig.to_html(full_html=False, include_plotlyjs=i == 0, default_height="90vh", default_width="100%",
                        config={"responsive": True}, auto_play=False) for i, fig in enumerate(figures)]
    heading = f"<h1>{html.escape(title)}</h1>\n" if title else ""
    details = ""
    if provenance:
        text = json.dumps(provenance, indent=2, default=str)
        details = f"<details><summary>Provenance</summary><pre>{html.escape(text)}</pre></details>\n"
    page = (
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title or 'losslens')}</title>\n"
        "<style>body{margin:0 1em;font-family:sans-serif} pre{font-size:12px}</style>\n</head>\n<body>\n"
        f"{heading}" + "\n".join(divs) + f"\n{details}</body>\n</html>\n"
    )
    return _io.write_text(path, page)


def plotly_contour(x, y, z: np.ndarray, scheme: ContourLevels, what: str):
    """A filled plotly ``Contour`` of ``z`` (``(ny, nx)``) at the levels of ``scheme``, as
    ``plot_contour`` draws them: plotly spaces contours evenly, so it draws the level number
    ``scheme.index(z)`` and the colour bar is ticked with ``scheme.ticks`` in the units of ``z``;
    hovering shows ``z`` itself."""
    import plotly.graph_objects as go

    top = len(scheme.values) - 1
    return go.Contour(
        x=x, y=y, z=scheme.index(z), customdata=z, zmin=0, zmax=top, colorscale="Viridis", name=what,
        contours={"start": 0, "end": top, "size": 1, "coloring": "fill"}, autocontour=False,
        hovertemplate="(%{x:.4g}, %{y:.4g}): %{customdata:.4g}<extra></extra>",
        colorbar={"title": {"text": scheme.label(what), "side": "right"}, "tickvals": scheme.index(scheme.ticks),
                  "ticktext": [f"{t:g}" for t in scheme.ticks]},
    )


def readable_axis(values: np.ndarray, log: bool) -> dict:
    """Plotly axis settings that tick ``values``' range at ``readable_ticks`` (as the matplotlib
    figures), as percentages when every value is a fraction in ``[0, 1]`` (accuracy).

    Args:
        values: the values the axis shows (non-finite ones, and non-positive ones on a log axis, ignored).
        log: whether the axis is logarithmic.
    """
    finite = values[np.isfinite(values) & ((values > 0) if log else True)]
    if not len(finite) or finite.min() == finite.max():
        return {}
    ticks = readable_ticks(float(finite.min()), float(finite.max()), log)
    fraction = not log and finite.min() >= 0 and finite.max() <= 1
    text = [f"{t:.0%}" if fraction and np.ptp(finite) > 0.05 else f"{t:.4g}" for t in ticks]
    return {"tickmode": "array", "tickvals": list(map(float, ticks)), "ticktext": text}


def _title(surface: Surface) -> str:
    return "<br>".join(html.escape(line) for line in title_of(surface).splitlines())


def _plane(surface: Surface, log: bool):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    Z, label = _values(surface, "loss", log)
    z = np.where(np.isfinite(Z), Z, np.nan)  # (ny, nx): plotly's rows run along y
    scheme = contour_levels(z)
    xlabel, ylabel = axis_label(surface, 0), axis_label(surface, 1)
    fig = make_subplots(rows=1, cols=2, specs=[[{"type": "surface"}, {"type": "xy"}]],
                        column_widths=[0.55, 0.45], subplot_titles=("surface", "contours"))
    top = len(scheme.values) - 1
    fig.add_trace(
        go.Surface(x=surface.x, y=surface.y, z=z, surfacecolor=scheme.index(z), cmin=0, cmax=top,
                   colorscale="Viridis", showscale=False, name=label,
                   contours={"z": {"show": True, "usecolormap": True, "project": {"z": True}}}),
        row=1, col=1,
    )
    fig.add_trace(plotly_contour(surface.x, surface.y, z, scheme, label), row=1, col=2)
    origin = surface.origin_index
    if origin is not None:
        marker = {"symbol": "star", "size": 14, "color": "red", "line": {"color": "white", "width": 1}}
        fig.add_trace(go.Scatter(x=[0.0], y=[0.0], mode="markers", name="origin w0", marker=marker), row=1, col=2)
        if np.isfinite(z[origin]):
            fig.add_trace(go.Scatter3d(x=[0.0], y=[0.0], z=[z[origin]], mode="markers", name="origin w0",
                                       marker={"color": "red", "size": 5}), row=1, col=1)
    fig.update_layout(
        title={"text": _title(surface)},
        scene={"xaxis_title": "d1", "yaxis_title": "d2", "zaxis_title": label},
        showlegend=False, autosize=True, margin=_MARGIN,
    )
    fig.update_xaxes(title_text=xlabel, automargin=True, row=1, col=2)
    fig.update_yaxes(title_text=ylabel, automargin=True, row=1, col=2)
    return fig


def _line(surface: Surface, log: bool):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    x, xlabel, values = _as_line(surface)
    loss, note = _finite_values(surface, values["loss"], log)
    other = {n: v for n, v in values.items() if n != "loss"}
    fig = make_subplots(specs=[[{"secondary_y": bool(other)}]])
    fig.add_trace(go.Scatter(x=x, y=np.clip(loss, LOG_FLOOR, None) if log else loss, mode="lines+markers",
                             name="loss"), secondary_y=False)
    for name, v in other.items():
        fig.add_trace(go.Scatter(x=x, y=v, mode="lines", name=name, line={"dash": "dash"}), secondary_y=True)
    title = _title(surface)
    if _is_between(surface):
        from losslens.connectivity.barriers import DEFINITIONS, line_barriers

        for t in (0.0, 1.0):
            fig.add_vline(x=t, line={"dash": "dot", "color": "grey"})
        if (surface.x == 0.0).any() and (surface.x == 1.0).any():
            title += f"<br>barrier_max {line_barriers(surface)['barrier_max']:.4g} = {DEFINITIONS['barrier_max']}"
    fig.update_layout(title={"text": title}, autosize=True, margin=_MARGIN)
    fig.update_xaxes(title_text=xlabel, automargin=True)
    drawn = np.clip(loss, LOG_FLOOR, None) if log else loss
    fig.update_yaxes(title_text=value_label(surface.meta, "loss", False) + (" (log scale)" if log else "") + note,
                     type="log" if log else "linear", automargin=True, secondary_y=False,
                     **(readable_axis(drawn, log=True) if log else {}))
    if other:
        fig.update_yaxes(title_text=", ".join(other), automargin=True, secondary_y=True,
                         **readable_axis(np.concatenate([np.ravel(v) for v in other.values()]), log=False))
    return fig
