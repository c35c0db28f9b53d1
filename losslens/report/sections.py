"""The sections of a report: each draws the results of its analysis (already computed) into a ``Section``
with its figures, tables of figures, warnings (those the analysis raised, those its results record,
and the report's own checks of them) and the provenance of every result file it shows."""

from __future__ import annotations

import math

import numpy as np

from losslens.report.analyses import SECTION_STEPS, Analyses, StepFailed
from losslens.report.checks import FIT_R2, TRACE_RTOL, degenerate, eigenpair_checks, estimate, surface_checks
from losslens.report.page import Image, Plot, Provenance, Section, Table

TITLES: dict[str, str] = {
    "surface": "2D loss surface",
    "interpolation": "From the initialization to the checkpoint",
    "hessian": "Hessian: top eigenvalues, trace and spectral density",
    "multiscale": "Multiscale: wavelet energy per scale",
    "topology": "Topology: basins and loops",
    "fit": "Fit of the Hessian-eigenvector plane",
    "replay": "Optimizers replayed",
    "trajectory": "Training trajectory on its PCA plane",
    "dynamics": "Training dynamics",
    "comparison": "Comparison of the planes",
    "connectivity": "Connectivity: are the minima connected?",
}
MAX_ROWS = 60  # rows of a per-checkpoint table


def build(name: str, a: Analyses, id: str, title: str) -> Section:
    """The section ``name`` of one subject; a failed analysis gives a section that says why."""
    try:
        return _BUILDERS[name](a, id, title)
    except StepFailed as err:
        return Section(id, title, error=err.message, details=err.details,
                       provenance=_provenance(a, SECTION_STEPS[name]), warnings=_warnings(a, SECTION_STEPS[name]))


def assemble(a: Analyses, name: str, id: str, title: str, text: str, figures, tables, checks=()) -> Section:
    """A section from its parts, with the warnings and provenance of its steps."""
    steps = SECTION_STEPS[name]
    warnings = _warnings(a, steps) + [w for w in checks if w]
    return Section(id, title, text, tuple(figures), tuple(tables), tuple(dict.fromkeys(warnings)),
                   _provenance(a, steps))


# -- one builder per analysis ------------------------------------------------------------------------


def _surface(a: Analyses, id: str, title: str) -> Section:
    s = a.step("surface")
    o = a.options
    rows = [("grid", f"{len(s.x)} x {len(s.y)} points on [{o.range[0]:g}, {o.range[1]:g}]^2"),
            ("directions", f"random Gaussian, filter-normalized, biases and BatchNorm fixed, seed {o.seed}"),
            *_point_rows(s), ("evaluation time (s)", s.meta.get("seconds")),
            ("points per second", s.meta.get("points_per_second"))]
    text = ("The loss L(w0 + x d1 + y d2) on a plane through the checkpoint w0 along two random directions "
            "normalized filter by filter to the weights' norms (Li et al. 2018), so that distances along them are "
            "comparable between layers and models.")
    return assemble(a, "surface", id, title, text, [Plot(_figure(s, ".html"), "the surface (left, rotatable) and its "
                                                          "contours (right); the star marks w0")],
                    [Table("Surface", ("figure", "value"), tuple(rows))], surface_checks(s))


def _interpolation(a: Analyses, id: str, title: str) -> Section:
    from losslens.connectivity.barriers import DEFINITIONS, NAMES, line_barriers

    line = a.step("interpolation")
    loss, acc = line.loss, line.metrics.get("accuracy")
    ends = [int(np.flatnonzero(line.x == t)[0]) for t in (0.0, 1.0)]
    lowest = int(np.nanargmin(loss))
    found = line_barriers(line)
    rows = [*((f"{name}: {DEFINITIONS[name]}", found[name]) for name in NAMES),
            ("loss at the initialization (t = 0)", float(loss[ends[0]])),
            ("loss at the checkpoint (t = 1)", float(loss[ends[1]])),
            ("lowest loss on the line", f"{loss[lowest]:.4g} at t = {line.x[lowest]:.3g}"),
            ("distance |w1 - w0| in weight space", line.directions.meta["norm"])]
    if acc is not None:
        rows[5:5] = [("accuracy at t = 0 and t = 1", f"{acc[ends[0]]:.4f}, {acc[ends[1]]:.4f}")]
    text = ("The loss along the straight line w(t) = w_init + t (w_final - w_init) (Goodfellow et al. 2015): a "
            "monotone descent says training could have gone straight; a bump between 0 and 1 is a barrier.")
    return assemble(a, "interpolation", id, title, text, [Plot(_figure(line, ".html"), "loss (and accuracy) along t")],
                    [Table("Line", ("figure", "value"), tuple(rows))], surface_checks(line))


