"""``losslens report`` in-process and under torchrun: its flags, its files, the default model, exit statuses."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from losslens.cli import _common
from losslens.cli.main import build_parser, main
from losslens.landscape.surface import Surface
from losslens.report import ReportOptions

FAST = ["--subset", "100", "--device", "cpu", "--threads", "1", "--no-progress", "--steps", "9", "--plane-steps", "5",
        "--trace-samples", "8", "--density-vectors", "1", "--lanczos-steps", "10", "--replay-updates", "20"]
ROOT = Path(__file__).resolve().parents[2]


def test_report_of_a_run_writes_the_page_and_the_result_files(run_dir, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["report", str(run_dir), "--out", str(out), "--sections", "surface,hessian", "topology"] + FAST) == 0
    stdout = capsys.readouterr().out
    assert "[surface] 2D loss surface" in stdout and "[topology] Topology: basins and loops" in stdout
    for name in ("surface.h5", "eigenpairs.h5", "trace.h5", "spectrum.h5", "topology.h5", "report.json"):
        assert f"wrote {out / name}" in stdout and (out / name).stat().st_size > 0
    assert f"wrote {out / 'report.html'} (" in stdout
    assert Surface.load(out / "surface.h5").shape == (9, 9)
    assert main(["report", str(run_dir), "--out", str(out), "--sections", "surface", "hessian", "topology",
                 "--skip", "hessian"] + FAST) == 0
    stdout = capsys.readouterr().out
    assert "[hessian]" not in stdout and f"reused {out / 'surface.h5'}" in stdout


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files(out: Path) -> dict[str, str]:
    """Each result file the report shows, with what it did with it (from report.json)."""
    report = json.loads((out / "report.json").read_text())
    return {Path(f["path"]).name: f["status"] for s in report["sections"] for f in s["files"]
            if f["path"].endswith(".h5")}


TINY_CLI = ["--subset", "100", "--device", "cpu", "--threads", "1", "--no-progress"]


def test_report_keeps_another_commands_surface_of_another_grid_and_reuses_one_of_its_grid(run_dir, tmp_path):
    ckpt, out = str(sorted(run_dir.glob("*.safetensors"))[-1]), tmp_path / "x"
    assert main(["surface", ckpt, "--steps", "5", "--out", str(out)] + TINY_CLI) == 0
    before = _sha(out / "surface.h5")
    assert main(["report", ckpt, "--out", str(out), "--sections", "surface"] + FAST[:-2] + ["--steps", "4"]) == 0
    assert _sha(out / "surface.h5") == before and _files(out) == {"report-surface.h5": "computed"}
    assert Surface.load(out / "report-surface.h5").shape == (4, 4)
    assert main(["report", ckpt, "--out", str(out), "--sections", "surface"] + FAST[:-2] + ["--steps", "5"]) == 0
    assert _sha(out / "surface.h5") == before and _files(out) == {"surface.h5": "reused"}


def test_report_takes_the_top_k_of_hessians_eigenpairs_and_leaves_the_file(run_dir, tmp_path):
    from losslens.curvature.hessian import Eigenpairs

    ckpt, out = str(sorted(run_dir.glob("*.safetensors"))[-1]), tmp_path / "h"
    assert main(["hessian", ckpt, "--top-k", "4", "--trace-samples", "8", "--out", str(out)] + TINY_CLI) == 0
    before = {name: _sha(out / name) for name in ("eigenpairs.h5", "trace.h5", "hessian.json")}
    assert main(["report", ckpt, "--out", str(out), "--sections", "hessian", "--no-density"] + FAST) == 0
    assert {name: _sha(out / name) for name in before} == before
    assert _files(out) == {"eigenpairs.h5": "reused", "trace.h5": "reused"}
    stored = Eigenpairs.load(out / "eigenpairs.h5").values.tolist()
    report = json.loads((out / "report.json").read_text())
    rows = next(t["rows"] for s in report["sections"] for t in s["tables"] if t["caption"] == "Top eigenvalues")
    assert len(stored) == 4 and [r["eigenvalue"] for r in rows] == stored[:2]
    assert json.loads((out / "hessian.json").read_text())["eigenvalues"] == stored


def test_report_of_a_run_into_its_own_folder_keeps_the_dynamics_recorded_in_training(run_dir, tmp_path):
    from losslens.trajectories.dynamics import Dynamics

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    recorded = Dynamics.load(run / "dynamics.h5")
    before = _sha(run / "dynamics.h5")
    assert main(["report", str(run), "--out", str(run), "--sections", "dynamics"] + FAST) == 0
    assert _sha(run / "dynamics.h5") == before and _files(run) == {"report-dynamics.h5": "computed"}
    computed = Dynamics.load(run / "report-dynamics.h5")
    assert len(computed.rows()) == len(list(run.glob("step_*.safetensors"))) == 3
    assert len(recorded.rows()) != 3  # the training's own rows, kept


def test_report_without_input_trains_the_default_model_first(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(_common, "DEFAULT_EPOCHS", 1)
    out = tmp_path / "d"
    assert main(["report", "--out", str(out), "--sections", "interpolation", "dynamics"] + FAST) == 0
    stdout = capsys.readouterr().out
    assert "training the default model, mlp on digits for 1 epochs" in stdout
    assert "default-model: mlp" in stdout and (out / "interpolation.h5").is_file() and (out / "dynamics.h5").is_file()
    assert "losslens report: default-model" in (out / "report.html").read_text(encoding="utf-8")


def test_bad_flags_are_one_line_errors(run_dir, tmp_path, capsys):
    assert main(["report", str(run_dir), "--out", str(tmp_path), "--sections", "surfaces"]) == 2
    assert "unknown report section 'surfaces'; valid: surface, interpolation, hessian" in capsys.readouterr().err
    assert main(["report", str(run_dir), "--out", str(tmp_path), "--sections", "surface", "--skip", "surface"]) == 2
    assert "--skip leaves no section to show" in capsys.readouterr().err
    assert main(["report", str(run_dir), "--top-k", "1"]) == 2
    assert "--top-k: expected an integer >= 2" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nothing"), "--out", str(tmp_path)]) == 2
    assert "no such checkpoint file or run directory" in capsys.readouterr().err


def test_a_failed_analysis_gives_exit_status_1_after_writing_the_page(run_dir, tmp_path, capsys, monkeypatch):
    topology_module = importlib.import_module("losslens.landscape.topology")  # the package exports the function

    def refuse(*args, **kwargs):
        raise ValueError("no topology today")

    monkeypatch.setattr(topology_module, "topology", refuse)
    out = tmp_path / "f"
    assert main(["report", str(run_dir), "--out", str(out), "--sections", "surface", "topology"] + FAST) == 1
    assert "failed: Topology: basins and loops" in capsys.readouterr().out
    assert "no topology today" in (out / "report.html").read_text(encoding="utf-8")


def test_the_defaults_are_those_of_the_individual_commands():
    """So that a report reuses the files the commands wrote, and prints the numbers they print."""
    from losslens.cli import fit, replay

    parse = build_parser().parse_args
    o = ReportOptions()
    surface, line, hessian = parse(["surface"]), parse(["interpolate"]), parse(["hessian"])
    trajectory, plays = parse(["trajectory"]), parse(["replay"])
    assert (o.steps, o.range, o.subset, o.seed, o.bn, o.split) == (surface.steps, tuple(surface.range), surface.subset,
                                                                  surface.seed, surface.bn, surface.split)
    assert (o.interpolation_steps, o.extrapolate) == (line.steps, line.extrapolate)
    assert (o.top_k, o.trace_samples, o.density_vectors, o.lanczos_steps) == (
        hessian.top_k, hessian.trace_samples, hessian.density_vectors, hessian.lanczos_steps)
    assert (o.plane_steps, o.fit_model) == (fit.DEFAULT_STEPS, parse(["fit"]).fit_model)
    assert (o.replay_lr, o.replay_steps, o.seed) == (replay.DEFAULT_LR, plays.updates, plays.seed)
    assert list(o.replay_optimizers()) == replay._optimizers(None)
    assert (o.trajectory_steps, o.threshold, o.margin, o.tsne_max_iter) == (
        trajectory.steps, trajectory.threshold, trajectory.margin, trajectory.max_iter)
    report = parse(["report"])
    assert (report.steps, report.top_k, report.plane_steps, report.replay_lr, report.max_iter, report.subset) == (
        o.steps, o.top_k, o.plane_steps, o.replay_lr, o.tsne_max_iter, o.subset)


@pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                    reason="torch.distributed with the gloo backend is not available in this torch build")
def test_two_torchrun_ranks_share_the_grids_and_rank_0_alone_writes_the_page(run_dir, tmp_path):
    out = tmp_path / "t"
    flags = [str(run_dir), "--out", str(out), "--sections", "surface", "fit"] + FAST
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", "-m", "losslens",
           "report"] + flags
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("report.html (") == 1 and done.stdout.count("[fit]") == 1
    shared = {name: Surface.load(out / name) for name in ("surface.h5", "hessian_plane.h5")}
    assert all(s.meta["world_size"] == 2 and s.complete for s in shared.values())
    single = tmp_path / "s"
    assert main(["report"] + flags[:1] + ["--out", str(single)] + flags[3:]) == 0
    for name, s in shared.items():
        np.testing.assert_allclose(s.loss, Surface.load(single / name).loss, rtol=1e-5, atol=1e-6)
