"""Files written before issue 15 (the issue-14 code, commit 23be0ba) read as that code read them, and its grid
file is reused by ``surface_2d``: issue 15 moved the code, the files stay as they were.

``tests/data/issue14/`` holds tiny files of several kinds written by that code (a 3-2-1 MLP on 40 random
samples, mse, a 6 x 6 plane: a surface, its quadratic fit, multiscale and topology, the Hessian's top two
eigenpairs and density; and the ``dynamics.h5`` of a two-epoch digits run), and ``read_by_issue14.json``
what that code's ``load_result`` gave for each: every field's value, every array by dtype, shape and the
SHA-256 of its bytes (``summary`` below, run then).
"""

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from losslens.core.evaluator import Evaluator
from losslens.core.plan import Plan
from losslens.landscape.directions import random_directions
from losslens.landscape.surface import surface_2d
from losslens.results import load_result

DATA = Path(__file__).parent / "data" / "issue14"
EXPECTED = json.loads((DATA / "read_by_issue14.json").read_text())


def summary(x):
    """A result as plain JSON: dataclass fields by name, arrays and tensors by dtype, shape and content hash."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {"class": type(x).__name__} | {f.name: summary(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        digest = hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()[:16]
        return {"dtype": x.dtype.str, "shape": list(x.shape), "sha256": digest}
    if isinstance(x, dict):
        return {str(k): summary(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [summary(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_file_of_issue_14_reads_as_issue_14_read_it(name):
    assert json.loads(json.dumps(summary(load_result(DATA / name)), sort_keys=True, default=repr)) == EXPECTED[name]


def test_a_grid_of_issue_14_is_reused_by_surface_2d(tmp_path):
    """The same plane asked again (the model and data the file was written with) is read, not computed."""
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(40, 3, generator=g, dtype=torch.float64), torch.randn(40, 1, generator=g, dtype=torch.float64)
    model = nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 1)).double()
    torch.manual_seed(0)
    for p in model.parameters():
        p.data.normal_(0, 0.5)
    ev = Evaluator(model, "mse", (X, y), metrics=(), plan=Plan(device="cpu", dtype=torch.float64, threads=1))
    path = tmp_path / "surface.h5"
    shutil.copy(DATA / "surface.h5", path)
    before = path.read_bytes()
    calls = []
    evaluate = ev.evaluate_affine
    ev.evaluate_affine = lambda *a, **k: calls.append(1) or evaluate(*a, **k)
    x = np.linspace(-1, 1, 6)
    again = surface_2d(ev, ev.w0, random_directions(ev.space, ev.w0, 2, seed=0), x, x, path=path, progress=False)
    assert not calls and path.read_bytes() == before
    assert summary(again.values) == EXPECTED["surface.h5"]["values"]
