"""Flags and helpers shared by the subcommands: model, data, split, device, checkpoint handling.

A subcommand adds the flags it needs (``add_model_data_args``, ``add_split_args``, ...) and turns
them into API arguments with the helpers below, so every subcommand spells the same thing the same
way: the flags naming what is evaluated make a ``Recipe`` (``recipe_of``), which reads the names a
checkpoint's metadata records only when they are built in (an import string there is never imported).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
from pathlib import Path

from losslens import _io
from losslens.core.batchnorm import BN_MODES
from losslens.core.data import DATASET_NAMES
from losslens.core.evaluator import Evaluator
from losslens.core.losses import LOSS_NAMES, UNITS
from losslens.core.models import MODEL_NAMES
from losslens.core.recipe import DEFAULT_DATA, DEFAULT_MODEL, Recipe
from losslens.core.train import TrainRun
from losslens.errors import ConfigError

MAX_SEED = 2**32 - 1  # the widest range every consumer takes (t-SNE's random_state is a numpy RandomState seed)
DEFAULT_SUBSET = 5000  # samples evaluated by default: a seeded subset of larger sets
SPLIT_CHOICES = ("train", "test", "both")


# -- flags ------------------------------------------------------------------------------------------


def add_model_data_args(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--model-arg``, ``--data``, ``--device``, ``--seed``, ``--threads``."""
    parser.add_argument(
        "--model",
        help=f"built-in model ({', '.join(MODEL_NAMES)}) or import string package.module:factory "
        f"(default: {DEFAULT_MODEL}, or the built-in model a losslens checkpoint records)",
    )
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="option of a built-in model, VALUE in JSON (--model-arg hidden=[128,64]); repeatable")
    parser.add_argument(
        "--data",
        help=f"data set ({', '.join(DATASET_NAMES)}) or import string package.module:function "
        f"(default: {DEFAULT_DATA}, or the built-in data set a losslens checkpoint records)",
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N, ...")
    parser.add_argument("--seed", type=seed, default=0, help=f"random seed, 0 to {MAX_SEED} (default: 0)")
    parser.add_argument("--threads", type=_threads, default="auto", metavar="N|auto",
                        help="intra-op CPU threads of the evaluations (default: auto, measured: one unless more "
                        "are clearly faster)")


def add_split_args(parser: argparse.ArgumentParser, *, default: str = "train", both: bool = True) -> None:
    """``--split`` and ``--subset``."""
    choices = SPLIT_CHOICES if both else SPLIT_CHOICES[:2]
    parser.add_argument("--split", default=default, choices=choices,
                        help=f"data split evaluated{'; both: train and test' if both else ''} (default: {default})")
    parser.add_argument("--subset", type=_subset, default=DEFAULT_SUBSET, metavar="N|all",
                        help=f"evaluate a fixed random subset of N samples, seeded by --seed (default: "
                        f"{DEFAULT_SUBSET}; all: every sample)")


def add_loss_args(parser: argparse.ArgumentParser) -> None:
    """``--loss``, ``--units``, ``--target-key`` and ``--output-key``: what is evaluated, for any model."""
    parser.add_argument("--loss", choices=LOSS_NAMES,
                        help="the loss: cross_entropy, mse, causal_lm (shifted next-token), masked_lm, "
                        "token_classification, or model (the loss the model returns given the labels) (default: by the "
                        "data's task; model for batches of dicts)")
    parser.add_argument("--units", default="auto", choices=UNITS,
                        help="what the loss averages over: samples, targets (labels not -100 nor padding) or "
                        "shifted_targets (a causal LM's) (default: auto, the loss's own rule)")
    parser.add_argument("--target-key", default="labels", metavar="KEY",
                        help="the key of the target in dict batches (default: labels)")
    parser.add_argument("--output-key", metavar="KEY", help="the entry of a dict output holding the logits "
                        "(default: logits)")


def add_unsafe_pickle_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--unsafe-pickle", action="store_true",
                        help="load pickles holding arbitrary Python objects; this can run code from the file: "
                        "only if you trust the file")


