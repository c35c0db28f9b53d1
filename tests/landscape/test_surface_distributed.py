"""Tests of the torch.distributed scale-out of losslens/landscape/surface.py (two CPU ranks, gloo)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from losslens._distributed import init_distributed_from_env
from losslens.landscape.surface import Surface, surface_2d

WORKER = Path(__file__).with_name("_surface_worker.py")

pytestmark = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available in this torch build",
)


def _worker_module():
    spec = importlib.util.spec_from_file_location("_surface_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_two_ranks_write_the_same_surface_as_one_process(tmp_path):
    path = tmp_path / "shared.h5"
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           str(WORKER), str(path), str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    worker = _worker_module()
    ev, dirs = worker.setup()
    single = surface_2d(ev, ev.w0, dirs, worker.X_COORDS, worker.Y_COORDS, progress=False, meta=worker.META)
    shared = Surface.load(path)
    assert shared.complete and shared.meta["world_size"] == 2 and shared.meta["n_done"] == 20
    np.testing.assert_allclose(shared.loss, single.loss, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(shared.metrics["accuracy"], single.metrics["accuracy"], rtol=1e-6, atol=1e-7)
    # chunks of 3 dealt in rounds: rank 0 takes points 0-2, 6-8, 12-14, 18-19, rank 1 the others
    assert [int((tmp_path / f"points{r}.txt").read_text()) for r in (0, 1)] == [11, 9]
    for rank in (0, 1):  # every rank returns the same full surface
        np.testing.assert_array_equal(np.load(tmp_path / f"rank{rank}.npy"), shared.loss)
        assert "direction vectors" in (tmp_path / f"mismatch{rank}.txt").read_text()


def test_a_rank_that_stops_answering_ends_the_run_naming_it(tmp_path):
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           str(WORKER), str(tmp_path / "hung.h5"), str(tmp_path), "hang"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=100, env=env)
    assert done.returncode != 0
    message = (tmp_path / "timeout.txt").read_text()
    assert message.startswith("DistributedTimeout: a process of the torchrun group stopped responding (timeout 5 s")
    assert "Ranks 1 failed to pass" in message  # the rank that did not arrive is named


def test_without_torchrun_there_is_no_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert init_distributed_from_env() is False
