"""The one family of argument checks (``losslens.checks``): what each accepts and refuses, the one form of
their message, and every public analysis refusing a bad option with a ``ConfigError`` that names it."""

import math
import re

import numpy as np
import pytest
import torch
from torch import nn

import losslens.checks as checks
from losslens.checks import check_choice, check_int, check_number, check_probability, check_seed
from losslens.errors import ConfigError


def refused(call, message: str):
    """``call()`` raises a ConfigError whose message is exactly ``message``."""
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        call()


# -- the family -----------------------------------------------------------------------------------


def test_check_choice_accepts_the_allowed_values_only():
    assert check_choice("method", "pca", ("pca", "tsne")) == "pca"
    assert check_choice("dim", np.int64(1), (0, 1)) == 1
    refused(lambda: check_choice("method", "umap", ("pca", "tsne", "phate")),
            "method must be one of pca, tsne, phate (got 'umap')")
    refused(lambda: check_choice("dim", True, (0, 1)), "dim must be one of 0, 1 (got True)")  # a bool is no int
    refused(lambda: check_choice("vectorize", 1, ("auto", True, False)),
            "vectorize must be one of auto, True, False (got 1)")
    refused(lambda: check_choice("method", ["pca"], ("pca",)), "method must be one of pca (got ['pca'])")
    refused(lambda: check_choice("method", np.array(["pca", "pca"]), ("pca",)),
            "method must be one of pca (got array(['pca', 'pca'], dtype='<U3'))")
    refused(lambda: check_choice("wavelet", "mexh", ("haar",), describe="a discrete wavelet"),
            "wavelet must be a discrete wavelet (got 'mexh')")


def test_check_int_takes_python_and_numpy_integers_within_the_bounds():
    assert check_int("n", 3, minimum=1) == 3 and type(check_int("n", np.int32(3), minimum=1)) is int
    assert check_int("n", None, none=True) is None and check_int("k", 9, minimum=1, maximum=9) == 9
    refused(lambda: check_int("n", 0, minimum=1), "n must be an integer >= 1 (got 0)")
    refused(lambda: check_int("k", 10, minimum=1, maximum=9), "k must be an integer from 1 to 9 (got 10)")
    refused(lambda: check_int("k", 10, maximum=9), "k must be an integer <= 9 (got 10)")
    refused(lambda: check_int("chunk", 0, minimum=1, none=True), "chunk must be an integer >= 1 or None (got 0)")
    for bad in (True, 2.0, "2", None, np.float64(2.0), math.nan):
        with pytest.raises(ConfigError, match=r"^n must be an integer >= 1 \(got "):
            check_int("n", bad, minimum=1)


def test_check_number_refuses_nan_inf_bools_and_what_is_out_of_bounds():
    assert check_number("tol", 0, minimum=0) == 0.0 and type(check_number("tol", np.float32(0.5))) is float
    assert check_number("order", math.inf, minimum=1, finite=False) == math.inf
    assert check_number("clip", None, positive=True, none=True) is None
    refused(lambda: check_number("tol", math.nan, minimum=0), "tol must be a finite number >= 0 (got nan)")
    refused(lambda: check_number("tol", math.inf, minimum=0), "tol must be a finite number >= 0 (got inf)")
    refused(lambda: check_number("order", math.nan, minimum=1, finite=False), "order must be a number >= 1 (got nan)")
    refused(lambda: check_number("lr", 0.0, positive=True), "lr must be a finite number > 0 (got 0.0)")
    refused(lambda: check_number("lr", True, positive=True), "lr must be a finite number > 0 (got True)")
    refused(lambda: check_number("lr", "0.1", positive=True), "lr must be a finite number > 0 (got '0.1')")
    refused(lambda: check_number("margin", 11, minimum=0, maximum=10), "margin must be a number from 0 to 10 (got 11)")
    refused(lambda: check_number("tol", torch.tensor(0.1)), "tol must be a finite number (got tensor(0.1000))")


