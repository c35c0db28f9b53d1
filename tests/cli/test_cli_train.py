import json

import pytest
import torch

import losslens.cli.train
from losslens.cli._signals import Terminated
from losslens.cli.main import SUBCOMMANDS, main
from losslens.core.checkpoints import load_metadata

TRAIN = ["train", "--model", "mlp", "--model-arg", "hidden=[16]", "--data", "synthetic-classification",
         "--optimizer", "sgd", "--optimizer-arg", "momentum=0.9", "--lr", "0.05", "--epochs", "2",
         "--batch-size", "250", "--seed", "1", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(TRAIN + ["--out", str(out), "--save-every-steps", "2"]) == 0
    return out


def test_train_writes_checkpoints_and_run_json(run_dir, capsys):
    names = sorted(p.name for p in run_dir.glob("*.safetensors"))
    assert names == [f"step_{s:06d}.safetensors" for s in (0, 2, 3, 4, 6)]
    info = json.loads((run_dir / "run.json").read_text())
    assert (info["optimizer"], info["lr"], info["seed"], info["batch_size"]) == ("SGD", 0.05, 1, 250)
    assert info["optimizer_kwargs"] == {"momentum": 0.9, "weight_decay": 0.0}
    assert info["model_kwargs"] == {"hidden": [16]}
    assert load_metadata(run_dir / "step_000006.safetensors")["step"] == "6"


def test_train_prints_where_it_wrote(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(TRAIN + ["--epochs", "1", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert f"wrote 2 checkpoints to {out}" in stdout and f"wrote {out / 'run.json'}" in stdout


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--optimizer", "adamq"], "unknown optimizer 'adamq'"),
        (["--model", "vgg"], "unknown model 'vgg'"),
        (["--data", "imagenet"], "unknown data set 'imagenet'"),
        (["--loss", "mse"], "loss 'mse' is for regression"),
        (["--optimizer-arg", "momentum"], "--optimizer-arg expects KEY=VALUE"),
        (["--device", "tpu:x"], "invalid device 'tpu:x'"),
    ],
)
def test_bad_flag_value_gives_one_line(tmp_path, capsys, flags, message):
    assert main(TRAIN + ["--out", str(tmp_path / "bad")] + flags) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("losslens: error: ") and message in err
    assert "Traceback" not in err


def test_argparse_type_error_returns_nonzero(capsys):
    assert main(["train", "--epochs", "two", "--out", "x"]) == 2
    assert "invalid int value: 'two'" in capsys.readouterr().err


def test_evaluate_checkpoint_uses_its_metadata_and_writes_json(run_dir, tmp_path, capsys):
    out = tmp_path / "eval" / "evaluation.json"
    ckpt = run_dir / "step_000006.safetensors"
    assert main(["evaluate", str(ckpt), "--split", "train", "--device", "cpu", "--out", str(out.parent)]) == 0
    stdout = capsys.readouterr().out
    assert f"wrote {out}" in stdout and "loss" in stdout and "accuracy" in stdout
    result = json.loads(out.read_text())["results"]["train"]
    history = json.loads((run_dir / "run.json").read_text())["history"][-1]
    evaluator = result["evaluator"]
    assert (evaluator["model"]["name"], evaluator["data"]["name"], evaluator["data"]["split"]) == (
        "mlp", "synthetic-classification", "train")
    assert result["loss"] == pytest.approx(history["train_loss"], rel=1e-6)
    assert result["accuracy"] == pytest.approx(history["train_accuracy"])
    assert evaluator["checkpoint"]["step"] == 6 and evaluator["checkpoint"]["optimizer"] == "SGD"


def test_evaluate_a_plain_state_dict_with_flags(tmp_path, capsys):
    from losslens.core.models import build_model

    torch.save({"state_dict": build_model("cnn", seed=0).state_dict()}, tmp_path / "cnn.pt")
    assert main(["evaluate", str(tmp_path / "cnn.pt"), "--model", "cnn", "--subset", "100", "--device", "cpu"]) == 0
    stdout = capsys.readouterr().out
    assert "digits train split (100 samples" in stdout and "digits test split (100 samples" in stdout


def test_evaluate_missing_checkpoint_is_one_line(tmp_path, capsys):
    missing = tmp_path / "nope.safetensors"
    assert main(["evaluate", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err == f"losslens: error: checkpoint {missing}: no such file\n"


def test_evaluate_checkpoint_of_another_model_is_one_line(run_dir, capsys):
    assert main(["evaluate", str(run_dir / "step_000000.safetensors"), "--model", "mlp", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not fit the model" in err and "shape mismatch for '1.weight': the model expects [64, 20], the checkpoint has [16, 20]" in err


def test_help_lists_every_subcommand_and_exits_zero(capsys):
    assert main(["--help"]) == 0
    stdout = capsys.readouterr().out
    assert all(name.rpartition(".")[2].replace("_", "-") in stdout for name in SUBCOMMANDS)


def test_keyboard_interrupt_is_one_line_and_130(monkeypatch, capsys):
    import losslens.cli.train as train_cmd

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_cmd, "run", interrupted)
    assert main(["train", "--out", "x"]) == 130
    assert capsys.readouterr().err == ("losslens: interrupted; what was computed is saved: rerun the command to "
                                       "resume\n")


@pytest.mark.parametrize("stop, status, what", [(KeyboardInterrupt, 130, "interrupted"),
                                                (Terminated, 143, "terminated (SIGTERM)")])
def test_a_stopped_training_says_it_does_not_resume(tmp_path, capsys, monkeypatch, stop, status, what):
    def stopped(*args, **kwargs):
        raise stop()

    monkeypatch.setattr(losslens.cli.train, "train_with_dynamics", stopped)
    assert main(["train", "--out", str(tmp_path / "run")]) == status
    assert capsys.readouterr().err == (f"losslens: {what}; training does not resume: the incomplete run in "
                                       f"{tmp_path / 'run'} is kept; rerun with --overwrite to train from the start\n")
