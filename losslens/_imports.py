"""Resolve ``package.module:attr`` import strings, the way users name their own models and data."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

from losslens.errors import ConfigError

SHOWN_PATHS = 4  # sys.path entries named in a "module not found" message; the rest are counted


def is_import_string(spec: str) -> bool:
    """Whether ``spec`` has the ``package.module:attr`` form (a colon between two non-empty parts)."""
    module, sep, attr = spec.partition(":")
    return bool(sep and module and attr)


def resolve_import_string(spec: str, *, what: str) -> object:
    """Import the object an import string ``package.module:attr`` names.

    ``attr`` may be dotted (``pkg.mod:Class.factory``). The module is imported from ``sys.path``
    (the ``losslens`` command does not add the working directory to it).

    Args:
        spec: the import string.
        what: what the object is for (``"model factory"``), used in error messages.

    Raises:
        ConfigError: the string is malformed; the module is not found (the message names where it was
            looked for and how to fix that); the module was found but raised while it was imported (its
            first line); or the module has no such attribute. Each says which of these it is.
    """
    if not is_import_string(spec):
        raise ConfigError(f"{what} {spec!r} is not an import string of the form package.module:attr")
    module_name, _, attr = spec.partition(":")
    head = f"{what} {spec!r}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise ConfigError(f"{head}: module {module_name!r} not found: {_not_found(e.name)}") from e
        raise ConfigError(f"{head}: module {module_name!r}{_where(module_name)} was found, but importing it "
                          f"failed: {_first_line(e)}") from e
    except Exception as e:  # the user's module may raise anything while it is imported
        raise ConfigError(f"{head}: module {module_name!r}{_where(module_name)} was found, but importing it "
                          f"failed: {_first_line(e)}") from e
    obj: object = module
    for i, part in enumerate(attr.split(".")):
        if not hasattr(obj, part):
            found = ".".join([module_name] + attr.split(".")[:i])
            names = sorted(n for n in dir(obj) if not n.startswith("_"))
            listed = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
            raise ConfigError(f"{head}: module {module_name!r}{_where(module_name)} was found, but {found!r} has "
                              f"no attribute {part!r} (it has: {listed or 'no public names'})")
        obj = getattr(obj, part)
    return obj


def _not_found(missing: str) -> str:
    """Where ``missing`` was looked for (its parent package, or ``sys.path``) and how to make it found."""
    parent, _, leaf = missing.rpartition(".")
    if parent and parent in sys.modules:
        where = list(getattr(sys.modules[parent], "__path__", []))
        return f"package {parent!r} (in {', '.join(where) or '?'}) has no module {leaf!r}"
    top = missing.split(".")[0]
    paths = [p or "the working directory" for p in sys.path]
    shown = ", ".join(paths[:SHOWN_PATHS]) + (f" and {len(paths) - SHOWN_PATHS} more" if len(paths) > SHOWN_PATHS
                                              else "")
    local = any(os.path.exists(top + ext) for ext in ("", ".py"))
    fix = ("it is in the working directory, which is not on sys.path: run with PYTHONPATH=. " if local else
           f"add the directory holding {top!r} to the path (PYTHONPATH=/dir/holding/{top} losslens ...) ")
    return (f"no module {top!r} on sys.path ({shown}); {fix}or install its project (pip install -e /path/to/project)")


def _where(module_name: str) -> str:
    """`` (at FILE)`` for a module that can be located, else nothing."""
    try:
        spec = importlib.util.find_spec(module_name)
    except Exception:  # a parent package that fails to import
        return ""
    return f" (at {spec.origin})" if spec is not None and spec.origin else ""


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
