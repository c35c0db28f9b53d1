"""Tests of losslens/results.py: every kind of result file round-trips through the base, is registered once,
and, damaged, gives one error naming the file (and the dataset, the expected and the found shape)."""

import ast
import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from losslens import _io
from losslens.connectivity.connection import Connection
from losslens.connectivity.alignment import Alignment
from losslens.connectivity.barrier_matrix import BarrierMatrix
from losslens.curvature.hessian import Eigenpairs
from losslens.curvature.spectrum import Spectrum
from losslens.curvature.trace_estimation import TraceEstimate
from losslens.errors import LosslensError
from losslens.landscape.curvature import CurvatureMap
from losslens.landscape.directions import Directions
from losslens.landscape.fit import SurfaceFit
from losslens.landscape.surface import Surface
from losslens.landscape.surface_comparison import SurfaceComparison
from losslens.landscape.topology import HEADLINE, Topology
from losslens.landscape.topology_stability import TopologyStability
from losslens.landscape.wavelets import Multiscale
from losslens.results import RESULT_CLASSES, Result, load_result, result_class
from losslens.trajectories.dynamics import DYNAMICS_COLUMNS, Dynamics
from losslens.trajectories.embeddings import Embedding
from losslens.trajectories.optimizer_comparison import OptimizerComparison
from losslens.trajectories.paths import TrajectoryPaths
from losslens.trajectories.pca import TrajectoryPCA
from losslens.trajectories.replay_result import Replay
from losslens.trajectories.series import Checkpoint

ROOT = Path(__file__).resolve().parents[1] / "losslens"
META = {"seed": 0, "source": {"model": "mlp"}, "warnings": ["w"]}


def _a(*shape, seed=0):
    return np.random.default_rng(seed + len(shape)).normal(size=shape)


def _checkpoints():
    return tuple(Checkpoint("run", i, 10 * i, float(i), Path(f"/runs/step_{i}.safetensors")) for i in range(3))


def _paths():
    return TrajectoryPaths(_checkpoints(), _a(3, 2), *(_a(3, seed=i) for i in range(6)),
                           true_metrics={"accuracy": _a(3)}, plane_metrics={"accuracy": _a(3, seed=1)},
                           meta={"threshold": 0.1})


def _surface(cls, metrics=("accuracy",)):
    x, y = np.linspace(-1, 1, 4), np.linspace(-1, 1, 3)
    return cls.from_arrays(x, y, _a(3, 4) ** 2, {m: _a(3, 4, seed=i) for i, m in enumerate(metrics)}, meta=META)


