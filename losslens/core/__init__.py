"""The core: parameter space, the batched evaluator, checkpoints, models, data and the trainer (which records
what its callbacks record: ``losslens.train`` adds the dynamics recorder of ``losslens.trajectories``)."""

from losslens.core.checkpoints import load_checkpoint, load_metadata, load_model, save_checkpoint
from losslens.core.data import DATASET_NAMES, BatchData, TensorData, as_tensors, load_dataset, subset
from losslens.core.evaluator import EvalResult, Evaluator
from losslens.core.losses import NONNEGATIVE_LOSSES
from losslens.core.models import MODEL_NAMES, build_model
from losslens.core.params import ParameterSpace
from losslens.core.plan import Plan
from losslens.core.recipe import Recipe
from losslens.core.train import TrainRun, train

__all__ = [
    # evaluation
    "Evaluator", "EvalResult", "Plan", "Recipe", "ParameterSpace", "NONNEGATIVE_LOSSES",
    # checkpoints
    "load_checkpoint", "load_model", "save_checkpoint", "load_metadata",
    # models and data
    "build_model", "MODEL_NAMES", "load_dataset", "subset", "as_tensors", "TensorData", "BatchData", "DATASET_NAMES",
    # training
    "train", "TrainRun",
]
