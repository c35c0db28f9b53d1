"""Train a model and keep its trajectory: seeded checkpoints and per-epoch losses from the evaluator.

A run directory holds ``step_000000.safetensors`` (the initialization), one checkpoint per epoch
(and every ``save_every_steps`` steps if asked), file names sortable by step, each with its epoch
and step in its safetensors metadata, and ``run.json``, which describes the run and its history.
The per-epoch losses and accuracies are those of the evaluator core (the full train and test sets,
the model in eval mode), so they are the same numbers a landscape through the checkpoints shows.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from losslens._io import write_json
from losslens.checks import check_seed
from losslens.core.checkpoints import save_checkpoint
from losslens.core.data import TensorData, load_dataset
from losslens.core.evaluator import Evaluator
from losslens.core.losses import loss_function, resolve_loss
from losslens.core.models import build_model
from losslens.core.optimizers import make_optimizer
from losslens.core.plan import Plan, resolve_device
from losslens.core.provenance import CheckpointMeta
from losslens.errors import ConfigError

RUN_FILE = "run.json"
DYNAMICS_FILE = "dynamics.h5"


class TrainCallback(Protocol):
    """What ``train`` calls while it trains (``losslens.trajectories.RecordDynamics`` is one). A callback
    only reads: it changes neither the model, its ``.grad``, the optimizer nor a random number generator."""

    def begin(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, train_set: TensorData, loss: str,
              seed: int, out: Path, steps_per_epoch: int) -> None:
        """Once, before the first step, with the model being trained and its optimizer."""

    def step(self, model: nn.Module, loss: torch.Tensor) -> None:
        """After every optimizer step, with the step's mini-batch loss (at the weights before the step)."""

    def epoch(self, model: nn.Module, entry: dict) -> None:
        """After every epoch, with its row of ``run.json`` (``epoch``, ``step``, ``train_loss``, ...)."""


@dataclass(frozen=True, eq=False)
class TrainRun:
    """A training run on disk.

    Attributes:
        out: the run directory.
        checkpoints: checkpoint paths in the order of their steps.
        history: one dict per evaluated epoch (epoch 0 is the initialization): ``epoch``, ``step``,
            ``train_loss``, ``test_loss``, and ``train_accuracy``/``test_accuracy`` for
            classification (``test_*`` only when there is test data).
        metadata: the rest of ``run.json``: model, data, optimizer and its options, seed, ... and
            ``checkpoints`` (``file``, ``epoch``, ``step`` of each).
    """

    out: Path
    checkpoints: tuple[Path, ...]
    history: tuple[dict, ...]
    metadata: dict

    @classmethod
    def load(cls, out_dir: str | os.PathLike) -> "TrainRun":
        """Read the run in ``out_dir`` from its ``run.json``, its checkpoints in the order of their steps.

        Each entry of ``run.json``'s ``checkpoints`` (``file``, ``step``, ``epoch``) is checked before
        any file is read: ``file`` is a name inside the run directory and a regular file (a pipe or
        a device would block a read). A checkpoint's step and epoch are those of its own metadata
        (what the trainer wrote into it); a ``run.json`` step that disagrees is an error, since the
        list then describes other files (an edited or mixed-up run) and either number could be the
        wrong one. Entries without metadata keep ``run.json``'s step. The checkpoints are sorted by
        step, whatever the order of the list, and the history by epoch.

        Raises:
            ConfigError: ``out_dir`` holds no ``run.json``, or it is not one of a training run: not
                JSON, no or an empty ``checkpoints`` list, an entry without a ``file`` or an integer
                ``step``, a file outside the run directory, missing or not a regular file, a step
                that its file's metadata contradicts, or two checkpoints of the same step.
        """
        out = Path(out_dir)
        path = out / RUN_FILE
        if not path.is_file():
            raise ConfigError(f"{out}: no {RUN_FILE}, so not a training run directory")
        try:
            info = json.loads(path.read_text())
            if not isinstance(info, dict):
                raise TypeError(f"it holds a JSON {type(info).__name__}, not an object")
            history = sorted(info.pop("history"), key=lambda h: h["epoch"])
            entries = info["checkpoints"]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ConfigError(f"{path}: not the {RUN_FILE} of a training run ({type(e).__name__}: {e})") from e
        if not isinstance(entries, list) or not entries:
            raise ConfigError(f"{path}: lists no checkpoints (its 'checkpoints' must be a non-empty list)")
        checked = sorted((_checkpoint_entry(out, path, i, entry) for i, entry in enumerate(entries)),
                         key=lambda e: e["step"])
        for a, b in zip(checked, checked[1:]):
            if a["step"] == b["step"]:
                raise ConfigError(f"{path}: {a['file']} and {b['file']} are both checkpoints of step {a['step']}; "
                                  "a run has one checkpoint per step")
        info["checkpoints"] = checked
        return cls(out, tuple(out / c["file"] for c in checked), tuple(history), info)