def add_default_checkpoint_arg(parser: argparse.ArgumentParser) -> None:
    """An optional positional ``CHECKPOINT``: without it, the landscape commands use the default model."""
    parser.add_argument("checkpoint", metavar="CHECKPOINT", nargs="?",
                        help="checkpoint file (.safetensors, .pt, .pth, .ckpt); default: the default model")


def add_landscape_args(parser: argparse.ArgumentParser, *, bn: bool = True, both: bool = True) -> None:
    """Model, data, split, device and thread flags, ``--unsafe-pickle``, ``--bn``, ``--out``, ``--no-progress``."""
    add_model_data_args(parser)
    add_split_args(parser, both=both)
    add_loss_args(parser)
    add_unsafe_pickle_arg(parser)
    if bn:
        parser.add_argument("--bn", default="eval", choices=BN_MODES,
                            help="BatchNorm: running statistics (eval), batch statistics (batch), or statistics "
                            "re-estimated at every point (recalibrate) (default: eval)")
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"output directory (default: {DEFAULT_OUT})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def set_distributed_run(parser: argparse.ArgumentParser, run) -> None:
    """Make ``run(args)`` the subcommand, run inside torchrun's process group when there is one
    (``process_group``), with ``--dist-timeout``."""
    parser.add_argument("--dist-timeout", type=int_at_least(1), default=300, metavar="SECONDS",
                        help="under torchrun: how long a process may go without answering before the run stops "
                        "(default: 300)")
    parser.set_defaults(func=functools.partial(_in_process_group, run))


def _in_process_group(run, args: argparse.Namespace) -> int:
    from losslens._distributed import process_group

    with process_group(args.dist_timeout):
        return run(args)


def int_at_least(minimum: int):
    """An ``argparse`` type: an integer >= ``minimum`` (argparse reports anything else as a usage error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def finite_float(text: str) -> float:
    """An ``argparse`` type: a finite number (``nan`` and ``inf`` are usage errors)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


finite_float.__name__ = "finite number"


def seed(text: str) -> int:
    """An ``argparse`` type: a random seed, an integer in ``[0, MAX_SEED]``."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to {MAX_SEED}, got {text!r}")
    return value


def _subset(text: str) -> int | None:
    if text == "all":
        return None
    return int_at_least(1)(text)


def _threads(text: str) -> int | str:
    return text if text == "auto" else int_at_least(1)(text)


def checked_range(values, flag: str) -> tuple[float, float]:
    """``(a, b)`` of a ``--range``-like flag, finite and with ``a < b``.

    Raises:
        ConfigError: a reversed, empty or infinite range.
    """
    a, b = (float(v) for v in values)
    if not (abs(a) < float("inf") and abs(b) < float("inf")) or not a < b:
        raise ConfigError(f"{flag} must be two finite numbers A < B, got {a:g} {b:g}")
    return a, b


def parse_key_values(pairs: list[str], flag: str) -> dict:
    """``["k=v", ...]`` as a dict, each value parsed as JSON (else kept as a string).

    Raises:
        ConfigError: an item has no ``=``.
    """
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not (sep and key):
            raise ConfigError(f"{flag} expects KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


# -- what to evaluate -------------------------------------------------------------------------------


def recipe_of(args: argparse.Namespace, checkpoint: str | Path | None = None) -> Recipe:
    """The ``Recipe`` the flags name (``--model``, ``--model-arg``, ``--data``, ``--split``'s first split,
    ``--subset``, ``--seed``, ``--loss``, ``--units``, ``--target-key``, ``--output-key``, ``--bn``, where the
    command has them); a flag left out takes the built-in name ``checkpoint``'s metadata records, else the
    default (``Recipe.from_checkpoint``)."""
    flags = {"model": args.model, "model_kwargs": parse_key_values(args.model_arg, "--model-arg") or None,
             "data": args.data, "split": splits_of(args)[0] if hasattr(args, "split") else None}
    flags |= {name: getattr(args, name, None) for name in ("subset", "seed", "loss", "units", "target_key",
                                                         "output_key", "bn")}
    return Recipe.from_checkpoint(checkpoint, **flags)


def splits_of(args: argparse.Namespace) -> list[str]:
    return ["train", "test"] if args.split == "both" else [args.split]


def evaluators(args: argparse.Namespace, checkpoint: str | Path) -> list[Evaluator]:
    """One evaluator of ``checkpoint`` per split of ``--split``, by the flags' recipe (``recipe_of``)."""
    recipe = recipe_of(args, checkpoint)
    return [recipe.with_split(split).evaluator(checkpoint, unsafe_pickle=args.unsafe_pickle, device=args.device,
                                               threads=args.threads) for split in splits_of(args)]