def _hessian(a: Analyses, id: str, title: str) -> Section:
    pairs, tr = a.step("eigenpairs"), a.step("trace")
    spectrum = a.step("density") if a.options.density else None
    values, residuals = pairs.values.tolist(), pairs.meta["residual_norms"]
    top = abs(values[0]) or 1.0
    eig_rows = tuple((i + 1, v, r, r / top) for i, (v, r) in enumerate(zip(values, residuals)))
    P = a.ev.space.size
    rows = [("trace", f"{estimate(tr.value, tr.stderr)} ({tr.method}, {tr.n_matvec} Hessian-vector products)"),
            ("parameters P", P), ("mean eigenvalue trace / P", estimate(tr.value / P, tr.stderr / P))]
    figures = [Image.of(_figure(pairs, "_eigenvalues.png"), "top eigenvalues (Lanczos), with their residual norms")]
    if spectrum is not None:
        definite = spectrum.lambda_min > 0 and math.isfinite(spectrum.condition)
        rows += [("lowest and highest Ritz value", f"{spectrum.lambda_min:.4g}, {spectrum.lambda_max:.4g}"),
                 ("condition number", spectrum.condition if definite else
                  "undefined: the Hessian is not positive definite here")]
        if spectrum.trace_stderr is not None:  # one start vector gives no error bar: no row
            slq = estimate(spectrum.trace_estimate, spectrum.trace_stderr)
            rows.append(("trace from the density's start vectors", f"{slq} (SLQ, {len(spectrum.nodes)} start vectors)"))
        figures.append(Image.of(_figure(spectrum, "_density.png"),
                                "eigenvalue density (stochastic Lanczos quadrature), log scale"))
    checks = eigenpair_checks(values, residuals)
    if tr.stderr > TRACE_RTOL * abs(tr.value):
        checks.append(f"the trace estimate {tr.value:.4g} has a standard error of {tr.stderr:.2g} "
                      f"({tr.stderr / abs(tr.value):.0%} of it): raise the Hessian-vector products (trace_samples)")
    text = ("Curvature at the checkpoint from Hessian-vector products only: the top eigenvalues by Lanczos, each with "
            "the residual norm that bounds its error; the trace by Hutch++ (Meyer et al. 2021) with its standard "
            "error; the eigenvalue density by stochastic Lanczos quadrature (Ghorbani et al. 2019).")
    return assemble(a, "hessian", id, title, text, figures,
                    [Table("Top eigenvalues", ("i", "eigenvalue", "residual norm", "residual / |lambda_1|"), eig_rows),
                     Table("Trace and spectrum", ("figure", "value"), tuple(rows))], checks)


def _multiscale(a: Analyses, id: str, title: str) -> Section:
    m = a.step("multiscale")
    levels = tuple((r["level"], r["energy_h"], r["energy_v"], r["energy_d"], r["energy"], r["roughness"])
                   for r in m.levels)
    rows = [("wavelet, mode, levels", f"{m.meta['wavelet']}, {m.meta['mode']}, {m.level} (level 1 the finest)"),
            ("detrending", m.meta["detrend"]), ("decomposed shape", m.meta["decomposed_shape"]),
            ("energy of the approximation", m.energy_approx), ("total energy", m.energy_total),
            ("roughness (detail energy / total)", m.roughness)]
    text = ("A discrete wavelet decomposition of the 2D surface after removing its best quadratic (the bowl): the "
            "energy of the details per level and orientation (H: along y, V: along x, D: diagonal) says at which "
            "scales the surface is rough. Level 1 is the finest; the energies add up to the total (Parseval).")
    return assemble(a, "multiscale", id, title, text,
                    [Image.of(_figure(m, "_coefficients.png"), "wavelet coefficients per level"),
                     Image.of(_figure(m, "_energy.png"), "detail energy per level and orientation")],
                    [Table("Energy per level", ("level", "H", "V", "D", "detail energy", "share of total"), levels),
                     Table("Decomposition", ("figure", "value"), tuple(rows))], m.meta["warnings"])


