"""Every figure of every result, from one registry: ``figures(result)`` draws a result's named figures,
``render(result, out, stem)`` writes them as ``out/stem<name>``; ``losslens plot``, every command and
the report draw through here.

``DRAWERS`` maps each kind of ``losslens.results.RESULT_CLASSES`` to its drawer, which gives
``{name: make}``: ``make()`` draws one figure, a matplotlib figure under a ``.png`` name (written at 150
dpi), a plotly figure or a list of them (one page) under an ``.html`` name (written with plotly.js
embedded once, and the result's provenance). A new kind of result registers its drawer in ``DRAWERS``
(tests/plot/test_registry.py fails for a kind without one). The names by kind:

- ``surface``: a plane ``_contour.png`` (filled contours), ``_3d.png``; a line ``_1d.png`` (``.png`` for
  a line between two checkpoints); both ``.html``;
- ``curvature_map``: ``_ratio.png``, ``_max_eigenvalue.png``, ``_min_eigenvalue.png`` (filled contours
  of |λ_min / λ_max|, λ_max and λ_min);
- ``directions``: ``_directions.png``; ``eigenpairs``: ``_eigenvalues.png``; ``trace``: ``_trace.png``;
  ``spectrum``: ``_density.png``;
- ``multiscale``: ``_coefficients.png``, ``_energy.png``; ``topology``: ``_diagrams.png``,
  ``_barcode.png``, ``_basins.png``; ``topology_stability``: ``_stability.png``;
- ``surface_comparison``: ``_metrics.png``, ``.html`` (the H0 bottleneck distances);
- ``trajectory`` (and the paths of an ``optimizer_comparison``): ``.png`` (the paths over the plane's
  contours, and their true against their plane loss), ``_losses.png`` (the latter alone), ``.html``,
  with ``embeddings`` also ``_embeddings.png``; ``optimizer_comparison`` adds ``_final_losses.png``;
- ``trajectory_pca``: ``_variance.png``; ``embedding``: ``.png``, ``.html``;
- ``dynamics``: ``.png``; ``fit``: ``_3d.png`` (``_1d.png`` for a line), ``_residuals.png``;
- ``replay``: ``_paths.png``, ``_convergence.png``, ``.html`` (the animation);
- ``connection``: ``.png`` (loss and accuracy along t), ``_plane.png`` (the paths on the plane of A, B, the bend).
- ``alignment``: ``_objective.png`` (the matching's objective per iteration); ``barrier_matrix``: ``.png``
  (heat maps of the line barriers between runs, before and after weight matching).

Options, each for the kinds whose drawer takes it: ``log`` (a logarithmic loss scale: surfaces, lines,
paths), ``surface`` (the plane under a trajectory's paths) and ``embeddings`` (a trajectory's embeddings,
on its page and in ``_embeddings.png``).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Callable

from losslens.plot._base import new_figure

CURVATURE_PICTURES = {  # file suffix: (value, colour-bar label)
    "_ratio.png": ("eigenvalue_ratio", "|λ_min / λ_max| of the Hessian"),
    "_max_eigenvalue.png": ("max_eigenvalue", "λ_max of the Hessian"),
    "_min_eigenvalue.png": ("min_eigenvalue", "λ_min of the Hessian"),
}
PNG_DPI = 150


def figures(result, *names: str, log: bool = False, surface=None, embeddings=()) -> dict[str, object]:
    """The named figures of ``result``, drawn in the drawer's order.

    Args:
        result: a result object of any kind (the module docstring lists its figures).
        names: only these figures (default: all of them), e.g. ``".html"``, ``"_losses.png"``.
        log: a logarithmic loss scale (surfaces, lines and paths only).
        surface: the plane's ``Surface`` drawn under a trajectory's (or an optimizer comparison's) paths.
        embeddings: a trajectory's ``Embedding`` objects, on its page and in ``_embeddings.png``.

    Returns:
        ``{name: figure}``: a matplotlib figure under a ``.png`` name, a plotly figure (or a list of them,
        one page) under an ``.html`` name.

    Raises:
        ValueError: not a losslens result, a name its kind does not draw, or an option its kind does not
            take (``log`` for a Hessian spectrum, ...).
    """
    makers = _makers(result, {"log": log, "surface": surface, "embeddings": list(embeddings)})
    unknown = [n for n in names if n not in makers]
    if unknown:
        raise ValueError(f"a {type(result).__name__} has no figure {', '.join(unknown)}; its figures: "
                         f"{', '.join(makers)}")
    return {name: make() for name, make in makers.items() if not names or name in names}


def render(result, out: str | Path, stem: str, *, log: bool = False, surface=None, embeddings=()) -> list[Path]:
    """Write the figures of ``result`` into ``out`` (created if needed) as ``stem<name>``; returns the paths.

    Args:
        result: a result object of any kind (the module docstring lists its figures).
        out: the output directory.
        stem: the start of every file name.
        log: a logarithmic loss scale (surfaces, lines and paths only).
        surface: the plane's ``Surface`` drawn under a trajectory's (or an optimizer comparison's) paths.
        embeddings: a trajectory's ``Embedding`` objects, on its page and in ``_embeddings.png``.

    Raises:
        ValueError: as ``figures``.
    """
    from losslens.plot.interactive import write_html

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    meta = getattr(result, "meta", None)
    for name, figure in figures(result, log=log, surface=surface, embeddings=embeddings).items():
        path = out / f"{stem}{name}"
        if name.endswith(".html"):
            write_html(figure, path, title=f"losslens {stem}", provenance=meta if isinstance(meta, dict) else None)
        else:
            figure.savefig(path, dpi=PNG_DPI)
        written.append(path)
    return written


def _makers(result, options: dict) -> dict[str, Callable]:
    """The drawer's ``{name: make}`` for ``result``, given the options that are set (checked to be taken)."""
    kind = getattr(result, "KIND", None)
    if kind not in DRAWERS:
        raise ValueError(f"cannot draw a {type(result).__name__}: not a losslens result; drawn kinds: "
                         f"{', '.join(DRAWERS)}")
    draw = DRAWERS[kind]
    taken = inspect.signature(draw).parameters
    given = {k: v for k, v in options.items() if v is not None and v is not False and v != []}
    for option in given:
        if option not in taken:
            if option == "log":
                raise ValueError(f"a log scale applies to loss surfaces, lines and paths, not to a "
                                 f"{type(result).__name__}")
            raise ValueError(f"a {type(result).__name__} is drawn without {option}; {option} goes with a "
                             "trajectory's paths")
    return draw(result, **given)


# -- one drawer per kind ---------------------------------------------------------------------------------


def _surface(s, *, log: bool = False) -> dict[str, Callable]:
    from losslens.plot.interactive import plotly_figure
    from losslens.plot.surfaces import plot_1d, plot_3d, plot_contour

    if s.ndim == 2 and min(s.shape) >= 2:
        pictures = {"_contour.png": lambda: plot_contour(s, filled=True, log=log),
                    "_3d.png": lambda: plot_3d(s, log=log)}
    else:
        between = s.directions is not None and s.directions.kind == "between"
        pictures = {(".png" if between else "_1d.png"): lambda: plot_1d(s, log=log)}
    return {**pictures, ".html": lambda: plotly_figure(s, log=log)}


def _curvature_map(c) -> dict[str, Callable]:
    from losslens.plot.surfaces import plot_contour

    def contour(metric: str, label: str):
        fig = plot_contour(c, filled=True, levels="linear", metric=metric)
        fig.axes[-1].set_ylabel(label)  # the colour bar
        return fig

    return {suffix: (lambda m=metric, l=label: contour(m, l)) for suffix, (metric, label) in CURVATURE_PICTURES.items()}


def _directions(d) -> dict[str, Callable]:
    from losslens.plot.summaries import plot_directions

    return {"_directions.png": lambda: plot_directions(d)}


def _eigenpairs(e) -> dict[str, Callable]:
    from losslens.plot.hessian import plot_eigenvalues

    return {"_eigenvalues.png": lambda: plot_eigenvalues(e)}


def _trace(t) -> dict[str, Callable]:
    from losslens.plot.summaries import plot_trace

    return {"_trace.png": lambda: plot_trace(t)}


def _spectrum(s) -> dict[str, Callable]:
    from losslens.plot.hessian import plot_density

    return {"_density.png": lambda: plot_density(s)}


def _multiscale(m) -> dict[str, Callable]:
    from losslens.plot.wavelets import plot_coefficients, plot_energy

    return {"_coefficients.png": lambda: plot_coefficients(m), "_energy.png": lambda: plot_energy(m)}


def _topology(t) -> dict[str, Callable]:
    from losslens.plot.topology import plot_barcode, plot_basins, plot_diagrams

    return {"_diagrams.png": lambda: plot_diagrams(t), "_barcode.png": lambda: plot_barcode(t),
            "_basins.png": lambda: plot_basins(t)}


def _topology_stability(s) -> dict[str, Callable]:
    from losslens.plot.summaries import plot_stability

    return {"_stability.png": lambda: plot_stability(s)}


def _surface_comparison(c) -> dict[str, Callable]:
    from losslens.plot.summaries import plot_surface_metrics, plotly_distances

    return {"_metrics.png": lambda: plot_surface_metrics(c), ".html": lambda: plotly_distances(c)}


def _trajectory_pca(p) -> dict[str, Callable]:
    from losslens.plot.summaries import plot_explained_variance

    return {"_variance.png": lambda: plot_explained_variance(p)}


def _paths(paths, *, log: bool = False, surface=None, embeddings=()) -> dict[str, Callable]:
    from losslens.plot.trajectories import (
        plot_embeddings, plot_path_losses, plot_trajectory_paths, plotly_embedding, plotly_paths,
    )

    def both():
        fig = new_figure(figsize=(14, 5.5))
        left, right = fig.subplots(1, 2, width_ratios=[1.25, 1])
        plot_trajectory_paths(paths, surface, ax=left, log=log)
        plot_path_losses(paths, ax=right, log=log)
        return fig

    def page():
        return [plotly_paths(paths, surface, log=log), *(plotly_embedding(e) for e in embeddings)]

    pictures = {".png": both, "_losses.png": lambda: plot_path_losses(paths, log=log),
                ".html": page if embeddings else (lambda: plotly_paths(paths, surface, log=log))}
    if embeddings:
        pictures["_embeddings.png"] = lambda: plot_embeddings(embeddings)
    return pictures


def _optimizer_comparison(c, *, log: bool = False, surface=None) -> dict[str, Callable]:
    from losslens.plot.summaries import plot_final_losses

    return {**_paths(c.paths, log=log, surface=surface), "_final_losses.png": lambda: plot_final_losses(c)}


def _embedding(e) -> dict[str, Callable]:
    from losslens.plot.trajectories import plot_embedding, plotly_embedding

    return {".png": lambda: plot_embedding(e), ".html": lambda: plotly_embedding(e)}


def _dynamics(d) -> dict[str, Callable]:
    from losslens.plot.trajectories import plot_dynamics

    return {".png": lambda: plot_dynamics(d)}


def _fit(f) -> dict[str, Callable]:
    from losslens.plot.fit import plot_fit, plot_residuals

    return {("_3d.png" if f.ndim == 2 else "_1d.png"): lambda: plot_fit(f), "_residuals.png": lambda: plot_residuals(f)}


def _replay(r) -> dict[str, Callable]:
    from losslens.plot.replay import animate_paths, plot_convergence, plot_replay_paths

    return {"_paths.png": lambda: plot_replay_paths(r), "_convergence.png": lambda: plot_convergence(r),
            ".html": lambda: animate_paths(r)}


def _connection(c) -> dict[str, Callable]:
    from losslens.plot.connectivity import plot_connection, plot_connection_plane

    return {".png": lambda: plot_connection(c), "_plane.png": lambda: plot_connection_plane(c)}


def _alignment(a) -> dict[str, Callable]:
    from losslens.plot.summaries import plot_alignment

    return {"_objective.png": lambda: plot_alignment(a)}


def _barrier_matrix(m) -> dict[str, Callable]:
    from losslens.plot.summaries import plot_barrier_matrix

    return {".png": lambda: plot_barrier_matrix(m)}


DRAWERS: dict[str, Callable[..., dict[str, Callable]]] = {
    "surface": _surface, "curvature_map": _curvature_map, "directions": _directions, "eigenpairs": _eigenpairs,
    "trace": _trace, "spectrum": _spectrum, "multiscale": _multiscale, "topology": _topology,
    "topology_stability": _topology_stability, "surface_comparison": _surface_comparison,
    "trajectory_pca": _trajectory_pca, "trajectory": _paths, "embedding": _embedding,
    "optimizer_comparison": _optimizer_comparison, "dynamics": _dynamics, "fit": _fit, "replay": _replay,
    "connection": _connection,
    "alignment": _alignment, "barrier_matrix": _barrier_matrix,
}
