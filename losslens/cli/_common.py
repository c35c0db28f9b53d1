"""Flags and helpers shared by the subcommands: model, data, device, seed and checkpoint handling.

A subcommand adds the flags it needs (``add_model_data_args``, ``add_checkpoint_args``,
``add_split_args``) and turns them into API arguments with the helpers below, so every subcommand
spells the same thing the same way.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from torch import nn

from losslens.core._batchnorm import BN_MODES
from losslens.core.checkpoints import load_metadata, load_model
from losslens.core.data import DATASET_NAMES, SPLITS, TensorData, load_dataset, subset
from losslens.core.evaluator import Evaluator
from losslens.core.models import MODEL_NAMES
from losslens.core.train import TrainRun, resolve_loss, train
from losslens.errors import CheckpointError, ConfigError

DEFAULT_MODEL = "mlp"
DEFAULT_DATA = "digits"


def add_model_data_args(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--model-arg``, ``--data``, ``--device``, ``--seed``."""
    parser.add_argument(
        "--model",
        help=f"built-in model ({', '.join(MODEL_NAMES)}) or import string package.module:factory "
        f"(default: {DEFAULT_MODEL}, or the model a losslens checkpoint records)",
    )
    parser.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="option of a built-in model, VALUE in JSON (--model-arg hidden=[128,64]); repeatable",
    )
    parser.add_argument(
        "--data",
        help=f"data set ({', '.join(DATASET_NAMES)}) or import string package.module:function "
        f"(default: {DEFAULT_DATA}, or the data a losslens checkpoint records)",
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N, ...")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


def add_default_checkpoint_arg(parser: argparse.ArgumentParser) -> None:
    """An optional positional ``CHECKPOINT``: without it, the landscape commands use the default model."""
    parser.add_argument("checkpoint", metavar="CHECKPOINT", nargs="?",
                        help="checkpoint file (.safetensors, .pt, .pth, .ckpt); default: the default model")


def add_checkpoint_args(parser: argparse.ArgumentParser) -> None:
    """The positional ``CHECKPOINT`` and ``--unsafe-pickle``."""
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint file (.safetensors, .pt, .pth, .ckpt)")
    add_unsafe_pickle_arg(parser)


def add_unsafe_pickle_arg(parser: argparse.ArgumentParser) -> None:
    """``--unsafe-pickle``."""
    parser.add_argument(
        "--unsafe-pickle",
        action="store_true",
        help="load pickles holding arbitrary Python objects; this can run code from the file: "
        "only if you trust the file",
    )


def add_split_args(parser: argparse.ArgumentParser) -> None:
    """``--split`` and ``--subset``."""
    parser.add_argument("--split", default="test", help=f"data split: {', '.join(SPLITS)} (default: test)")
    parser.add_argument("--subset", type=int, metavar="N", help="a fixed random subset of N samples (seeded by --seed)")


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


def checkpoint_metadata(args: argparse.Namespace) -> dict[str, str]:
    """The metadata of ``args.checkpoint`` if it is a safetensors file with some, else ``{}``."""
    try:
        return load_metadata(args.checkpoint)
    except CheckpointError:
        return {}


def model_spec(args: argparse.Namespace, meta: dict[str, str] | None = None) -> tuple[str, dict]:
    """``(model name, model kwargs)``: from the flags, else from checkpoint metadata, else the default."""
    meta = meta or {}
    kwargs = parse_key_values(args.model_arg, "--model-arg")
    if args.model:
        return args.model, kwargs
    if meta.get("model"):
        return meta["model"], kwargs or json.loads(meta.get("model_kwargs") or "{}")
    return DEFAULT_MODEL, kwargs


def data_name(args: argparse.Namespace, meta: dict[str, str] | None = None) -> str:
    """The data set: from ``--data``, else from checkpoint metadata, else the default."""
    return args.data or (meta or {}).get("data") or DEFAULT_DATA


def load_data(args: argparse.Namespace, meta: dict[str, str] | None = None) -> TensorData:
    """The ``--split`` of the data set, cut to ``--subset`` samples."""
    data = load_dataset(data_name(args, meta), args.split)
    return subset(data, args.subset, seed=args.seed)


def model_from_checkpoint(
    args: argparse.Namespace, data: TensorData, meta: dict[str, str] | None = None
) -> tuple[nn.Module, str, dict]:
    """Build the model for ``data`` and load ``args.checkpoint`` into it (the model is our own).

    Returns:
        ``(model, model name, model kwargs)``.
    """
    name, kwargs = model_spec(args, meta)
    model = load_model(args.checkpoint, name, input_shape=data.input_shape, num_classes=data.num_outputs,
                       unsafe_pickle=args.unsafe_pickle, **kwargs)
    return model, name, kwargs


def write_json(path: str | Path, obj: dict) -> Path:
    """Write ``obj`` as indented JSON (parent directories created) and say so on stdout."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    print(f"wrote {path}")
    return path


# -- the landscape commands (surface, interpolate, hessian, plot) ---------------------------------

DEFAULT_OUT = "losslens-out"
DEFAULT_RUN_DIR = "default-model"  # under --out: the run trained when no checkpoint is given
DEFAULT_EPOCHS = 10
DEFAULT_LR = 3e-3


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


def add_landscape_args(parser: argparse.ArgumentParser, *, bn: bool = True) -> None:
    """Model, data, split and device flags, ``--unsafe-pickle``, ``--bn``, ``--out`` and ``--no-progress``."""
    add_model_data_args(parser)
    add_split_args(parser)
    add_unsafe_pickle_arg(parser)
    if bn:
        parser.add_argument("--bn", default="eval", choices=BN_MODES,
                            help="BatchNorm: running statistics (eval), batch statistics (batch), or statistics "
                            "re-estimated at every point (recalibrate) (default: eval)")
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"output directory (default: {DEFAULT_OUT})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def is_main_process() -> bool:
    """Whether this process writes files and prints: always, unless it is a rank > 0 under torchrun."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def default_run(args: argparse.Namespace) -> TrainRun:
    """The run used when no checkpoint is given: ``--model`` (default mlp) trained on ``--data`` (default
    digits) for ``DEFAULT_EPOCHS`` epochs into ``OUT/default-model``, or that run again if it is finished.

    It is always trained with seed 0, so it is the same model whatever ``--seed`` (which seeds the
    directions and subsets) says. Under torchrun, rank 0 trains while the others wait for it.
    """
    import torch.distributed as dist

    run_dir = Path(args.out) / DEFAULT_RUN_DIR
    name, kwargs = model_spec(args)
    data = data_name(args)
    if is_main_process():
        try:
            run = TrainRun.load(run_dir)
        except ConfigError:
            run = None
        recipe = {"model": name, "model_kwargs": kwargs, "data": data, "epochs": DEFAULT_EPOCHS}
        if run is not None and all(run.metadata.get(k) == v for k, v in recipe.items()) \
                and run.metadata.get("completed_epochs") == DEFAULT_EPOCHS and all(p.is_file() for p in run.checkpoints):
            print(f"no checkpoint given: using the default model, {name} trained on {data}, from {run_dir}")
        else:
            print(f"no checkpoint given: training the default model, {name} on {data} for {DEFAULT_EPOCHS} epochs, "
                  f"into {run_dir}")
            train(name, data, epochs=DEFAULT_EPOCHS, lr=DEFAULT_LR, seed=0, out=run_dir, model_kwargs=kwargs,
                  device=args.device, overwrite=True, progress=not args.no_progress)
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    return TrainRun.load(run_dir)


def landscape_evaluator(args: argparse.Namespace) -> tuple[Evaluator, nn.Module, dict]:
    """The evaluator of ``args.checkpoint`` on the chosen data, by the data's loss (and accuracy).

    Returns:
        ``(evaluator, model, provenance)``: the model holds the checkpoint (our own copy), and the
        provenance (model, data, checkpoint) goes into every result's metadata.
    """
    meta = checkpoint_metadata(args)
    data = load_data(args, meta)
    model, name, kwargs = model_from_checkpoint(args, data, meta)
    metrics = ("accuracy",) if data.task == "classification" else ()
    ev = Evaluator(model, resolve_loss(None, data), data, device=args.device, bn=getattr(args, "bn", "eval"),
                   metrics=metrics)
    provenance = {
        "model": name,
        "model_kwargs": kwargs,
        "data": {"name": data.name, "split": data.split, "subset": args.subset},
        "checkpoint": str(args.checkpoint),
    }
    return ev, model, provenance


def save_figure(fig, path: str | Path) -> Path:
    """Save a matplotlib figure as a PNG and say so on stdout."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    print(f"wrote {path}")
    return path
