"""One reuse rule for every step of the report: a result file is reused only for the request of the call
that computes it (losslens/core/reuse.py), so a change of any argument of any step's analysis recomputes it,
and a change of any option reaches the requests of the steps that read it.

The steps run once, on the tiny run with small grids (``SMALL``); the tests then replay each step's call with
its analysis counted (a stand-in with the function's name and signature) on a copy of its file.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import shutil

import numpy as np
import pytest
import torch

from _report_tiny import TINY
from losslens.connectivity.connect import connect_aligned
from losslens.core import reuse
from losslens.core.evaluator import Evaluator
from losslens.curvature.hessian import Eigenpairs, eigenpairs
from losslens.curvature.operator import HessianOperator
from losslens.curvature.spectrum import density
from losslens.curvature.trace_estimation import trace
from losslens.landscape.fit import fit_surface
from losslens.landscape.surface_comparison import compare_surfaces
from losslens.landscape.topology import topology
from losslens.landscape.wavelets import multiscale
from losslens.report import _store, build, build_report
from losslens.trajectories.dynamics import dynamics_of_run
from losslens.trajectories.embeddings import embed
from losslens.trajectories.paths import trajectory_paths
from losslens.trajectories.pca import trajectory_pca
from losslens.trajectories.replay import replay

SMALL = dataclasses.replace(TINY, steps=5, interpolation_steps=5, plane_steps=5, trajectory_steps=5)
STEPS = {  # every result file of the report (all but the grids) and the analysis that computes it
    "eigenpairs.h5": eigenpairs, "trace.h5": trace, "spectrum.h5": density, "multiscale.h5": multiscale,
    "topology.h5": topology, "fit.h5": fit_surface, "replay.h5": replay, "trajectory_pca.h5": trajectory_pca,
    "trajectory.h5": trajectory_paths, "embedding_pca.h5": embed, "embedding_tsne.h5": embed,
    "dynamics.h5": dynamics_of_run, "compare_surfaces.h5": compare_surfaces,
}
ARGUMENTS = [(file, name) for file, function in STEPS.items() for name in inspect.signature(function).parameters
             if name not in reuse.IGNORED]
OPTIONS = {  # an option of the analyses -> the result files whose requests it reaches (the grids aside)
    "top_k": {"eigenpairs.h5"}, "trace_samples": {"trace.h5"}, "density_vectors": {"spectrum.h5"},
    "lanczos_steps": {"spectrum.h5"}, "fit_model": {"fit.h5"}, "optimizers": {"replay.h5"},
    "replay_lr": {"replay.h5"}, "replay_steps": {"replay.h5"}, "threshold": {"trajectory.h5"},
    "perplexity": {"embedding_pca.h5", "embedding_tsne.h5"}, "tsne_max_iter": {"embedding_pca.h5", "embedding_tsne.h5"},
    "sharpness": {"dynamics.h5"},
    "seed": {"eigenpairs.h5", "trace.h5", "spectrum.h5", "replay.h5", "embedding_pca.h5", "embedding_tsne.h5",
             "dynamics.h5", "trajectory.h5"},  # the data's subset is seeded: every step of the evaluator
    "subset": {"eigenpairs.h5", "trace.h5", "spectrum.h5", "trajectory.h5", "dynamics.h5"},
}
CONNECT_ARGUMENTS = [name for name in inspect.signature(connect_aligned).parameters if name not in reuse.IGNORED]
CONNECT_OPTIONS = ("connect_paths", "connect_points", "bend_updates", "bend_lr", "seed", "subset")
CHANGED = {"connect_paths": ("line",), "optimizers": ("sgd",), "sharpness": True, "subset": 90, "fit_model": "quadratic", "perplexity": 3.0}


def _recording(mp, recorded: dict, compute: bool = True) -> None:
    """``_store.result`` records each step's ``(class, call, how, result)`` under its file's name (and
    ``_store.grid`` each grid under ``"grids"``); without ``compute``, they answer with what is recorded
    already, so that only the requests are built (each step's name then goes to ``"asked"``)."""
    original, original_grid = _store.result, _store.grid
    recorded.setdefault("grids", {})
    recorded["asked"] = set()

    def result(path, cls, call, log, say, **how):
        if not compute:
            log.files.append((path, "reused"))
        value = original(path, cls, call, log, say, **how) if compute else recorded[path.name][3]
        recorded[path.name] = (cls, call, how, value)
        recorded["asked"].add(path.name)
        return value

    def grid(path, make, log, say, *, main):
        if compute:
            recorded["grids"][path.name] = original_grid(path, make, log, say, main=main)
        else:
            log.files.append((path, "reused"))
        return recorded["grids"][path.name]

    mp.setattr(_store, "result", result)
    mp.setattr(_store, "grid", grid)


@pytest.fixture(scope="module")
def steps(run_dir, tmp_path_factory) -> dict:
    """Every step of the tiny run's report, computed once: ``{file: (class, call, how, result)}``."""
    out, recorded = tmp_path_factory.mktemp("steps"), {}
    with pytest.MonkeyPatch.context() as mp:
        _recording(mp, recorded)
        build_report([run_dir], out, options=SMALL, progress=False, say=lambda text: None)
    return {**recorded, "out": out}


def test_every_result_step_is_listed_here_with_its_analysis(steps):
    assert {name for name in steps if name.endswith(".h5")} == set(STEPS)
    for file, function in STEPS.items():
        assert steps[file][1].function is function, file


class _OtherEvaluator:
    """Stands for an evaluator of other data or weights: another fingerprint."""

    def __init__(self, ev):
        self.ev = ev

    def fingerprint(self) -> dict:
        return {**self.ev.fingerprint(), "w0": "other weights"}


def _changed(value, cover=None):
    """Another value of an argument (smaller for an ``AT_MOST`` rule: one that a stored result does not cover)."""
    if cover is reuse.AT_MOST:
        return value / 10
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "-other"
    if value is None:
        return 1
    if isinstance(value, (list, tuple)):
        return [*value[:-1], _changed(value[-1])] if value else ["other"]
    if isinstance(value, dict):
        return {**value, "other": 1}
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return value + 1
    if isinstance(value, HessianOperator):
        return HessianOperator(value.evaluator, value.w + 1)
    if isinstance(value, Evaluator):
        return _OtherEvaluator(value)
    if dataclasses.is_dataclass(value):  # a result: one of its arrays changed
        field = next(f.name for f in dataclasses.fields(value) if isinstance(getattr(value, f.name), np.ndarray))
        other = copy.copy(value)
        object.__setattr__(other, field, getattr(value, field) + 1)
        return other
    raise AssertionError(f"no other value for a {type(value).__name__}")


def _counted(call: reuse.Call, ran: list, value, name: str | None = None, cover=None) -> reuse.Call:
    """``call`` with its analysis counted (it returns ``value``), and its argument ``name`` changed."""
    other = copy.copy(call)

    @functools.wraps(call.function)
    def analysis(*args, **kwargs):
        ran.append(1)
        return value

    other.function = analysis
    other.bound = inspect.BoundArguments(call.bound.signature, dict(call.bound.arguments))
    other.named = dict(call.named)
    if name in other.named:  # an input the step names by its content (a run by its checkpoints' hashes)
        other.named[name] = _changed(other.named[name])
    elif name is not None:
        other.bound.arguments[name] = _changed(call.bound.arguments[name], cover)
    return other


@pytest.mark.parametrize("file, name", ARGUMENTS, ids=[f"{f}-{n}" for f, n in ARGUMENTS])
def test_a_change_of_any_argument_of_a_step_recomputes_it_and_the_same_call_reuses(steps, file, name, tmp_path):
    cls, call, how, value = steps[file]
    assert name in value.meta["report"]["request"], f"{file}: the argument {name} is not in the request"
    path = tmp_path / file
    shutil.copyfile(steps["out"] / file, path)
    ran, log, said = [], _store.Log(), []
    _store.result(path, cls, _counted(call, ran, value), log, said.append, **how)
    assert not ran and log.files == [(path, "reused")]
    _store.result(path, cls, _counted(call, ran, value, name, how.get("covers", {}).get(name)), log, said.append,
                  **how)
    assert ran == [1] and log.files[-1] == (path, "recomputed")
    assert said[-2] == f"  recomputing {path}: it answers another request (differing: {name})"


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_a_change_of_an_option_reaches_the_requests_of_the_steps_that_read_it(steps, run_dir, tmp_path, option):
    value = getattr(SMALL, option)
    options = dataclasses.replace(SMALL, **{option: CHANGED.get(option, _changed(value))})
    recorded = {**steps}
    with pytest.MonkeyPatch.context() as mp:
        _recording(mp, recorded, compute=False)
        mp.setattr(build, "_draw", lambda *args: None)
        mp.setattr(build, "_write", lambda *args: None)
        build_report([run_dir], tmp_path, options=options, progress=False, say=lambda text: None)
    assert recorded["asked"] == set(STEPS)  # every step ran (none failed)
    changed = {file for file in STEPS if recorded[file][1].request() != steps[file][1].request()}
    assert changed == OPTIONS[option]


def test_more_eigenpairs_recompute_only_them_not_the_fit_of_their_plane(run_dir, tmp_path):
    """``top_k`` 3 after 2 recomputes the eigenpairs; their top two, equal to rounding, reuse the Hessian
    plane's grid, and so its fit: the grid reused is returned as its file holds it (``surface_2d``)."""
    lines: list[str] = []
    for top_k in (2, 3):
        build_report([run_dir], tmp_path, options=dataclasses.replace(SMALL, top_k=top_k), sections=["hessian", "fit"],
                     progress=False, say=lines.append)
    assert f"  recomputing {tmp_path / 'eigenpairs.h5'}: it answers another request (differing: k)" in lines
    assert lines.count(f"  reused {tmp_path / 'hessian_plane.h5'}") == 1
    assert lines.count(f"  reused {tmp_path / 'fit.h5'}") == 1, "\n".join(lines)

def test_eigenpairs_answer_a_request_for_fewer_and_are_recomputed_for_more(steps, run_dir, tmp_path):
    """The cover rule of ``k`` (eigenpairs.h5 holds 2): ``top_k`` 3 recomputes, then 2 reuses its top 2."""
    out = tmp_path / "out"
    out.mkdir()
    shutil.copyfile(steps["out"] / "eigenpairs.h5", out / "eigenpairs.h5")
    lines: list[str] = []
    for top_k in (3, 2):
        build_report([run_dir], out, options=dataclasses.replace(SMALL, top_k=top_k), sections=["hessian"],
                     progress=False, say=lines.append)
    assert f"  recomputing {out / 'eigenpairs.h5'}: it answers another request (differing: k)" in lines
    assert f"  reused {out / 'eigenpairs.h5'}" in lines
    stored = Eigenpairs.load(out / "eigenpairs.h5")
    assert len(stored.values) == 3 and stored.meta["report"]["request"]["k"] == 3


@pytest.fixture(scope="module")
def pair(run_dir, tmp_path_factory) -> dict:
    """The connectivity step of a report of the tiny run's first and last checkpoints, computed once:
    ``{"connect": (class, call, how, result), "out": ..., "inputs": ...}``."""
    out, recorded = tmp_path_factory.mktemp("pair"), {}
    inputs = [str(p) for p in sorted(run_dir.glob("step_*.safetensors"))[::2]]
    options = dataclasses.replace(SMALL, connect_points=5, bend_updates=2)
    with pytest.MonkeyPatch.context() as mp:
        _recording(mp, recorded)
        build_report(inputs, out, sections=["connectivity"], options=options, progress=False, say=lambda text: None)
    (file,) = [name for name in recorded if name.startswith("connect-")]
    return {"connect": recorded[file], "file": file, "out": out, "inputs": inputs, "options": options}


@pytest.mark.parametrize("name", CONNECT_ARGUMENTS)
def test_a_change_of_any_argument_of_the_connection_recomputes_it_and_the_same_call_reuses(pair, name, tmp_path):
    cls, call, how, value = pair["connect"]
    assert call.function is connect_aligned
    assert name in value.meta["report"]["request"], f"the argument {name} is not in the request"
    path = tmp_path / pair["file"]
    shutil.copyfile(pair["out"] / pair["file"], path)
    ran, log, said = [], _store.Log(), []
    _store.result(path, cls, _counted(call, ran, value), log, said.append, **how)
    assert not ran and log.files == [(path, "reused")]
    _store.result(path, cls, _counted(call, ran, value, name), log, said.append, **how)
    assert ran == [1] and log.files[-1] == (path, "recomputed")
    assert said[-2] == f"  recomputing {path}: it answers another request (differing: {name})"


@pytest.mark.parametrize("option", CONNECT_OPTIONS)
def test_a_change_of_a_connect_option_reaches_the_connections_request(pair, tmp_path, option):
    value = getattr(pair["options"], option)
    options = dataclasses.replace(pair["options"], **{option: CHANGED.get(option, _changed(value))})
    recorded = {pair["file"]: pair["connect"]}
    with pytest.MonkeyPatch.context() as mp:
        _recording(mp, recorded, compute=False)
        mp.setattr(build, "_draw", lambda *args: None)
        mp.setattr(build, "_write", lambda *args: None)
        build_report(pair["inputs"], tmp_path, sections=["connectivity"], options=options, progress=False,
                     say=lambda text: None)
    assert recorded["asked"] == {pair["file"]}
    assert recorded[pair["file"]][1].request() != pair["connect"][1].request()
