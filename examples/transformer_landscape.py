"""Loss landscapes of two small transformers: a GPT-2 language model and a BERT classifier.

Both are built from a config (random initialization: nothing is downloaded) and trained briefly on
synthetic token data with a plain PyTorch loop; then losslens evaluates, as it would any model:

- GPT-2 on variable-length sequences padded per batch by the DataLoader's ``collate_fn`` (attention
  masks, labels -100 at the padding), with the loss the model returns itself (``loss_fn="model"``,
  averaged over the shifted next-token labels, as Hugging Face averages it);
- BERT on dict batches (``input_ids``, ``attention_mask``) with class labels, cross-entropy on its
  ``logits``.

For each: the loss on a plane of filter-normalized random directions and the top Hessian
eigenvalues, computed through the default (fused) attention; losslens runs the differentiated
passes on the math backend, so no model change is needed.

    python examples/transformer_landscape.py --out transformer-example            # about a minute on 2 cores
    python examples/transformer_landscape.py --out /tmp/t --steps 5 --epochs 1     # what the tests run
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from losslens import Evaluator, HessianOperator, eigenpairs, random_directions, surface_2d
from losslens.core.recipe import Recipe
from losslens.plot import plot_contour

VOCAB = 64


def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=VOCAB, n_positions=32,
                                      bos_token_id=0, eos_token_id=0))


def tiny_bert(num_labels: int = 3):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=2,
                                                    intermediate_size=64, vocab_size=VOCAB, max_position_embeddings=32,
                                                    num_labels=num_labels))


def sequences(n: int, seed: int = 0) -> list[torch.Tensor]:
    """Token sequences of 6 to 16 tokens from a noisy rule (next = 3 * token + 1 mod VOCAB, one in five random)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(6, 17, (1,), generator=g))
        tokens = [int(torch.randint(1, VOCAB, (1,), generator=g))]
        for _ in range(length - 1):
            noise = torch.rand(1, generator=g).item() < 0.2
            tokens.append(int(torch.randint(1, VOCAB, (1,), generator=g)) if noise else (3 * tokens[-1] + 1) % VOCAB or 1)
        out.append(torch.tensor(tokens))
    return out


def pad_lm(batch: list[torch.Tensor]) -> dict:
    """Pad to the longest sequence of the batch: token 0, attention mask 0, label -100."""
    T = max(len(s) for s in batch)
    ids = torch.zeros(len(batch), T, dtype=torch.long)
    mask = torch.zeros(len(batch), T, dtype=torch.long)
    for i, s in enumerate(batch):
        ids[i, : len(s)], mask[i, : len(s)] = s, 1
    return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}


def classification_data(n: int, seed: int = 1):
    """Sequences of 12 tokens labelled by their first token modulo 3, as dict inputs and labels."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (n, 12), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, ids[:, 0] % 3


def train(model, batches, epochs: int, lr: float = 3e-3):
    """A plain training loop on the loss the model returns."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    for _ in range(epochs):
        for batch in batches:
            opt.zero_grad()
            model(**batch).loss.backward()
            opt.step()
    return model.eval()


def landscape(ev: Evaluator, steps: int, out: Path, name: str):
    """A plane of random directions through the trained weights, and the top Hessian eigenvalues."""
    dirs = random_directions(ev.space, ev.w0, 2, seed=0)
    axis = np.linspace(-1, 1, steps)
    surface = surface_2d(ev, ev.w0, dirs, axis, axis, path=out / f"{name}_surface.h5", progress=False)
    plot_contour(surface, filled=True).savefig(out / f"{name}_contour.png", dpi=120)
    top = eigenpairs(HessianOperator(ev), k=2)
    return surface, top


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="transformer-example", help="output directory")
    parser.add_argument("--steps", type=int, default=21, help="grid points per axis")
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    lm_loader = DataLoader(sequences(96), batch_size=16, collate_fn=pad_lm)
    gpt2 = train(tiny_gpt2(), lm_loader, args.epochs)
    lm_eval = DataLoader(sequences(48, seed=5), batch_size=16, collate_fn=pad_lm)  # padded per batch
    lm = Evaluator(gpt2, "model", lm_eval, recipe=Recipe(split="test"))  # the model's own loss, over its shifted labels
    lm_surface, lm_top = landscape(lm, args.steps, out, "gpt2")

    inputs, labels = classification_data(96)
    batches = [{**{k: v[i : i + 16] for k, v in inputs.items()}, "labels": labels[i : i + 16]} for i in range(0, 96, 16)]
    bert = train(tiny_bert(), batches, args.epochs)
    # on the logits
    cls = Evaluator(bert, "cross_entropy", classification_data(48, seed=6), recipe=Recipe(split="test"))
    cls_surface, cls_top = landscape(cls, args.steps, out, "bert")

    for name, ev, surface, top in (("GPT-2 (causal LM)", lm, lm_surface, lm_top),
                                   ("BERT (3 classes)", cls, cls_surface, cls_top)):
        print(f"{name}: {ev.space.size} parameters, loss {surface.loss[surface.origin_index]:.4f} over "
              f"{ev.n_units:.0f} {ev.meta()['units']}, top Hessian eigenvalues "
              + ", ".join(f"{v:.4g}" for v in top.values.tolist()))
    print(f"wrote {out / 'gpt2_contour.png'}, {out / 'bert_contour.png'} and the surfaces' .h5 files")
    return {"gpt2": (lm, lm_surface, lm_top), "bert": (cls, cls_surface, cls_top)}


if __name__ == "__main__":
    main()
