"""Real models: Hugging Face transformers, dict and multi-input batches, padded sequences, token-weighted
losses and Hessians through attention, each against a plain torch loop over the same data."""

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from losslens.core.evaluator import Evaluator
from losslens.core.plan import Plan
from losslens.errors import ConfigError

transformers = pytest.importorskip("transformers")
VOCAB, CLASSES = 50, 3


def gpt2(attention="sdpa"):
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=VOCAB, n_positions=32,
                                     bos_token_id=0, eos_token_id=0, attn_implementation=attention)
    return transformers.GPT2LMHeadModel(config).eval()


def bert():
    torch.manual_seed(0)
    config = transformers.BertConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=64,
                                     vocab_size=VOCAB, max_position_embeddings=32, num_labels=CLASSES)
    return transformers.BertForSequenceClassification(config).eval()


def padded_sequences(n=11, seed=0):
    """Token sequences of lengths 4..12 with -100 labels at a few positions."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        ids = torch.randint(1, VOCAB, (int(torch.randint(4, 13, (1,), generator=g)),), generator=g)
        labels = ids.clone()
        labels[2::5] = -100
        out.append({"input_ids": ids, "labels": labels})
    return out


def pad(items):
    """A collate_fn padding each batch to its longest sequence (padding: token 0, mask 0, label -100)."""
    T = max(len(it["input_ids"]) for it in items)
    ids = torch.zeros(len(items), T, dtype=torch.long)
    mask = torch.zeros(len(items), T, dtype=torch.long)
    labels = torch.full((len(items), T), -100)
    for i, it in enumerate(items):
        n = len(it["input_ids"])
        ids[i, :n], mask[i, :n], labels[i, :n] = it["input_ids"], 1, it["labels"]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def lm_loader():
    return DataLoader(padded_sequences(), batch_size=4, collate_fn=pad)


def at(model, space, w):
    """A copy of ``model`` holding the point ``w`` (tied weights written once)."""
    net = copy.deepcopy(model)
    with torch.no_grad():
        for name, t in space.unflatten(w).items():
            net.get_parameter(name).copy_(t)
    return net


def lm_reference(model, loader):
    """Hugging Face's own loss per batch, weighted by the labels it averages over (shifted, not -100)."""
    total = count = 0.0
    with torch.no_grad():
        for batch in loader:
            n = float((batch["labels"][:, 1:] != -100).sum())
            total += float(model(**batch).loss) * n
            count += n
    return total / count


def points(ev, k=2, scale=0.05):
    g = torch.Generator().manual_seed(1)
    return torch.cat([ev.w0[None], ev.w0 + scale * torch.randn(k, ev.space.size, generator=g, dtype=ev.w0.dtype)])


@pytest.mark.parametrize("vectorize", [False, True])
@pytest.mark.parametrize("loss", ["causal_lm", "model"])
def test_gpt2_on_padded_batches_equals_the_token_weighted_loop(loss, vectorize):
    model = gpt2()
    ev = Evaluator(model, loss, lm_loader(), plan=Plan(device="cpu", vectorize=vectorize, threads=1))
    assert ev.meta()["units"] == "shifted_targets" and ev.plan.batch_size == 4
    assert "lm_head.weight" not in ev.space.names and "transformer.wte.weight" in ev.space.names  # tied: once
    W = points(ev)
    res = ev.evaluate(W)
    for k, w in enumerate(W):
        assert float(res.loss[k]) == pytest.approx(lm_reference(at(model, ev.space, w), lm_loader()), rel=2e-6)
    assert ev.n_units == sum(float((b["labels"][:, 1:] != -100).sum()) for b in lm_loader())
    assert 0 <= float(res.metrics["accuracy"][0]) <= 1


@pytest.mark.parametrize("vectorize", [False, True])
def test_a_batch_without_targets_weighs_nothing_under_the_models_own_loss(vectorize):
    """A batch whose labels are all -100: the model's own loss is NaN there (a mean over no token); it
    counts 0 units, so it adds nothing and the result is causal_lm's token-weighted mean."""
    model = gpt2()
    items = padded_sequences(12)
    with torch.no_grad():  # every other label is the model's own guess: an accuracy well above 0
        for it in items:
            it["labels"][1::2] = model(it["input_ids"][None]).logits[0].argmax(-1)[:-1][0::2]
    for it in items[4:8]:  # the second batch of 4: no target token
        it["labels"] = torch.full_like(it["labels"], -100)
    loader = DataLoader(items, batch_size=4, collate_fn=pad)
    own, ref = (Evaluator(model, loss, loader, plan=Plan(device="cpu", vectorize=vectorize, threads=1))
                for loss in ("model", "causal_lm"))
    W = points(own)
    a, b = own.evaluate(W), ref.evaluate(W)
    assert torch.isfinite(a.loss).all() and float(a.metrics["accuracy"][0]) > 0.3
    torch.testing.assert_close(a.loss, b.loss, rtol=2e-6, atol=0)
    torch.testing.assert_close(a.metrics["accuracy"], b.metrics["accuracy"], rtol=1e-12, atol=1e-12)
    g = own.gradient(own.w0)
    assert torch.isfinite(g).all()
    torch.testing.assert_close(g, ref.gradient(ref.w0), rtol=1e-4, atol=1e-7)


