"""A plane of a tiny GPT-2 language model: the evaluator core vs the point-by-point loop, side by side.

The model (2 layers, width 64, vocabulary 256, from a config: nothing downloaded) and 128 token
sequences of 16 to 48 tokens, padded per batch of 32 by the DataLoader's collate_fn (labels -100 at
the padding). In this one process, in interleaved blocks of the plane:

- ``loop``: the way of the older tools: for each point, the weights copied into the model in place,
  then the batches, Hugging Face's own loss weighted by its shifted labels (every ``stride``-th point);
- ``core``: ``Evaluator(model, "model", loader, metrics=()).evaluate_affine`` on every point (no
  accuracy, so that both compute the same loss and nothing else).

On a CPU both run the same forwards one point after another (token inputs admit no first-layer
shortcut, and vmap is used on CUDA only), so the ratio shows the core's overhead; the gain of batched
points for such models is on a GPU.

Printed: points/second of both, the ratio, the largest relative loss difference on the common
points, and the core's plan. Usage: ``python bench/transformer.py [--quick] [--steps 21]``.
Last line: ``gpt2_speedup=X max_rel_diff=Y``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import timed  # noqa: E402
from examples.transformer_landscape import pad_lm  # noqa: E402
from losslens.core.evaluator import Evaluator  # noqa: E402
from losslens.landscape.directions import random_directions  # noqa: E402

_BLOCKS = 4


def gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=256, n_positions=64, bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(config).eval()


def loader():
    g = torch.Generator().manual_seed(0)
    seqs = [torch.randint(1, 256, (int(torch.randint(16, 49, (1,), generator=g)),), generator=g) for _ in range(128)]
    return DataLoader(seqs, batch_size=32, collate_fn=pad_lm)


@torch.no_grad()
def point_by_point(model, batches, w0, D, coeffs) -> torch.Tensor:
    """Each point's weights copied into the model in place, then its loss over the batches."""
    params = list(model.parameters())
    counts = [float((b["labels"][:, 1:] != -100).sum()) for b in batches]
    out = []
    for c in coeffs:
        torch.nn.utils.vector_to_parameters(w0 + c @ D, params)
        out.append(sum(float(model(**b).loss) * n for b, n in zip(batches, counts)) / sum(counts))
    return torch.tensor(out, dtype=torch.float64)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 9x9 plane")
    parser.add_argument("--steps", type=int, help="points per axis (default 21, 9 with --quick)")
    args = parser.parse_args(argv)
    steps = args.steps or (9 if args.quick else 21)
    stride = max(1, steps * steps // 20)
    model = gpt2()
    ev = Evaluator(model, "model", loader(), metrics=())
    if [n for n, _ in model.named_parameters()] != list(ev.space.names):
        raise SystemExit("the loop's parameter order differs from the evaluator's")
    dirs = random_directions(ev.space, ev.w0, 2, seed=0)
    D = dirs.vectors.to(ev.dtype)
    axis = torch.linspace(-1, 1, steps)
    coeffs = torch.cartesian_prod(axis, axis)
    common = torch.arange(0, len(coeffs), stride)
    batches = list(loader())
    ev.expect(len(coeffs))
    core, refs, t_core, t_loop = [], [], 0.0, 0.0
    for block in torch.arange(len(coeffs)).tensor_split(_BLOCKS):
        res, dt = timed(ev.evaluate_affine, ev.w0, D, coeffs[block])
        core.append(res.loss)
        t_core += dt
        mine = common[(common >= block[0]) & (common <= block[-1])]
        ref, dt = timed(point_by_point, model, batches, ev.w0, D, coeffs[mine])
        refs.append(ref)
        t_loop += dt
    loss, ref = torch.cat(core), torch.cat(refs)
    rel = float(((loss[common] - ref).abs() / ref.abs()).max())
    rate_core, rate_loop = len(coeffs) / t_core, len(common) / t_loop
    p = ev.plan
    print(f"tiny GPT-2: {ev.space.size:,} parameters, {ev.n_samples} sequences ({ev.n_units:.0f} shifted target "
          f"tokens) in padded batches of 32, {steps}x{steps} plane; torch {torch.__version__}")
    print(f"  point-by-point (in place)   {len(common):>5} points {t_loop:8.2f} s {rate_loop:8.2f} points/s")
    print(f"  losslens core ({p.threads}t, {'compiled' if p.compile else 'eager'}, "
          f"{'vmap' if p.vectorize else 'sequential'}) {len(coeffs):>5} points {t_core:8.2f} s {rate_core:8.2f} points/s")
    print(f"  speedup {rate_core / rate_loop:.2f}x   max relative loss difference {rel:.2e}")
    print(f"\ngpt2_speedup={rate_core / rate_loop:.2f} max_rel_diff={rel:.2e}")


if __name__ == "__main__":
    main()