def _topology(a: Analyses, id: str, title: str) -> Section:
    t = a.step("topology")
    basins = tuple((k, b.x, b.y, b.value, b.depth, b.persistence, None if b.saddle is None else b.saddle["value"])
                   for k, b in enumerate(t.basins, start=1))
    s = t.summary()
    rows = [("basins above the threshold", s["n_basins"]), ("loops (H1) above the threshold", s["n_loops"]),
            ("noise threshold", f"{t.threshold:.4g} ({t.meta['threshold_rule']})"),
            ("units", s["units"]), ("construction", t.meta["construction"]),
            ("largest H1 persistence", s["max_persistence_h1"])]
    text = ("Sublevel-set persistent homology of the 2D surface on its grid (4-connectivity): each basin is born at "
            "its minimum and dies at the saddle where it merges into a deeper one; basins and loops whose "
            "persistence exceeds the noise threshold are listed. One basin means the plane shows a single valley.")
    return assemble(a, "topology", id, title, text,
                    [Image.of(_figure(t, "_basins.png"), "basins' minima and merge saddles on the surface"),
                     Image.of(_figure(t, "_diagrams.png"), "persistence diagrams, H0 and H1"),
                     Image.of(_figure(t, "_barcode.png"), "barcodes")],
                    [Table("Basins", ("basin", "x", "y", "minimum", "depth", "persistence", "merge saddle"), basins),
                     Table("Persistence", ("figure", "value"), tuple(rows))], t.meta["warnings"])


def _fit(a: Analyses, id: str, title: str) -> Section:
    plane, fit = a.step("hessian_plane"), a.step("fit")
    params = tuple((n, v, s) for n, v, s in zip(fit.names, fit.params.tolist(), fit.stderr.tolist()))
    rows = [("R^2", fit.r2), ("RMSE", fit.rmse),
            ("points fitted (excluded: NaN/inf)", f"{fit.n_points} ({fit.n_excluded})"),
            ("fitted minimum", f"{fit.minimum_value:.6g} at ({', '.join(f'{v:.4g}' for v in fit.minimum)})"),
            ("fitted curvature at the minimum", fit.curvature.tolist()),
            ("Hessian eigenvalues along the axes (at w0)",
             None if fit.surface_eigenvalues is None else fit.surface_eigenvalues.tolist()),
            ("stable learning rate 2 / fitted lambda_max", fit.stable_lr)]
    checks = []
    if not fit.r2 >= FIT_R2:
        checks.append(f"the {fit.model} fit explains only R^2 = {fit.r2:.3f} of the surface's variance: its "
                      "curvature and minimum describe the surface poorly (see the residuals)")
    if fit.meta.get("minimum_on_boundary"):
        checks.append("the fitted minimum lies on the edge of the grid: the surface keeps descending beyond it")
    if fit.n_excluded:
        checks.append(f"{fit.n_excluded} points with a NaN or infinite loss were left out of the fit")
    checks += degenerate(fit)
    text = ("The plane through w0 along the top two Hessian eigenvectors (unit vectors, the eigenpairs above), with "
            f"a {fit.model} fitted by least squares, as in the book chapter. On these axes the fitted curvature is a "
            "second derivative along the same directions as the eigenvalues, so the two can be compared: a check of "
            "the fit that a plane of random directions cannot give.")
    return assemble(a, "fit", id, title, text,
                    [Plot(_figure(plane, ".html"), "the Hessian-eigenvector plane"),
                     Image.of(_figure(fit, "_3d.png" if fit.ndim == 2 else "_1d.png"),
                              "the fitted surface over the data"),
                     Image.of(_figure(fit, "_residuals.png"), "residuals of the fit")],
                    [Table("Parameters", ("parameter", "value", "standard error"), params),
                     Table("Goodness of fit and curvature", ("figure", "value"), tuple(rows))],
                    surface_checks(plane) + checks)


