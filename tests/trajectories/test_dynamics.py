"""Tests of losslens/trajectories/dynamics.py: values by hand on a linear model, bit-identical training,
per-checkpoint dynamics of a saved run."""

import csv
import math

import numpy as np
import pytest
import torch
from torch import nn

from losslens.trajectories.dynamics import DYNAMICS_COLUMNS, Dynamics, dynamics_of_run
from losslens.trajectories.dynamics_recorder import DynamicsRecorder


def test_recorded_values_equal_the_closed_forms_of_least_squares():
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(8, 3, generator=g, dtype=torch.float64), torch.randn(8, 1, generator=g, dtype=torch.float64)
    model = nn.Linear(3, 1, bias=False).double()
    w0 = model.weight.detach().clone().reshape(-1)
    lr = 0.05
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    recorder = DynamicsRecorder(model, optimizer=opt, sharpness_data=(X, y), loss_fn="mse")

    def loss_of(w):  # L(w) = |Xw - y|^2 / N, gradient 2/N X^T (Xw - y), Hessian 2/N X^T X
        return float(((X @ w - y[:, 0]) ** 2).mean())

    def grad_of(w):
        return 2 / len(X) * X.T @ (X @ w - y[:, 0])

    ws = [w0]
    for _ in range(3):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(X), y)
        loss.backward()
        opt.step()
        recorder.step(model, loss)
        ws.append(ws[-1] - lr * grad_of(ws[-1]))
    recorder.epoch(model, loss=0.5)
    d = recorder.result()
    assert d.kind == ("step", "step", "step", "epoch") and list(d["step"]) == [1, 2, 3, 3]
    steps = d.of_kind("step")
    losses = [loss_of(w) for w in ws[:3]]
    np.testing.assert_allclose(steps["loss"], losses, rtol=1e-12)
    np.testing.assert_allclose(steps["loss_improvement"][1:], np.diff(losses) * -1, rtol=1e-10)
    assert math.isnan(steps["loss_improvement"][0])
    np.testing.assert_allclose(steps["grad_norm"], [float(grad_of(w).norm()) for w in ws[:3]], rtol=1e-12)
    np.testing.assert_allclose(steps["weight_norm"], [float(w.norm()) for w in ws[1:]], rtol=1e-12)
    np.testing.assert_allclose(steps["change_since_previous"], [lr * float(grad_of(w).norm()) for w in ws[:3]],
                               rtol=1e-10)
    np.testing.assert_allclose(steps["change_since_init"], [float((w - w0).norm()) for w in ws[1:]], rtol=1e-10)
    top = float(torch.linalg.eigvalsh(2 / len(X) * X.T @ X)[-1])
    np.testing.assert_allclose(d["sharpness"], top, rtol=1e-8)  # Lanczos on a 3x3 operator: converged
    np.testing.assert_allclose(d["stability_threshold"], 2 / lr)
    np.testing.assert_allclose(d["lr"], lr)
    epoch = d.of_kind("epoch")  # an epoch record compares with the start, not with the step records
    assert epoch["loss"][0] == 0.5 and math.isnan(epoch["loss_improvement"][0])
    assert epoch["change_since_previous"][0] == pytest.approx(float((ws[3] - w0).norm()), rel=1e-10)


def _train(record: bool):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    g = torch.Generator().manual_seed(1)
    X, y = torch.randn(64, 6, generator=g), torch.randint(0, 3, (64,), generator=g)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    recorder = DynamicsRecorder(model, optimizer=opt, sharpness_data=(X[:32], y[:32]), loss_fn="cross_entropy",
                                sharpness_every=2) if record else None
    torch.manual_seed(1)  # dropout draws from the global RNG: a recorder that touched it would change training
    for _ in range(2):
        for i in range(0, 64, 16):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(X[i:i + 16]), y[i:i + 16])
            loss.backward()
            opt.step()
            if recorder is not None:
                recorder.step(model, loss)
        if recorder is not None:
            recorder.epoch(model)
    return model, recorder, torch.random.get_rng_state()


