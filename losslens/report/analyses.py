"""The analyses of one report subject (a checkpoint, or a run directory and its last checkpoint).

Each analysis is a *step* computed at most once, when first asked for, and kept. A step reads the
results of the steps ``NEEDS`` names (the fit reads the Hessian plane, which reads the eigenpairs),
and ``compute(section)`` runs those first, so only what the chosen sections need is computed, in the
same order on every rank. Every step writes its result file under the subject's output directory (the
names of the individual commands) or reuses it (see ``_store``).

Under torchrun every rank builds the same ``Analyses``: the grid steps (``surface``, ``interpolation``,
``hessian_plane``, ``trajectory_plane``) run on every rank, which share each grid's points; every other
step runs on rank 0 alone and its result is broadcast, so all ranks build the same grids from it. A step
that fails keeps its error: the steps and sections that need it fail with it, the others go on.
"""

from __future__ import annotations

import functools
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from losslens.core.train import TrainRun
from losslens.errors import ConfigError
from losslens.report import _store
from losslens.report._store import Log, WarningCapture, content_hash, surface_hash
from losslens.report.options import ReportOptions

SECTION_STEPS: dict[str, tuple[str, ...]] = {  # the steps whose results a section shows
    "surface": ("surface",),
    "interpolation": ("interpolation",),
    "hessian": ("eigenpairs", "trace", "density"),
    "multiscale": ("multiscale",),
    "topology": ("topology",),
    "fit": ("hessian_plane", "fit"),
    "replay": ("replay",),
    "trajectory": ("trajectory_pca", "trajectory_paths", "trajectory_plane", "embeddings"),
    "dynamics": ("dynamics",),
}
NEEDS: dict[str, tuple[str, ...]] = {  # the steps a step reads ("replay" reads "fit" when it replays on it)
    "multiscale": ("surface",),
    "topology": ("surface",),
    "hessian_plane": ("eigenpairs",),
    "fit": ("hessian_plane",),
    "trajectory_paths": ("trajectory_pca",),
    "trajectory_plane": ("trajectory_pca", "trajectory_paths"),
    "embeddings": ("trajectory_pca",),
}
GRID_STEPS: tuple[str, ...] = ("surface", "interpolation", "hessian_plane", "trajectory_plane")
EMBEDDINGS: tuple[str, ...] = ("pca", "tsne")


def _top(pairs, k: int):
    """The top ``k`` of ``Eigenpairs`` sorted by decreasing eigenvalue, with their residual norms."""
    return replace(pairs, values=pairs.values[:k], vectors=pairs.vectors[:k],
                               meta={**pairs.meta, "residual_norms": pairs.meta["residual_norms"][:k]})


class StepFailed(Exception):
    """A step failed (here or on rank 0): carries its message and, where it happened, the traceback."""

    def __init__(self, step: str, message: str, details: str = ""):
        super().__init__(f"{step}: {message}")
        self.step, self.message, self.details = step, message, details

    def __reduce__(self):  # broadcast to the other ranks whole
        return StepFailed, (self.step, self.message, self.details)


@dataclass(frozen=True)
class Subject:
    """What a report analyses.

    Attributes:
        name: its label (the run directory's or the checkpoint's name).
        checkpoint: the weights analysed (a run's last checkpoint).
        run: the training run, when a run directory was given.
        out: where its result files go.
    """

    name: str
    checkpoint: Path
    run: TrainRun | None
    out: Path

    @classmethod
    def resolve(cls, source: str | Path, out: Path, name: str | None = None) -> "Subject":
        """A checkpoint file, or a run directory (``run.json``; its last checkpoint is analysed).

        Raises:
            ConfigError: a missing path, or a directory that is not a training run.
        """
        source = Path(source)
        if source.is_dir():
            run = TrainRun.load(source)
            if not run.checkpoints:
                raise ConfigError(f"{source}: the run has no checkpoint yet")
            return cls(name or source.resolve().name, run.checkpoints[-1], run, out)
        if not source.is_file():
            raise ConfigError(f"{source}: no such checkpoint file or run directory")
        return cls(name or source.stem, source, None, out)