def _replay(a: Analyses, id: str, title: str) -> Section:
    r = a.step("replay")
    columns = ("optimizer", "lr", "status", "steps", "final_loss", "steps_to_tol", "path_length", "oscillation",
               "lr_above_2_over_lambda_start", "lr_above_2_over_lambda_minimum")
    rows = tuple(tuple(row[c] for c in columns) for row in r.summary_rows())
    checks = [f"{label} {status} (at step {stop['step']})" for label, status, stop in
              zip(r.labels, r.status, r.meta["stops"]) if status != "completed"]
    objective = r.meta["objective"]
    on_fit = objective.get("kind") == "fit"
    on = (f"the {objective['model']} fit above (a smooth stand-in for the loss on the Hessian plane: the values "
          "are the fit's, not the loss)" if on_fit else
          f"the test function {objective.get('function')} (there is no fit)")
    if on_fit and a.done("fit") is not None:
        checks += ["the replay runs on a degenerate fit (see the fit's section)"] if degenerate(a.done("fit")) else []
    header = tuple(_replay_value(on_fit) if c == "final_loss" else c for c in columns)
    text = (f"Optimizers run side by side from one start on {on}; tolerance {r.meta['tol']:g} above the lowest value. "
            "Flags compare each learning rate with the gradient-descent stability limit 2 / lambda_max at the start "
            "and at the minimum.")
    return assemble(a, "replay", id, title, text,
                    [Image.of(_figure(r, "_paths.png"), "paths over the objective's contours"),
                     Image.of(_figure(r, "_convergence.png"), f"{'fitted ' if on_fit else ''}value per step")],
                    [Table("Summary", header, rows)], checks)


def _trajectory(a: Analyses, id: str, title: str) -> Section:
    pca, paths, plane = a.step("trajectory_pca"), a.step("trajectory_paths"), a.step("trajectory_plane")
    embeddings = a.step("embeddings")
    rel = paths.rel_residual
    rows = tuple((c.step, c.epoch, float(paths.coords[i, 0]), float(paths.coords[i, 1]), float(rel[i]),
                  float(paths.true_loss[i]), float(paths.plane_loss[i]), bool(paths.trusted[i]))
                 for i, c in enumerate(paths.checkpoints))
    ratio = pca.explained_variance_ratio
    summary = [("explained variance of PC1, PC2", f"{ratio[0]:.1%}, {ratio[1]:.1%}"),
               ("path length in weight space", paths.path_length(paths.runs[0])),
               ("largest relative residual off the plane", float(rel.max())),
               *((f"trustworthiness of the {e.method} embedding (k={e.meta['n_neighbors']})", e.trustworthiness)
                 for e in embeddings)]
    untrusted = int((~paths.trusted).sum())
    checks = [f"{untrusted} of {len(rel)} checkpoints lie more than {paths.threshold:g} of their distance from the "
              "origin off the plane: their drawn positions (and the contour under them) misrepresent them"
              if untrusted else None]
    text = ("The checkpoints of the run projected on the plane of their first two principal components (origin: the "
            "last checkpoint), over the loss on that plane. Each point reports its residual off the plane and its "
            "true loss next to the loss at its projection; a high explained variance alone does not make the "
            "picture faithful (Antognini & Sohl-Dickstein 2018). PCA and t-SNE embeddings of the same checkpoints "
            "are scored by their trustworthiness.")
    table = Table("Checkpoints" + (f" (first {MAX_ROWS})" if len(rows) > MAX_ROWS else ""),
                  ("step", "epoch", "pc1", "pc2", "relative residual", "true loss", "plane loss", "trusted"),
                  rows[:MAX_ROWS])
    return assemble(a, "trajectory", id, title, text,
                    [Plot(_figure(paths, ".html", surface=plane),
                          "paths on the PCA plane (hover for residuals and losses)"),
                     Image.of(_figure(paths, "_losses.png"), "true loss against the loss at the projection"),
                     *(Plot(_figure(e, ".html"), f"{e.method} embedding", half=True) for e in embeddings)],
                    [Table("Plane and embeddings", ("figure", "value"), tuple(summary)), table],
                    surface_checks(plane) + checks)