def test_the_recorder_leaves_training_bit_identical():
    plain, _, rng_plain = _train(record=False)
    recorded, recorder, rng_recorded = _train(record=True)
    for (name, a), b in zip(plain.named_parameters(), recorded.parameters()):
        assert torch.equal(a, b), name
        assert torch.equal(a.grad, b.grad), name
    assert recorded.training and torch.equal(rng_plain, rng_recorded)  # no draw from the global RNG
    d = recorder.result()
    assert len(d) == 10 and np.isfinite(d["sharpness"]).sum() == 5  # every second record
    assert np.isnan(d.of_kind("epoch")["loss"]).all()


def test_dynamics_of_a_saved_run(tmp_path):
    from losslens.core.checkpoints import load_checkpoint
    from losslens.core.data import load_dataset
    from losslens.core.models import build_model
    from losslens.core.params import ParameterSpace
    from losslens.core.train import train

    run = train("mlp", "digits", epochs=2, lr=1e-2, seed=0, out=tmp_path / "run", model_kwargs={"hidden": [8]},
                progress=False)
    d = dynamics_of_run(tmp_path / "run", sharpness=True)
    assert d.kind == ("checkpoint",) * 3 and list(d["step"]) == [0, 22, 44] and list(d["epoch"]) == [0, 1, 2]
    np.testing.assert_allclose(d["loss"], [h["train_loss"] for h in run.history], rtol=1e-5)
    data = load_dataset("digits", "train")
    model = build_model("mlp", hidden=[8]).double()
    space = ParameterSpace(model)
    ws = []
    for path in run.checkpoints:
        model.load_state_dict(load_checkpoint(path, model))
        model.zero_grad()
        nn.functional.cross_entropy(model(data.x.double()), data.y).backward()
        assert d["grad_norm"][len(ws)] == pytest.approx(
            math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.parameters())), rel=1e-4)  # float32 evaluator
        ws.append(space.flatten(model))
    np.testing.assert_allclose(d["weight_norm"], [float(w.norm()) for w in ws], rtol=1e-6)
    np.testing.assert_allclose(d["change_since_init"], [float((w - ws[0]).norm()) for w in ws], rtol=1e-6)
    np.testing.assert_allclose(d["change_since_previous"][1:], [float((b - a).norm()) for a, b in zip(ws, ws[1:])],
                               rtol=1e-6)
    assert np.isfinite(d["sharpness"]).all()
    assert d["stability_threshold"][0] == pytest.approx(3.8 / (0.1 * 1e-2))  # Adam (the default), beta1 = 0.9
    assert d.meta["stability"]["of"] == "preconditioned" and "no Adam second moments" in d.meta["sharpness_note"]


def test_save_load_and_csv_columns(tmp_path):
    model = nn.Linear(2, 1)
    recorder = DynamicsRecorder(model, lr=0.1, every=2)
    for _ in range(4):
        assert (recorder.step(model, 1.0) is None) == (recorder.n_steps % 2 == 1)
    d = recorder.result(meta={"note": "x"})
    back = Dynamics.load(d.save(tmp_path / "d.h5"))
    assert back.kind == d.kind and back.meta == d.meta
    for c in DYNAMICS_COLUMNS[1:]:
        np.testing.assert_array_equal(back[c], d[c])
    with open(d.to_csv(tmp_path / "d.csv")) as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == DYNAMICS_COLUMNS and rows[1][:3] == ["step", "2", "0"] and len(rows) == 3
    assert math.isnan(d["grad_norm"][0])  # no .grad yet
    with pytest.raises(ValueError, match=r"every must be an integer >= 1 \(got"):
        DynamicsRecorder(model, every=0)


# -- the edge of stability per optimizer -------------------------------------------------------------------