def _checkpoint_entry(out: Path, run_file: Path, i: int, entry) -> dict:
    """Entry ``i`` of ``run.json``'s checkpoints, checked (see ``TrainRun.load``), with its file's own step
    and epoch."""
    where = f"{run_file}: checkpoint entry {i}"
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or not entry["file"]:
        raise ConfigError(f"{where} ({entry!r}) has no 'file' name")
    name = entry["file"]
    step = entry.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ConfigError(f"{where} ({name}): 'step' must be a non-negative integer, found {step!r}")
    relative = Path(name)
    if relative.is_absolute() or ".." in relative.parts:
        raise ConfigError(f"{where}: {name!r} lies outside the run directory {out}; a run lists its own files")
    file = out / relative
    try:
        mode = file.stat().st_mode  # follows a link; never opens the file
    except OSError as e:
        raise ConfigError(f"{where}: {file}: no such file ({e.strerror})") from None
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{where}: {file} is not a regular file (a directory, pipe or device)")
    stored = CheckpointMeta.read(file)
    if stored.step is not None and stored.step != step:
        raise ConfigError(f"{where}: {RUN_FILE} says step {step} but {file}'s own metadata says step {stored.step}")
    epoch = stored.epoch if stored.epoch is not None else entry.get("epoch")
    if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, (int, float))):
        raise ConfigError(f"{where} ({name}): 'epoch' must be a number, found {epoch!r}")
    return {"file": name, "epoch": None if epoch is None else float(epoch), "step": step}


# long: twenty keyword arguments documented one by one; the body is a few calls to the functions below
def train(
    model: str | nn.Module,
    data: str | TensorData | tuple[TensorData, TensorData] = "digits",
    *,
    optimizer: str = "adam",
    lr: float = 1e-3,
    epochs: int = 10,
    batch_size: int = 64,
    seed: int = 0,
    out: str | os.PathLike,
    save_every_steps: int | None = None,
    optimizer_kwargs: dict | None = None,
    loss: Literal["cross_entropy", "mse"] | None = None,
    weight_decay: float = 0.0,
    model_kwargs: dict | None = None,
    device: str | torch.device = "auto",
    overwrite: bool = False,
    progress: bool = True,
    callbacks: Sequence[TrainCallback] = (),
) -> TrainRun:
    """Train a model with any ``torch.optim`` optimizer, saving its trajectory to ``out``.

    Mini-batch training, ``w <- optimizer step on the mean loss over a batch``, with batches drawn
    by a permutation per epoch from a generator seeded with ``seed``; dropout and the like draw
    from the global RNG, seeded with ``seed`` inside a fork, so the caller's RNG state is left as
    it was and the same arguments give bitwise-identical checkpoints (on the same device).

    Args:
        model: a built-in model name or import string (built by ``build_model`` for the data's
            input shape and outputs, initialized with ``seed``), or a module, which is deep-copied
            and trained from its current weights: the caller's module is never changed.
        data: a data set name or import string (its ``train`` split is trained on, its ``test``
            split evaluated), one ``TensorData`` (train only), or a ``(train, test)`` pair of them.
        optimizer: an optimizer name, case-insensitive: a ``torch.optim`` class (``adam``, ``sgd``,
            ``AdamW``, ``lbfgs``, ...), a preset (``momentum``, ``nesterov``) or a ``pytorch-optimizer``
            name (``lion``); see ``losslens.core.optimizers``.
        lr: the learning rate.
        epochs: passes over the training set.
        batch_size: samples per step (the last batch of an epoch may be smaller).
        seed: seed of the initialization, the shuffling and any randomness of the forward pass.
        out: the run directory.
        save_every_steps: also save a checkpoint every this many optimizer steps.
        optimizer_kwargs: further options of the optimizer (``{"momentum": 0.9}``).
        loss: ``"cross_entropy"`` (classification) or ``"mse"`` (regression); by default the one
            that fits the data's task.
        weight_decay: passed to the optimizer (an error for optimizers without it, unless 0).
        model_kwargs: options of a built-in model (``{"hidden": [128, 64]}``).
        device: ``"auto"`` (CUDA when available) or a torch device.
        overwrite: replace the checkpoints and ``run.json`` of an earlier run in ``out``.
        progress: show a progress bar over the epochs with the latest losses.
        callbacks: called while training (``TrainCallback``): ``losslens.trajectories.RecordDynamics``
            records the training dynamics into ``dynamics.h5`` and ``dynamics.csv``, as
            ``losslens.train`` (``losslens.trajectories.train_with_dynamics``) and ``losslens train`` do.

    Returns:
        The ``TrainRun``; ``run.json`` is rewritten after every epoch, so an interrupted run is
        described up to its last epoch.

    Raises:
        ConfigError: an unknown optimizer, loss, model or data set, options that do not fit, or an
            ``out`` that already holds a run (without ``overwrite``).
    """
    _check_options(epochs=epochs, batch_size=batch_size, lr=lr, save_every_steps=save_every_steps)
    seed = check_seed(seed)
    train_set, test_set, data_name = _datasets(data)
    loss = resolve_loss(loss, train_set)
    device = resolve_device(device)
    model_kwargs = dict(model_kwargs or {})
    net, model_name = _network(model, model_kwargs, train_set, seed)
    net.to(device).train()
    params = [p for p in net.parameters() if p.requires_grad]
    opt, opt_kwargs = make_optimizer(optimizer, params, lr, optimizer_kwargs, weight_decay=weight_decay)
    out = _prepare_out(Path(out), overwrite)  # only once every option is known to be good
    info = _run_info(net, model_name, model_kwargs, data_name, train_set, test_set, opt, opt_kwargs, lr=lr, loss=loss,
                     seed=seed, epochs=epochs, batch_size=batch_size, save_every_steps=save_every_steps, device=device)
    trajectory = _Trajectory(net, out, info, train_set)
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        trajectory.evaluators = _evaluators(net, loss, train_set, test_set, device)
        torch.manual_seed(seed)
        trajectory.save(0)
        trajectory.record(0, 0)
        for callback in callbacks:
            callback.begin(net, opt, train_set=train_set, loss=loss, seed=seed, out=out,
                           steps_per_epoch=info["steps_per_epoch"])
        _epochs(trajectory, opt, loss_function(loss), train_set, device, seed=seed, epochs=epochs,
                batch_size=batch_size, save_every_steps=save_every_steps, callbacks=callbacks, progress=progress)
    return TrainRun.load(out)


