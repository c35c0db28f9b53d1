"""The sections of all subjects together: the comparison of their planes, and the connectivity of their minima.

**Connectivity** (two or more subjects of one architecture: checkpoints, or runs at their last checkpoint):
for each pair of subjects A, B (all pairs up to ``MAX_ALL_PAIRS`` subjects, else each subject with the next,
``pairs``) ``connect_aligned`` evaluates the report's paths (``ReportOptions.connect_paths``, default the line
and a Bezier curve with a trained bend) from A to B as they are and after weight matching B's hidden units to
A's (Ainsworth et al. 2023), when the model's permutation structure derives (else raw only, and the section
says why). Each pair's ``Connection`` goes to ``OUT/connect-<A>-<B>.h5`` through ``_store.result`` (the call
``connect_aligned(...)``, reused exactly for its request). A model with BatchNorm is evaluated along the paths
with statistics re-estimated at every point and its bends trained with batch statistics, as ``losslens
connect`` does. With three or more subjects and all pairs, the line barriers form a ``BarrierMatrix`` (no
further evaluation), drawn as a heat map.
"""

from __future__ import annotations

import dataclasses
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from losslens.connectivity.barrier_matrix import BarrierMatrix
from losslens.connectivity.barriers import DEFINITIONS, NAMES
from losslens.connectivity.connect import connect_aligned, has_batchnorm
from losslens.connectivity.connection import Connection
from losslens.connectivity.permutation import permutation_spec
from losslens.core import reuse
from losslens.errors import ConfigError
from losslens.report import _store
from losslens.report.analyses import Analyses, StepFailed
from losslens.report.options import ReportOptions
from losslens.report.page import Image, Plot, Provenance, Section, Table
from losslens.report.sections import TITLES

MAX_ALL_PAIRS = 4  # subjects up to which every pair is connected; beyond, each with the next
OUTPUT_CHANGE = 1e-4  # largest relative change of B's outputs by a permutation that is still rounding


def pairs(n: int) -> list[tuple[int, int]]:
    """The pairs ``(i, j)``, ``i < j``, of ``n`` subjects that are connected (see ``MAX_ALL_PAIRS``)."""
    if n <= MAX_ALL_PAIRS:
        return [(i, j) for i in range(n) for j in range(i + 1, n)]
    return [(i, i + 1) for i in range(n - 1)]


@dataclass(frozen=True)
class Connected:
    """One pair's ``Connection`` (``None`` when it failed, with ``failure``) and what its step did (``log``)."""

    a: str
    b: str
    result: Connection | None
    log: _store.Log
    failure: StepFailed | None = None


@dataclass(frozen=True)
class Connectivity:
    """Every pair's connection; ``raw_only``: why B was not weight-matched (``None`` when it was); ``matrix``:
    the line barriers between all subjects (three or more, all pairs), else ``None``."""

    pairs: tuple[Connected, ...]
    raw_only: str | None
    matrix: BarrierMatrix | None


def different_architectures(analyses: list[Analyses]) -> str | None:
    """Why the subjects cannot be connected (their models differ), or ``None``."""
    first = analyses[0].ev.meta()
    for a in analyses[1:]:
        meta = a.ev.meta()
        if (meta["model"], meta["n_params"]) != (first["model"], first["n_params"]):
            return (f"{analyses[0].subject.name} and {a.subject.name} are of different architectures: connecting them "
                    "needs one")
    return None


def connectivity(analyses: list[Analyses], options: ReportOptions, out: Path, say) -> Connectivity:
    """The connection of every pair (module docstring), each computed or reused in ``OUT/connect-<A>-<B>.h5``."""
    raw_only = _raw_only(analyses[0])
    aligns = ("none",) if raw_only else ("none", "weights")
    done = []
    for i, j in pairs(len(analyses)):
        a, b = analyses[i], analyses[j]
        path = out / f"connect-{a.subject.out.name}-{b.subject.out.name}.h5"
        log = _store.Log()
        try:
            with _store.WarningCapture(log):
                result = _store.result(path, Connection, connect_call(a, b, options, aligns), log, say)
            done.append(Connected(a.subject.name, b.subject.name, result, log))
        except Exception as err:  # noqa: BLE001 - shown in the section, as any analysis's failure
            failure = StepFailed("connectivity", f"{type(err).__name__}: {' '.join(str(err).split())}",
                                 traceback.format_exc())
            done.append(Connected(a.subject.name, b.subject.name, None, log, failure))
    return Connectivity(tuple(done), raw_only, _matrix(analyses, done))


