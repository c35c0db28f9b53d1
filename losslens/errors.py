"""Errors that losslens raises for bad input; the CLI prints them as one line."""


class LosslensError(Exception):
    """Base of every error caused by the user's input (a file, a flag, a model)."""


class CheckpointError(LosslensError, ValueError):
    """A checkpoint is missing, unreadable, unsafe, or does not fit the model."""


class ConfigError(LosslensError, ValueError):
    """An option, a model name, a dataset name or an import string is invalid."""
