"""Every public name documents each of its parameters in its own docstring (Google style), with no
entry that only points elsewhere ("as surface_1d", "see train"): ``help(name)`` is complete on its own.
A class with its own ``__init__`` documents them there, so that ``help(Class.__init__)`` is not empty; a
dataclass documents its fields as ``Attributes``."""

import dataclasses
import importlib
import inspect
import re

import pytest

PACKAGES = ("losslens", "losslens.core", "losslens.landscape", "losslens.curvature", "losslens.trajectories",
            "losslens.plot", "losslens.report")
SECTION = re.compile(r"^(Args|Attributes):$")
OTHER_SECTION = re.compile(r"^(Returns|Raises|Yields|Examples?|Notes?|Warnings?|See Also|Kind|Methods):")
ENTRY = re.compile(r"^(\*{0,2}\w+(?:, *\*{0,2}\w+)*)(?: \([^)]*\))?: ?(.*)$")
POINTER = re.compile(r"^(as |see |same as |like )", re.IGNORECASE)


def documented(doc: str) -> dict[str, str]:
    """``{parameter: its text}`` of the entries of the Args and Attributes sections."""
    entries, inside = {}, False
    for line in inspect.cleandoc(doc).splitlines():
        text = line.strip()
        if SECTION.match(text) or OTHER_SECTION.match(text):
            inside = bool(SECTION.match(text))
            continue
        match = ENTRY.match(text) if inside and line.startswith("    ") and not line.startswith("     ") else None
        if match:
            for name in match.group(1).split(","):
                entries[name.strip().lstrip("*")] = match.group(2)
    return entries


def public_callables():
    seen = {}
    for package in PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            obj = getattr(module, name)
            if callable(obj) and id(obj) not in seen:
                seen[id(obj)] = (f"{package}.{name}", obj)
    return sorted(seen.values(), key=lambda item: item[0])


def doc_and_parameters(obj):
    """The docstring that must document the parameters, and the parameters."""
    if inspect.isclass(obj):
        own_init = "__init__" in vars(obj) and not (dataclasses.is_dataclass(obj) and obj.__init__.__doc__ is None)
        doc = (obj.__init__.__doc__ if own_init else obj.__doc__) or ""
        signature = inspect.signature(obj)
    else:
        doc, signature = obj.__doc__ or "", inspect.signature(obj)
    return doc, [p for p in signature.parameters if not p.startswith("_")]


@pytest.mark.parametrize("qualname, obj", public_callables(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_parameter_is_documented_in_place(qualname, obj):
    doc, parameters = doc_and_parameters(obj)
    entries = documented(doc)
    missing = [p for p in parameters if p not in entries]
    pointing = [p for p in parameters if p in entries and POINTER.match(entries[p])]
    assert not missing and not pointing, f"{qualname}: undocumented {missing}, only pointing elsewhere {pointing}"


def test_the_check_catches_what_issue_14_found():
    """``surface_2d`` once said "Others: as surface_1d", ``Evaluator.__init__`` had no docstring."""
    old_surface_2d = '''The loss on a plane.

    Args:
        directions: two rows.
        x, y: coordinates.
        Others: as ``surface_1d``.
    '''
    assert set(documented(old_surface_2d)) == {"directions", "x", "y", "Others"}
    assert POINTER.match(documented("Train.\n\n    Args:\n        model, data: as in ``train``.\n    ")["data"])
    from losslens import Evaluator

    assert "loss_fn" in documented(Evaluator.__init__.__doc__) and Evaluator.__init__.__doc__.strip()