def test_check_probability_and_check_seed():
    assert check_probability("p", 0) == 0.0 and check_probability("p", np.float64(1.0)) == 1.0
    refused(lambda: check_probability("p", 1.5), "p must be a number from 0 to 1 (got 1.5)")
    refused(lambda: check_probability("p", math.nan), "p must be a number from 0 to 1 (got nan)")
    assert check_seed(np.uint32(7)) == 7 and check_seed(2**63 - 1) == 2**63 - 1
    refused(lambda: check_seed(2**32, high=2**32), "seed must be an integer from 0 to 2**32 - 1 (got 4294967296)")
    for bad in (-1, True, 1.0, None):
        with pytest.raises(ConfigError, match=r"^seed must be an integer from 0 to 2\*\*63 - 1 \(got "):
            check_seed(bad)


def test_the_checks_are_value_errors_so_callers_catching_value_error_still_work():
    with pytest.raises(ValueError):
        check_int("n", 0, minimum=1)
    assert issubclass(ConfigError, ValueError) and checks.integer(True) is None and checks.integer(np.int8(3)) == 3


# -- every public analysis refuses one bad option, naming it ---------------------------------------


@pytest.fixture(scope="module")
def tiny():
    """A 2-layer MLP on 20 random samples, its evaluator, two directions and a 5x5 surface."""
    from losslens.core import Evaluator
    from losslens.core.plan import Plan
    from losslens.landscape import random_directions, surface_2d

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    X, Y = torch.randn(20, 3), torch.randint(0, 2, (20,))
    ev = Evaluator(model, "cross_entropy", (X, Y), plan=Plan(device="cpu"))
    dirs = random_directions(ev.space, ev.w0, 2, seed=0)
    grid = np.linspace(-1, 1, 5)
    surface = surface_2d(ev, ev.w0, dirs, grid, grid, progress=False)
    points = torch.randn(6, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return ev, dirs, surface, points


def bad_calls(ev, dirs, surface, points):
    """``{argument: a call of a public analysis with that argument bad}``."""
    from losslens.curvature import density, eigenpairs, trace
    from losslens.curvature.operator import HessianOperator
    from losslens.landscape import (
        curvature_map, fit_surface, interpolate, multiscale, random_directions, surface_2d, topology, wasserstein,
    )
    from losslens.trajectories import DynamicsRecorder, embed, replay, trajectory_pca

    H = HessianOperator(ev)
    x = np.linspace(-1, 1, 3)
    return {
        "normalization": lambda: random_directions(ev.space, ev.w0, normalization="filters"),
        "chunk": lambda: surface_2d(ev, ev.w0, dirs, x, x, chunk=0, progress=False),
        "which": lambda: eigenpairs(H, 1, which="biggest"),
        "method": lambda: trace(H, method="exact"),
        "backend": lambda: density(H, backend="scipy"),
        "model": lambda: fit_surface(surface, "cubic"),
        "mode": lambda: multiscale(surface, mode="wrap"),
        "construction": lambda: topology(surface, construction="pixels"),
        "order": lambda: wasserstein(topology(surface), topology(surface), order=0.5),
        "maxiter": lambda: curvature_map(ev, ev.w0, dirs, x, x, maxiter=0, progress=False),
        "steps": lambda: interpolate(ev, ev.w0, ev.w0 + 1, steps=1),
        "schedule": lambda: replay("quadratic", ["sgd"], schedule="linear"),
        "n_components": lambda: trajectory_pca(points, 0),
        "init": lambda: embed(points, "tsne", init="spectral"),
        "every": lambda: DynamicsRecorder(nn.Linear(2, 2), every=0),
    }


def test_every_public_analysis_refuses_a_bad_option_with_a_config_error_naming_it(tiny):
    for argument, call in bad_calls(*tiny).items():
        with pytest.raises(ConfigError, match=rf"^{argument} must be ") as err:
            call()
        assert "(got " in str(err.value), (argument, str(err.value))
