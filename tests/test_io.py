"""Tests of losslens/_io.py: files that are not what they say are refused before any data is read,
outputs are locked, and nothing that is not a result of the same kind is overwritten."""

import os
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from losslens import _io, _locks
from losslens.cli.main import main
from losslens.core.evaluator import Evaluator
from losslens.core.plan import Plan
from losslens.curvature.hessian import Eigenpairs
from losslens.errors import LosslensError
from losslens.landscape.directions import Directions
from losslens.landscape.surface import Surface, surface_2d
from losslens.landscape.topology import topology
from losslens.results import load_result

HERE = Path(__file__).parent


@pytest.fixture
def surface_file(tmp_path):
    x = np.linspace(-1.0, 1.0, 3)
    surface = Surface(x, x[:2], {"train": {"loss": np.arange(6.0).reshape(2, 3)}}, None, {}, np.ones((2, 3), bool),
                      None)
    return surface.save(tmp_path / "surface.h5")


def _tiny_evaluator():
    return Evaluator(torch.nn.Linear(2, 1, bias=False), "mse", (torch.eye(2), torch.ones(2, 1)),
                     plan=Plan(device="cpu"))


def _replace(path, name, make):
    with h5py.File(path, "a") as f:
        del f[name]
        make(f, name)


def _external(target):
    return lambda f, name: f.create_dataset(name, shape=(2, 3), dtype="f8", external=[(str(target), 0, 48)])


def _virtual(source):
    def make(f, name):
        layout = h5py.VirtualLayout(shape=(2, 3), dtype="f8")
        layout[:] = h5py.VirtualSource(str(source), "train_loss", shape=(2, 3))
        f.create_virtual_dataset(name, layout)
    return make


@pytest.mark.parametrize("attack, message", [
    (lambda tmp: _external("/etc/passwd"), r"dataset train_loss keeps its data in an external file \(/etc/passwd\)"),
    (lambda tmp: lambda f, n: f.__setitem__(n, h5py.ExternalLink(str(tmp / "other.h5"), "/train_loss")),
     "train_loss is an external link to .*other.h5:/train_loss"),
    (lambda tmp: lambda f, n: f.__setitem__(n, h5py.SoftLink("/done")), "train_loss is a soft link to /done"),
    (lambda tmp: _virtual(tmp / "other.h5"), "dataset train_loss is a virtual dataset"),
])
def test_data_outside_the_file_is_refused_naming_the_dataset(surface_file, tmp_path, attack, message):
    shutil.copy(surface_file, tmp_path / "other.h5")
    _replace(surface_file, "train_loss", attack(tmp_path))
    for read in (load_result, Surface.load, _io.existing_kind):
        with pytest.raises(LosslensError, match=f"surface.h5: {message}"):
            read(surface_file)


def test_external_storage_in_a_fifo_is_refused_without_opening_it(surface_file, tmp_path):
    """Before: HDF5 opened the FIFO to read the dataset and waited for a writer forever."""
    os.mkfifo(tmp_path / "fifo")
    _replace(surface_file, "train_loss", _external(tmp_path / "fifo"))
    code = f"from losslens.results import load_result\nload_result({str(surface_file)!r})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "keeps its data in an external file" in done.stderr and "fifo" in done.stderr