def connect_call(a: Analyses, b: Analyses, options: ReportOptions, aligns) -> reuse.Call:
    """The call of ``connect_aligned`` from subject ``a``'s weights to ``b``'s, with the report's options."""
    ev, trainer = _evaluators(a, options)
    return reuse.Call(connect_aligned, ev, ev.w0, b.ev.w0.to(device=ev.device, dtype=ev.dtype),
                      paths=options.connect_paths, align=aligns, points=options.connect_points,
                      steps=options.bend_updates, lr=options.bend_lr, seed=options.seed, train_evaluator=trainer)


def _evaluators(a: Analyses, options: ReportOptions):
    """``(evaluator along the paths, evaluator of the bends' training or None)``: the subject's evaluator, or with
    BatchNorm one that re-estimates the statistics at every point; the training on the train split (with batch
    statistics for BatchNorm)."""
    ev, trained = a.ev, set(options.connect_paths) - {"line"}
    batchnorm = has_batchnorm(ev)
    if not batchnorm and (options.split == "train" or not trained):
        return ev, ev if trained else None
    checkpoint = str(a.subject.checkpoint)
    recipe = options.recipe(checkpoint)
    how = {"unsafe_pickle": options.unsafe_pickle, "device": options.device, "threads": options.threads}
    if batchnorm:
        ev = dataclasses.replace(recipe, bn="recalibrate").evaluator(checkpoint, **how)
    if not trained:
        return ev, None
    train = dataclasses.replace(recipe.with_split("train"), bn="batch" if batchnorm else recipe.bn)
    return ev, train.evaluator(checkpoint, **how)


def _raw_only(a: Analyses) -> str | None:
    """Why the model's hidden units cannot be weight-matched (its permutation structure does not derive)."""
    try:
        permutation_spec(a.ev.module_at(a.ev.w0))
    except ConfigError as err:
        return f"B is not weight-matched to A: {err}"
    return None


def _matrix(analyses: list[Analyses], done: list[Connected]) -> BarrierMatrix | None:
    """The line ``barrier`` between every pair, raw and weight-matched, from the line paths computed."""
    n = len(analyses)
    if n < 3 or len(done) != n * (n - 1) // 2 or any(c.result is None for c in done):
        return None
    found = {}
    for (i, j), c in zip(pairs(n), done):
        for p in c.result.paths:
            if p["path"] == "line":
                found[(p["align"], i, j)] = p["barriers"][p["splits"][0]]["loss"]["barrier"]
    matrices = {}
    for how in ("none", "weights"):
        if all((how, i, j) in found for i, j in pairs(n)):
            m = np.zeros((n, n))
            for i, j in pairs(n):
                m[i, j] = m[j, i] = found[(how, i, j)]
            matrices[how] = m
    if "none" not in matrices:
        return None
    meta = {"points": done[0].result.meta["points"], "definition": DEFINITIONS["barrier"],
            "alignment": "weights" if "weights" in matrices else "none", "from": "the line paths of connect-*.h5"}
    return BarrierMatrix(tuple(a.subject.name for a in analyses), matrices["none"], matrices.get("weights"),
                         "barrier", meta)


# -- the sections ---------------------------------------------------------------------------------------


