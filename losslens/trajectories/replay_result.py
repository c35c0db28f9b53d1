"""The result of a replay (``replay.py``): every optimizer's path, its status, the contour behind them, and
the summary figures per optimizer (see ``replay.py`` for what each figure is)."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from losslens._io import atomic
from losslens.checks import check_choice
from losslens.results import Items, Result, attr, stored, to_dataframe


PATH_COLUMNS: tuple[str, ...] = ("optimizer", "step", "x", "y", "loss", "grad_norm", "lr")


SUMMARY_COLUMNS: tuple[str, ...] = (
    "optimizer", "name", "lr", "status", "steps", "final_x", "final_y", "final_loss", "steps_to_tol", "path_length",
    "oscillation", "lambda_max_start", "lr_above_2_over_lambda_start", "lambda_max_minimum",
    "lr_above_2_over_lambda_minimum",
)


@dataclass(frozen=True, eq=False, repr=False)
class Replay(Result):
    """The paths of several optimizers on one objective.

    Attributes:
        labels: one per optimizer, unique.
        paths: one ``(T_k + 1, 6)`` array per optimizer, columns ``step, x, y, loss, grad_norm, lr``.
        status: per optimizer ``"completed"``, ``"diverged"`` or ``"left the domain"``.
        background: ``(x (nx,), y (ny,), z (ny, nx))`` the objective around the paths, for contours;
            ``None`` when the objective cannot be sampled.
        meta: the objective's ``meta`` (under ``objective``), ``optimizers`` (label, name, class, lr,
            options), ``start``, ``steps``, ``schedule``, ``clip``, ``noise``, ``seed``, ``tol``,
            ``min_value``, ``minimum``, ``lambda_max`` (``start``, ``minimum``), ``stops``, ``versions``.
    """

    KIND: ClassVar[str] = "replay"

    labels: tuple[str, ...] = attr(tuple)
    paths: tuple[np.ndarray, ...] = stored(Items())
    status: tuple[str, ...] = attr(tuple)
    background: tuple[np.ndarray, np.ndarray, np.ndarray] | None = stored(Items(("x", "y", "z"), optional=True))
    meta: dict = attr()

    @property
    def value_name(self) -> str:
        """What the ``loss`` column holds: ``"fitted loss"`` on a fit (the fit's value, not the model's
        loss), else ``"loss"``."""
        objective = self.meta.get("objective") or {}
        return objective.get("value_name") or ("fitted loss" if objective.get("kind") == "fit" else "loss")

    def columns(self, table: str = "paths") -> tuple[str, ...]:
        """The CSV columns of ``table`` (``PATH_COLUMNS`` or ``SUMMARY_COLUMNS``), ``loss`` named by
        ``value_name`` (``fitted_loss``, ``final_fitted_loss`` on a fit).

        Raises:
            ValueError: an unknown table.
        """
        check_choice("table", table, ("paths", "summary"))
        name = self.value_name.replace(" ", "_")
        return tuple(c.replace("loss", name) for c in (PATH_COLUMNS if table == "paths" else SUMMARY_COLUMNS))

    def path(self, label: str) -> dict[str, np.ndarray]:
        """The columns of one optimizer's path: ``step, x, y, loss, grad_norm, lr``.

        Raises:
            KeyError: an unknown label (the labels are listed).
        """
        if label not in self.labels:
            raise KeyError(f"no optimizer labelled {label!r}; labels: {', '.join(self.labels)}")
        p = self.paths[self.labels.index(label)]
        return {c: (p[:, i].astype(int) if c == "step" else p[:, i]) for i, c in enumerate(PATH_COLUMNS[1:])}

    @property
    def target(self) -> float:
        """The loss the tolerance is measured from: the objective's minimum value, else the lowest reached."""
        if self.meta.get("min_value") is not None:
            return float(self.meta["min_value"])
        losses = np.concatenate([p[:, 3] for p in self.paths])
        losses = losses[np.isfinite(losses)]
        return float(losses.min()) if len(losses) else math.nan

    def summary_rows(self) -> list[dict]:
        """One dict per optimizer with the ``SUMMARY_COLUMNS`` (see the module doc); on a fit ``final_loss``
        is the fitted loss (``value_name``)."""
        lam = self.meta.get("lambda_max") or {}
        target, tol = self.target, float(self.meta["tol"])
        rows = []
        for label, p, status, opt in zip(self.labels, self.paths, self.status, self.meta["optimizers"]):
            loss = p[:, 3]
            reached = np.flatnonzero(loss <= target + tol)
            moves = np.diff(p[:, 1:3], axis=0)
            moves = moves[np.isfinite(moves).all(axis=1)]
            lr = float(opt["lr"])
            rows.append({
                "optimizer": label, "name": opt["name"], "lr": lr, "status": status, "steps": int(p[-1, 0]),
                "final_x": float(p[-1, 1]), "final_y": float(p[-1, 2]), "final_loss": float(loss[-1]),
                "steps_to_tol": int(p[reached[0], 0]) if len(reached) else None,
                "path_length": _length(moves),
                "oscillation": int(((moves[1:] * moves[:-1]).sum(axis=1) < 0).sum()),
                "lambda_max_start": lam.get("start"), "lr_above_2_over_lambda_start": _above(lr, lam.get("start")),
                "lambda_max_minimum": lam.get("minimum"),
                "lr_above_2_over_lambda_minimum": _above(lr, lam.get("minimum")),
            })
        return rows

    def summary(self) -> str:
        """A table of the summary figures, with the stability limits spelled out."""
        m = self.meta
        lam = m.get("lambda_max") or {}
        value = self.value_name
        head = [f"replay on {m['objective'].get('name', 'objective')} from ({m['start'][0]:.4g}, {m['start'][1]:.4g}), "
                f"{m['steps']} steps; tolerance {m['tol']:g} above {self.target:.6g}"
                + (f"; values are the {value} (the fit's, not the model's loss)" if value != "loss" else "")]
        for where in ("start", "minimum"):
            v = lam.get(where)
            if v is not None:
                limit = f"2/lambda_max = {2 / v:.4g}" if v > 0 else "no limit (no positive curvature)"
                head.append(f"lambda_max at the {where} {v:.4g}: gradient descent is stable for lr < {limit}")
        rows = self.summary_rows()
        width = max(len(r["optimizer"]) for r in rows)
        head.append(f"{'optimizer':<{width}}  {'lr':>8}  {'final ' + value:>11}  {'to tol':>6}  {'length':>8}  "
                    f"{'turns':>5}  status")
        for r in rows:
            where = [w for w in ("start", "minimum") if r[f"lr_above_2_over_lambda_{w}"]]
            flag = f" (lr > 2/lambda_max at the {' and the '.join(where)})" if where else ""
            head.append(f"{r['optimizer']:<{width}}  {r['lr']:>8.3g}  {r['final_loss']:>11.5g}  "
                        f"{'-' if r['steps_to_tol'] is None else r['steps_to_tol']:>6}  {r['path_length']:>8.4g}  "
                        f"{r['oscillation']:>5}  {r['status']} after {r['steps']} steps{flag}")
        return "\n".join(head)

    def to_csv(self, path: str | Path, table: str = "paths") -> Path:
        """Write ``table``: ``"paths"`` (columns ``PATH_COLUMNS``, one row per optimizer and step) or
        ``"summary"`` (``SUMMARY_COLUMNS``, one row per optimizer; an empty cell for none), the loss's
        columns named by ``value_name`` (``columns``).

        Raises:
            ValueError: an unknown table.
        """
        rows, columns = self._table(table)
        with atomic(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows([["" if v is None else v for v in row] for row in rows])
        return Path(path)

    def to_pandas(self, table: str = "paths"):
        """``table`` (as in ``to_csv``) as a ``pandas.DataFrame`` (pandas is needed); ``None`` where a
        value does not apply.

        Raises:
            ValueError: an unknown table.
        """
        return to_dataframe(*self._table(table))

    def _table(self, table: str) -> tuple[list[list], tuple[str, ...]]:
        """``(rows, columns)`` of ``"paths"`` or ``"summary"``, the columns as ``columns`` names them."""
        columns = self.columns(table)
        if table == "paths":
            return [[label, int(r[0]), *map(float, r[1:])] for label, p in zip(self.labels, self.paths) for r in p], columns
        return [[r[c] for c in SUMMARY_COLUMNS] for r in self.summary_rows()], columns


def _length(moves: np.ndarray) -> float:
    """:math:`\\sum_t \\lVert p_{t+1} - p_t \\rVert` (``inf`` for a path that ran off to overflow)."""
    with np.errstate(over="ignore"):
        return float(np.hypot(moves[:, 0], moves[:, 1]).sum())


def _above(lr: float, lam: float | None) -> bool | None:
    """Whether ``lr > 2 / lam`` (never when ``lam <= 0``); ``None`` when ``lam`` is unknown."""
    if lam is None:
        return None
    return bool(lam > 0 and lr > 2.0 / lam)