def test_a_small_file_declaring_a_huge_dataset_is_refused_before_reading(tmp_path):
    path = Directions(torch.ones(2, 5), "random", {}).save(tmp_path / "bomb.h5")
    with h5py.File(path, "a") as f:  # 2 GiB declared, nothing written: read back, it is the fill value
        f.create_dataset("extra", shape=(2**28,), dtype="f8", chunks=(2**20,), compression="gzip")
    assert path.stat().st_size < 100_000
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(LosslensError, match=r"bomb.h5: dataset extra declares 2147483648 bytes .* stores 0"):
        load_result(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 10 << 20 and time.perf_counter() - started < 5


def test_many_datasets_each_under_the_floor_are_refused_together(tmp_path):
    path = Directions(torch.ones(2, 5), "random", {}).save(tmp_path / "bombs.h5")
    with h5py.File(path, "a") as f:
        for i in range(3):  # 3 x 48 MiB declared in a file of a few KB
            f.create_dataset(f"extra{i}", shape=(6 << 20,), dtype="f8", chunks=(2**16,), compression="gzip")
    with pytest.raises(LosslensError, match=r"bombs.h5: its datasets declare \d+ bytes in a file of"):
        Directions.load(path)


def test_shape_and_type_errors_name_file_dataset_and_shapes(surface_file, tmp_path):
    path = topology(Surface.load(surface_file)).save(tmp_path / "topology.h5")
    _replace(path, "values", lambda f, n: f.__setitem__(n, np.ones((2, 4))))
    with pytest.raises(LosslensError, match=r"topology.h5: damaged topology file: dataset values has shape \[2, 4\], "
                                            r"expected \[ny=2, nx=3\]"):
        load_result(path)
    _replace(surface_file, "train_loss", lambda f, n: f.__setitem__(n, np.ones((3, 2))))
    with pytest.raises(LosslensError, match=r"surface.h5: damaged surface file: dataset train_loss has shape "
                                            r"\[3, 2\], expected \[ny=2, nx=3\]"):
        load_result(surface_file)
    _replace(surface_file, "train_loss", lambda f, n: f.__setitem__(n, np.array([[b"ab"] * 3] * 2)))
    with pytest.raises(LosslensError, match=r"dataset train_loss holds \|S2, expected numbers"):
        load_result(surface_file)
    path = Eigenpairs(torch.ones(2), torch.ones(2, 4), "largest", 0.0, 1, {"residual_norms": [0.0, 0.0]}).save(
        tmp_path / "eigen.h5")
    _replace(path, "vectors", lambda f, n: f.__setitem__(n, np.ones((3, 4))))
    with pytest.raises(LosslensError, match=r"eigen.h5: damaged eigenpairs file: dataset vectors has shape \[3, 4\], "
                                            r"expected \[k=2, P\]"):
        load_result(path)


def test_a_fifo_is_named_as_such_and_never_opened(tmp_path, capsys):
    fifo = tmp_path / "surface.h5"
    os.mkfifo(fifo)
    with pytest.raises(LosslensError, match="surface.h5: is a FIFO, not a regular file"):
        load_result(fifo)
    for argv in (["plot", str(fifo)], ["topology", str(fifo)], ["multiscale", str(fifo)], ["fit", str(fifo)],
                 ["compare-surfaces", str(fifo), str(fifo)]):
        assert main([*argv, "--out", str(tmp_path / "o")]) == 2
        assert "surface.h5: is a FIFO, not a regular file" in capsys.readouterr().err


def test_a_full_disk_is_one_line_and_leaves_no_file(tmp_path, monkeypatch):
    directions = Directions(torch.ones(2, 1000), "random", {})
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1 << 30, 1 << 30, 1000))
    with pytest.raises(LosslensError, match=r"no space left on device writing .*d.h5 \(needs about \d+ bytes, 1000 "
                                            "free\\)"):
        directions.save(tmp_path / "d.h5")
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tiny tmpfs needs root")
def test_a_really_full_disk_is_one_line_and_leaves_no_file(tmp_path, monkeypatch):
    full = tmp_path / "full"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:  # disk_usage says there is room, so h5py meets the full disk itself
        monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1 << 30, 0, 1 << 30))
        with pytest.raises(LosslensError, match="no space left on device writing .*d.h5$"):
            Directions(torch.ones(2, 100_000), "random", {}).save(full / "d.h5")
        assert os.listdir(full) == []
    finally:
        subprocess.run(["umount", str(full)], check=True)