def examples() -> dict:
    """One small result of every kind: a kind added to ``RESULT_CLASSES`` needs one here."""
    return {
        "surface": _surface(Surface),
        "curvature_map": _surface(CurvatureMap, ("max_eigenvalue", "min_eigenvalue", "eigenvalue_ratio")),
        "directions": Directions(torch.randn(2, 5, dtype=torch.float64), "random", META),
        "eigenpairs": Eigenpairs(torch.tensor([2.0, 1.0], dtype=torch.float64),
                                 torch.randn(2, 5, dtype=torch.float64), "largest", 1e-6, 10, META),
        "trace": TraceEstimate(1.5, 0.25, 20, "hutch++", META),
        "spectrum": Spectrum(_a(5), _a(5, seed=1), _a(2, 3), _a(2, 3, seed=1), 0.1, META),
        "multiscale": Multiscale(_a(4), _a(4, seed=1), _a(2, 2), ({o: _a(2, 2, seed=i) for i, o in enumerate("hvd")},),
                                 _a(2, 4, 4), _a(4, 4), 3.0, {**META, "level": 1}),
        "topology": Topology(np.arange(4.0), np.arange(3.0), _a(3, 4), np.array([[0.0, np.inf], [0.5, 1.0]]),
                             np.array([[0, -1], [3, 5]]), np.zeros((0, 2)), np.zeros((0, 2), dtype=int), 0.01, META),
        "topology_stability": TopologyStability(("a", "b"), {k: _a(2, seed=i) for i, k in enumerate(HEADLINE)},
                                                _a(2, 2), META),
        "surface_comparison": SurfaceComparison(({"name": "a"}, {"name": "b"}),
                                                ({"a": "a", "b": "b", "bottleneck_h0": 0.5},), META),
        "trajectory_pca": TrajectoryPCA(_a(2, 5), _a(2), _a(2, seed=1), _a(2, seed=2), _a(3, 2), _a(3, 3), _a(5),
                                        _a(5, seed=1), _checkpoints(), 2, META),
        "trajectory": _paths(),
        "embedding": Embedding(_a(3, 2), "tsne", _checkpoints(), 0.875, META),
        "optimizer_comparison": OptimizerComparison(({"optimizer": "sgd", "lr": 0.1},), _paths(), META),
        "dynamics": Dynamics(("step", "step", "epoch"), {c: _a(3, seed=i) for i, c in enumerate(DYNAMICS_COLUMNS[1:])},
                             META),
        "fit": SurfaceFit("quadratic", ("a", "b"), _a(2), _a(2, seed=1), np.arange(4.0), np.arange(3.0), _a(3, 4),
                          _a(3, 4, seed=1), _a(2), 0.5, _a(2, 2), _a(2, seed=2), META, ("degenerate",)),
        "replay": Replay(("sgd", "adam"), (_a(4, 6), _a(3, 6, seed=1)), ("converged", "diverged"),
                         (np.arange(3.0), np.arange(2.0), _a(2, 3)), META),
        "connection": Connection(({"path": "line", "align": "none", "splits": ["train"], "training": None,
                                   "barriers": {"train": {"loss": {"barrier": 0.5}, "error": None}}},),
                                 (_a(5, 5),), {"weights": {"output_change": 1e-7, "objective": [1.0, 2.0]}}, META),
        "alignment": Alignment("weights", {"fc1": np.array([2, 0, 1]), "layer1.0.conv1": np.arange(4)},
                               _a(3), 1e-7, META),
        "barrier_matrix": BarrierMatrix(("a", "b"), _a(2, 2), _a(2, 2, seed=1), "barrier", META),
    }


def assert_same(a, b, where="result"):
    """``a`` and ``b`` are equal, field by field for results, with their types (a tuple stays a tuple)."""
    if isinstance(a, (np.ndarray, torch.Tensor)):
        assert type(a) is type(b), where
        np.testing.assert_array_equal(np.asarray(b), np.asarray(a), err_msg=where)
        assert np.asarray(a).dtype == np.asarray(b).dtype, where
    elif dataclasses.is_dataclass(a) and not isinstance(a, type):
        assert type(a) is type(b), where
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), where  # HDF5 lists datasets by name
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (tuple, list)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert type(a) is type(b) and a == b, f"{where}: {a!r} != {b!r}"


def test_every_kind_has_an_example_and_a_registered_class_of_its_kind():
    assert set(examples()) == set(RESULT_CLASSES)
    for kind, result in examples().items():
        assert type(result) is result_class(kind) and result.KIND == kind and isinstance(result, Result)


def test_every_result_class_is_registered_once():
    """The one list of kinds: every class deriving from ``Result`` in losslens is in ``RESULT_CLASSES``."""
    declared = set()
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(getattr(b, "id", None) == "Result" for b in node.bases):
                module = ".".join(("losslens",) + path.relative_to(ROOT).with_suffix("").parts)
                declared.add(f"{module}:{node.name}")
    assert declared and declared <= set(RESULT_CLASSES.values())
    assert len(set(RESULT_CLASSES.values())) == len(RESULT_CLASSES)


@pytest.mark.parametrize("kind", sorted(set(RESULT_CLASSES) - {"surface", "curvature_map"}))
def test_every_kind_round_trips_through_the_base(tmp_path, kind):
    result = examples()[kind]
    path = result.save(tmp_path / f"{kind}.h5")
    assert_same(result, load_result(path))
    assert_same(result, type(result).load(path))


