"""The layers hold: every ``import`` in losslens/ (read with ``ast``, those inside functions included)
goes down the layers, never makes a cycle, never reaches a private module (``_x.py``) from outside its package
(the bottom layer's ``_io`` and the like are modules of ``losslens`` itself, so every package may import them),
never imports a private name (``_f``) from a module of another package (the same package may), and never goes
through the package face.

The layers, bottom to top (a module may import its own layer and the ones below):

0. the top-level helpers ``errors``, ``checks``, ``_io`` (with ``_locks`` and ``_vet``), ``_version``,
   ``_distributed``, ``_imports`` and ``results`` (``Result``, the base every result class is stored and shown
   with, and the registry of kinds, whose lazy ``"module:Class"`` strings are not imports);
1. ``core``; 2. ``landscape``, ``curvature`` and ``connectivity``; 3. ``trajectories``; 4. ``plot``; 5. ``report``; 6. ``cli``;
7. the package face ``losslens/__init__.py`` and ``__main__.py``, which nothing inside losslens imports.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "losslens"
FACE = "losslens"
BASE = {"errors", "checks", "_io", "_locks", "_vet", "_version", "_distributed", "_imports", "results"}
LAYERS = {"core": 1, "landscape": 2, "curvature": 2, "connectivity": 2, "trajectories": 3, "plot": 4, "report": 5, "cli": 6}
TOP = 7
COMPUTATION = ("core", "landscape", "curvature", "connectivity", "trajectories")


def module_names(root: Path = ROOT) -> dict[str, Path]:
    """``{dotted module name: file}`` of every module of the package (a package by its ``__init__``)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = ("losslens",) + path.relative_to(root).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