def connectivity_section(c: Connectivity) -> Section:
    """The connectivity section: each pair's figures (through the registry), the three barriers of the loss and
    the error per path and alignment, the alignments' output change, the barrier matrix."""
    from losslens.plot.render import figures

    shown, rows, aligned, warnings, files = [], [], [], [], []
    for pair in c.pairs:
        name = f"{pair.a} - {pair.b}"
        warnings += pair.log.warnings
        files += [Provenance(str(p), status, pair.result.meta if pair.result else {}) for p, status in pair.log.files]
        if pair.failure is not None:
            warnings.append(f"{name} failed: {pair.failure.message}")
            continue
        drawn = figures(pair.result, ".png", "_plane.png")
        shown += [Image.of(drawn[".png"], f"{name}: loss and accuracy along t (A at t = 0, B at t = 1)"),
                  Image.of(drawn["_plane.png"], f"{name}: the paths on the plane through A, B and the bend")]
        rows += _barrier_rows(name, pair.result)
        for method, info in pair.result.alignment.items():
            aligned.append((name, method, info["output_change"], info["objective"][-1], len(info["objective"]) - 1))
            if info["output_change"] is not None and info["output_change"] > OUTPUT_CHANGE:
                warnings.append(f"{name}: aligning B by {method} changed its outputs by {info['output_change']:.3g} "
                                "(relative): the permutation does not keep B's function")
    title = TITLES["connectivity"]
    if not rows:
        failed = next(p.failure for p in c.pairs if p.failure is not None)
        return Section("connectivity", title, error=failed.message, details=failed.details,
                       warnings=tuple(dict.fromkeys(warnings)), provenance=tuple(files))
    if c.matrix is not None:
        shown.append(Image.of(figures(c.matrix, ".png")[".png"], "line barrier between every pair, raw and "
                                                                 "after weight matching"))
    tables = [Table("Barriers", ("A - B", "path", "alignment", "split", *(f"loss {n}" for n in NAMES),
                                 *(f"error {n}" for n in NAMES)), tuple(rows)),
              Table("Definitions", ("barrier", "definition"), tuple(
                  [*DEFINITIONS.items(), ("error ...", "the same of the error 1 - accuracy")]))]
    if aligned:
        tables.append(Table("Alignments", ("A - B", "method", "output change (relative)", "objective",
                                           "iterations"), tuple(aligned)))
    text = ("Are the subjects' minima connected? The loss along paths from A (t = 0) to B (t = 1): the line and curves "
            "whose bend is trained to keep the loss low along them (Garipov et al. 2018), with B as it is and after "
            "permuting its hidden units to match A's by weight matching, which keeps B's function (Ainsworth et al. "
            f"2023). Every pair is connected up to {MAX_ALL_PAIRS} subjects, beyond that each with the next.")
    if c.raw_only:
        warnings.append(c.raw_only)
    return Section("connectivity", title, text, tuple(shown), tuple(tables), tuple(dict.fromkeys(warnings)),
                   tuple(files))


def _barrier_rows(name: str, result: Connection) -> list[tuple]:
    """One row per path, alignment and split: the three barriers of the loss and of the error."""
    rows = []
    for p in result.paths:
        for split in p["splits"]:
            loss, error = p["barriers"][split]["loss"], p["barriers"][split]["error"] or {}
            rows.append((name, p["path"], p["align"], split, *(loss[n] for n in NAMES),
                         *(error.get(n) for n in NAMES)))
    return rows


def comparison(result, log, failure, planes: dict[str, str]) -> Section:
    """The comparison of the planes (``SurfaceComparison``), or why it failed."""
    from losslens.landscape.surface_comparison import DISTANCE_COLUMNS, TABLE_COLUMNS
    from losslens.plot.render import figures

    title = TITLES["comparison"]
    if failure is not None:
        return Section("comparison", title, error=failure.message, details=failure.details,
                       warnings=tuple(log.warnings))
    text = ("The planes of this report side by side: " + "; ".join(f"{k}: {v}" for k, v in planes.items())
            + ". Per plane its loss range, basins and loops (topology), roughness (multiscale) and sharpness "
            "lambda_max at its centre; per pair the bottleneck and Wasserstein distances of their persistence "
            "diagrams (in loss units; they need no common grid; classes that never die are matched among themselves "
            "and how many are left over is its own column).")
    rows = tuple(tuple(r.get(c) for c in TABLE_COLUMNS) for r in result.rows)
    distances = tuple(tuple(d.get(c) for c in DISTANCE_COLUMNS) for d in result.distances)
    warnings = tuple(dict.fromkeys(log.warnings + list(result.meta["warnings"])))
    figure = Plot(figures(result, ".html")[".html"], "H0 bottleneck distances", half=True)
    tables = (Table("Planes", TABLE_COLUMNS, rows), Table("Distances", DISTANCE_COLUMNS, distances))
    files = tuple(Provenance(str(p), status, result.meta) for p, status in log.files)
    return Section("comparison", title, text, (figure,), tables, warnings, files)
