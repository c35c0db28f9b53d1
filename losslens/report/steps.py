"""What each step of a report computes: the methods ``_<step>`` of ``Steps``, which ``Analyses`` runs.

A grid step (``surface``, ``interpolation``, ``hessian_plane``, ``trajectory_plane``) computes its
surface into its grid file, which the surface functions resume when it is of the same grid. Every other
step builds a ``losslens.core.reuse.Call``: the analysis function it runs with its arguments, from which
the request its file is reused for comes (``_store.result``), so every argument of the call is in the
request. Inputs without a fingerprint of their own are named: a run by its checkpoints' hashes, a
replay's objective by the request of the call that makes it.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from losslens.core import reuse
from losslens.core.train import TrainRun
from losslens.errors import ConfigError
from losslens.report import _store
from losslens.report._store import Log

EMBEDDINGS: tuple[str, ...] = ("pca", "tsne")


def _top(pairs, k: int):
    """The top ``k`` of ``Eigenpairs`` sorted by decreasing eigenvalue, with their residual norms."""
    return replace(pairs, values=pairs.values[:k], vectors=pairs.vectors[:k],
                   meta={**pairs.meta, "residual_norms": pairs.meta["residual_norms"][:k]})


class Steps:
    """The steps of one subject; ``Analyses`` gives ``subject``, ``options``, ``ev`` (the evaluator),
    ``group``, ``progress``, ``metas``, ``replay_on_fit``, ``step(name)`` and ``say(text)``."""

    def path(self, name: str) -> Path:
        return self.subject.out / name

    # -- files and requests ----------------------------------------------------------------------------

    def _result(self, log: Log, file: str, cls: type, call: reuse.Call, **how):
        """``call``'s result in the file ``file``, reused when it answers (``_store.result``; ``how``: its
        ``covers``, ``narrow`` and ``answers``)."""
        value = _store.result(self.path(file), cls, call, log, self.say, **how)
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

    @functools.cached_property
    def _run_identity(self) -> dict:
        """The run's checkpoints, by name and content hash (the fingerprint of the run's series)."""
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
        return reuse.canonical(theirs) == reuse.canonical({k: ours[k] for k in keys} | {
            "dtype": ours["plan"]["dtype"], "sha256": (ours["checkpoint"] or {}).get("sha256")})

    def _another_commands(self, call: reuse.Call, stored, covers=None, narrow=None):
        """``answers`` for ``_store.result``: another command's Hessian result of this evaluation (by
        losslens) answers when its request, as its fields ``stored(old)`` tell it (the others as asked),
        answers ``call``'s under the same cover rules; it is given as it is, or ``narrow``-ed."""
        asked = call.request()

        def answers(old):
            if old.meta.get("backend") != "losslens" or not self._same_evaluation(old.meta):
                return None
            if not reuse.answers({**asked, **reuse.canonical(stored(old))}, asked, covers):
                return None
            return old if narrow is None else narrow(old)

        return answers

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
        """The top ``top_k`` eigenpairs (Lanczos, ARPACK's ``tol`` 1e-6). A file of this evaluation holding at
        least ``top_k`` of them, at this tolerance or tighter (the cover rules of ``k`` and ``tol``), answers
        with its top ``top_k``; another command's file does so at any seed."""
        from losslens.curvature.hessian import Eigenpairs, eigenpairs

        o = self.options
        call = reuse.Call(eigenpairs, self._operator(), o.top_k, tol=1e-6, seed=o.seed)
        how = {"covers": {"k": reuse.AT_LEAST, "tol": reuse.AT_MOST}, "narrow": lambda old: _top(old, o.top_k)}
        found = lambda old: {"k": len(old.values), "which": old.which, "tol": old.tol}  # noqa: E731
        return self._result(log, "eigenpairs.h5", Eigenpairs, call, **how,
                            answers=self._another_commands(call, found, **how))

    def _trace(self, log: Log):
        from losslens.curvature.trace_estimation import TraceEstimate, trace

        o = self.options
        call = reuse.Call(trace, self._operator(), method="hutch++", n_matvec=o.trace_samples, seed=o.seed)
        found = lambda old: {"method": old.method, "n_matvec": old.n_matvec, "seed": old.meta.get("seed")}  # noqa: E731
        return self._result(log, "trace.h5", TraceEstimate, call, answers=self._another_commands(call, found))

    def _density(self, log: Log):
        from losslens.curvature.spectrum import Spectrum, density

        o = self.options
        call = reuse.Call(density, self._operator(), n_vectors=o.density_vectors,
                          n_lanczos=min(o.lanczos_steps, self.ev.space.size), seed=o.seed)
        found = lambda old: {k: old.meta.get(k) for k in ("n_vectors", "n_lanczos", "seed")}  # noqa: E731
        return self._result(log, "spectrum.h5", Spectrum, call, answers=self._another_commands(call, found))

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

        call = reuse.Call(multiscale, self.step("surface"), nonfinite="fill")
        return self._result(log, "multiscale.h5", Multiscale, call)

    def _topology(self, log: Log):
        from losslens.landscape.topology import Topology, topology

        return self._result(log, "topology.h5", Topology, reuse.Call(topology, self.step("surface")))

    def _fit(self, log: Log):
        from losslens.landscape.fit import SurfaceFit, fit_surface

        call = reuse.Call(fit_surface, self.step("hessian_plane"), self.options.fit_model)
        return self._result(log, "fit.h5", SurfaceFit, call)

    def _replay(self, log: Log):
        """The optimizers replayed on the fit (or the analytic quadratic), named by the call that makes it."""
        from losslens.trajectories.objectives import fit_objective, function_objective
        from losslens.trajectories.replay import replay
        from losslens.trajectories.replay_result import Replay

        o = self.options
        made = reuse.Call(fit_objective, self.step("fit")) if self.replay_on_fit else \
            reuse.Call(function_objective, "quadratic")
        call = reuse.Call(replay, made(), o.replay_optimizers(), lr=o.replay_lr, steps=o.replay_steps, seed=o.seed)
        return self._result(log, "replay.h5", Replay, call.naming(objective=made.request()))

    def _series(self):
        from losslens.trajectories.series import run_series

        return run_series(self._need_run("trajectory").out, self.ev, name=self.subject.name)

    def _trajectory_pca(self, log: Log):
        from losslens.trajectories.pca import TrajectoryPCA, trajectory_pca

        call = reuse.Call(trajectory_pca, [self._series()], 2).naming(runs=[self._run_identity])
        return self._result(log, "trajectory_pca.h5", TrajectoryPCA, call)

    def _trajectory_paths(self, log: Log):
        from losslens.trajectories.paths import TrajectoryPaths, trajectory_paths

        call = reuse.Call(trajectory_paths, self.ev, [self._series()], self.step("trajectory_pca"),
                          threshold=self.options.threshold, meta={"runs": [str(self.subject.run.out)]})
        return self._result(log, "trajectory.h5", TrajectoryPaths, call.naming(runs=[self._run_identity]))

    def _trajectory_plane(self, log: Log):
        from losslens.trajectories.paths import plane_surface

        pca, paths = self.step("trajectory_pca"), self.step("trajectory_paths")
        return self._grid(log, "trajectory_surface.h5", lambda path: plane_surface(
            self.ev, pca, paths, steps=self.options.trajectory_steps, margin=self.options.margin, path=path,
            progress=self.progress, meta=self._caller_meta(runs=[str(self.subject.run.out)])))

    def _embeddings(self, log: Log):
        from losslens.trajectories.embeddings import Embedding, embed

        o, pca = self.options, self.step("trajectory_pca")
        return [self._result(log, f"embedding_{method}.h5", Embedding, reuse.Call(
            embed, pca, method, perplexity=o.perplexity, max_iter=o.tsne_max_iter, seed=o.seed))
            for method in EMBEDDINGS]

    def _dynamics(self, log: Log):
        from losslens.trajectories.dynamics import Dynamics, dynamics_of_run

        o, run = self.options, self._need_run("dynamics")
        call = reuse.Call(dynamics_of_run, run.out, self.ev, sharpness=o.sharpness, seed=o.seed,
                          meta={"runs": [str(run.out)]})
        return self._result(log, "dynamics.h5", Dynamics, call.naming(run_dir=self._run_identity))

    def _need_run(self, what: str) -> TrainRun:
        if self.subject.run is None:
            raise ConfigError(f"{what} needs a run directory (losslens train --out RUN), not a checkpoint")
        return self.subject.run
