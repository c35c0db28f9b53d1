"""``build_report``: run the analyses a user picks on checkpoints or training runs, and write one page.

For each subject (a checkpoint file, or a run directory analysed at its last checkpoint) the report
builds one ``Evaluator`` (the data set and split, subset, seed, BatchNorm mode the options say) and
runs the steps its sections need (``analyses.py``), each writing or reusing its result file; then the
planes of all subjects are compared, two or more subjects are connected (``several.py``), and rank 0 draws every section (``sections.py``) into
``OUT/report.html`` (``page.py``) and writes ``OUT/report.json`` (the tables and warnings as data).

With one subject its files go straight into ``OUT`` under the names of the individual commands
(``surface.h5``, ``eigenpairs.h5``, ...), so a report reuses what ``losslens surface`` and the others
computed there when it answers the report's request, and otherwise writes ``report-<name>`` beside it
(``_store``); with several, into ``OUT/<name>/``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from pathlib import Path
from typing import Callable, Sequence

from losslens import _io
from losslens._distributed import Group
from losslens.core import reuse
from losslens.errors import ConfigError
from losslens.report import _store
from losslens.report.analyses import Analyses, StepFailed, Subject
from losslens.report.options import RUN_SECTIONS, SEVERAL_SECTIONS, ReportOptions, check_sections
from losslens.report.page import Report
from losslens.report.sections import TITLES, build, summary
from losslens.report.several import comparison as comparison_section
from losslens.report.several import connectivity, connectivity_section, different_architectures

PLANES: dict[str, str] = {"surface": "random directions", "hessian_plane": "Hessian eigenvectors",
                          "trajectory_plane": "trajectory PCA"}


def build_report(
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike = "losslens-out",
    *,
    sections: Sequence[str] | None = None,
    options: ReportOptions | None = None,
    names: Sequence[str] | None = None,
    title: str | None = None,
    progress: bool = True,
    say: Callable[[str], None] = print,
    invocation: dict | None = None,
) -> Report | None:
    """Compute (or reuse) the analyses of ``sections`` for each input and write ``OUT/report.html``.

    Args:
        inputs: checkpoint files and/or run directories (``losslens train``); a run adds the sections
            ``interpolation``, ``trajectory`` and ``dynamics``; two or more inputs add ``connectivity``.
        out: the output directory.
        sections: names from ``losslens.report.options.SECTIONS`` (default: all); the analyses they
            read are computed too (the fit needs the Hessian's eigenvectors) but not shown.
        options: the analyses' options (default ``ReportOptions()``: those of the individual commands).
        names: one label per input (default: the run directory's or the checkpoint's name).
        title: the page's title.
        progress: progress bars while grids are computed.
        say: where progress lines go (each section, each file written or reused).
        invocation: how the report was asked for (the command's arguments), kept in its provenance.

    Returns:
        The ``Report`` (written to ``OUT/report.html``); ``None`` on the ranks other than 0 under torchrun.

    Raises:
        ConfigError: no input, an input that is neither a checkpoint nor a run, bad options or sections.
    """
    started = time.perf_counter()
    options = options or ReportOptions()
    chosen = check_sections(sections)
    out = Path(out)
    subjects = _subjects(inputs, out, names)
    group = Group()
    speak, several = say if group.is_main else (lambda text: None), len(subjects) > 1
    analyses, skipped = [], []
    for subject in subjects:
        log = _store.Log()
        with _store.WarningCapture(log):
            ev = evaluator(subject, options)
        speak(f"{subject.name}: {_describe(ev)}")
        a = Analyses(subject, options, ev, group, replay_on_fit="fit" in chosen, progress=progress and group.is_main,
                     say=speak)
        a.logs["evaluator"] = log
        skipped += _compute(a, chosen, several, speak)
        analyses.append(a)
    together = [f(analyses, chosen, skipped, out, speak, group.is_main) for f in (_comparison, _connectivity)]
    report = None
    if group.is_main:
        meta = _meta(inputs, invocation, out, chosen, subjects, options, time.perf_counter() - started)
        report = _draw(analyses, chosen, skipped, together, meta,
                       title or f"losslens report: {', '.join(s.name for s in subjects)}")
        _write(report, out, say)
    group.broadcast(None)  # the other ranks wait for rank 0's page, so that all leave the process group together
    return report


def _compute(a: Analyses, chosen, several: bool, speak) -> list[str]:
    """Compute the chosen sections of one subject; returns the sections skipped (those a checkpoint lacks)."""
    skipped = []
    for name in chosen:
        if name in SEVERAL_SECTIONS:
            continue
        if name in RUN_SECTIONS and a.subject.run is None:
            skipped.append(f"{name} of {a.subject.name} (it needs a run directory, not a checkpoint)")
            continue
        speak(f"[{_label(a.subject, several)}{name}] {TITLES[name]}")
        a.compute(name)
    return skipped


def _comparison(analyses: list[Analyses], chosen, skipped: list[str], out: Path, speak, main: bool):
    """The comparison of every plane computed (``_compare``, on rank 0), when chosen and there are two;
    else ``None``, the reason added to ``skipped``."""
    if "comparison" not in chosen:
        return None
    planes = _planes(analyses, len(analyses) > 1)
    if len(planes) < 2:
        skipped.append("comparison (it needs at least two planes: add surface, fit or trajectory)")
        return None
    speak(f"[comparison] {TITLES['comparison']}")
    return _compare(planes, out, speak) if main else None


def _connectivity(analyses: list[Analyses], chosen, skipped: list[str], out: Path, speak, main: bool):
    """The connections between the subjects (``several.connectivity``, on rank 0) when chosen and there are two
    or more of one architecture; else ``None``, the reason added to ``skipped``."""
    if "connectivity" not in chosen:
        return None
    why = "it needs two or more checkpoints or runs" if len(analyses) < 2 else different_architectures(analyses)
    if why:
        skipped.append(f"connectivity ({why})")
        return None
    speak(f"[connectivity] {TITLES['connectivity']}")
    return connectivity(analyses, analyses[0].options, out, speak) if main else None


def _meta(inputs, invocation, out: Path, chosen, subjects: list[Subject], options: ReportOptions,
          seconds: float) -> dict:
    """The page's provenance: what was asked for, of which subjects, with which options and libraries."""
    return {"inputs": [str(p) for p in inputs], "invocation": invocation, "out": str(out), "sections": list(chosen),
            "subjects": [{"name": s.name, "checkpoint": str(s.checkpoint), "out": str(s.out),
                          "run": None if s.run is None else str(s.run.out)} for s in subjects],
            "options": options.as_dict(), "versions": _store.versions(), "analysis_seconds": round(seconds, 1)}


def _draw(analyses: list[Analyses], chosen, skipped: list[str], together, meta: dict, title: str) -> Report:
    """Every section of every subject (rank 0), then those of all subjects together (``together``: the
    comparison and the connectivity, each ``None`` when absent), and the summary first."""
    several = len(analyses) > 1
    drawn = [build(name, a, _id(a.subject, several, name), _label(a.subject, several) + TITLES[name])
             for a in analyses for name in chosen
             if name not in SEVERAL_SECTIONS and not (name in RUN_SECTIONS and a.subject.run is None)]
    comparison, connected = together
    if comparison is not None:
        drawn.append(comparison_section(*comparison, PLANES))
    if connected is not None:
        drawn.append(connectivity_section(connected))
    return Report(title, (summary(analyses, drawn, skipped),) + tuple(drawn), meta)


def _write(report: Report, out: Path, say) -> None:
    """``OUT/report.html`` and ``OUT/report.json``, and which analyses failed."""
    path = report.write(out / "report.html")
    say(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    json_path = _io.write_json(out / "report.json", report.to_json(), indent=1)
    say(f"wrote {json_path}")
    failed = [s.title for s in report.sections if s.error]
    if failed:
        say(f"failed: {'; '.join(failed)} (see the report)")


def evaluator(subject: Subject, options: ReportOptions):
    """The ``Evaluator`` of a subject's checkpoint by the options' recipe (``ReportOptions.recipe``), as the
    landscape commands build it."""
    checkpoint = str(subject.checkpoint)
    return options.recipe(checkpoint).evaluator(checkpoint, unsafe_pickle=options.unsafe_pickle,
                                                device=options.device, threads=options.threads)


# -- subjects ---------------------------------------------------------------------------------------------


def _subjects(inputs, out: Path, names) -> list[Subject]:
    inputs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not inputs:
        raise ConfigError("a report needs a checkpoint or a run directory (losslens report trains a default one)")
    if names is not None and len(names) != len(inputs):
        raise ConfigError(f"{len(names)} names for {len(inputs)} inputs")
    if len(inputs) == 1:
        return [Subject.resolve(inputs[0], out, None if names is None else names[0])]
    subjects, seen = [], set()
    for i, source in enumerate(inputs):
        s = Subject.resolve(source, out, None if names is None else names[i])
        name, k = s.name, 2
        while name in seen:
            name, k = f"{s.name}-{k}", k + 1
        seen.add(name)
        subjects.append(dataclasses.replace(s, name=name, out=out / _slug(name)))
    return subjects


def _describe(ev) -> str:
    meta = ev.meta()
    data, model = meta["data"], meta["model"]
    return (f"{model['name'] or model['class']} ({meta['n_params']} parameters) at {meta['checkpoint']['label']}, on "
            f"{data['name']} {data['split']} split ({data['n_samples']} samples), {ev.plan.device}")


def _label(subject: Subject, several: bool) -> str:
    return f"{subject.name}: " if several else ""


def _id(subject: Subject, several: bool, name: str) -> str:
    return f"{_slug(subject.name)}-{name}" if several else name


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "subject"


# -- comparison -------------------------------------------------------------------------------------------


def _planes(analyses: list[Analyses], several: bool) -> list[tuple[str, object]]:
    """``(name, surface)`` of every plane computed, each with the sharpness at its centre (lambda_1 of the
    subject's Hessian at w0, the centre of all its planes) in its metadata when known."""
    out = []
    for a in analyses:
        lam = a.done("eigenpairs")
        for step in PLANES:
            surface = a.done(step)
            if surface is None:
                continue
            if lam is not None:
                surface = dataclasses.replace(surface, meta={**surface.meta,
                                                             "hessian": {"lambda_max": float(lam.values[0])}})
            out.append((f"{a.subject.name}/{step}" if several else step, surface))
    return out


def _compare(planes, out: Path, say) -> tuple:
    """``(SurfaceComparison or None, log, failure or None)`` of the planes, in ``OUT/compare_surfaces.h5``
    (the planes named by their fingerprints and the sharpness at their centres, which their metadata holds)."""
    from losslens.landscape.surface_comparison import SurfaceComparison, compare_surfaces, sharpness_of

    log = _store.Log()
    call = reuse.Call(compare_surfaces, [s for _, s in planes], names=[n for n, _ in planes]).naming(
        surfaces=[{"surface": reuse.fingerprint_of(s), "sharpness": sharpness_of(s.meta)} for _, s in planes])
    path = out / "compare_surfaces.h5"
    try:
        with _store.WarningCapture(log):
            result = _store.result(path, SurfaceComparison, call, log, say)
    except Exception as err:  # noqa: BLE001 - shown in the section, as any analysis's failure
        import traceback

        return None, log, StepFailed("comparison", f"{type(err).__name__}: {err}", traceback.format_exc())
    return result, log, None
