"""The optional PyHessian backend: runs PyHessian 0.1 itself and converts its output to ours.

PyHessian (Yao, Gholami, Keutzer, Mahoney 2020, "PyHessian: Neural Networks Through the Lens of the
Hessian") works on a module: its constructor calls ``model.eval()`` and
``loss.backward(create_graph=True)``, so it only ever gets ``evaluator.module_at(w)``, a fresh copy,
never the caller's model. It takes the whole evaluation set as one batch (``data=(x, y)``), the
evaluator's loss as a ``torch.nn`` criterion, and ``cuda`` from the evaluator's device (its default
is ``cuda=True``, so it is always passed).

Its quirks, handled here without copying its code:

- its random vectors come from the global RNG in the default dtype: each call runs under a forked
  RNG seeded with ``seed`` (the caller's RNG state is left as it was) and with the default dtype set
  to the evaluator's;
- ``density()`` calls ``torch.eig``, removed from torch: during the call only, ``torch.eig`` is a
  replacement that returns the eigenvalues as an ``(n, 2)`` tensor of real and imaginary parts and
  the eigenvectors as columns, computed by ``torch.linalg.eigh`` (the Lanczos matrix is symmetric);
- its Hessian-vector products are counted by wrapping the function it calls, during the call only.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import warnings
from typing import Iterator

import torch
from torch import nn

from losslens.checks import check_choice
from losslens.curvature.operator import HessianOperator
from losslens.errors import ConfigError

BACKENDS: tuple[str, ...] = ("losslens", "pyhessian")
_CRITERIA = {"cross_entropy": nn.CrossEntropyLoss, "mse": nn.MSELoss}


def check_backend(backend: str) -> None:
    """Raise for an unknown backend, or for ``"pyhessian"`` when PyHessian is not installed."""
    check_choice("backend", backend, BACKENDS)
    if backend == "pyhessian" and importlib.util.find_spec("pyhessian") is None:
        raise ConfigError("backend 'pyhessian' needs the optional PyHessian package (GPL-3), which is not installed: "
                          "pip install pyhessian (or losslens[pyhessian])")


def needs_model(op) -> HessianOperator:
    """``op`` itself when it is a ``HessianOperator`` (PyHessian runs the model, not a matrix)."""
    if not isinstance(op, HessianOperator):
        raise ValueError("backend='pyhessian' needs a HessianOperator (it runs on the model), not a dense tensor")
    return op


def eigenpairs(op: HessianOperator, k: int, *, tol: float, seed: int, maxiter: int | None):
    """Top-``k`` eigenpairs by PyHessian's power iteration: ``(values (k,), vectors (k, P), n_hvp)``,
    float64 on the CPU, vectors flattened in the parameter space's order."""
    with _session(op, seed) as (hess, module, counter):
        values, vectors = hess.eigenvalues(maxIter=maxiter or 100, tol=tol, top_n=k)
        flat = torch.stack([_flatten(op, module, v) for v in vectors])
    return torch.tensor(values, dtype=torch.float64), flat, counter[0]


def trace_samples(op: HessianOperator, n: int, *, seed: int) -> tuple[list[float], int]:
    """PyHessian's Hutchinson samples :math:`z^T H z` (at most ``n``; ``tol=0`` so that its early stop,
    a relative change below ``tol``, does not cut the budget) and the number of products."""
    with _session(op, seed) as (hess, _, counter):
        samples = hess.trace(maxIter=n, tol=0.0)
    return [float(s) for s in samples], counter[0]


def density_quadrature(op: HessianOperator, n_vectors: int, n_lanczos: int, *, seed: int):
    """PyHessian's stochastic Lanczos quadrature: ``(nodes, weights, n_hvp)``, nodes and weights as
    ``(n_vectors, n_lanczos)`` float64 tensors (its ``eigen_list_full``, ``weight_list_full``)."""
    with _session(op, seed) as (hess, _, counter), _torch_eig_replaced():
        nodes, weights = hess.density(iter=n_lanczos, n_v=n_vectors)
    return torch.tensor(nodes, dtype=torch.float64), torch.tensor(weights, dtype=torch.float64), counter[0]


