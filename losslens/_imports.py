"""Resolve ``package.module:attr`` import strings, the way users name their own models and data."""

from __future__ import annotations

import importlib

from losslens.errors import ConfigError


def is_import_string(spec: str) -> bool:
    """Whether ``spec`` has the ``package.module:attr`` form (a colon between two non-empty parts)."""
    module, sep, attr = spec.partition(":")
    return bool(sep and module and attr)


def resolve_import_string(spec: str, *, what: str) -> object:
    """Import the object an import string ``package.module:attr`` names.

    ``attr`` may be dotted (``pkg.mod:Class.factory``). The module is imported from ``sys.path``
    (the ``losslens`` command puts the working directory on it).

    Args:
        spec: the import string.
        what: what the object is for (``"model factory"``), used in error messages.

    Raises:
        ConfigError: the string is malformed, the module cannot be imported or has no such attribute.
    """
    if not is_import_string(spec):
        raise ConfigError(f"{what} {spec!r} is not an import string of the form package.module:attr")
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise ConfigError(f"{what} {spec!r}: module {module_name!r} not found") from e
        raise ConfigError(f"{what} {spec!r}: importing module {module_name!r} failed: {e}") from e
    except Exception as e:  # the user's module may raise anything while it is imported
        raise ConfigError(
            f"{what} {spec!r}: importing module {module_name!r} failed: {type(e).__name__}: {e}"
        ) from e
    obj: object = module
    for i, part in enumerate(attr.split(".")):
        if not hasattr(obj, part):
            found = ".".join([module_name] + attr.split(".")[:i])
            raise ConfigError(f"{what} {spec!r}: {found!r} has no attribute {part!r}")
        obj = getattr(obj, part)
    return obj
