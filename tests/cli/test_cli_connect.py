"""``losslens connect``: the three files and the JSON fields end to end, and bad input in one line."""

import json

import pytest

from losslens.cli.main import main
from losslens.core.checkpoints import save_checkpoint
from losslens.core.models import build_model
from losslens.core.provenance import CheckpointMeta
from losslens.results import load_result

FAST = ["--subset", "200", "--no-progress", "--points", "5", "--bend-updates", "3"]
FIELDS = {"path", "align", "t", "loss", "accuracy", "barrier", "barrier_mean", "barrier_max", "error_barrier",
          "error_barrier_mean", "error_barrier_max"}


def _checkpoint(root, seed, hidden=16):
    meta = CheckpointMeta(model="mlp", model_kwargs={"hidden": [hidden]}, data="digits").to_metadata()
    model = build_model("mlp", input_shape=(1, 8, 8), num_classes=10, seed=seed, hidden=[hidden])
    return str(save_checkpoint(model, root / f"mlp{hidden}-{seed}.safetensors", metadata=meta))


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("connect")
    return _checkpoint(root, 1), _checkpoint(root, 2)


def test_connect_writes_the_result_the_json_and_the_figures(tmp_path, capsys, endpoints):
    out = tmp_path / "out"
    assert main(["connect", *endpoints, "--paths", "line", "bezier", "polychain", "--split", "both",
                 "--out", str(out)] + FAST) == 0
    printed = capsys.readouterr().out
    for name in ("connect.h5", "connect.json", "connect.png", "connect_plane.png"):
        assert f"wrote {out / name}" in printed
    doc = json.loads((out / "connect.json").read_text())
    assert [p["path"] for p in doc["paths"]] == ["line", "bezier", "polychain"] and doc["alignment"] == {}
    for p in doc["paths"]:
        assert FIELDS <= set(p) and p["align"] == "none" and len(p["t"]) == len(p["loss"]) == len(p["accuracy"]) == 5
        assert set(p["by_split"]) == {"train", "test"}
    result = load_result(out / "connect.h5")
    assert result.KIND == "connection" and result.meta["endpoints"] == list(endpoints)
    assert result.paths[1]["barriers"]["train"]["loss"]["barrier"] == doc["paths"][1]["barrier"]
    assert result.meta["bn"] == "none" and result.paths[1]["training"]["steps"] == 3
    assert (out / "connect-training" / "bezier-none.safetensors").is_file()


def test_connect_aligns_b_and_computes_every_path_again(tmp_path, endpoints):
    out = tmp_path / "out"
    flags = ["--paths", "line", "--align", "none", "weights", "activations", "--out", str(out)]
    assert main(["connect", *endpoints, *flags] + FAST) == 0
    doc = json.loads((out / "connect.json").read_text())
    assert [(p["path"], p["align"]) for p in doc["paths"]] == [("line", "none"), ("line", "weights"),
                                                               ("line", "activations")]
    for method in ("weights", "activations"):
        assert doc["alignment"][method]["output_change"] < 1e-4  # B's function unchanged by the permutation
        assert len(doc["alignment"][method]["objective"]) >= 1
    # the endpoints of the aligned line are A and the permuted B: their losses equal the raw line's
    raw, weights = doc["paths"][0]["loss"], doc["paths"][1]["loss"]
    assert weights[0] == pytest.approx(raw[0], rel=1e-6) and weights[-1] == pytest.approx(raw[-1], rel=1e-5)


@pytest.mark.parametrize("flags, message", [
    (["--points", "1"], "--points: expected an integer >= 3, got '1'"),
    (["--paths", "spline"], "argument --paths: invalid choice: 'spline'"),
    (["--align", "random"], "argument --align: invalid choice: 'random'"),
])
def test_bad_flags_get_one_line(tmp_path, capsys, endpoints, flags, message):
    assert main(["connect", *endpoints, "--out", str(tmp_path)] + flags) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_endpoints_of_different_architectures_are_named(tmp_path, capsys, endpoints):
    other = _checkpoint(tmp_path, 3, hidden=24)
    assert main(["connect", endpoints[0], other, "--out", str(tmp_path / "o")] + FAST) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "are not of one architecture" in err and endpoints[0] in err and other in err
