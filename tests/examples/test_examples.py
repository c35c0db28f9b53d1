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