def test_gpt2_affine_equals_evaluate_and_the_model_is_unchanged():
    model = gpt2().train()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ev = Evaluator(model, "causal_lm", lm_loader(), plan=Plan(device="cpu", threads=1))
    g = torch.Generator().manual_seed(2)
    D = 0.05 * torch.randn(2, ev.space.size, generator=g)
    coeffs = torch.tensor([[0.0, 0.0], [1.0, -0.5], [-1.0, 2.0]])
    torch.testing.assert_close(ev.evaluate_affine(ev.w0, D, coeffs).loss, ev.evaluate(ev.w0 + coeffs @ D).loss,
                               rtol=1e-6, atol=1e-7)
    ev.gradient(ev.w0)
    assert model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in model.parameters())


def test_hessian_through_default_attention_equals_eager_and_an_independent_lanczos():
    from scipy.sparse.linalg import LinearOperator, eigsh

    from losslens.curvature.hessian import eigenpairs
    from losslens.curvature.operator import HessianOperator

    sdpa, eager = gpt2("sdpa").double(), gpt2("eager").double()
    eager.load_state_dict(sdpa.state_dict())
    top = [float(eigenpairs(HessianOperator(Evaluator(m, "model", lm_loader(),
                                                      plan=Plan(device="cpu", dtype=torch.float64))),
                            k=1, tol=1e-10).values[0]) for m in (sdpa, eager)]
    assert top[0] == pytest.approx(top[1], rel=1e-8)

    params = [p for p in eager.parameters()]  # plain torch: Hessian-vector products by double backward
    batches = list(lm_loader())
    counts = [float((b["labels"][:, 1:] != -100).sum()) for b in batches]

    def hvp(v):
        v = torch.as_tensor(v)
        out = torch.zeros_like(v)
        for batch, n in zip(batches, counts):
            loss = eager(**batch).loss * n / sum(counts)
            grads = torch.autograd.grad(loss, params, create_graph=True)
            flat = torch.cat([g.reshape(-1) for g in grads])
            hv = torch.autograd.grad(flat @ v, params)
            out += torch.cat([h.reshape(-1) for h in hv]).detach()
        return out.numpy()

    P = sum(p.numel() for p in params)
    value = eigsh(LinearOperator((P, P), matvec=hvp, dtype="float64"), k=1, which="LA", tol=1e-10,
                  v0=torch.ones(P, dtype=torch.float64).numpy())[0][0]
    assert top[0] == pytest.approx(value, rel=1e-7)


@pytest.mark.parametrize("vectorize", [False, True])
def test_bert_classifier_on_dict_batches(vectorize):
    model = bert()
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(1, VOCAB, (10, 8), generator=g)
    mask = torch.ones(10, 8, dtype=torch.long)
    mask[::2, 6:] = 0
    labels = torch.randint(0, CLASSES, (10,), generator=g)
    data = ({"input_ids": ids, "attention_mask": mask}, labels)
    ev = Evaluator(model, "cross_entropy", data,
                   plan=Plan(device="cpu", vectorize=vectorize, batch_size=4, threads=1))
    assert ev.meta()["units"] == "targets" and ev.n_units == 10  # one class label per sample
    res = ev.evaluate(points(ev))
    for k, w in enumerate(points(ev)):
        net = at(model, ev.space, w)
        with torch.no_grad():
            logits = net(input_ids=ids, attention_mask=mask).logits
        assert float(res.loss[k]) == pytest.approx(float(nn.functional.cross_entropy(logits, labels)), rel=2e-6)
        assert float(res.metrics["accuracy"][k]) == pytest.approx(float((logits.argmax(1) == labels).double().mean()))
    model_loss = Evaluator(model, "model", ({"input_ids": ids, "attention_mask": mask}, labels),
                           plan=Plan(device="cpu"))
    assert float(model_loss.evaluate(ev.w0).loss[0]) == pytest.approx(float(res.loss[0]), rel=1e-6)
    with_buffers = Evaluator(model, "cross_entropy", data, include_buffers=True, plan=Plan(device="cpu"))
    assert with_buffers.space.size == ev.space.size  # its buffers (position ids) are integers: never in the vector