def _dynamics(a: Analyses, id: str, title: str) -> Section:
    d = a.step("dynamics")
    sharp = bool(d.meta.get("sharpness"))
    columns = ("step", "epoch", "loss", "grad_norm", "weight_norm", "change_since_previous", "change_since_init") \
        + (("sharpness", "stability_threshold") if sharp else ())
    rows = tuple(tuple(row[c] for c in columns) for row in d.rows())
    limit = d.meta.get("stability", {}).get("formula")
    text = ("At every checkpoint of the run, through the evaluator on the report's data: the loss, the full-batch "
            "gradient norm, the weight norm and how far the weights moved"
            + (f", and the sharpness lambda_max against the optimizer's edge of stability"
               f"{f' {limit}' if limit else ''} (Cohen et al. 2021, 2022)." if sharp
               else f"; lambda_max not computed: {d.meta.get('sharpness_note', 'left out')}."))
    return assemble(a, "dynamics", id, title, text, [Image.of(_figure(d, ".png"), "dynamics per checkpoint")],
                    [Table("Per checkpoint" + (f" (first {MAX_ROWS})" if len(rows) > MAX_ROWS else ""), columns,
                           rows[:MAX_ROWS])])


# -- the first and the last section ---------------------------------------------------------------------


def summary(analyses: list[Analyses], drawn: list[Section], skipped: list[str]) -> Section:
    """The first section: the key figures of every subject side by side, its training curves, what is missing."""
    from losslens.report.figures import plotly_history

    columns = ("figure",) + tuple(a.subject.name for a in analyses)
    facts = [dict(_key_figures(a)) for a in analyses]
    labels = list(dict.fromkeys(k for f in facts for k in f))
    rows = tuple((label, *(f.get(label) for f in facts)) for label in labels)
    figures = tuple(Plot(plotly_history(a.subject.run), f"training curves of {a.subject.name}")
                    for a in analyses if a.subject.run is not None and a.subject.run.history)
    n_warnings = sum(len(s.warnings) for s in drawn)
    failed = [s.title for s in drawn if s.error]
    plural = lambda n: "s" if n != 1 else ""  # noqa: E731
    text = (f"{len(drawn)} section{plural(len(drawn))}, {n_warnings} warning{plural(n_warnings)}"
            + (f", {len(failed)} failed ({'; '.join(failed)})" if failed else "")
            + (f". Not in this report: {'; '.join(skipped)}" if skipped else "") + ".")
    warnings = tuple(w for a in analyses for w in a.logs["evaluator"].warnings)
    return Section("summary", "Summary", text, figures, (Table("Key figures", columns, rows),), warnings,
                   tuple(Provenance(f"the evaluator of {a.subject.name}", "model, data, checkpoint, execution plan",
                                    a.ev.meta()) for a in analyses))