@pytest.mark.parametrize("optimizer, lr, options, limit, of", [
    ("SGD", 0.1, {}, 20.0, "hessian"),  # 2/lr
    ("SGD", 0.1, {"momentum": 0.9}, 38.0, "hessian"),  # 2(1 + beta)/lr
    ("SGD", 0.1, {"momentum": 0.8, "dampening": 0.8}, 180.0, "hessian"),  # 2(1 + beta)/((1 - tau) lr)
    ("SGD", 0.1, {"momentum": 0.9, "nesterov": True}, 3.8 / 0.28, "hessian"),  # (2 + 2 beta)/((1 + 2 beta) lr)
    ("Adam", 1e-3, {}, 38_000.0, "preconditioned"),  # (2 + 2 beta1)/((1 - beta1) lr) = 38/lr at beta1 = 0.9
    ("AdamW", 1e-3, {"betas": (0.5, 0.999)}, 6_000.0, "preconditioned"),
    (None, 0.5, {}, 4.0, "hessian"),  # no optimizer: gradient descent
])
def test_stability_limit_per_optimizer(optimizer, lr, options, limit, of):
    from losslens.trajectories.edge_of_stability import stability_limit

    found = stability_limit(optimizer, lr, options)
    assert found.value == pytest.approx(limit, rel=1e-12) and found.of == of


@pytest.mark.parametrize("optimizer", ["RMSprop", "Adagrad", "Lion"])
def test_no_limit_is_drawn_for_optimizers_without_one(optimizer):
    from losslens.trajectories.edge_of_stability import stability_limit

    found = stability_limit(optimizer, 1e-3, {})
    assert math.isnan(found.value) and found.note == f"no known edge-of-stability limit for {optimizer}"


@pytest.mark.parametrize("options", [{}, {"momentum": 0.9}, {"momentum": 0.8, "dampening": 0.8},
                                     {"momentum": 0.9, "nesterov": True}])
def test_the_limit_is_where_torch_sgd_starts_to_diverge_on_a_quadratic(options):
    """Ground truth: torch.optim.SGD on L = lambda w^2 / 2 converges just below the limit, diverges just above."""
    from losslens.trajectories.edge_of_stability import stability_limit

    lr = 0.1
    limit = stability_limit("SGD", lr, options).value
    for factor, diverges in ((0.97, False), (1.03, True)):
        w = torch.ones(1, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.SGD([w], lr=lr, **options)
        for _ in range(1000):
            opt.zero_grad()
            (factor * limit * w.pow(2).sum() / 2).backward()
            opt.step()
        size = abs(float(w.detach()))
        assert (not size < 1e3) if diverges else size < 1e-3, (factor, size)


def test_a_momentum_run_records_and_draws_its_own_limit(tmp_path):
    from losslens.core.data import load_dataset, subset
    from losslens.plot.trajectories import plot_dynamics
    from losslens.trajectories.training import train_with_dynamics as train

    data = (subset(load_dataset("digits", "train"), 128), subset(load_dataset("digits", "test"), 32))
    run = train("mlp", data, optimizer="momentum", lr=0.05, epochs=1, seed=0, out=tmp_path / "run",
                model_kwargs={"hidden": [6]}, progress=False)
    recorded = Dynamics.load(run.out / "dynamics.h5")  # by the trainer's recorder
    d = dynamics_of_run(run.out)  # recomputed, with the sharpness by default
    for dynamics in (recorded, d):
        np.testing.assert_allclose(dynamics["stability_threshold"], 2 * 1.9 / 0.05)  # not 2/lr = 40
    ax = plot_dynamics(d).axes[5]
    (limit,) = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    np.testing.assert_allclose(limit.get_ydata(), 76.0)
    assert "2(1+β)/lr, momentum β=0.9" in limit.get_label()


def test_default_dynamics_include_a_bounded_lambda_max(tmp_path):
    """lambda_max by default, equal to a converged Lanczos run, within the bound of products it states."""
    from losslens.core.data import load_dataset, subset
    from losslens.core.train import train
    from losslens.curvature.hessian import HessianOperator, eigenpairs
    from losslens.trajectories.edge_of_stability import MAX_SHARPNESS_MATVECS
    from losslens.trajectories.series import CheckpointSeries, run_evaluator

    data = (subset(load_dataset("digits", "train"), 128), subset(load_dataset("digits", "test"), 32))
    run = train("mlp", data, optimizer="sgd", lr=0.1, epochs=1, seed=0, out=tmp_path / "run",
                model_kwargs={"hidden": [6]}, progress=False)
    d = dynamics_of_run(run.out)
    assert d.meta["sharpness"] is True and f"at most {MAX_SHARPNESS_MATVECS} Hessian-vector" in d.meta["sharpness_note"]
    assert all(0 < n <= MAX_SHARPNESS_MATVECS for n in d.meta["sharpness_products"])
    series = CheckpointSeries.from_run(run.out)
    ev = run_evaluator(series)
    for i in range(len(series)):
        truth = eigenpairs(HessianOperator(ev, series.vector(i).to(ev.dtype)), k=1, tol=1e-10).values[0]
        assert d["sharpness"][i] == pytest.approx(float(truth), rel=1e-3)
    off = dynamics_of_run(run.out, sharpness=False)
    assert np.isnan(off["sharpness"]).all() and "left out" in off.meta["sharpness_note"]


def test_adam_records_the_preconditioned_sharpness():
    """lambda_max(P^-1 H) with P = (1 - beta1^(t+1)) (sqrt(v_t / (1 - beta2^t)) + eps), by hand on least squares."""
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(16, 4, generator=g, dtype=torch.float64), torch.randn(16, 1, generator=g, dtype=torch.float64)
    model = nn.Linear(4, 1, bias=False).double()
    opt = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.99), eps=1e-3)
    recorder = DynamicsRecorder(model, optimizer=opt, sharpness_data=(X, y), loss_fn="mse")
    for _ in range(3):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(X), y)
        loss.backward()
        opt.step()
        recorder.step(model, loss)
    d = recorder.result()
    v = opt.state[model.weight]["exp_avg_sq"].reshape(-1)
    p = (1 - 0.8 ** 4) * ((v / (1 - 0.99 ** 3)).sqrt() + 1e-3)
    H = 2 / len(X) * X.T @ X
    truth = float(torch.linalg.eigvalsh(H / p.sqrt()[:, None] / p.sqrt()[None, :])[-1])
    assert d["sharpness"][-1] == pytest.approx(truth, rel=1e-6)
    assert d["stability_threshold"][-1] == pytest.approx(3.6 / (0.2 * 0.01))
    assert d.meta["stability"]["sharpness"] == "preconditioned"