@contextlib.contextmanager
def _session(op: HessianOperator, seed: int) -> Iterator[tuple[object, nn.Module, list[int]]]:
    """A PyHessian ``hessian`` object on a fresh copy of the model at ``op.w``, seeded, counting products."""
    ph = importlib.import_module("pyhessian.hessian")  # the module (the package re-exports a class of that name)

    ev = op.evaluator
    if ev.loss_name not in _CRITERIA:
        raise ValueError(
            f"backend='pyhessian' supports the losses {', '.join(_CRITERIA)}; the evaluator uses {ev.loss_name!r}"
        )
    if not (ev.data.as_tensors and isinstance(ev.data.x, torch.Tensor)) or (
            ev.loss_name == "cross_entropy" and ev.data.y.dim() != 1):
        raise ValueError("backend='pyhessian' takes one input tensor and class labels of shape (N,) (or mse targets); "
                         "use backend='losslens' for other data")
    if ev.space.include_buffers:
        raise ValueError("backend='pyhessian' differentiates parameters only; the evaluator has include_buffers=True")
    module = ev.module_at(op.w)
    if ev.bn != "eval" and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules()):
        raise ValueError(f"backend='pyhessian' runs BatchNorm in eval mode; the evaluator uses bn={ev.bn!r}")
    x, y = ev.data.x.contiguous(), ev.data.y
    counter = [0]
    original_hvp = ph.hessian_vector_product

    def counted(gradsH, params, v):
        counter[0] += 1
        return original_hvp(gradsH, params, v)

    default_dtype = torch.get_default_dtype()
    cuda = ev.device.type == "cuda"
    index = (ev.device.index if ev.device.index is not None else torch.cuda.current_device()) if cuda else None
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.random.fork_rng(devices=[index] if cuda else []))
        stack.enter_context(warnings.catch_warnings())
        warnings.filterwarnings("ignore", message=r"Using backward\(\) with create_graph=True")
        torch.random.default_generator.manual_seed(seed)  # its randn on the CPU
        if cuda:  # its .cuda() and randint_like on the evaluator's GPU, seeded
            stack.enter_context(torch.cuda.device(index))
            torch.cuda.manual_seed(seed)
        torch.set_default_dtype(ev.dtype)
        ph.hessian_vector_product = counted
        try:
            hess = ph.hessian(module, _CRITERIA[ev.loss_name](), data=(x, y), cuda=cuda)
            yield hess, module, counter
        finally:
            ph.hessian_vector_product = original_hvp
            torch.set_default_dtype(default_dtype)
            for p in module.parameters():  # break the graph cycle that backward(create_graph=True) left
                p.grad = None


@contextlib.contextmanager
def _torch_eig_replaced() -> Iterator[None]:
    """``torch.eig(A, eigenvectors=True)`` for symmetric ``A``, during the block only."""
    had, original = hasattr(torch, "eig"), getattr(torch, "eig", None)

    def eig(A: torch.Tensor, eigenvectors: bool = False):
        values, vectors = torch.linalg.eigh(A)
        pairs = torch.stack([values, torch.zeros_like(values)], dim=1)
        return pairs, (vectors if eigenvectors else A.new_empty(0))

    torch.eig = eig
    try:
        yield
    finally:
        if had:
            torch.eig = original
        else:
            del torch.eig


def _flatten(op: HessianOperator, module: nn.Module, tensors: list[torch.Tensor]) -> torch.Tensor:
    """A PyHessian vector (one tensor per trainable parameter, in ``module.parameters()`` order) as a
    float64 CPU ``(P,)`` vector in the parameter space's order."""
    names = [n for n, p in module.named_parameters() if p.requires_grad]
    by_name = dict(zip(names, tensors))
    missing = [n for n in op.evaluator.space.names if n not in by_name]
    if missing or len(names) != len(op.evaluator.space.names):
        raise ValueError(f"PyHessian's parameters do not match the parameter space (missing: {missing})")
    return op.evaluator.space.flatten(by_name, dtype=torch.float64).cpu()
