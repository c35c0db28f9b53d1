"""The examples run (at small sizes), so they cannot rot."""

import importlib.util
from pathlib import Path

import numpy as np

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