class TwoInputs(nn.Module):
    """``forward(a, b)`` returning a tuple whose first element holds the logits."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(5, 8), nn.Linear(3, 8)
        self.head = nn.Linear(8, CLASSES)

    def forward(self, a, b):
        hidden = torch.tanh(self.a(a) + self.b(b))
        return self.head(hidden), hidden


class TokenLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 8)
        self.lstm = nn.LSTM(8, 12, batch_first=True)
        self.head = nn.Linear(12, CLASSES)

    def forward(self, ids):
        out, _ = self.lstm(self.embed(ids))
        return self.head(out[:, -1])


@pytest.mark.filterwarnings("ignore:losslens. this model cannot be vmapped")  # aten::lstm: the sequential path
@pytest.mark.parametrize("vectorize", [False, True])
@pytest.mark.parametrize("kind", ["two-inputs", "lstm"])
def test_multi_input_and_recurrent_models_equal_a_plain_loop(kind, vectorize):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(4)
    if kind == "two-inputs":
        model, inputs = TwoInputs(), (torch.randn(30, 5, generator=g), torch.randn(30, 3, generator=g))
    else:
        model, inputs = TokenLSTM(), torch.randint(0, VOCAB, (30, 7), generator=g)
    labels = torch.randint(0, CLASSES, (30,), generator=g)
    ev = Evaluator(model, "cross_entropy", (inputs, labels),
                   plan=Plan(device="cpu", vectorize=vectorize, batch_size=8, threads=1))
    res = ev.evaluate(points(ev))
    for k, w in enumerate(points(ev)):
        net = at(model, ev.space, w)
        with torch.no_grad():
            out = net(*inputs) if isinstance(inputs, tuple) else net(inputs)
        logits = out[0] if isinstance(out, tuple) else out
        assert float(res.loss[k]) == pytest.approx(float(nn.functional.cross_entropy(logits, labels)), rel=2e-6)
    D = 0.1 * torch.randn(2, ev.space.size, generator=g)
    c = torch.tensor([[0.5, -1.0], [1.0, 1.0]])
    torch.testing.assert_close(ev.evaluate_affine(ev.w0, D, c).loss, ev.evaluate(ev.w0 + c @ D).loss, rtol=1e-6,
                               atol=1e-7)


def test_units_can_be_overridden_and_are_recorded():
    model = gpt2()
    shifted = Evaluator(model, "model", lm_loader(), plan=Plan(device="cpu"))
    plain = Evaluator(model, "model", lm_loader(), units="targets", plan=Plan(device="cpu"))
    assert plain.meta()["units"] == "targets" and plain.n_units > shifted.n_units
    assert plain.identity()["units"] != shifted.identity()["units"]  # a resumed grid notices


def test_structures_that_cannot_work_are_one_line_errors():
    ids = torch.randint(1, VOCAB, (6, 5))
    with pytest.raises(ConfigError, match=r"target under 'labels' .* keys are \['input_ids'\]"):
        Evaluator(gpt2(), "causal_lm", DataLoader([{"input_ids": i} for i in ids], batch_size=3))
    batches = [{"input_ids": ids[:3], "labels": ids[:3], "mode": "fast"}]
    with pytest.raises(ConfigError, match=r"inputs that are not tensors: 'mode' \(str\)"):
        Evaluator(gpt2(), "causal_lm", DataLoader(batches, batch_size=None))

    class VectorLoss(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 2)

        def forward(self, x, labels=None):
            return {"loss": (self.lin(x) ** 2).sum(1), "scores": self.lin(x)}

    data = ({"x": torch.randn(6, 4)}, torch.zeros(6, dtype=torch.long))
    with pytest.raises(ConfigError, match="needs the model to return its loss .* a scalar"):
        Evaluator(VectorLoss(), "model", data, metrics=())
    with pytest.raises(ConfigError, match=r"returns a dict with keys \['loss', 'scores'\]; no tensor under 'logits'"):
        Evaluator(VectorLoss(), "cross_entropy", data)
    with pytest.raises(ValueError, match="loss_fn='model' needs dict batches"):
        Evaluator(TwoInputs(), "model", ((torch.randn(4, 5), torch.randn(4, 3)), torch.zeros(4, dtype=torch.long)))


def test_large_sets_are_streamed_from_the_loader_at_every_pass(monkeypatch):
    from losslens.core import _data

    monkeypatch.setattr(_data, "_KEEP_BYTES", 1)  # as if the batches did not fit in memory
    model = gpt2()
    rng = torch.get_rng_state()
    shuffled = DataLoader(padded_sequences(), batch_size=4, collate_fn=pad, shuffle=True)
    ev = Evaluator(model, "causal_lm", shuffled, plan=Plan(device="cpu", threads=1))
    assert ev.data._kept is None and ev.data.x is None  # nothing held: read again at each pass
    res = ev.evaluate(points(ev))
    assert torch.equal(torch.get_rng_state(), rng)  # the shuffling sampler drew from a forked RNG
    for k, w in enumerate(points(ev)):  # the order of the batches does not change the mean
        assert float(res.loss[k]) == pytest.approx(lm_reference(at(model, ev.space, w), lm_loader()), rel=2e-6)


def test_seeded_subsets_of_batches_keep_the_collate_fn():
    from losslens.core.data import BatchData, subset

    data = BatchData(DataLoader(padded_sequences(), batch_size=4, collate_fn=pad), "tokens", "test")
    part = subset(data, 5, seed=3)
    again = subset(data, 5, seed=3)
    assert len(part) == 5 and part.describe()["subset"] == {"of": 11, "seed": 3}
    first = next(iter(part.source))
    assert torch.equal(first["input_ids"], next(iter(again.source))["input_ids"]) and "attention_mask" in first
    ev = Evaluator(gpt2(), "model", part, plan=Plan(device="cpu"))
    assert ev.meta()["data"]["split"] == "test" and ev.n_samples == 5
