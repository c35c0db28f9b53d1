"""A Hugging Face model and its padded token batches through the command line, by import strings."""

import textwrap

import pytest

from losslens.cli.main import main
from losslens.core.checkpoints import save_checkpoint
from losslens.core.evaluator import Evaluator
from losslens.landscape.surface import Surface

pytest.importorskip("transformers")

MODULE = textwrap.dedent('''
    import torch
    from torch.utils.data import DataLoader
    from transformers import GPT2Config, GPT2LMHeadModel


    def model():
        torch.manual_seed(0)
        return GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=40, n_positions=16,
                                          bos_token_id=0, eos_token_id=0))


    def pad(batch):
        T = max(len(s) for s in batch)
        ids = torch.zeros(len(batch), T, dtype=torch.long)
        mask = torch.zeros(len(batch), T, dtype=torch.long)
        for i, s in enumerate(batch):
            ids[i, : len(s)], mask[i, : len(s)] = s, 1
        return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}


    def tokens(split="train"):
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        seqs = [torch.randint(1, 40, (int(torch.randint(4, 10, (1,), generator=g)),), generator=g) for _ in range(20)]
        return DataLoader(seqs, batch_size=6, collate_fn=pad)
''')


@pytest.fixture
def hf(tmp_path, monkeypatch):
    (tmp_path / "tinyhf.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import tinyhf

    return tinyhf, save_checkpoint(tinyhf.model(), tmp_path / "gpt2.safetensors")


def test_surface_and_hessian_of_a_hugging_face_model(tmp_path, capsys, hf):
    module, ckpt = hf
    flags = ["--model", "tinyhf:model", "--data", "tinyhf:tokens", "--device", "cpu", "--no-progress", "--subset", "all"]
    assert main(["surface", str(ckpt), "--steps", "3", "--out", str(tmp_path / "s")] + flags) == 0
    surface = Surface.load(tmp_path / "s" / "surface.h5")
    assert surface.meta["loss"] == "model" and surface.meta["units"] == "shifted_targets"
    assert surface.meta["data"]["name"] == "tinyhf:tokens" and surface.split == "train"
    direct = Evaluator(module.model(), "model", module.tokens("train"))
    assert surface.loss[1, 1] == pytest.approx(float(direct.evaluate(direct.w0).loss[0]), rel=1e-6)
    assert main(["hessian", str(ckpt), "--loss", "causal_lm", "--trace-samples", "6", "--out", str(tmp_path / "h")]
                + flags) == 0
    assert "Hessian of the causal_lm loss" in capsys.readouterr().out
    assert main(["evaluate", str(ckpt), "--split", "test"] + flags[:-3] + ["--subset", "all"]) == 0
    assert "tinyhf:tokens test split" in capsys.readouterr().out


def test_built_in_models_need_tensor_data(tmp_path, capsys, hf):
    _, ckpt = hf
    assert main(["surface", str(ckpt), "--data", "tinyhf:tokens", "--out", str(tmp_path)]) == 2
    assert "the built-in model 'mlp' needs data held as tensors" in capsys.readouterr().err
