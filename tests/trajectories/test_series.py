"""Tests of losslens/trajectories/series.py: order (metadata, numeric names), lazy loading, run directories."""

import copy
import json

import pytest
import torch

from losslens.core.checkpoints import load_checkpoint
from losslens.core.params import ParameterSpace
from losslens.errors import ConfigError
from losslens.trajectories.checkpoint_order import natural_key
from losslens.trajectories.series import CheckpointSeries, checkpoint_vectors, run_evaluator

from _trajectory_helpers import write_checkpoints


def _vectors(T, P, seed=0):
    return torch.randn(T, P, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_epochs_1_to_15_by_name_are_ordered_numerically(tmp_path, model):
    P = ParameterSpace(model).size
    vectors = _vectors(15, P)
    names = [f"epoch_{e}.pt.safetensors" for e in range(1, 16)]
    write_checkpoints(tmp_path, model, vectors, names=names)  # no metadata: names decide
    series = CheckpointSeries.from_glob(str(tmp_path / "epoch_*"), model)
    assert [c.path.name for c in series] == names  # lexicographic order would put epoch_10 after epoch_1
    assert [c.epoch for c in series] == [float(e) for e in range(1, 16)] and series[0].step is None
    assert [c.index for c in series] == list(range(15)) and series.run == tmp_path.name
    for i in (0, 9, 14):  # each vector is read from its own file
        assert torch.equal(series.vector(i), vectors[i])


def test_names_with_several_numbers_compare_piece_by_piece():
    names = ["seed2_epoch1.pt", "seed1_epoch10.pt", "seed1_epoch9.pt", "seed10_epoch1.pt", "seed1_epoch09b.pt"]
    assert sorted(names, key=natural_key) == [
        "seed1_epoch9.pt", "seed1_epoch09b.pt", "seed1_epoch10.pt", "seed2_epoch1.pt", "seed10_epoch1.pt"]
    assert natural_key("lr0.01_epoch_10.pt") == ("lr", 0, ".", 1, "_epoch_", 10, ".pt")


def test_metadata_steps_win_over_names_then_epochs(tmp_path, model):
    P = ParameterSpace(model).size
    vectors = _vectors(3, P)
    # names say c < a < b; steps say b < c < a
    meta = [{"step": "20", "epoch": "2.0"}, {"step": "5", "epoch": "0.5"}, {"step": "10", "epoch": "1.0"}]
    paths = write_checkpoints(tmp_path, model, vectors, names=["a1.safetensors", "b2.safetensors", "c0.safetensors"],
                              metadata=meta)
    series = CheckpointSeries.from_paths(paths, model, run="mine")
    assert [c.path.name for c in series] == ["b2.safetensors", "c0.safetensors", "a1.safetensors"]
    assert [(c.step, c.epoch, c.run) for c in series] == [(5, 0.5, "mine"), (10, 1.0, "mine"), (20, 2.0, "mine")]
    assert torch.equal(series.vector(0), vectors[1])
    given = CheckpointSeries.from_paths(paths, model, order="given")
    assert [c.path.name for c in given] == ["a1.safetensors", "b2.safetensors", "c0.safetensors"]


def test_refuses_what_it_cannot_order(tmp_path, model):
    P = ParameterSpace(model).size
    paths = write_checkpoints(tmp_path, model, _vectors(2, P), names=["init.safetensors", "final.safetensors"])
    with pytest.raises(ConfigError, match="init.safetensors, final.safetensors hold no number.*order='given'"):
        CheckpointSeries.from_paths(paths, model)
    twins = write_checkpoints(tmp_path, model, _vectors(2, P), names=["a_step3.safetensors", "b_step3.safetensors"],
                              metadata=[{"step": "3"}, {"step": "3"}])
    with pytest.raises(ConfigError, match="same step"):
        CheckpointSeries.from_paths(twins, model)
    with pytest.raises(ConfigError, match="unknown order 'time'; valid: auto, given"):
        CheckpointSeries.from_paths(paths, model, order="time")
    with pytest.raises(ConfigError, match="need the model"):
        CheckpointSeries.open(str(tmp_path / "*.safetensors"))


def test_run_directory_from_run_json(tmp_path):
    from losslens.core.data import load_dataset, subset
    from losslens.core.train import train

    data = (subset(load_dataset("digits", "train"), 128), subset(load_dataset("digits", "test"), 64))
    run = train("mlp", data, epochs=2, batch_size=64, lr=1e-2, seed=1, out=tmp_path / "adam",
                model_kwargs={"hidden": [8]}, progress=False)
    series = CheckpointSeries.open(tmp_path / "adam")
    assert series.run == "adam" and series.paths == run.checkpoints
    assert [(c.step, c.epoch) for c in series] == [(0, 0.0), (2, 1.0), (4, 2.0)]
    assert series.metadata["optimizer"] == "Adam" and len(series.metadata["history"]) == 3
    stacked = checkpoint_vectors(run.checkpoints, series.model, series.space)
    assert torch.equal(torch.stack(list(series.vectors())), stacked)
    info = json.loads((tmp_path / "adam" / "run.json").read_text())
    assert info["checkpoints"][-1]["file"] == series[-1].path.name


def test_run_evaluator_is_the_core_at_the_last_checkpoint_and_records_it(tmp_path):
    """The run's evaluator is built by ``Evaluator.from_checkpoint``: it evaluates the last checkpoint's
    weights (loss and accuracy equal a plain torch forward on the named split) and names that file."""
    from losslens.core.data import load_dataset, subset
    from losslens.core.train import train

    data = (subset(load_dataset("digits", "train"), 128), subset(load_dataset("digits", "test"), 64))
    train("mlp", data, epochs=2, batch_size=64, lr=1e-2, seed=1, out=tmp_path / "sgd",
          model_kwargs={"hidden": [8]}, progress=False)
    series = CheckpointSeries.open(tmp_path / "sgd")
    evaluator = run_evaluator(series, "test")
    recorded = evaluator.meta()["checkpoint"]
    assert recorded["path"] == str(series[-1].path) and recorded["label"] == f"sgd/{series[-1].path.name}"
    assert recorded["step"] == series[-1].step and evaluator.meta()["data"]["split"] == "test"

    net = copy.deepcopy(series.model)
    net.load_state_dict(load_checkpoint(series[-1].path, net))
    test = load_dataset("digits", "test")
    with torch.no_grad():
        out, y = net.eval()(test.x.to(torch.float32)), test.y
    result = evaluator.evaluate(evaluator.w0)
    assert torch.allclose(result.loss, torch.nn.functional.cross_entropy(out, y).double().reshape(1), rtol=1e-5)
    assert result.metrics["accuracy"].item() == pytest.approx((out.argmax(1) == y).double().mean().item())
    assert torch.equal(evaluator.w0.cpu(), series.space.flatten(net).to(evaluator.w0.dtype).cpu())