class Analyses:
    """The steps of one subject (see the module docstring).

    Args:
        subject: what is analysed. options: the analyses' options.
        evaluator: the subject's ``Evaluator`` (its checkpoint, data, split and settings).
        group: the torchrun processes (``losslens._distributed.Group``).
        replay_on_fit: replay on the fit of the Hessian plane; else on the analytic quadratic.
        progress: progress bars of the grids. say: prints a line (called on rank 0 only).
    """

    def __init__(self, subject: Subject, options: ReportOptions, evaluator, group, *, replay_on_fit: bool,
                 progress: bool, say):
        self.subject, self.options, self.ev, self.group = subject, options, evaluator, group
        self.replay_on_fit, self.progress, self._say = replay_on_fit, progress, say
        self.logs: dict[str, Log] = {}
        self.metas: dict[Path, dict] = {}  # each result file's metadata (rank 0)
        self._done: dict[str, tuple[object, StepFailed | None]] = {}

    # -- running steps -------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        if self.group.is_main:
            self._say(text)

    def step(self, name: str):
        """The result of step ``name``, computed (or read) the first time it is asked for.

        Raises:
            StepFailed: the step failed, now or earlier.
        """
        if name not in self._done:
            shared = name in GRID_STEPS  # every rank computes it; the others, rank 0 alone, for all
            outcome = self._attempt(name) if shared or self.group.is_main else (None, None)
            self._done[name] = outcome if shared else self.group.broadcast(outcome)
        value, failure = self._done[name]
        if failure is not None:
            raise failure
        return value

    def done(self, name: str):
        """The result of step ``name`` if it has run and succeeded, else ``None`` (never computes)."""
        value, failure = self._done.get(name, (None, None))
        return None if failure else value

    def _attempt(self, name: str) -> tuple[object, StepFailed | None]:
        """``(result, None)``, or ``(None, failure)``: the error (and traceback) of the step or of a step it reads."""
        log = self.logs.setdefault(name, Log())
        try:
            with WarningCapture(log):
                return getattr(self, f"_{name}")(log), None
        except StepFailed as err:  # a step it reads failed
            return None, StepFailed(name, f"it needs {err.step}, which failed: {err.message}", err.details)
        except Exception as err:  # noqa: BLE001 - shown in its section; the other analyses go on
            return None, StepFailed(name, f"{type(err).__name__}: {' '.join(str(err).split())}", traceback.format_exc())

    def compute(self, section: str) -> None:
        """Run the steps of ``section``, each after the steps it reads, so that every rank asks for every
        step in the same order (failures are kept, to be shown in the section)."""
        for name in SECTION_STEPS[section]:
            if name != "density" or self.options.density:
                self._ensure(name)

    def _ensure(self, name: str) -> None:
        needs = NEEDS.get(name, ()) + (("fit",) if name == "replay" and self.replay_on_fit else ())
        for need in needs:
            self._ensure(need)
        try:
            self.step(name)
        except StepFailed:
            pass

    def path(self, name: str) -> Path:
        return self.subject.out / name

    # -- requests --------------------------------------------------------------------------------------

    def _evaluation(self) -> dict:
        """What values at the subject's checkpoint depend on: the evaluator's identity and the weights."""
        return {"evaluator": self.ev.identity(), "checkpoint": (self.ev.meta()["checkpoint"] or {}).get("sha256")}

    @functools.cached_property
    def _run_identity(self) -> dict:
        """The run's checkpoints, by name and content hash."""
        from losslens.core.provenance import file_sha256

        return {"run": self.subject.name,
                "checkpoints": [[p.name, file_sha256(p)] for p in self._need_run("this step").checkpoints]}

    def _same_evaluation(self, meta: dict) -> bool:
        """Whether another command's Hessian result (its ``meta`` holds the operator's, i.e. the evaluator's
        ``meta()``) was computed with this evaluator's identity at this checkpoint (same weights hash)."""
        ours = self.ev.meta()
        keys = [k for k in self.ev.identity() if k in ours]
        theirs = {k: meta.get(k) for k in keys} | {"dtype": (meta.get("plan") or {}).get("dtype"),
                                                   "sha256": (meta.get("checkpoint") or {}).get("sha256")}
        return _store.jsonable(theirs) == _store.jsonable({k: ours[k] for k in keys} | {
            "dtype": ours["plan"]["dtype"], "sha256": (ours["checkpoint"] or {}).get("sha256")})

    def _answers(self, test):
        """``answers`` for ``_store.result``: another command's Hessian result of this evaluation that passes
        ``test`` (the request's options read from the result), as it is."""
        return lambda old: old if old.meta.get("backend") == "losslens" and self._same_evaluation(old.meta) \
            and test(old) else None

    def _result(self, log: Log, file: str, cls: type, request: dict, compute, answers=None):
        value = _store.result(self.path(file), cls, request, compute, log, self.say, answers)
        self.metas[log.files[-1][0]] = value.meta
        return value

    def _grid(self, log: Log, file: str, compute):
        """``compute(path)`` of the grid file ``file``, reused, resumed or replaced (``_store.grid``)."""
        value = _store.grid(self.path(file), compute, log, self.say, main=self.group.is_main)
        if self.group.is_main:
            self.metas[log.files[-1][0]] = value.meta
        return value

    def _caller_meta(self, **extra) -> dict:
        return {**extra, "report": {"subject": self.subject.name, "versions": _store.versions()}}

    # -- the steps -------------------------------------------------------------------------------------

    def _surface(self, log: Log):
        from losslens.landscape.directions import random_directions
        from losslens.landscape.surface import surface_2d

        o, ev = self.options, self.ev
        x = np.linspace(*o.range, o.steps)
        dirs = random_directions(ev.space, ev.w0, 2, normalization="filter", ignore="biasbn", seed=o.seed)
        return self._grid(log, "surface.h5", lambda path: surface_2d(
            ev, ev.w0, dirs, x, x, path=path, progress=self.progress, meta=self._caller_meta()))

    def _interpolation(self, log: Log):
        from losslens.core.checkpoints import load_checkpoint
        from losslens.landscape.interpolation import interpolate

        o, ev, run = self.options, self.ev, self._need_run("interpolation")
        start, end = str(run.checkpoints[0]), str(self.subject.checkpoint)
        w_init = ev.space.flatten(load_checkpoint(start, ev.module_at(ev.w0), unsafe_pickle=o.unsafe_pickle))
        return self._grid(log, "interpolation.h5", lambda path: interpolate(
            ev, w_init.to(ev.w0), ev.w0, steps=o.interpolation_steps, extrapolate=o.extrapolate, names=(start, end),
            path=path, progress=self.progress, meta=self._caller_meta(endpoints=[start, end])))

    def _operator(self):
        from losslens.curvature.operator import HessianOperator

        return HessianOperator(self.ev)

    def _eigenpairs(self, log: Log):
        """The top ``top_k`` eigenpairs (Lanczos, ARPACK's ``tol`` 1e-6); another command's file of this
        evaluation with at least ``top_k`` of them, at this tolerance or tighter, answers: its top ``top_k``."""
        from losslens.curvature.hessian import Eigenpairs, eigenpairs

        o, tol = self.options, 1e-6
        request = {"analysis": "eigenpairs", "k": o.top_k, "which": "largest", "tol": tol, "backend": "losslens",
                   "seed": o.seed, **self._evaluation()}
        answers = self._answers(lambda old: old.which == "largest" and old.tol <= tol and len(old.values) >= o.top_k)
        return self._result(log, "eigenpairs.h5", Eigenpairs, request,
                            lambda: eigenpairs(self._operator(), k=o.top_k, tol=tol, seed=o.seed),
                            lambda old: None if answers(old) is None else _top(old, o.top_k))

    def _trace(self, log: Log):
        from losslens.curvature.trace_estimation import TraceEstimate, trace

        o = self.options
        request = {"analysis": "trace", "method": "hutch++", "n_matvec": o.trace_samples, "backend": "losslens",
                   "seed": o.seed, **self._evaluation()}
        answers = self._answers(lambda old: (old.method, old.n_matvec, old.meta.get("seed"))
                                == ("hutch++", o.trace_samples, o.seed))
        return self._result(log, "trace.h5", TraceEstimate, request,
                            lambda: trace(self._operator(), method="hutch++", n_matvec=o.trace_samples, seed=o.seed),
                            answers)

    def _density(self, log: Log):
        from losslens.curvature.spectrum import Spectrum, density

        o = self.options
        n_lanczos = min(o.lanczos_steps, self.ev.space.size)
        request = {"analysis": "density", "n_vectors": o.density_vectors, "n_lanczos": n_lanczos, "seed": o.seed,
                   "backend": "losslens", **self._evaluation()}
        answers = self._answers(lambda old: (old.meta.get("n_vectors"), old.meta.get("n_lanczos"), old.meta.get("seed"))
                                == (o.density_vectors, n_lanczos, o.seed))
        return self._result(log, "spectrum.h5", Spectrum, request, lambda: density(
            self._operator(), n_vectors=o.density_vectors, n_lanczos=n_lanczos, seed=o.seed), answers)

    def _hessian_plane(self, log: Log):
        """The plane of the top two Hessian eigenvectors (those of ``eigenpairs.h5``), as ``losslens fit``
        makes it by default: unit directions, each signed so that its largest entry is positive."""
        from losslens.landscape.directions import Directions
        from losslens.landscape.surface import surface_2d

        o, ev = self.options, self.ev
        pairs = self.step("eigenpairs")
        vectors = pairs.vectors[:2].double()
        vectors = vectors / vectors.norm(dim=1, keepdim=True)
        largest = vectors.gather(1, vectors.abs().argmax(dim=1, keepdim=True)).squeeze(1)
        vectors = vectors * torch.where(largest < 0, -1.0, 1.0).double()[:, None]
        meta = {"eigenvalues": [float(v) for v in pairs.values[:2]], "residual_norms": pairs.meta["residual_norms"][:2],
                "which": "largest", "k": 2, "seed": o.seed, "tol": pairs.tol, "at": "w0", "n_params": ev.space.size,
                "evaluator": ev.meta(), "cosine": (vectors @ vectors.T).tolist(), "from": "eigenpairs.h5"}
        dirs = Directions(vectors.to(ev.dtype if ev.dtype in (torch.float32, torch.float64) else torch.float32),
                          "hessian", meta)
        x = np.linspace(*o.plane_range, o.plane_steps)
        return self._grid(log, "hessian_plane.h5", lambda path: surface_2d(
            ev, ev.w0, dirs, x, x, path=path, progress=self.progress, meta=self._caller_meta()))

    def _multiscale(self, log: Log):
        from losslens.landscape.wavelets import Multiscale, multiscale

        surface = self.step("surface")
        request = {"analysis": "multiscale", "nonfinite": "fill", "surface": surface_hash(surface)}
        return self._result(log, "multiscale.h5", Multiscale, request, lambda: multiscale(surface, nonfinite="fill"))

    def _topology(self, log: Log):
        from losslens.landscape.topology import Topology, topology

        surface = self.step("surface")
        request = {"analysis": "topology", "surface": surface_hash(surface)}
        return self._result(log, "topology.h5", Topology, request, lambda: topology(surface))

    def _fit(self, log: Log):
        from losslens.landscape.fit import SurfaceFit, fit_surface

        plane = self.step("hessian_plane")
        request = {"analysis": "fit", "model": self.options.fit_model, "surface": surface_hash(plane)}
        return self._result(log, "fit.h5", SurfaceFit, request, lambda: fit_surface(plane, self.options.fit_model))

    def _replay(self, log: Log):
        from losslens.trajectories.objectives import fit_objective, function_objective
        from losslens.trajectories.replay import replay
        from losslens.trajectories.replay_result import Replay

        o = self.options
        if self.replay_on_fit:
            fit = self.step("fit")
            objective = {"fit": fit.model, "parameters": content_hash(fit.params, fit.x, fit.y)}
            make = lambda: fit_objective(fit)  # noqa: E731
        else:
            objective = {"function": "quadratic"}
            make = lambda: function_objective("quadratic")  # noqa: E731
        names = o.replay_optimizers()
        request = {"analysis": "replay", "objective": objective, "optimizers": names, "lr": o.replay_lr,
                   "steps": o.replay_steps, "seed": o.seed}
        return self._result(log, "replay.h5", Replay, request, lambda: replay(
            make(), names, lr=o.replay_lr, steps=o.replay_steps, seed=o.seed))

    def _series(self):
        from losslens.trajectories.series import run_series

        return run_series(self._need_run("trajectory").out, self.ev, name=self.subject.name)

    def _trajectory_pca(self, log: Log):
        from losslens.trajectories.pca import TrajectoryPCA, trajectory_pca

        request = {"analysis": "trajectory_pca", "n_components": 2, **self._run_identity}
        return self._result(log, "trajectory_pca.h5", TrajectoryPCA, request,
                            lambda: trajectory_pca([self._series()], 2))

    def _trajectory_paths(self, log: Log):
        from losslens.trajectories.paths import TrajectoryPaths, trajectory_paths

        pca = self.step("trajectory_pca")
        request = {"analysis": "trajectory", "pca": content_hash(pca.components, pca.origin),
                   "threshold": self.options.threshold, **self._run_identity, **self._evaluation()}
        return self._result(log, "trajectory.h5", TrajectoryPaths, request, lambda: trajectory_paths(
            self.ev, [self._series()], pca, threshold=self.options.threshold,
            meta={"runs": [str(self.subject.run.out)]}))

    def _trajectory_plane(self, log: Log):
        from losslens.trajectories.paths import plane_surface

        pca, paths = self.step("trajectory_pca"), self.step("trajectory_paths")
        return self._grid(log, "trajectory_surface.h5", lambda path: plane_surface(
            self.ev, pca, paths, steps=self.options.trajectory_steps, margin=self.options.margin, path=path,
            progress=self.progress, meta=self._caller_meta(runs=[str(self.subject.run.out)])))

    def _embeddings(self, log: Log):
        from losslens.trajectories.embeddings import Embedding, embed

        o = self.options
        pca = self.step("trajectory_pca")
        out = []
        for method in EMBEDDINGS:
            request = {"analysis": "embedding", "method": method, "perplexity": o.perplexity,
                       "max_iter": o.tsne_max_iter, "seed": o.seed, "pca": content_hash(pca.gram, pca.scores)}
            out.append(self._result(log, f"embedding_{method}.h5", Embedding, request, lambda m=method: embed(
                pca, m, perplexity=o.perplexity, max_iter=o.tsne_max_iter, seed=o.seed)))
        return out

    def _dynamics(self, log: Log):
        from losslens.trajectories.dynamics import Dynamics, dynamics_of_run

        o, run = self.options, self._need_run("dynamics")
        request = {"analysis": "dynamics", "sharpness": o.sharpness, "seed": o.seed, **self._run_identity,
                   **self._evaluation()}
        return self._result(log, "dynamics.h5", Dynamics, request, lambda: dynamics_of_run(
            run.out, self.ev, sharpness=o.sharpness, seed=o.seed, meta={"runs": [str(run.out)]}))

    def _need_run(self, what: str) -> TrainRun:
        if self.subject.run is None:
            raise ConfigError(f"{what} needs a run directory (losslens train --out RUN), not a checkpoint")
        return self.subject.run