def test_a_second_writer_on_one_output_is_refused_naming_the_first(tmp_path):
    """Before: the second read HDF5's lock as a damaged file, replaced it, and the first finished
    writing into a file that was no longer its output."""
    path, started, go = tmp_path / "surface.h5", tmp_path / "started", tmp_path / "go"
    first = subprocess.Popen([sys.executable, str(HERE / "_two_writers.py"), str(path), str(started), str(go)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not started.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), first.stderr.read() if first.poll() is not None else "first writer never started"
        second = subprocess.run([sys.executable, str(HERE / "_two_writers.py"), str(path), str(tmp_path / "s2"),
                                 str(go)], capture_output=True, text=True, timeout=60)
        go.touch()
        assert second.returncode != 0
        assert f"surface.h5 is being written by process {first.pid} (_two_writers.py" in second.stderr
        out, err = first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 0, err
    assert out.strip() == "done 9"
    assert Surface.load(path).done.all()
    assert sorted(os.listdir(tmp_path)) == ["go", "started", "surface.h5"]  # the lock file is gone


def test_a_lock_is_reentrant_in_its_process_and_taken_over_from_a_dead_one(tmp_path):
    path = tmp_path / "x.h5"
    with _locks.output_lock(path), _locks.output_lock(path):
        assert (tmp_path / "x.h5.lock").exists()
    assert not (tmp_path / "x.h5.lock").exists()
    subprocess.run([sys.executable, "-c", f"from losslens import _locks; import os; _locks.lock_output({str(path)!r}); "
                    "os._exit(0)"], check=True)
    assert (tmp_path / "x.h5.lock").exists()  # left by a process that is gone: taken over
    with _locks.output_lock(path):
        pass


def test_a_file_that_is_not_a_result_of_the_same_kind_is_never_overwritten(tmp_path, surface_file):
    from safetensors.torch import save_file

    checkpoint = tmp_path / "model.safetensors"
    save_file({"w": torch.ones(3)}, checkpoint)
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    x = np.linspace(-1.0, 1.0, 3)
    ev = _tiny_evaluator()
    directions = Directions(torch.eye(2), "random", {})
    surface = Surface.load(surface_file)
    for path in (checkpoint, notes):
        before = path.read_bytes()
        for write in (lambda: surface_2d(ev, ev.w0, directions, x, x, path=path, progress=False),
                      lambda: surface.save(path)):
            with pytest.raises(LosslensError, match=f"{path.name}: exists and is not a losslens surface file "
                                                    "\\(not HDF5\\); will not overwrite it"):
                write()
        with pytest.raises(LosslensError, match=f"{path.name}: exists and is not a losslens directions file"):
            directions.save(path)
        assert path.read_bytes() == before
    with pytest.raises(LosslensError, match="surface.h5: holds a losslens surface result, not a directions"):
        directions.save(surface_file)
    assert Directions.load(directions.save(tmp_path / "d.h5")).vectors.shape == (2, 2)
    assert Directions.load(Directions(torch.ones(2, 3), "random", {}).save(tmp_path / "d.h5")).vectors.shape == (2, 3)
    empty = tmp_path / "empty.h5"
    empty.touch()  # as tempfile.NamedTemporaryFile leaves it: nothing to lose
    assert Directions.load(directions.save(empty)).vectors.shape == (2, 2)


def test_a_file_another_process_holds_open_is_refused_not_taken_for_damaged(surface_file, tmp_path):
    """Before: HDF5's lock error read as "damaged file, start over", and the file was replaced."""
    code = f"import h5py, time\nf = h5py.File({str(surface_file)!r}, 'r+')\nprint('open', flush=True)\ntime.sleep(60)"
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "open\n"
        before = surface_file.read_bytes()
        ev = _tiny_evaluator()
        x = np.linspace(-1.0, 1.0, 3)
        for write in (lambda: surface_2d(ev, ev.w0, Directions(torch.eye(2), "random", {}), x, x, path=surface_file,
                                         progress=False),
                      lambda: Surface.load(tmp_path / "copy.h5").save(surface_file)):
            shutil.copy(surface_file, tmp_path / "copy.h5")
            with pytest.raises(LosslensError, match="surface.h5: is open for writing in another process"):
                write()
            (tmp_path / "copy.h5").unlink()
        assert surface_file.read_bytes() == before
        assert sorted(os.listdir(tmp_path)) == ["surface.h5"]
    finally:
        holder.kill()


@pytest.mark.parametrize("meta, found", [('[1, 2]', "a list"), ('"text"', "a str"), ("{oops", "is not JSON")])
def test_metadata_that_is_not_a_json_object_is_named(surface_file, tmp_path, meta, found):
    eig = Eigenpairs(torch.tensor([2.0, 1.0], dtype=torch.float64), torch.eye(3, dtype=torch.float64)[:2], "largest", 1e-6, 10, {})
    eig = eig.save(tmp_path / "eigenpairs.h5")
    for path in (surface_file, eig):
        with h5py.File(path, "a") as f:
            f.attrs["meta"] = meta
        with pytest.raises(LosslensError, match=rf"^{path}: attribute meta (must be a JSON object, found )?{found}"):
            load_result(path)


def test_values_of_points_a_file_marks_not_done_are_never_read(surface_file):
    with h5py.File(surface_file, "a") as f:
        f["done"][0, :] = False  # values stay in the file: written by hand, or by another program
    surface = Surface.load(surface_file)
    assert np.isnan(surface.values["train"]["loss"][0]).all()
    np.testing.assert_array_equal(surface.values["train"]["loss"][1], [3.0, 4.0, 5.0])