@pytest.mark.parametrize("kind", ["surface", "curvature_map"])
def test_surfaces_round_trip_through_their_grid_file(tmp_path, kind):
    """Surfaces keep their own layout (the resumable grid file the reference tool reads); arrays come back."""
    result = examples()[kind]
    loaded = load_result(result.save(tmp_path / f"{kind}.h5"))
    assert type(loaded) is type(result)
    for name in ("x", "y", "values", "done"):
        assert_same(getattr(result, name), getattr(loaded, name), name)
    assert loaded.meta["seed"] == 0 and loaded.meta["source"] == {"model": "mlp"}


def test_the_header_holds_kind_version_and_provenance(tmp_path):
    import h5py
    from losslens._version import __version__

    path = examples()["eigenpairs"].save(tmp_path / "e.h5")
    with h5py.File(path, "r") as f:
        assert f.attrs["losslens_kind"] == "eigenpairs" and f.attrs["losslens_version"] == __version__
        assert sorted(f) == ["values", "vectors"]
        meta = _io.read_meta(f, path)
    assert meta == {"which": "largest", "tol": 1e-6, "n_matvec": 10, "meta": META}


def _shaped(kind):
    """``(kind, dataset)`` of every dataset a kind's declaration gives a shape."""
    result = examples()[kind]
    arrays, _ = result.pack()
    return [(kind, name) for name in type(result).shapes(set(arrays))]


SHAPED = [pair for kind in sorted(set(RESULT_CLASSES) - {"surface", "curvature_map"}) for pair in _shaped(kind)]


def test_the_kinds_checked_before_reading_keep_their_shapes():
    """The shapes checked before reading (those of today's files): a dropped rule turns this red."""
    assert SHAPED == [("alignment", "objective"), ("barrier_matrix", "raw"), ("barrier_matrix", "aligned"),
                      ("directions", "vectors"), ("eigenpairs", "values"), ("eigenpairs", "vectors"),
                      ("fit", "x"), ("fit", "y"), ("fit", "data"), ("fit", "fitted"),
                      ("topology", "x"), ("topology", "y"), ("topology", "values")]
    assert examples()["fit"].shapes({"x", "y"}) == {"x": ("nx",), "y": ("ny",), "data": ("ny", "nx"),
                                                    "fitted": ("ny", "nx")}
    assert examples()["fit"].shapes({"x"}) == {"x": ("nx",), "data": ("nx",), "fitted": ("nx",)}


@pytest.mark.parametrize("kind,name", SHAPED)
def test_a_dataset_of_another_shape_names_file_dataset_expected_and_found(tmp_path, kind, name):
    arrays, header = examples()[kind].pack()
    arrays[name] = np.zeros(np.shape(arrays[name]) + (2,))
    path = _io.write_h5(tmp_path / f"{kind}.h5", kind, arrays, header)
    found = list(np.shape(arrays[name]))
    with pytest.raises(LosslensError, match=re.escape(f"{path}: damaged {kind} file: dataset {name} has shape "
                                                      f"{found}, expected [")):
        load_result(path)


def test_a_named_length_is_named_with_its_value(tmp_path):
    arrays, header = examples()["eigenpairs"].pack()
    arrays["vectors"] = np.zeros((3, 5))
    path = _io.write_h5(tmp_path / "e.h5", "eigenpairs", arrays, header)
    with pytest.raises(LosslensError, match=re.escape(f"{path}: damaged eigenpairs file: dataset vectors has shape "
                                                      "[3, 5], expected [k=2, P]")):
        load_result(path)


@pytest.mark.parametrize("kind", sorted(set(RESULT_CLASSES) - {"surface"}))  # surfaces: tests/landscape/test_surface.py
def test_a_file_of_the_right_kind_without_its_contents_is_named_damaged(tmp_path, kind):
    path = _io.write_h5(tmp_path / f"{kind}.h5", kind, {}, {})
    with pytest.raises(LosslensError, match=f"{kind}.h5: damaged {kind} file"):
        load_result(path)


