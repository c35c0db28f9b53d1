"""What a report computes: its sections and the options of every analysis, checked up front.

The defaults are those of the individual commands (``losslens surface``, ``interpolate``, ``hessian``,
``fit``, ``replay``, ``trajectory``, ``dynamics``), so a report reuses the files those commands wrote in
the same output directory, and its numbers are the ones they print. Two exceptions: the report
estimates the Hessian's eigenvalue density (``hessian --density``), and its multiscale analysis fills
non-finite points (``multiscale --fill-nonfinite``) and warns, rather than leaving the section empty.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from losslens.errors import ConfigError

SECTIONS: tuple[str, ...] = ("surface", "interpolation", "hessian", "multiscale", "topology", "fit", "replay",
                             "trajectory", "dynamics", "comparison", "connectivity")
RUN_SECTIONS: tuple[str, ...] = ("interpolation", "trajectory", "dynamics")  # they need a run directory
SEVERAL_SECTIONS: tuple[str, ...] = ("comparison", "connectivity")  # of all subjects together, not of each
SPLITS: tuple[str, ...] = ("train", "test")
REPLAY_OPTIMIZERS: tuple[str, ...] = ("sgd", "momentum", "adam", "lion")  # lion where pytorch-optimizer is installed


@dataclass(frozen=True)
class ReportOptions:
    """Options of the analyses a report runs.

    Attributes:
        model, model_kwargs: the architecture (default: the built-in model a checkpoint records); these
            options up to ``bn`` make the ``Recipe`` of each checkpoint (``recipe``).
        data: the data set (default: the built-in one a checkpoint records, else ``digits``).
        split: ``"train"`` or ``"test"``.
        subset: evaluate a seeded subset of this many samples (``None``: all).
        seed: seeds the subset, the random directions, the Hessian estimators, t-SNE and the replay.
        device: ``"auto"`` (CUDA when available) or a torch device.
        bn: BatchNorm mode, ``"eval"`` (running statistics), ``"batch"`` or ``"recalibrate"``.
        threads: intra-op CPU threads of the evaluations, ``"auto"`` (measured) or a number.
        unsafe_pickle: load pickles holding arbitrary Python objects, which can run code from the
            file (only for files you trust).
        steps, range: the 2D surface's grid, ``steps`` x ``steps`` points on ``range`` squared, along two
            filter-normalized random directions (Li et al. 2018).
        interpolation_steps, extrapolate: the line from the initialization to the checkpoint,
            ``t`` in ``[-extrapolate, 1 + extrapolate]``.
        top_k, trace_samples, density, density_vectors, lanczos_steps: the Hessian's top eigenpairs
            (Lanczos; at least 2, whose eigenvectors span the fit's plane), its trace (Hutch++), and its
            eigenvalue density (stochastic Lanczos quadrature) when ``density``.
        plane_steps, plane_range: the plane of the top two Hessian eigenvectors that the fit describes.
        fit_model: the closed form fitted there (``losslens.landscape.fit.MODELS``).
        optimizers, replay_lr, replay_steps: the optimizers replayed on the fit.
        trajectory_steps, threshold, margin, perplexity, tsne_max_iter: the PCA plane of the run's
            trajectory and its embeddings (as ``losslens trajectory``).
        sharpness: the top Hessian eigenvalue at every checkpoint of the run (dynamics): ``None``
            computes it when its bounded cost allows (``dynamics_of_run``), ``True`` always, ``False`` never.
        connect_paths, connect_points, bend_updates, bend_lr: the paths between the subjects (two or more),
            their values of ``t`` and their bends' training, as ``losslens connect`` (``--paths``, ``--points``,
            ``--bend-updates``, ``--lr``).
    """

    model: str | None = None
    model_kwargs: dict | None = None
    data: str | None = None
    split: str = "train"
    subset: int | None = 5000
    seed: int = 0
    device: str = "auto"
    bn: str = "eval"
    threads: int | str = "auto"
    unsafe_pickle: bool = False
    steps: int = 41
    range: tuple[float, float] = (-1.0, 1.0)
    interpolation_steps: int = 41
    extrapolate: float = 0.5
    top_k: int = 2
    trace_samples: int = 100
    density: bool = True
    density_vectors: int = 4
    lanczos_steps: int = 80
    plane_steps: int = 21
    plane_range: tuple[float, float] = (-1.0, 1.0)
    fit_model: str = "gaussian"
    optimizers: tuple[str, ...] | None = None
    replay_lr: float = 0.05
    replay_steps: int = 200
    trajectory_steps: int = 41
    threshold: float = 0.1
    margin: float = 0.1
    perplexity: float | None = None
    tsne_max_iter: int = 1000
    sharpness: bool | None = None
    connect_paths: tuple[str, ...] = ("line", "bezier")
    connect_points: int = 61
    bend_updates: int = 200
    bend_lr: float = 0.05

    def __post_init__(self):
        from losslens.connectivity.connect import PATHS
        from losslens.core.batchnorm import BN_MODES
        from losslens.landscape.fit import MODELS

        _choice("split", self.split, SPLITS)
        _choice("bn", self.bn, BN_MODES)
        _choice("fit_model", self.fit_model, MODELS)
        for name, least in (("steps", 2), ("interpolation_steps", 2), ("top_k", 2), ("trace_samples", 4),
                            ("density_vectors", 1), ("lanczos_steps", 1), ("plane_steps", 4), ("replay_steps", 1),
                            ("trajectory_steps", 2), ("tsne_max_iter", 250), ("connect_points", 3),
                            ("bend_updates", 1)):
            _integer(name, getattr(self, name), least)
        if self.subset is not None:
            _integer("subset", self.subset, 1)
        if self.threads != "auto":
            _integer("threads", self.threads, 1)
        for name in ("range", "plane_range"):
            object.__setattr__(self, name, _range(name, getattr(self, name)))
        for name, value in (("extrapolate", self.extrapolate), ("margin", self.margin)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
        for name, value in (("replay_lr", self.replay_lr), ("threshold", self.threshold), ("bend_lr", self.bend_lr)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number, got {value!r}")
        if self.perplexity is not None and not self.perplexity > 0:
            raise ConfigError(f"perplexity must be positive, got {self.perplexity!r}")
        if self.optimizers is not None:
            if isinstance(self.optimizers, str) or not self.optimizers:
                raise ConfigError(f"optimizers must be a non-empty sequence of names, got {self.optimizers!r}")
            object.__setattr__(self, "optimizers", tuple(self.optimizers))
        if isinstance(self.connect_paths, str) or not self.connect_paths:
            raise ConfigError(f"connect_paths must be a non-empty sequence of names, got {self.connect_paths!r}")
        for name in self.connect_paths:
            _choice("connect_paths", name, PATHS)
        object.__setattr__(self, "connect_paths", tuple(self.connect_paths))

    def recipe(self, checkpoint):
        """What the report evaluates at ``checkpoint``: the options' model, data, split, subset, seed and
        BatchNorm mode, over the built-in names the checkpoint records (``Recipe.from_checkpoint``)."""
        from losslens.core.recipe import Recipe

        return Recipe.from_checkpoint(checkpoint, model=self.model, model_kwargs=self.model_kwargs, data=self.data,
                                      split=self.split, subset=self.subset, seed=self.seed, bn=self.bn)

    def replay_optimizers(self) -> tuple[str, ...]:
        """The optimizers replayed: those given, else ``REPLAY_OPTIMIZERS`` that are installed."""
        from losslens.core.optimizers import installed

        return self.optimizers or tuple(installed(REPLAY_OPTIMIZERS))

    def as_dict(self) -> dict:
        return asdict(self)


def check_sections(sections) -> tuple[str, ...]:
    """The sections asked for, in the report's order (``None``: all of them).

    Raises:
        ConfigError: an unknown section (the valid ones are listed), or none at all.
    """
    if sections is None:
        return SECTIONS
    if isinstance(sections, str):
        sections = [sections]
    names = [n.strip() for s in sections for n in str(s).split(",") if n.strip()]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise ConfigError(f"unknown report section {unknown[0]!r}; valid: {', '.join(SECTIONS)}")
    if not names:
        raise ConfigError(f"no report section asked for; valid: {', '.join(SECTIONS)}")
    return tuple(n for n in SECTIONS if n in names)


def _choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; valid: {', '.join(map(str, choices))}")


def _integer(name: str, value, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"{name} must be an integer >= {least}, got {value!r}")


def _range(name: str, value) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be two numbers A < B, got {value!r}") from None
    if not (math.isfinite(a) and math.isfinite(b) and a < b):
        raise ConfigError(f"{name} must be two finite numbers A < B, got {a:g} {b:g}")
    return a, b