@functools.lru_cache(maxsize=None)
def import_statements(source: str) -> tuple:
    """``(module or None for "import", level, names, line)`` of every import statement of ``source``, at any
    depth (in functions, classes, ``if`` blocks)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.append((None, 0, tuple(a.name for a in node.names), node.lineno))
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level, tuple(a.name for a in node.names), node.lineno))
    return tuple(found)


def imports(module: str, source: str, modules) -> list[tuple[str, str, int]]:
    """``(imported module, imported name or "", line)`` for every losslens import in ``source`` (at any depth);
    ``from pkg import mod`` names the module ``pkg.mod`` when it is one."""
    package = module if module in modules and modules[module].name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for base, level, names, line in import_statements(source):
        if base is None:
            found += [(name, "", line) for name in names if name.split(".")[0] == "losslens"]
            continue
        if level:
            anchor = package.split(".")[: len(package.split(".")) - level + 1]
            base = ".".join(anchor + ([base] if base else []))
        if base.split(".")[0] != "losslens":
            continue
        for name in names:
            sub = f"{base}.{name}"
            found.append((sub, "", line) if sub in modules else (base, name, line))
    return found


def layer(module: str) -> int:
    """The layer of a losslens module (see the module docstring)."""
    parts = module.split(".")
    if module == FACE or parts[1] == "__main__":
        return TOP
    if parts[1] in LAYERS:
        return LAYERS[parts[1]]
    assert parts[1] in BASE, f"{module} is in no layer: add it to BASE or LAYERS in tests/test_layers.py"
    return 0


def package_of(module: str, modules) -> str:
    """The package a module belongs to (a package's ``__init__`` belongs to that package)."""
    return module if modules.get(module, Path()).name == "__init__.py" else module.rpartition(".")[0]


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def violations(sources: dict[str, str] | None = None) -> list[str]:
    """Every import that breaks a layer rule, one line each (``module:line: what``); ``sources`` maps module
    names to source text and replaces or adds those modules (the default reads the package)."""
    files = module_names()
    modules = {name: path.read_text() for name, path in files.items()}
    modules.update(sources or {})
    for name in sources or {}:
        files.setdefault(name, Path(name.replace(".", "/") + ".py"))
    found, graph = [], {name: set() for name in modules}
    for name, source in modules.items():
        for target, attr, line in imports(name, source, files):
            where = f"{name}:{line}"
            if target == FACE and attr:
                found.append(f"{where}: imports {attr!r} from the package face (import it from its module)")
                continue
            if target not in files:
                found.append(f"{where}: imports {target!r}, which is no module of losslens")
                continue
            graph[name].add(target)
            if layer(target) > layer(name):
                found.append(f"{where}: imports {target} from a higher layer ({layer(target)} > {layer(name)})")
            importer, owner = package_of(name, files), package_of(target, files)
            inside = importer == owner or importer.startswith(owner + ".")
            if is_private(target.rpartition(".")[2]) and not inside:
                found.append(f"{where}: imports the private module {target} from outside {owner}")
            if attr and is_private(attr) and importer != owner:
                found.append(f"{where}: imports the private name {attr} of {target} from outside {owner}")
    found += [f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(graph)]
    return list(dict.fromkeys(found))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected component of more than one module (or a module importing
    itself), found with Tarjan's algorithm."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(v):  # recursion depth is bounded by the number of modules (about a hundred)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                components.append(set(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [cycle_in(graph, component) for component in components]


def cycle_in(graph, component: set[str]) -> list[str]:
    """A cycle inside one strongly connected component, as a path that returns to its start."""
    start = min(component)
    path, seen = [start], {start}
    while True:
        nxt = min(w for w in graph[path[-1]] if w in component)
        if nxt in seen:
            return path[path.index(nxt):] + [nxt]
        path.append(nxt)
        seen.add(nxt)


def test_every_import_in_losslens_holds_the_layers():
    assert violations() == []


def test_computation_never_imports_plot_or_a_drawing_library():
    drawing = ("losslens.plot", "matplotlib", "plotly")
    found = []
    for name, path in module_names().items():
        if name.split(".")[1:2] and name.split(".")[1] in COMPUTATION:
            for base, level, names, line in import_statements(path.read_text()):
                imported = names if base is None else () if level else (base,)
                found += [f"{name}:{line}: {n}" for n in imported if n.startswith(drawing)]
    assert found == []


@pytest.mark.parametrize("source, expected", [
    ("def f():\n    from losslens.trajectories import dynamics\n",
     "losslens.core.train:2: imports losslens.trajectories.dynamics from a higher layer (3 > 1)"),
    ("def f():\n    import losslens.trajectories.series\n",
     "losslens.core.train:2: imports losslens.trajectories.series from a higher layer (3 > 1)"),
    ("from losslens import __version__\n",
     "losslens.core.train:1: imports '__version__' from the package face (import it from its module)"),
    ("from losslens.landscape import _grid_values\n",
     "losslens.core.train:1: imports the private module losslens.landscape._grid_values from outside "
     "losslens.landscape"),
])
def test_a_core_module_reaching_up_turns_the_check_red(source, expected):
    """A core module importing trajectories inside a function (or the face, or another package's private
    module) is found."""
    assert expected in violations({"losslens.core.train": source})


def test_private_names_across_packages_and_cycles_are_found():
    found = violations({"losslens.landscape.layers_probe": "from losslens.core.params import _probe\n",
                        "losslens.report.layers_probe": "from losslens._io import FORMAT_VERSION, _probe\n",
                        "losslens.core.layers_probe": "from losslens.core.params import _probe\n",
                        "losslens.core.layers_a": "def f():\n    from losslens.core import layers_b\n",
                        "losslens.core.layers_b": "from .layers_a import x\n"})
    assert "losslens.landscape.layers_probe:1: imports the private name _probe of losslens.core.params from " \
        "outside losslens.core" in found
    assert "losslens.report.layers_probe:1: imports the private name _probe of losslens._io from outside losslens" \
        in found  # the bottom layer's modules are shared, their private names are not
    assert "import cycle: losslens.core.layers_a -> losslens.core.layers_b -> losslens.core.layers_a" in found
    assert not [v for v in found if v.startswith("losslens.core.layers_probe:")]  # the same package may
    assert not [v for v in found if "layers_" not in v]  # the package itself holds
