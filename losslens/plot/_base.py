"""Shared machinery of the plot modules: new figures without pyplot, and results given as paths."""

from __future__ import annotations

import os


def new_axes(ax=None, *, projection: str | None = None, figsize: tuple[float, float] | None = None):
    """``(figure, axes)``: those of ``ax``, or a new ``Figure`` (no pyplot, any backend) with one axes."""
    if ax is not None:
        if projection == "3d" and getattr(ax, "name", None) != "3d":
            raise ValueError("ax must be 3D axes, made with projection='3d'")
        return ax.figure, ax
    from matplotlib.figure import Figure

    size = figsize or ((8.0, 6.0) if projection == "3d" else (6.8, 5.2))
    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.add_subplot(projection=projection)


def load_as(result, types: tuple[type, ...], caller: str):
    """``result`` itself, or the object its file holds, checked to be one of ``types``."""
    if isinstance(result, (str, os.PathLike)):
        from losslens.results import load_result

        result = load_result(result)
    if not isinstance(result, types):
        names = " or ".join(t.__name__ for t in types)
        raise ValueError(f"{caller} draws a {names} (or the path of its file), not a {type(result).__name__}")
    return result
