"""One reuse rule: a stored result answers a request only when the requests are equal.

A *request* names a computation: the analysis function and its arguments, bound as a call binds them
(``inspect.signature(function).bind``, defaults applied), each input replaced by its fingerprint:

- plain values (``None``, numbers, strings) as they are; lists, tuples and dicts element by element;
  a path by its name (a caller names the content of a file or a directory it reads: ``Call.naming``);
- tensors and arrays by a content hash of their dtypes, shapes and bytes;
- an object with a ``fingerprint()`` method by what it returns (an ``Evaluator``: its ``identity()`` and
  the hash of its weights; a ``HessianOperator``: its evaluator's and its point's);
- a result (a dataclass, such as ``Surface`` or ``TrajectoryPCA``) by the fingerprints of its fields
  but ``meta``, which holds how and when it was made, not what it is.

Arguments that never change a result (``IGNORED``: where it is written, how progress shows, the
caller's notes, how the work is split) are left out; a caller leaves out more by name
(``Call.ignoring``), or names the fingerprint of an input it knows better (``Call.naming``: a training
run by its checkpoints' hashes). Any other input has no fingerprint, and building its request fails.

A stored request answers a new one when they are equal (``differences`` lists the arguments that
are not). The only exceptions are the *covers* rules a caller names for an argument: ``AT_LEAST``
(more than asked answers: ``k=4`` eigenpairs hold the top 2) and ``AT_MOST`` (a tighter tolerance
answers a looser one).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
from typing import Callable, Mapping

import numpy as np
import torch

from losslens._io import json_default
from losslens.core.provenance import fingerprint

IGNORED = frozenset({"path", "progress", "meta", "chunk", "memory_budget"})  # never change the result
Cover = Callable[[object, object], bool]  # (stored value, asked value) -> whether the stored one answers


def AT_LEAST(stored, asked) -> bool:
    """A stored value at least the asked one answers it (``k`` eigenpairs answer fewer)."""
    return stored is not None and asked is not None and stored >= asked


def AT_MOST(stored, asked) -> bool:
    """A stored value at most the asked one answers it (a tighter tolerance answers a looser one)."""
    return stored is not None and asked is not None and stored <= asked


class Call:
    """An analysis function with its bound arguments: ``call()`` computes, ``call.request()`` names it.

    Args:
        function: the analysis. args, kwargs: its arguments, as it would be called.

    Raises:
        TypeError: the arguments do not bind to the function's signature.
    """

    def __init__(self, function: Callable, /, *args, **kwargs):
        self.function = function
        self.bound = inspect.signature(function).bind(*args, **kwargs)
        self.bound.apply_defaults()
        self.named: dict[str, object] = {}
        self.ignored: frozenset[str] = IGNORED

    def naming(self, **fingerprints) -> "Call":
        """Name inputs by JSON-able fingerprints that the caller knows better than their values (a run
        directory by its checkpoints' hashes, an objective by the request of the call that made it)."""
        unknown = set(fingerprints) - set(self.bound.arguments)
        if unknown:
            raise TypeError(f"{self.function.__name__} has no argument {', '.join(sorted(unknown))}")
        self.named.update(fingerprints)
        return self

    def ignoring(self, *names: str) -> "Call":
        """Leave arguments that do not change this result out of the request."""
        self.ignored = self.ignored | set(names)
        return self

    def __call__(self):
        return self.function(*self.bound.args, **self.bound.kwargs)

    def request(self) -> dict:
        """``{"analysis": "module.function", argument: fingerprint, ...}``, canonical JSON-able."""
        out = {"analysis": f"{self.function.__module__}.{self.function.__qualname__}"}
        for name, value in self.bound.arguments.items():
            if name in self.ignored:
                continue
            if name in self.named:
                out[name] = self.named[name]
            elif self.bound.signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                out.update({key: fingerprint_of(v, f"{name}[{key!r}]") for key, v in value.items()})
            else:
                out[name] = fingerprint_of(value, name)
        return canonical(out)


def request(function: Callable, /, *args, **kwargs) -> dict:
    """The request of ``function(*args, **kwargs)`` (see the module docstring): ``Call(...).request()``."""
    return Call(function, *args, **kwargs).request()


def canonical(obj):
    """``obj`` as it reads back from a result file's JSON metadata (tuples as lists, numpy scalars as numbers)."""
    return json.loads(json.dumps(obj, default=json_default, sort_keys=True))


def fingerprint_of(value, name: str = "value"):
    """The fingerprint of the argument ``name`` (see the module docstring)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return {"sha256": fingerprint([value])}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [fingerprint_of(v, f"{name}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {str(k): fingerprint_of(v, f"{name}[{k!r}]") for k, v in value.items()}
    if callable(getattr(value, "fingerprint", None)):
        return value.fingerprint()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"type": type(value).__name__} | {
            f.name: fingerprint_of(getattr(value, f.name), f"{name}.{f.name}")
            for f in dataclasses.fields(value) if f.name != "meta"}
    raise TypeError(f"argument {name}: a {type(value).__name__} has no fingerprint; name one with "
                    "Call.naming, or leave it out with Call.ignoring if it does not change the result")


def differences(stored, asked, covers: Mapping[str, Cover] | None = None,
                prefix: str = "") -> list[tuple[str, object, object]]:
    """``(dotted key, stored value, asked value)`` of each value where ``stored`` does not answer ``asked``:
    unequal, unless the cover rule that ``covers`` names for that top-level key accepts the stored value
    (``prefix``: the dotted key of the dicts compared, below the top level)."""
    if not (isinstance(stored, dict) and isinstance(asked, dict)):
        return [] if stored == asked else [(prefix.rstrip(".") or "the whole request", stored, asked)]
    out = []
    for key in list(asked) + [k for k in stored if k not in asked]:
        a, b = stored.get(key), asked.get(key)
        cover = None if prefix else (covers or {}).get(key)
        if cover is None:
            out += differences(a, b, None, f"{prefix}{key}.")
        elif not cover(a, b):
            out.append((key, a, b))
    return out


def answers(stored, asked, covers: Mapping[str, Cover] | None = None) -> bool:
    """Whether a stored request answers the asked one (equal, but for the named cover rules)."""
    return not differences(stored, asked, covers)
