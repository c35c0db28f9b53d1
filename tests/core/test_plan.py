"""The execution plan: recorded, decided without a clock (compile), threads measured and watched,
fallbacks recorded; the first-layer fast path really runs (Linear and ConvNd)."""

import warnings

import pytest
import torch
from torch import nn

from losslens.core import _first_layer as fl
from losslens.core import plan as plan_module
from losslens.core.plan import ExecutionPlan, compile_is_worth_it, wants_channels_last
from losslens.core._runner import Runner
from losslens.core.evaluator import Evaluator
from losslens.core.plan import Plan
from losslens.errors import ConfigError


def data(n=60, shape=(1, 4, 4), classes=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g), torch.randint(0, classes, (n,), generator=g)


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 5))


def test_plan_is_recorded_in_meta():
    ev = Evaluator(mlp(), "cross_entropy", data(), plan=Plan(device="cpu", threads=1, compile=False, batch_size=16))
    plan = ev.meta()["plan"]
    assert plan == {"device": "cpu", "dtype": "float32", "batch_size": 16, "vectorize": False, "channels_last": False,
                    "threads": 1, "compile": False, "compile_rule": "off", "fallbacks": []}


class ThreadSpy(nn.Module):
    """Records the intra-op thread count seen during its forwards."""

    def __init__(self):
        super().__init__()
        self.body = mlp()
        self.seen = []

    def forward(self, x):
        self.seen.append(torch.get_num_threads())
        return self.body(x)


def test_calls_run_with_the_plans_threads_and_restore_the_process_setting():
    before = torch.get_num_threads()
    ev = Evaluator(ThreadSpy(), "cross_entropy", data(), plan=Plan(device="cpu", threads=1))
    spy = ev._module  # the evaluator's private copy runs the forwards
    spy.seen.clear()
    ev.evaluate(ev.w0)
    ev.gradient(ev.w0)
    assert spy.seen and set(spy.seen) == {1}
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads must be 'auto' or an integer from 1 to 1024"):
        Evaluator(mlp(), "cross_entropy", data(), plan=Plan(threads=0))


def test_a_huge_thread_count_is_refused_before_torch_sees_it(monkeypatch):
    monkeypatch.setattr(torch, "set_num_threads", lambda n: pytest.fail(f"torch asked for {n} threads"))
    with pytest.raises(ValueError, match="got 100000000"):
        Evaluator(mlp(), "cross_entropy", data(), plan=Plan(threads=100_000_000))


@pytest.mark.parametrize("device", ["meta", "xla", "mps"])
def test_devices_torch_cannot_evaluate_on_are_refused_in_one_line(device):
    with pytest.raises(ConfigError, match=f"device '{device}'"):
        plan_module.resolve_device(device)


def test_small_work_never_gets_several_threads():
    threads, seconds = plan_module.faster_threads(lambda: None, 2)  # far below the floor of parallel work
    assert threads == 1 and seconds < plan_module._MIN_PARALLEL_S


def test_runner_falls_back_to_one_thread_when_chunks_run_far_slower(monkeypatch):
    plan = ExecutionPlan("cpu", "float32", 8, False, False, 2, False, "off")
    runner = Runner(plan, lambda t: t, probe=lambda: None)
    probes = []
    monkeypatch.setattr("losslens.core._runner.faster_threads", lambda probe, n: probes.append(n) or (2, 1e-3))
    runner.observe(0.10, 10, "direct")  # 10 ms per point: the first chunk sets the pace
    runner.observe(0.25, 10, "direct")  # 2.5x: within the tolerance, nothing measured
    runner.observe(0.05, 1, "first-layer")  # another kind of call has its own pace
    assert probes == [] and runner.plan.threads == 2
    runner.observe(2.0, 10, "direct")  # 20x: measured again; all threads still faster, so kept
    assert probes == [2] and runner.plan.threads == 2 and not runner.plan.fallbacks
    monkeypatch.setattr("losslens.core._runner.faster_threads", lambda probe, n: (1, 1e-3))
    runner.observe(100.0, 10, "direct")  # another process took a core: one thread from here
    assert runner.plan.threads == 1 and "1 thread from here" in runner.plan.fallbacks[-1]
    runner.observe(1000.0, 1, "direct")  # one thread is never second-guessed
    assert len(runner.plan.fallbacks) == 1


