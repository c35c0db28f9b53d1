"""losslens: loss landscapes of neural networks from one batched evaluator core.

Every loss value comes from ``Evaluator``, which evaluates many flat parameter vectors at once;
surfaces, lines, Hessian spectra and trajectories are built on it and return result objects that
carry their axes and provenance (plotting lives in ``losslens.plot``; ``load_result`` reads any
result file).
"""

__version__ = "0.2.0"

from losslens.core import (  # noqa: E402
    EvalResult, Evaluator, ParameterSpace, TrainRun, build_model, load_checkpoint, load_dataset, load_model,
    save_checkpoint, subset, train,
)
from losslens.landscape import (  # noqa: E402
    Directions, Eigenpairs, HessianOperator, Spectrum, Surface, TraceEstimate, barrier, between, density,
    eigenpairs, hessian_directions, interpolate, pca_directions, random_directions, surface_1d, surface_2d, trace,
)
from losslens.results import load_result  # noqa: E402

__all__ = [
    "__version__",
    # core
    "Evaluator", "EvalResult", "ParameterSpace", "build_model", "load_dataset", "subset", "load_checkpoint",
    "load_model", "save_checkpoint", "train", "TrainRun",
    # landscape
    "Directions", "random_directions", "hessian_directions", "pca_directions", "between", "Surface",
    "surface_1d", "surface_2d", "interpolate", "barrier",
    # Hessian
    "HessianOperator", "Eigenpairs", "eigenpairs", "TraceEstimate", "trace", "Spectrum", "density",
    # result files
    "load_result",
]