def _check_options(*, epochs: int, batch_size: int, lr: float, save_every_steps: int | None) -> None:
    _check_positive(epochs=epochs, batch_size=batch_size, lr=lr)
    if not lr < _FLOAT32_MAX:  # the optimizers pass lr to float32 kernels, which overflow
        raise ConfigError(f"lr must be below {_FLOAT32_MAX:.3g} (the largest float32), got {lr}")
    if save_every_steps is not None:
        _check_positive(save_every_steps=save_every_steps)


def _network(model: str | nn.Module, model_kwargs: dict, train_set: TensorData,
             seed: int) -> tuple[nn.Module, str | None]:
    """``(the module trained, its name)``: built by name for the data's shape and seeded, or a copy of a module."""
    if isinstance(model, str):
        net = build_model(model, input_shape=train_set.input_shape, num_classes=train_set.num_outputs, seed=seed,
                          **model_kwargs)
        return net, model
    if isinstance(model, nn.Module):
        if model_kwargs:
            raise ConfigError("model_kwargs apply only to a model given by name, not to a module")
        return copy.deepcopy(model), None
    raise ConfigError(f"model must be a model name, an import string or an nn.Module, not {type(model).__name__}")


def _run_info(net, model_name, model_kwargs, data_name, train_set, test_set, opt, opt_kwargs, **settings) -> dict:
    """``run.json`` at the start of a run: what is trained, on what, how; the history and checkpoints to come."""
    steps_per_epoch = math.ceil(len(train_set) / settings["batch_size"])
    return {
        "format": "losslens-train-run", "model": model_name,
        "model_class": f"{type(net).__module__}.{type(net).__qualname__}", "model_kwargs": model_kwargs,
        "data": data_name, "task": train_set.task, "input_shape": list(train_set.input_shape),
        "num_outputs": train_set.num_outputs, "n_train": len(train_set),
        "n_test": len(test_set) if test_set is not None else None,
        "optimizer": type(opt).__name__, "optimizer_kwargs": opt_kwargs,
        **{k: settings[k] for k in ("lr", "loss", "seed", "epochs", "batch_size")}, "steps_per_epoch": steps_per_epoch,
        "save_every_steps": settings["save_every_steps"], "device": str(settings["device"]),
        "torch_version": torch.__version__, "completed_epochs": 0, "checkpoints": [], "history": [],
    }


def _evaluators(net: nn.Module, loss: str, train_set: TensorData, test_set: TensorData | None,
                device: torch.device) -> dict:
    """The evaluator core of each split, at the current weights and BatchNorm statistics (buffers included)."""
    metrics = ("accuracy",) if train_set.task == "classification" else ()
    dtype = next((p.dtype for p in net.parameters() if p.is_floating_point()), torch.float32)
    return {split: Evaluator(net, loss, d, metrics=metrics, include_buffers=True, plan=Plan(device=device, dtype=dtype))
            for split, d in (("train", train_set), ("test", test_set)) if d is not None}


