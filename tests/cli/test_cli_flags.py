"""One meaning per flag name across the subcommands, and one rule for the default of ``--out``.

Names that had two meanings (renamed in issue 14): ``--steps`` was grid points everywhere but optimizer
updates in ``replay`` (now ``--updates``; replay's grid, ``--grid``, is now ``--steps``; report's
``--replay-steps`` is ``--replay-updates``); ``--model`` was the network everywhere but the closed form in
``fit`` (now ``--fit-model``, as in ``report``); ``--threshold`` was the largest relative residual off a
PCA plane but the noise level of persistence in ``topology`` (now ``--min-persistence``); ``--out`` was a
directory everywhere but a JSON file in ``evaluate`` (now a directory holding ``evaluation.json``).
"""

import argparse

import pytest

from losslens.cli._common import DEFAULT_OUT
from losslens.cli.main import build_parser

# Every flag that two or more commands take, and a phrase its help says in each of them (lower case).
MEANING = {
    "--batch-size": "samples per step", "--bend-updates": "updates of", "--bn": "batchnorm", "--data": "data set", "--density-vectors": "start vectors",
    "--device": "cpu", "--dirs": "directions", "--dist-timeout": "torchrun", "--epochs": "epochs",
    "--extrapolate": "how far", "--fit-model": "closed form", "--lanczos-steps": "lanczos steps",
    "--log": "logarithmic", "--loss": "cross_entropy", "--lr": "learning rate", "--margin": "fraction",
    "--max-iter": "t-sne iterations", "--model": "model (", "--model-arg": "option of a built-in model",
    "--names": "one name per", "--no-progress": "no progress bar", "--optimizers": "optimizer",
    "--out": "directory", "--output-key": "logits", "--perplexity": "t-sne perplexity", "--range": "coordinates",
    "--seed": "seed", "--sharpness": "top hessian eigenvalue", "--split": "data split", "--steps": "grid points",
    "--subset": "subset", "--target-key": "target", "--threads": "threads", "--threshold": "relative residual",
    "--top-k": "eigenvalues", "--trace-samples": "hessian-vector products", "--units": "averages over",
    "--unsafe-pickle": "pickles", "--yrange": "along the second", "--ysteps": "grid points along y",
    "--norm": "normalization of random directions", "--ignore": "biasbn", "--checkpoints": "in training order",
    "--no-sharpness": "top hessian eigenvalue",
}
# The commands whose input is result files: their output goes beside it by default.
READ_RESULTS = {"plot", "multiscale", "topology", "compare-surfaces", "export"}
# The two exceptions, and why: a run is a directory of its own; evaluate prints and writes only when asked.
OWN_OUT = {"train": "required", "evaluate": None}


def _subcommands():
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices


def _flags():
    """``{flag: {command: action}}`` of every long flag but --help."""
    out = {}
    for command, parser in _subcommands().items():
        for action in parser._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    out.setdefault(flag, {})[command] = action
    return out


def _value_kind(action) -> str:
    if action.nargs == 0:
        return "switch"
    kind = getattr(action.type, "__name__", "")
    return "int" if kind == "int" or kind.startswith("integer") else "float" if kind == "float" else "text"


def test_each_flag_name_means_one_thing_in_every_command():
    shared = {flag: by for flag, by in _flags().items() if len(by) > 1}
    assert sorted(shared) == sorted(MEANING), "a flag shared by commands needs its meaning in MEANING"
    for flag, by in shared.items():
        for command, action in by.items():
            assert MEANING[flag] in (action.help or "").lower(), f"{command} {flag}: {action.help!r}"
        numeric = {_value_kind(a) for a in by.values()} - {"text"}
        assert len(numeric) <= 1, f"{flag} takes values of kinds {numeric} in {sorted(by)}"


def test_steps_are_grid_points_and_updates_are_optimizer_updates():
    flags = _flags()
    assert set(flags["--steps"]) == {"surface", "interpolate", "trajectory", "compare", "replay", "report",
                                      "curvature-map"}
    assert all(_value_kind(a) == "int" for a in flags["--steps"].values())
    assert set(flags["--updates"]) == {"replay"} and "updates per optimizer" in flags["--updates"]["replay"].help
    assert "--grid" not in flags and "--replay-steps" not in flags
    assert flags["--replay-updates"]["report"].help.startswith("updates per optimizer")


def test_out_defaults_follow_one_rule():
    """``--out DIR`` is a directory; by default the commands that read result files write beside them, the
    others into ``losslens-out`` (so ``report`` finds there what ``surface``, ``hessian``, ... computed)."""
    for command, parser in _subcommands().items():
        (out,) = [a for a in parser._actions if "--out" in a.option_strings]
        assert out.metavar == "DIR" and "directory" in out.help, command
        if command in OWN_OUT:
            assert (out.required and "required") or out.default == OWN_OUT[command], command
        elif command in READ_RESULTS:
            assert out.default is None and "default: the" in out.help, command
        else:
            assert out.default == DEFAULT_OUT and f"(default: {DEFAULT_OUT})" in out.help, command


def test_compare_takes_lists_as_replay_does():
    from losslens.cli.compare import listed

    assert listed(["sgd,adam", "lion"]) == ["sgd", "adam", "lion"] == listed(["sgd", "adam", "lion"])
    assert listed(["sgd=0.1,adam=0.01"]) == ["sgd=0.1", "adam=0.01"]


def test_infinite_and_nan_values_are_read_as_values_and_refused_by_the_flag(capsys):
    from losslens.cli.main import main

    assert main(["surface", "--range", "-inf", "inf"]) == 2
    assert "argument --range: expected a finite number, got '-inf'" in capsys.readouterr().err
    assert main(["interpolate", "a", "b", "--extrapolate", "-nan"]) == 2
    assert "got '-nan'" in capsys.readouterr().err


def test_running_out_of_memory_is_one_line_not_a_traceback(monkeypatch, capsys):
    import losslens.cli.plot
    from losslens.cli.main import main

    def huge(args):
        raise MemoryError("Unable to allocate 71.1 PiB for an array with shape (100000000, 100000000)")

    monkeypatch.setattr(losslens.cli.plot, "run", huge)
    assert main(["plot", "x.h5"]) == 2
    assert capsys.readouterr().err == ("losslens: error: out of memory: Unable to allocate 71.1 PiB for an array "
                                       "with shape (100000000, 100000000); ask for less\n")


@pytest.mark.parametrize("out, why", [("ck.safetensors", "File exists"), ("ck.safetensors/sub", "Not a directory")])
def test_an_out_that_is_a_file_is_named_and_the_file_kept(tmp_path, monkeypatch, capsys, out, why):
    import losslens.cli.plot
    from losslens.cli._common import write_json
    from losslens.cli.main import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "ck.safetensors").write_bytes(b"weights")
    monkeypatch.setattr(losslens.cli.plot, "run", lambda args: write_json(f"{out}/x.json", {}))
    assert main(["plot", "x.h5"]) == 2
    assert capsys.readouterr().err == (f"losslens: error: {out}: a file is in the way of a directory losslens "
                                       f"writes into ({why})\n")
    assert (tmp_path / "ck.safetensors").read_bytes() == b"weights"


def test_a_count_too_large_for_python_is_one_line(tmp_path, capsys):
    from losslens.cli.main import main

    assert main(["train", "--out", str(tmp_path / "run"), "--epochs", str(2**70)]) == 2
    assert capsys.readouterr().err == ("losslens: error: a number given is too large (Python int too large to convert "
                                       "to C ssize_t)\n")