def test_load_result_names_a_path_that_is_not_one():
    with pytest.raises(TypeError, match="needs the path of a result file, got NoneType"):
        load_result(None)


# -- the one writer --------------------------------------------------------------------------------


def _writes_outside_the_writer(source: str) -> list[str]:
    """Each place of ``source`` that renames a file, dumps JSON to a file, or opens or writes a file for
    writing other than a temporary of ``_io.atomic`` (a name bound by ``with atomic(...) as NAME``)."""
    tree = ast.parse(source)
    temporaries = {item.optional_vars.id for node in ast.walk(tree) if isinstance(node, ast.With)
                   for item in node.items if isinstance(item.optional_vars, ast.Name)
                   and isinstance(item.context_expr, ast.Call)
                   and ast.unparse(item.context_expr.func).endswith("atomic")}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        target = ast.unparse(node.args[0]) if node.args else ""
        method = name.rpartition(".")[2]
        mode = next((a.value for a in node.args[1:2] if isinstance(a, ast.Constant)), "")
        if name in ("os.replace", "os.rename", "shutil.move", "json.dump", "torch.save", "torch.jit.save") \
                or name.startswith("tempfile."):
            found.append(f"{node.lineno}: {name}")
        elif method in ("replace", "rename") and len(node.args) == 1 and "." in name and name != "dataclasses.replace":
            found.append(f"{node.lineno}: {name}")
        elif method in ("write_text", "write_bytes") and name.rpartition(".")[0] not in temporaries | {"_io"}:
            found.append(f"{node.lineno}: {name}")
        elif name in ("open", "h5py.File", "save_file") and isinstance(mode, str) and set(mode) & set("wax") \
                and target not in temporaries and name != "save_file":
            found.append(f"{node.lineno}: {name}({target}, {mode!r})")
        elif name == "save_file" and ast.unparse(node.args[1]) not in {f"str({t})" for t in temporaries}:
            found.append(f"{node.lineno}: save_file")
    return found


def test_every_file_is_written_through_the_one_writer():
    """Renaming a temporary, JSON dumped to a file, a file opened for writing: only ``_io`` does it, or a
    block holding a temporary of ``_io.atomic`` (the lock file is opened with ``os.open`` by ``_locks``)."""
    found = {str(p.relative_to(ROOT)): w for p in ROOT.rglob("*.py") if p.name != "_io.py"
             if (w := _writes_outside_the_writer(p.read_text()))}
    assert found == {}


@pytest.mark.parametrize("code", [
    "import os\ndef f(tmp, path):\n    os.replace(tmp, path)\n",
    "def f(tmp, path):\n    tmp.replace(path)\n",
    "import json\ndef f(obj, fh):\n    json.dump(obj, fh)\n",
    "def f(path):\n    path.write_text('x')\n",
    "def f(path):\n    with open(path, 'w') as fh:\n        fh.write('x')\n",
    "import h5py\ndef f(path):\n    h5py.File(path, 'w')\n",
    "def f(tensors, path):\n    save_file(tensors, str(path))\n",
])
def test_the_writer_rule_sees_each_way_around_it(code):
    assert _writes_outside_the_writer(code)


def test_the_writer_rule_lets_a_temporary_of_atomic_be_written():
    code = ("def f(path, tensors):\n    with atomic(path) as tmp, open(tmp, 'w') as fh:\n        fh.write('x')\n"
            "    with atomic(path) as tmp:\n        tmp.write_text('x')\n        save_file(tensors, str(tmp))\n"
            "    'a b'.replace('a', 'c')\n")
    assert _writes_outside_the_writer(code) == []


def test_atomic_leaves_the_old_file_when_the_block_fails_and_removes_dead_temporaries(tmp_path):
    path = tmp_path / "out.json"
    _io.write_json(path, {"a": 1})
    stale = tmp_path / ".out.json.writing-999999999"  # a process killed with SIGKILL left this
    stale.write_text("half")
    with pytest.raises(RuntimeError), _io.atomic(path) as tmp:
        tmp.write_text("new")
        raise RuntimeError
    assert path.read_text() == '{\n  "a": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