def test_the_sharpness_stops_within_its_bound_when_lanczos_does_not_converge():
    """A dense spectrum (top eigenvalue not separated): NaN after at most MAX_SHARPNESS_MATVECS products."""
    from scipy.sparse.linalg import LinearOperator

    from losslens.trajectories.edge_of_stability import MAX_SHARPNESS_MATVECS, sharpness_of

    class Diagonal:
        def __init__(self, d):
            self.d, self.shape, self.n_matvec = d, (len(d), len(d)), 0

        def to_scipy(self):
            def matvec(x):
                self.n_matvec += 1
                return self.d * x.reshape(-1)
            return LinearOperator(self.shape, matvec=matvec, dtype=np.float64)

    value, n = sharpness_of(Diagonal(np.linspace(0, 1, 20_000)))
    assert math.isnan(value) and 0 < n <= MAX_SHARPNESS_MATVECS
    value, n = sharpness_of(Diagonal(np.r_[np.linspace(0, 1, 20_000), 1.5]))
    assert value == pytest.approx(1.5, rel=1e-3) and n <= MAX_SHARPNESS_MATVECS


def test_recorder_names_a_bad_model_lr_or_seed():
    from losslens.errors import ConfigError

    model = nn.Linear(3, 2)
    with pytest.raises(ConfigError, match="must be a torch.nn.Module, got str"):
        DynamicsRecorder("model")
    for lr in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"lr must be a finite number > 0 or None \(got"):
            DynamicsRecorder(model, lr=lr)
    with pytest.raises(ConfigError, match="seed must be an integer"):
        DynamicsRecorder(model, seed=None)
    with pytest.raises(ConfigError, match="expected the model .* got Tensor"):
        DynamicsRecorder(model, lr=0.1).step(torch.tensor(1.0))  # the loss passed where the model goes
