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

import traceback
from dataclasses import dataclass
from pathlib import Path

from losslens.core.train import TrainRun
from losslens.errors import ConfigError
from losslens.report._store import Log, WarningCapture
from losslens.report.options import ReportOptions
from losslens.report.steps import Steps

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


class Analyses(Steps):
    """The steps of one subject (see the module docstring; what each computes: ``steps.py``).

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
