"""Interactive plotly figures of loss surfaces and lines, and one standalone HTML page for several.

``plotly_figure`` draws a 2D ``Surface`` as a rotatable 3D surface (with its contours projected on the
floor) beside a contour map, and a 1D ``Surface`` or an ``Interpolation`` as a curve with its metrics
on a second axis. ``write_html`` puts any number of figures in one self-contained page that embeds
plotly.js once (about 4.8 MB), so the page opens offline.

Orientation: plotly's ``z[r][c]`` is the value at ``(x[c], y[r])``, rows along ``y``; losslens's
``loss[i, j]`` is at ``(x[i], y[j])``, so plotly gets ``loss.T``, shape ``(ny, nx)``.

Static images come from matplotlib (``losslens.plot.surfaces``); plotly's own image export needs
kaleido, which losslens does not depend on.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import numpy as np

from losslens.landscape.interpolation import Interpolation
from losslens.landscape.surface import Surface
from losslens.plot.surfaces import LOG_FLOOR, _load_as, _path_label, _value_label, _values, axis_label, title_of


def plotly_figure(result, *, log: bool = False):
    """An interactive figure of a surface or an interpolation.

    Args:
        result: a ``Surface`` (1D or 2D), an ``Interpolation``, or the path of a file holding one.
        log: draw :math:`\\log_{10} \\max(L, 10^{-12})` (planes) or a logarithmic loss axis (lines).

    Returns:
        A ``plotly.graph_objects.Figure``: for a plane, a 3D surface (contours projected on its
        floor) and a contour map side by side, the origin marked; for a line, the loss and, on a
        second axis, the metrics.
    """
    result = _load_as(result, (Surface, Interpolation), "plotly_figure")
    if isinstance(result, Surface) and result.ndim == 2:
        return _plane(result, log)
    return _line(result, log)


def write_html(figures, path: str | os.PathLike, title: str | None = None) -> Path:
    """Write plotly figures into one standalone HTML page, embedding plotly.js once.

    The first figure carries the library (``include_plotlyjs=True``), the others only their data,
    so a page of several figures is barely larger than a page of one.

    Args:
        figures: a plotly figure or a list of them, drawn one below the other.
        path: the HTML file to write (parent directories are created).
        title: the page's title and heading (default: no heading, title ``losslens``).

    Returns:
        The path written.

    Raises:
        ValueError: no figures.
    """
    figures = list(figures) if isinstance(figures, (list, tuple)) else [figures]
    if not figures:
        raise ValueError("write_html needs at least one figure")
    divs = [fig.to_html(full_html=False, include_plotlyjs=i == 0) for i, fig in enumerate(figures)]
    heading = f"<h1>{html.escape(title)}</h1>\n" if title else ""
    page = (
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title or 'losslens')}</title>\n</head>\n<body>\n{heading}"
        + "\n".join(divs)
        + "\n</body>\n</html>\n"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def _plane(surface: Surface, log: bool):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    Z, label = _values(surface, "loss", log)
    z = np.where(np.isfinite(Z), Z, np.nan).T  # (ny, nx): plotly's rows run along y
    xlabel, ylabel = axis_label(surface, 0), axis_label(surface, 1)
    fig = make_subplots(rows=1, cols=2, specs=[[{"type": "surface"}, {"type": "xy"}]],
                        column_widths=[0.55, 0.45], subplot_titles=("surface", "contours"))
    fig.add_trace(
        go.Surface(x=surface.x, y=surface.y, z=z, colorscale="Viridis", showscale=False, name=label,
                   contours={"z": {"show": True, "usecolormap": True, "project": {"z": True}}}),
        row=1, col=1,
    )
    fig.add_trace(
        go.Contour(x=surface.x, y=surface.y, z=z, colorscale="Viridis", ncontours=30, name=label,
                   colorbar={"title": {"text": label}}),
        row=1, col=2,
    )
    fig.add_trace(
        go.Scatter(x=[0.0], y=[0.0], mode="markers", name="origin w0",
                   marker={"symbol": "star", "size": 14, "color": "red", "line": {"color": "white", "width": 1}}),
        row=1, col=2,
    )
    fig.update_layout(
        title={"text": title_of(surface.meta)},
        scene={"xaxis_title": "direction 1", "yaxis_title": "direction 2", "zaxis_title": label},
        showlegend=False,
    )
    fig.update_xaxes(title_text=xlabel, row=1, col=2)
    fig.update_yaxes(title_text=ylabel, row=1, col=2)
    return fig


def _line(result: Surface | Interpolation, log: bool):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if isinstance(result, Surface):
        x, xlabel, meta = result.x, axis_label(result, 0), result.meta
    else:
        x, xlabel, meta = result.t, _path_label(result), {**result.meta.get("evaluator", {}), **result.meta}
    loss = np.clip(result.loss, LOG_FLOOR, None) if log else result.loss
    fig = make_subplots(specs=[[{"secondary_y": bool(result.metrics)}]])
    fig.add_trace(go.Scatter(x=x, y=loss, mode="lines+markers", name="loss"), secondary_y=False)
    for name, values in result.metrics.items():
        fig.add_trace(go.Scatter(x=x, y=values, mode="lines", name=name, line={"dash": "dash"}), secondary_y=True)
    title = title_of(meta)
    if isinstance(result, Interpolation):
        for t in (0.0, 1.0):
            fig.add_vline(x=t, line={"dash": "dot", "color": "grey"})
        if (result.t == 0.0).any() and (result.t == 1.0).any():
            title = f"{title}, barrier {result.barrier:.4g}".lstrip(", ")
    fig.update_layout(title={"text": title})
    fig.update_xaxes(title_text=xlabel)
    fig.update_yaxes(title_text=_value_label(meta, "loss", False), type="log" if log else "linear", secondary_y=False)
    if result.metrics:
        fig.update_yaxes(title_text=", ".join(result.metrics), secondary_y=True)
    return fig
