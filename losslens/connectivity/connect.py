"""``connect``: paths between two minima A and B, the loss and accuracy along them, and their barriers.

Each path ``w(t)``, ``t`` in ``[0, 1]`` (``w(0) = A``, ``w(1) = B``), is made by its entry of ``PATHS``: the line,
or a Bezier curve or polychain whose bend is trained (``train_bend.py``; Garipov et al. 2018), or the chain
of pivots AutoNEB relaxes (``neb.py``; Draxler et al. 2018). It is evaluated at
``points`` values of ``t`` (both ends included) in one batched ``Evaluator.evaluate`` call per data split, and its
three barriers (``barriers.py``) are computed for the loss and for the error ``1 - accuracy``. Its points are
placed on the plane through A, B and the bend: :math:`x, y = (w - A) \\cdot (e_1, e_2)` with
:math:`e_1 = (B - A) / \\|B - A\\|` and :math:`e_2` the unit part of :math:`\\theta - A` orthogonal to it (the line
is drawn on the plane of the bend of the first trained path of the same call, or on the x axis alone).

With BatchNorm, the points of a path are evaluated with statistics re-estimated at each (the evaluator's
``bn="recalibrate"``, as Garipov et al. do), which the result records; the bend is trained on an evaluator with
``bn="batch"`` (gradients of recalibrated statistics are not defined by the core).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from losslens.checks import check_choice, check_int
from losslens.connectivity.alignment import align as align_to
from losslens.connectivity.barriers import DEFINITIONS, barriers
from losslens.connectivity.connection import Connection, merge
from losslens.connectivity.curves import Bezier, Line, Polychain
from losslens.connectivity.neb import NEBChain, neb
from losslens.connectivity.train_bend import BendTraining, train_bend
from losslens.core.batchnorm import batchnorm_layers
from losslens.errors import ConfigError


def _line(train_evaluator, w_a, w_b, bend, training, checkpoint, progress):
    return Line(w_a, w_b, bend), None


def _trained(cls):
    def build(train_evaluator, w_a, w_b, bend, training, checkpoint, progress):
        curve = cls(w_a, w_b, bend)
        curve, losses = train_bend(train_evaluator, curve, options=training, checkpoint=checkpoint, progress=progress)
        return curve, {**training.as_dict(), "first_loss": float(losses[0]), "last_loss": float(losses[-1])}

    build.__doc__ = f"The {cls.name} through a trained bend, and the training's record."
    return build


@dataclass(frozen=True, eq=False)
class _Chain:
    """An NEB chain as a path: its points, ends and the point half-way along it (the plane's bend)."""

    chain: NEBChain
    w_a: torch.Tensor
    w_b: torch.Tensor

    def points(self, t) -> torch.Tensor:
        return self.chain.points(t)

    @property
    def bend(self) -> torch.Tensor:
        return self.chain.points(0.5)[0]


def _neb(train_evaluator, w_a, w_b, bend, training, checkpoint, progress):
    """The chain relaxed by AutoNEB (Draxler et al. 2018; ``neb.py``): ``training.steps`` steps of size
    ``training.lr`` per cycle from 9 pivots on the line, and its record (not checkpointed: a rerun starts again)."""
    chain = neb(train_evaluator, w_a, w_b, steps=training.steps, step_size=training.lr, auto=True,
                seed=training.seed, progress=progress)
    record = {"method": "autoneb", **chain.options, "pivots_final": int(chain.pivots.shape[0]),
              "first_max_loss": float(chain.history[0]), "last_max_loss": float(chain.history[-1])}
    return _Chain(chain, w_a, w_b), record


# name -> build(train_evaluator, w_a, w_b, bend, training, checkpoint, progress) -> (path with .points(t), record)
PATHS = {"line": _line, "bezier": _trained(Bezier), "polychain": _trained(Polychain), "neb": _neb}
ALIGN_LABELS: tuple[str, ...] = ("none", "weights", "activations")


def connect(evaluator, w_a, w_b, *, path="line", points: int = 61, bend=None, steps: int = 200, lr: float = 0.05,
            optimizer: str = "sgd", batch: int = 8, seed: int = 0, train_evaluator=None, checkpoint_dir=None,
            progress: bool = False, accuracy: bool = True, align: str = "none", meta: dict | None = None) -> Connection:
    """Paths from ``w_a`` to ``w_b``, evaluated along ``t`` with their barriers (module docstring).

    Args:
        evaluator: the ``Evaluator`` of every value along the paths, or a list of them (one per data split).
        w_a, w_b: ``(P,)`` the endpoints (``t = 0``, ``t = 1``).
        path: a name of ``PATHS`` (``line``, ``bezier``, ``polychain``, ``neb``) or a sequence of them.
        points: values of ``t``, evenly spaced over ``[0, 1]`` with both ends (at least 3).
        bend: ``(P,)`` the bend the curves start from (default: the midpoint :math:`(A + B) / 2`).
        steps, lr, optimizer, batch, seed: the bend training (``BendTraining``).
        train_evaluator: the evaluator of the training's gradients (default: the first ``evaluator``, which needs
            ``bn`` other than ``"recalibrate"``; give one with ``bn="batch"`` for a model with BatchNorm).
        checkpoint_dir: where each curve's training is checkpointed and resumed from (``<path>-<align>.safetensors``).
        progress: progress bars.
        accuracy: read the accuracy along the paths (when the evaluator has it; else NaN, and no error barriers).
        align: the label of how ``w_b`` was aligned to ``w_a`` (``none``, ``weights``, ``activations``).
        meta: further provenance kept in the result's ``meta``.

    Raises:
        ConfigError: an unknown path, ``points < 3``, endpoints of different lengths, a model with BatchNorm
            evaluated without ``bn="recalibrate"``, or an evaluator that cannot give the training's gradients.
    """
    evs = list(evaluator) if isinstance(evaluator, (list, tuple)) else [evaluator]
    names = [path] if isinstance(path, str) else list(path)
    for name in names:
        check_choice("path", name, PATHS)
    points = check_int("points", points, minimum=3)
    check_choice("align", align, ALIGN_LABELS)
    training = BendTraining(steps=steps, lr=lr, optimizer=optimizer, batch=batch, seed=seed)
    w_a, w_b = (_vector(evs[0], w, n) for w, n in ((w_a, "w_a"), (w_b, "w_b")))
    bend = None if bend is None else _vector(evs[0], bend, "bend")
    bn = _check_batchnorm(evs)
    trainer = _trainer(evs[0], train_evaluator, [n for n in names if n != "line"])
    built = {}
    for name in sorted(names, key=lambda n: n == "line"):  # the line last: it is drawn on a trained bend's plane
        checkpoint = None if checkpoint_dir is None else Path(checkpoint_dir) / f"{name}-{align}.safetensors"
        built[name] = PATHS[name](trainer, w_a, w_b, bend, training, checkpoint, progress)
    plane_bend = next((p.bend for n, (p, _) in built.items() if n != "line"), bend)
    t = np.linspace(0.0, 1.0, points)
    rows, curves = [], []
    for name in names:
        p, record = built[name]
        curve, splits, found = _evaluate(evs, p, t, accuracy, plane_bend if name == "line" else p.bend)
        rows.append({"path": name, "align": align, "splits": splits, "barriers": found, "training": record})
        curves.append(curve)
    info = {"evaluator": evs[0].meta(), "splits": rows[0]["splits"], "bn": bn, "points": points, "seed": seed,
            "barrier_definitions": DEFINITIONS, **(meta or {})}
    return Connection(tuple(rows), tuple(curves), {}, info)


def _evaluate(evs, p, t: np.ndarray, accuracy: bool, plane_bend) -> tuple[np.ndarray, list, dict]:
    """``(curve (n, 3 + 2 S), splits, barriers)`` of path ``p``: one ``evaluate`` call per split."""
    W = p.points(t)
    xy = plane_coordinates(W, p.w_a, p.w_b, plane_bend)
    losses, accs, splits, found = [], [], [], {}
    for ev in evs:
        result = ev.evaluate(W)
        split = str(ev.meta()["data"].get("split") or f"split{len(splits)}")
        loss = result.loss.double().cpu().numpy()
        acc = result.metrics.get("accuracy") if accuracy else None
        acc = np.full_like(loss, np.nan) if acc is None else acc.double().cpu().numpy()
        found[split] = {"loss": barriers(t, loss),
                        "error": None if np.isnan(acc).all() else barriers(t, 1.0 - acc)}
        losses.append(loss), accs.append(acc), splits.append(split)
    return np.column_stack([t, xy, *losses, *accs]), splits, found


def plane_coordinates(W: torch.Tensor, w_a: torch.Tensor, w_b: torch.Tensor, bend=None) -> np.ndarray:
    """``(n, 2)`` coordinates of the rows of ``W`` on the plane through A, B and ``bend`` (orthonormal basis of
    ``{B - A, bend - A}`` by Gram-Schmidt; ``y = 0`` when ``bend`` is ``None`` or on the line through A and B)."""
    d = (w_b - w_a).double()
    e1 = d / d.norm()
    basis = [e1]
    if bend is not None:
        r = (bend - w_a).double()
        r = r - (r @ e1) * e1
        if r.norm() > 1e-9 * max(float(d.norm()), float((bend - w_a).double().norm())):
            basis.append(r / r.norm())
    X = (W.double() - w_a.double()) @ torch.stack(basis).T
    return np.column_stack([X.cpu().numpy(), np.zeros(len(W))])[:, :2]


def _vector(ev, w, name: str) -> torch.Tensor:
    w = torch.as_tensor(w).detach().to(device=ev.device, dtype=ev.dtype)
    if w.shape != (ev.space.size,):
        raise ConfigError(f"{name} must be a vector of the model's {ev.space.size} parameters, found shape "
                          f"{list(w.shape)}: are A and B of one architecture?")
    return w


def has_batchnorm(ev) -> bool:
    """Whether the evaluator's model has BatchNorm layers."""
    return bool(batchnorm_layers(ev.module_at(ev.w0)))


def _check_batchnorm(evs) -> str:
    """The BatchNorm mode of the evaluation along the paths: ``recalibrate`` for a model with BatchNorm (else a
    ConfigError), ``none`` for a model without."""
    if not has_batchnorm(evs[0]):
        return "none"
    wrong = sorted({ev.bn for ev in evs} - {"recalibrate"})
    if wrong:
        raise ConfigError(f"the model has BatchNorm: evaluate the paths with bn='recalibrate' (statistics re-estimated "
                          f"at every point), not bn={wrong[0]!r}")
    return "recalibrate"


def _trainer(ev, train_evaluator, trained: list):
    """The evaluator of the bend training's gradients."""
    if not trained:
        return None
    trainer = ev if train_evaluator is None else train_evaluator
    if trainer.bn == "recalibrate":
        raise ConfigError("training a bend needs gradients, which bn='recalibrate' does not give: pass "
                          "train_evaluator= an evaluator with bn='batch' (or 'eval')")
    return trainer


def connect_aligned(evaluator, w_a, w_b, *, paths=("line", "bezier"), align=("none",), points: int = 61,
                    steps: int = 200, lr: float = 0.05, seed: int = 0, train_evaluator=None, checkpoint_dir=None,
                    progress: bool = False) -> Connection:
    """``connect`` once per alignment of B to A, merged into one ``Connection``: B as it is (``none``) and/or
    with its hidden units permuted to match A's (``weights``, ``activations``: ``alignment.align`` on the first
    evaluator's inputs, which also measure the largest relative change of B's outputs, kept with the matching's
    objective in ``Connection.alignment``).

    Args:
        paths: ``connect``'s ``path``: the names of ``PATHS`` (named ``paths`` here: a ``path`` argument names a
            file, which ``core.reuse`` leaves out of a request).
        evaluator, w_a, w_b, points, steps, lr, seed, train_evaluator, checkpoint_dir, progress: as ``connect``'s.
        align: the alignments, any of ``none``, ``weights``, ``activations``.

    Raises:
        ConfigError: as ``connect``, an unknown alignment, or a model whose permutation structure cannot be
            derived (naming the module).
    """
    aligns = [align] if isinstance(align, str) else list(dict.fromkeys(align))
    for method in aligns:
        check_choice("align", method, ALIGN_LABELS)
    ev = evaluator[0] if isinstance(evaluator, (list, tuple)) else evaluator
    results, reports = [], {}
    for method in aligns:
        target = w_b
        if method != "none":
            model_b = ev.module_at(w_b)
            found = align_to(ev.module_at(w_a), model_b, method=method, data=ev.data.x)
            reports[method] = {"output_change": found.output_change, "objective": [float(v) for v in found.objective]}
            target = ev.space.flatten(found.apply(model_b), dtype=ev.dtype).to(ev.device)
        results.append(connect(evaluator, w_a, target, path=paths, points=points, steps=steps, lr=lr, seed=seed,
                               train_evaluator=train_evaluator, checkpoint_dir=checkpoint_dir, progress=progress,
                               align=method))
    return merge(results, reports)