def test_compile_decision_depends_on_the_work_not_on_a_clock(monkeypatch):
    rate = plan_module._NOMINAL_FLOPS["cpu"]
    per_point = 1e9
    limit = int(plan_module._COMPILE_WORTH_S * rate / per_point)
    assert not compile_is_worth_it(limit, per_point, torch.device("cpu"))
    assert compile_is_worth_it(limit + 1, per_point, torch.device("cpu"))
    monkeypatch.setattr(torch, "compile", lambda f, **kw: f)  # no real compile in a unit test
    decisions = []
    for _ in range(2):
        ev = Evaluator(mlp(), "cross_entropy", data(), plan=Plan(device="cpu", threads=1))
        ev.expect(10**12)  # an enormous grid: compiling is worth it
        ev.evaluate(ev.w0)
        decisions.append(ev.plan.compile)
    small = Evaluator(mlp(), "cross_entropy", data(), plan=Plan(device="cpu", threads=1))
    small.evaluate(small.w0)
    assert decisions == [True, True] and small.plan.compile is False


def test_failing_compile_falls_back_once_records_it_and_gives_eager_numbers(monkeypatch):
    def broken_compile(f, **kwargs):
        def run(*args):
            raise RuntimeError("no C++ compiler")
        return run

    x, y = data()
    eager = Evaluator(mlp(), "cross_entropy", (x, y), plan=Plan(device="cpu", compile=False, threads=1))
    W = eager.w0 + 0.1 * torch.randn(3, eager.space.size, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(torch, "compile", broken_compile)
    ev = Evaluator(mlp(), "cross_entropy", (x, y), plan=Plan(device="cpu", compile=True, threads=1))
    with pytest.warns(UserWarning, match="torch.compile failed"):
        res = ev.evaluate(W)
    assert ev.plan.compile is False and "torch.compile failed" in ev.plan.fallbacks[0]
    assert ev.runner.compiled_calls == 0
    torch.testing.assert_close(res.loss, eager.evaluate(W).loss)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once only
        ev.evaluate(W)


def test_channels_last_only_for_pooling_models_on_images():
    pooled = nn.Sequential(nn.Conv2d(1, 4, 3), nn.MaxPool2d(2))
    strided = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2))
    images = torch.zeros(2, 1, 8, 8)
    cpu = torch.device("cpu")
    assert wants_channels_last(pooled, images, cpu)
    assert not wants_channels_last(strided, images, cpu)
    assert not wants_channels_last(pooled, torch.zeros(2, 64), cpu)


def conv_first(kind):
    torch.manual_seed(0)
    conv = {1: nn.Conv1d(3, 6, 5, padding=2), 2: nn.Conv2d(3, 6, 5, padding=2), 3: nn.Conv3d(3, 6, 3, padding=1)}[kind]
    return nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.LazyLinear(4))


@pytest.mark.parametrize("kind", [1, 2, 3])
def test_convolution_first_layer_takes_the_fast_path(kind, monkeypatch):
    shape = {1: (3, 10), 2: (3, 6, 6), 3: (3, 4, 4, 4)}[kind]
    x, y = data(24, shape, 4)
    model = conv_first(kind)
    model(x[:2])  # materialize the lazy layer
    calls = []
    original = fl.layer_basis
    monkeypatch.setattr(fl, "layer_basis", lambda *a: calls.append(1) or original(*a))
    ev = Evaluator(model, "cross_entropy", (x, y),
                   plan=Plan(device="cpu", batch_size=8, dtype=torch.float64, threads=1))
    D = 0.2 * torch.randn(2, ev.space.size, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    coeffs = torch.randn(5, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    fast = ev.evaluate_affine(ev.w0, D, coeffs)
    ev.evaluate_affine(ev.w0, D, coeffs[:2])  # the same plane: the first layer's outputs are kept
    slow = ev.evaluate(ev.w0 + coeffs @ D)
    assert fast.path == "first-layer" and slow.path == "direct"
    assert len(calls) == 3  # once per data batch (24 / 8), not once per point or per call
    torch.testing.assert_close(fast.loss, slow.loss, rtol=1e-12, atol=1e-12)


def test_single_layer_model_plane_takes_the_fast_path():
    """Logistic regression: the whole model is the first layer."""
    x, y = data(40, (20,), 3)
    torch.manual_seed(0)
    ev = Evaluator(nn.Linear(20, 3), "cross_entropy", (x, y), plan=Plan(device="cpu", dtype=torch.float64, threads=1))
    D = torch.randn(2, ev.space.size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    coeffs = torch.tensor([[0.0, 0.0], [0.5, -1.0], [-1.0, 2.0]], dtype=torch.float64)
    fast = ev.evaluate_affine(ev.w0, D, coeffs)
    slow = ev.evaluate(ev.w0 + coeffs @ D)
    assert fast.path == "first-layer"
    torch.testing.assert_close(fast.loss, slow.loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fast.metrics["accuracy"], slow.metrics["accuracy"])
