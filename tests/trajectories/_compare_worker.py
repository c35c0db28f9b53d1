"""Run by tests/trajectories/test_optimizer_comparison.py, under torchrun (2 ranks) or alone: one small comparison.

Usage: python [-m torch.distributed.run --nproc_per_node=2 --standalone] _compare_worker.py OUT_DIR
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

from losslens._distributed import init_distributed_from_env
from losslens.trajectories.optimizer_comparison import compare_optimizers

OPTIMIZERS = ("sgd", "adam", "momentum")


def main(out: str) -> None:
    distributed = init_distributed_from_env()
    rank = torch.distributed.get_rank() if distributed else 0
    training = importlib.import_module("losslens.trajectories.training")
    trained = []
    original = training.train_with_dynamics

    def counting(model, data, **kwargs):
        trained.append(kwargs["optimizer"])
        return original(model, data, **kwargs)

    training.train_with_dynamics = counting
    comparison, surface = compare_optimizers(
        list(OPTIMIZERS), out=out, epochs=2, model_kwargs={"hidden": [8]}, steps=(5, 4), progress=False,
        surface_path=Path(out) / "surface.h5", device="cpu")
    (Path(out) / f"trained{rank}.json").write_text(json.dumps(trained))
    if rank == 0:
        comparison.save(Path(out) / "comparison.h5")
        np.save(Path(out) / "surface.npy", surface.loss)
    if distributed:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