def describe(ev: Evaluator) -> str:
    """One line: what is evaluated, on which data."""
    meta = ev.meta()
    data, ckpt = meta["data"], meta["checkpoint"] or {}
    subset_note = f", a seeded subset of {data['subset']['of']}" if data.get("subset") else ""
    return (f"evaluating {meta['model']['name'] or meta['model']['class']} at {ckpt.get('label', '?')} on "
            f"{data['name']} {data['split']} split ({data['n_samples']} samples{subset_note}; --subset N|all)")


# -- the default model ------------------------------------------------------------------------------

DEFAULT_OUT = "losslens-out"
DEFAULT_RUN_DIR = "default-model"  # under --out: the run trained when no checkpoint is given
DEFAULT_EPOCHS = 10
DEFAULT_LR = 3e-3


def is_main_process() -> bool:
    """Whether this process writes files and prints: always, unless it is a rank > 0 under torchrun."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def default_run(args: argparse.Namespace) -> TrainRun:
    """The run used when no checkpoint is given: ``--model`` (default mlp) trained on ``--data`` (default
    digits), as ``train_default`` makes it."""
    return train_default(recipe_of(args), Path(args.out), device=args.device, progress=not args.no_progress)


def train_default(recipe: Recipe, out: Path, *, device: str, progress: bool) -> TrainRun:
    """The recipe's model trained on its data for ``DEFAULT_EPOCHS`` epochs into ``out/default-model``, or
    that run again if it is finished.

    It is always trained with seed 0, so it is the same model whatever ``--seed`` (which seeds the
    directions and subsets) says. Under torchrun, rank 0 trains while the others wait for it.
    """
    import torch.distributed as dist

    from losslens.trajectories.training import train_with_dynamics

    run_dir = out / DEFAULT_RUN_DIR
    name, kwargs, data = recipe.model, recipe.model_kwargs, recipe.data
    if is_main_process():
        try:
            run = TrainRun.load(run_dir)
        except ConfigError:
            run = None
        wanted = {"model": name, "model_kwargs": kwargs, "data": data, "epochs": DEFAULT_EPOCHS}
        if run is not None and all(run.metadata.get(k) == v for k, v in wanted.items()) \
                and run.metadata.get("completed_epochs") == DEFAULT_EPOCHS and all(p.is_file() for p in run.checkpoints):
            print(f"no checkpoint given: using the default model, {name} trained on {data}, from {run_dir}")
        else:
            print(f"no checkpoint given: training the default model, {name} on {data} for {DEFAULT_EPOCHS} epochs, "
                  f"into {run_dir}")
            train_with_dynamics(name, data, epochs=DEFAULT_EPOCHS, lr=DEFAULT_LR, seed=0, out=run_dir,
                                model_kwargs=kwargs, device=device, overwrite=True, progress=progress)
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    return TrainRun.load(run_dir)


# -- output -----------------------------------------------------------------------------------------


def write_json(path: str | Path, obj: dict) -> Path:
    """Write ``obj`` as indented JSON (``_io.write_json``: parent directories created, atomically) and say
    so on stdout."""
    path = _io.write_json(path, obj)
    print(f"wrote {path}")
    return path


def say_written(paths) -> None:
    for path in paths:
        print(f"wrote {path}")


def load_surface(path: str | Path):
    """The ``Surface`` a file holds (losslens's or the reference tool's).

    Raises:
        LosslensError: the file is missing or damaged, or holds another kind of result.
    """
    from losslens.errors import LosslensError
    from losslens.landscape.surface import Surface
    from losslens.results import result_kind

    kind = result_kind(path)
    if kind != "surface":
        raise LosslensError(f"{path} holds a losslens {kind} result, not a surface")
    return Surface.load(path)
