"""Import strings that fail say which way: module not found (where it was looked for, how to fix it),
found but raising while imported (the error's first line), or found without the attribute."""

import sys

import pytest

from losslens._imports import resolve_import_string
from losslens.errors import ConfigError


def package(root, name, **modules):
    (root / name).mkdir()
    (root / name / "__init__.py").write_text("")
    for module, text in modules.items():
        (root / name / f"{module}.py").write_text(text)


def message(spec):
    with pytest.raises(ConfigError) as e:
        resolve_import_string(spec, what="data set function")
    return str(e.value)


def test_a_module_not_on_the_path_says_where_it_looked_and_how_to_fix_it(tmp_path, monkeypatch):
    package(tmp_path, "ll14_absent", data="def tokens(split): ...\n")
    text = message("ll14_absent.data:tokens")
    assert text.startswith("data set function 'll14_absent.data:tokens': module 'll14_absent.data' not found: "
                           "no module 'll14_absent' on sys.path (")
    assert (sys.path[0] or "the working directory") in text
    assert "PYTHONPATH=/dir/holding/ll14_absent losslens" in text and "pip install -e" in text
    monkeypatch.chdir(tmp_path)  # the package is here, but the working directory is not on sys.path
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    assert "it is in the working directory, which is not on sys.path: run with PYTHONPATH=. " in \
        message("ll14_absent.data:tokens")


def test_found_modules_without_the_attribute_or_the_submodule(tmp_path, monkeypatch):
    package(tmp_path, "ll14_found", data="def tokens(split): ...\nLIMIT = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve_import_string("ll14_found.data:tokens", what="x").__name__ == "tokens"
    text = message("ll14_found.data:nothing")
    assert f"module 'll14_found.data' (at {tmp_path / 'll14_found' / 'data.py'}) was found, but 'll14_found.data' " \
        "has no attribute 'nothing' (it has: LIMIT, tokens)" in text
    assert f"module 'll14_found.other' not found: package 'll14_found' (in {tmp_path / 'll14_found'}) has no " \
        "module 'other'" in message("ll14_found.other:tokens")


def test_an_import_error_inside_the_module_is_shown_by_its_first_line(tmp_path, monkeypatch):
    package(tmp_path, "ll14_raises", broken="raise ImportError('cannot import name Tok from tokenizers\\nmore')\n",
            needs="import ll14_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    text = message("ll14_raises.broken:f")
    assert text.endswith(f"module 'll14_raises.broken' (at {tmp_path / 'll14_raises' / 'broken.py'}) was found, "
                         "but importing it failed: ImportError: cannot import name Tok from tokenizers")
    assert "was found, but importing it failed: ModuleNotFoundError: No module named 'll14_no_such_dependency'" \
        in message("ll14_raises.needs:f")
