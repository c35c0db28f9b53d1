"""No module over 400 lines and no function over 60 without a reason written at its top.

The reason is a comment ``# long: <why>`` among a module's first 30 lines, or on the line just above a
function's ``def`` (above its decorators, if any). Lines are counted as the file has them, docstrings and
comments included: what a reader has to read.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "losslens"
MODULE_LINES = 400
FUNCTION_LINES = 60
MARK = "# long:"


def _reason(line: str) -> str | None:
    line = line.strip()
    return line[len(MARK):].strip() if line.startswith(MARK) else None


def module_reason(lines: list[str]) -> str | None:
    """The reason written among the first 30 lines, or None."""
    return next((r for r in map(_reason, lines[:30]) if r), None)


def function_reason(lines: list[str], node: ast.AST) -> str | None:
    """The reason on the line above the ``def`` (or above its first decorator), or None."""
    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
    return _reason(lines[first - 2]) if first >= 2 else None


def oversized(path: Path) -> list[str]:
    """What in ``path`` is too long without a reason: ``"module (N lines)"`` or ``"name (N lines)"``."""
    text = path.read_text()
    lines = text.splitlines()
    found = []
    if len(lines) > MODULE_LINES and not module_reason(lines):
        found.append(f"module ({len(lines)} lines)")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            if n > FUNCTION_LINES and not function_reason(lines, node):
                found.append(f"{node.name} ({n} lines)")
    return found


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_or_function_is_too_long_without_a_reason(path):
    assert not oversized(path), f"{path}: too long without '{MARK} <why>': {', '.join(oversized(path))}"


def test_the_check_sees_a_long_function_and_its_reason(tmp_path):
    body = "\n".join(f"    x = {i}" for i in range(FUNCTION_LINES))
    plain = tmp_path / "plain.py"
    plain.write_text(f"def f():\n{body}\n")
    assert oversized(plain) == [f"f ({FUNCTION_LINES + 1} lines)"]
    marked = tmp_path / "marked.py"
    marked.write_text(f"# long: one table the maths needs whole\n@staticmethod\ndef f():\n{body}\n")
    assert oversized(marked) == []
    big = tmp_path / "big.py"
    big.write_text("x = 1\n" * (MODULE_LINES + 1))
    assert oversized(big) == [f"module ({MODULE_LINES + 1} lines)"]
    big.write_text("# long: generated table\n" + "x = 1\n" * MODULE_LINES)
    assert oversized(big) == []
