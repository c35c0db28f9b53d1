"""The examples run (at small sizes), so they cannot rot."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digits_landscape(tmp_path, capsys):
    surface, line, top, tr = load("digits_landscape").main(["--out", str(tmp_path), "--steps", "5", "--epochs", "2"])
    assert surface.loss.shape == (5, 5) and np.isfinite(surface.loss).all()
    assert line.loss[np.searchsorted(line.x, 1.0)] < line.loss[np.searchsorted(line.x, 0.0)]  # training lowered the loss
    assert top.values[0] >= top.values[1] > 0 and np.isfinite(tr.value)
    for name in ("surface.h5", "surface_contour.png", "interpolation.png"):
        assert (tmp_path / name).is_file()
    assert "wrote" in capsys.readouterr().out


def test_transformer_landscape(tmp_path, capsys):
    pytest.importorskip("transformers")
    results = load("transformer_landscape").main(["--out", str(tmp_path), "--steps", "3", "--epochs", "1"])
    for name, units in (("gpt2", "shifted_targets"), ("bert", "targets")):
        ev, surface, top = results[name]
        assert ev.meta()["units"] == units and surface.loss.shape == (3, 3) and np.isfinite(surface.loss).all()
        assert surface.loss[1, 1] == min(surface.loss.ravel()) or surface.loss[1, 1] < surface.loss.mean()
        assert top.values[0] >= top.values[1] and max(top.meta["residual_norms"]) < 1e-3 * abs(float(top.values[0]))
        assert (tmp_path / f"{name}_contour.png").is_file()
    assert "GPT-2 (causal LM)" in capsys.readouterr().out


def test_connect_digits(tmp_path, capsys):
    import json

    result, alignment = load("connect_digits").main(["--out", str(tmp_path), "--hidden", "32", "--epochs", "3",
                                                     "--points", "7", "--bend-updates", "20"])
    printed = capsys.readouterr().out
    assert alignment.output_change < 1e-5  # the permuted B computes B's function
    written = {(p["path"], p["align"]): p for p in json.loads((tmp_path / "connect.json").read_text())["paths"]}
    assert set(written) == {(path, align) for path in ("line", "bezier") for align in ("none", "weights")}
    for (path, align), p in written.items():
        assert len(p["t"]) == len(p["loss"]) == 7 and np.isfinite(p["loss"]).all()
        assert all(np.isfinite(p[k]) for k in ("barrier", "barrier_mean", "barrier_max"))
        label = path if align == "none" else f"{path}, aligned by {align}"
        assert f"{label}: barrier {p['barrier']:.4f}," in printed
    assert written["line", "weights"]["barrier"] < written["line", "none"]["barrier"]  # weight matching lowers it
    assert written["bezier", "none"]["barrier"] < written["line", "none"]["barrier"]  # so does the trained bend
    assert [p["path"] for p in result.paths] == ["line", "bezier", "line", "bezier"]
    for name in ("connect.h5", "connect.png", "connect_plane.png"):
        assert (tmp_path / name).is_file()
    assert "wrote" in printed