class _Trajectory:
    """The checkpoints and ``run.json`` of a run being trained: ``save`` a checkpoint, ``record`` an epoch."""

    def __init__(self, net: nn.Module, out: Path, info: dict, train_set: TensorData):
        self.net, self.out, self.info = net, out, info
        self.steps_per_epoch = info["steps_per_epoch"]
        self.width = max(6, len(str(info["epochs"] * self.steps_per_epoch)))
        self.meta = CheckpointMeta(
            model=info["model"], model_kwargs=info["model_kwargs"], model_class=info["model_class"], data=info["data"],
            split=train_set.split, optimizer=info["optimizer"], optimizer_kwargs=info["optimizer_kwargs"],
            lr=info["lr"], seed=info["seed"],
        )
        self.evaluators: dict = {}

    def save(self, step: int) -> None:
        epoch = step / self.steps_per_epoch
        name = f"step_{step:0{self.width}d}.safetensors"
        meta = dataclasses.replace(self.meta, step=step, epoch=epoch)
        save_checkpoint(self.net, self.out / name, metadata=meta.to_metadata())
        self.info["checkpoints"].append({"file": name, "epoch": epoch, "step": step})

    def record(self, epoch: int, step: int) -> dict:
        """The losses (and accuracies) of every split after ``epoch``, appended to the history of ``run.json``."""
        entry: dict = {"epoch": epoch, "step": step}
        for split, ev in self.evaluators.items():
            res = ev.evaluate(ev.space.flatten(self.net)[None])
            entry[f"{split}_loss"] = float(res.loss[0])
            entry.update({f"{split}_{m}": float(v[0]) for m, v in res.metrics.items()})
        self.info["history"].append(entry)
        self.info["completed_epochs"] = epoch
        write_json(self.out / RUN_FILE, self.info)
        return entry


def _epochs(trajectory: _Trajectory, opt, loss_fn, train_set: TensorData, device: torch.device, *, seed: int,
            epochs: int, batch_size: int, save_every_steps: int | None, callbacks, progress: bool) -> None:
    """Mini-batch steps over ``epochs`` shuffled passes (a permutation per epoch, seeded with ``seed``), a checkpoint
    at the end of each epoch (and every ``save_every_steps`` steps), its losses recorded."""
    net, steps_per_epoch = trajectory.net, trajectory.steps_per_epoch
    x_train, y_train = train_set.x.to(device), train_set.y.to(device)
    generator = torch.Generator().manual_seed(seed)
    step = 0
    with tqdm(range(1, epochs + 1), desc="train", unit="epoch", disable=not progress) as bar:
        for epoch in bar:
            net.train()
            order = torch.randperm(len(train_set), generator=generator).to(device)
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                value = opt.step(_closure(net, opt, loss_fn, x_train[idx], y_train[idx]))  # LBFGS needs a closure
                step += 1
                for callback in callbacks:
                    callback.step(net, value)
                if save_every_steps and step % save_every_steps == 0 and step % steps_per_epoch:
                    trajectory.save(step)
            trajectory.save(step)
            entry = trajectory.record(epoch, step)
            for callback in callbacks:
                callback.epoch(net, entry)
            bar.set_postfix({k: f"{v:.4f}" for k, v in entry.items() if k.endswith("_loss")})


def _closure(net: nn.Module, opt, loss_fn, xb: torch.Tensor, yb: torch.Tensor):
    """The step's closure: the batch's loss, with its gradient (every ``torch.optim`` optimizer takes one)."""
    def closure():
        opt.zero_grad()
        value = loss_fn(net(xb), yb)
        value.backward()
        return value

    return closure


_FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def _check_positive(**values) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ConfigError(f"{name} must be positive, got {value}")


def _datasets(data) -> tuple[TensorData, TensorData | None, str]:
    if isinstance(data, str):
        return load_dataset(data, "train"), load_dataset(data, "test"), data
    if isinstance(data, TensorData):
        return data, None, data.name
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(d, TensorData) for d in data):
        return data[0], data[1], data[0].name
    raise ConfigError(
        f"cannot train on {type(data).__name__}: give a data set name or import string, a TensorData, "
        "or a (train, test) pair of TensorData"
    )


def _prepare_out(out: Path, overwrite: bool) -> Path:
    old = sorted(out.glob("step_*.safetensors")) + [out / n for n in (RUN_FILE, DYNAMICS_FILE, "dynamics.csv")
                                                     if (out / n).exists()]
    if old and not overwrite:
        raise ConfigError(
            f"{out} already holds a training run ({len(old)} files); choose another out directory "
            "or pass overwrite=True (--overwrite) to replace it"
        )
    for path in old:
        path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out