def _key_figures(a: Analyses) -> list[tuple[str, object]]:
    """The headline numbers of a subject, from the steps that succeeded."""
    meta = a.ev.meta()
    rows: list[tuple[str, object]] = [
        ("checkpoint", meta["checkpoint"]["label"]), ("checkpoint sha256", meta["checkpoint"]["sha256"][:16]),
        ("model", f"{meta['model']['name'] or meta['model']['class']}, {meta['n_params']} parameters"),
        ("data", f"{meta['data']['name']} {meta['data']['split']}, {meta['data']['n_samples']} samples"),
    ]
    run = a.subject.run
    if run is not None and run.history:
        last = run.history[-1]
        rows.append(("training", f"{run.metadata.get('optimizer')} lr {run.metadata.get('lr')}, "
                                 f"{last.get('epoch')} epochs"))
        rows += [(f"final {k.replace('_', ' ')}", v) for k, v in last.items() if k not in ("epoch", "step")]
    s = a.done("surface")
    if s is not None and s.origin_index is not None:
        rows.append(("loss at w0 (report's data)", float(s.loss[s.origin_index])))
    line = a.done("interpolation")
    if line is not None:
        from losslens.connectivity.barriers import DEFINITIONS, line_barriers

        rows.append((f"barrier_max from the initialization: {DEFINITIONS['barrier_max']}",
                     line_barriers(line)["barrier_max"]))
    pairs, tr = a.done("eigenpairs"), a.done("trace")
    if pairs is not None:
        rows.append(("Hessian top eigenvalues", [float(v) for v in pairs.values]))
    if tr is not None:
        rows.append(("Hessian trace", estimate(tr.value, tr.stderr)))
    m, t = a.done("multiscale"), a.done("topology")
    if m is not None:
        rows.append(("roughness", m.roughness))
    if t is not None:
        rows.append(("basins, loops", f"{len(t.basins)}, {t.n_loops}"))
    fit = a.done("fit")
    if fit is not None:
        rows += [("fit R^2", fit.r2), ("fitted curvature", fit.curvature.tolist())]
        if degenerate(fit):
            rows.append(("fit", "degenerate (see its section)"))
    r = a.done("replay")
    if r is not None:
        completed = [row for row in r.summary_rows() if row["status"] == "completed"] or r.summary_rows()
        best = min(completed, key=lambda row: row["final_loss"])
        on_fit = r.meta["objective"].get("kind") == "fit"
        rows.append((f"replay: lowest {_replay_value(on_fit).replace('_', ' ')}",
                     f"{best['optimizer']} ({best['final_loss']:.4g})"))
    pca = a.done("trajectory_pca")
    if pca is not None:
        rows.append(("trajectory: variance on PC1 + PC2", float(sum(pca.explained_variance_ratio[:2]))))
    return rows


_BUILDERS = {"surface": _surface, "interpolation": _interpolation, "hessian": _hessian, "multiscale": _multiscale,
             "topology": _topology, "fit": _fit, "replay": _replay, "trajectory": _trajectory, "dynamics": _dynamics}


# -- shared ---------------------------------------------------------------------------------------------


def _replay_value(on_fit: bool) -> str:
    """What a replay's final value is: the fit's value (a stand-in for the loss; named as in the replay's CSV,
    ``Replay.columns``), or a test function's."""
    return "final_fitted_loss" if on_fit else "final_function_value"


def _point_rows(s) -> list[tuple]:
    """Loss (and accuracy) at the origin, the lowest and highest loss, the non-finite points."""
    finite = s.loss[np.isfinite(s.loss)]
    rows = []
    if s.origin_index is not None:
        rows.append(("loss at w0", float(s.loss[s.origin_index])))
        if "accuracy" in s.metrics:
            rows.append(("accuracy at w0", float(s.metrics["accuracy"][s.origin_index])))
    rows += [("lowest, highest loss", f"{finite.min():.4g}, {finite.max():.4g}" if finite.size else "none finite"),
             ("NaN or infinite points", s.meta.get("n_nonfinite"))]
    return rows


def _figure(result, name: str, **options):
    """The figure ``name`` of ``result``, drawn by the registry (``losslens.plot.render``) as everywhere."""
    from losslens.plot.render import figures

    return figures(result, name, **options)[name]


def _warnings(a: Analyses, steps) -> list[str]:
    return [w for step in steps if step in a.logs for w in a.logs[step].warnings]


def _provenance(a: Analyses, steps) -> tuple[Provenance, ...]:
    return tuple(Provenance(str(path), status, a.metas.get(path, {}))
                 for step in steps if step in a.logs for path, status in a.logs[step].files)
