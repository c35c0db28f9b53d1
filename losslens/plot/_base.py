"""Shared machinery of the plot modules: new figures without pyplot, and results given as paths."""

from __future__ import annotations

import io
import os

from matplotlib.figure import Figure

INLINE_DPI = 100  # resolution of a figure shown in Jupyter


class LosslensFigure(Figure):
    """A matplotlib ``Figure`` that Jupyter shows inline (``_repr_png_``), built without pyplot.

    Nothing is kept in pyplot's global state: a script or the CLI frees the figure with its last
    reference, and a notebook cell that ends with it shows the picture.
    """

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=INLINE_DPI)
        return buffer.getvalue()


def new_figure(**kwargs) -> LosslensFigure:
    """A new ``LosslensFigure`` (constrained layout unless ``layout`` is given)."""
    kwargs.setdefault("layout", "constrained")
    return LosslensFigure(**kwargs)


def new_axes(ax=None, *, projection: str | None = None, figsize: tuple[float, float] | None = None):
    """``(figure, axes)``: those of ``ax``, or a new ``LosslensFigure`` (no pyplot, any backend) with one axes."""
    if ax is not None:
        if projection == "3d" and getattr(ax, "name", None) != "3d":
            raise ValueError("ax must be 3D axes, made with projection='3d'")
        return ax.figure, ax
    size = figsize or ((8.0, 6.0) if projection == "3d" else (6.8, 5.2))
    fig = new_figure(figsize=size)
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
