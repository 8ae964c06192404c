"""The package's import graph, read from the source with ``ast``: no circles, and no private name
taken across a package border.

Every import counts, also one inside a function: a deferred import hides a circle from Python's
loader, not from the reader. One kind is left out: reading the root package's own attributes
(``from . import __version__``) inside a function, which looks a value up at call time, after the
package has loaded, and is how a test's monkeypatch of ``nbexplain.__version__`` reaches the writers.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "nbexplain"
PACKAGE = ROOT.name


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _imports(name: str):
    """``(module imported, names taken from it, inside a function)`` for each import of ``name``."""
    tree = ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))
    here = name if _is_package(name) else name.rpartition(".")[0]
    deferred = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                for n in ast.walk(f)}
    for node in ast.walk(tree):
        inner = id(node) in deferred
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    yield _deepest(alias.name), (), inner
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != PACKAGE:
                continue
            plain = []
            for alias in node.names:
                if f"{target}.{alias.name}" in MODULES:  # ``from . import zoo``: the submodule itself
                    yield f"{target}.{alias.name}", (), inner
                else:
                    plain.append(alias.name)
            if plain:
                yield _deepest(target), tuple(plain), inner


def _deepest(dotted: str) -> str:
    while dotted not in MODULES:
        dotted = dotted.rpartition(".")[0]
    return dotted


def _graph() -> dict[str, set[str]]:
    graph = {name: set() for name in MODULES}
    for name in MODULES:
        for target, _names, inner in _imports(name):
            if target == PACKAGE and inner:
                continue  # the root's attributes at call time (see the module's docstring)
            if target != name:
                graph[name].add(target)
    return graph


def _circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of the graph as ``[a, b, ..., a]``, or None (depth-first search, three colours)."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def _subpackage(name: str) -> str:
    """The package a module lives in (a package's ``__init__`` is its own)."""
    return name if _is_package(name) else name.rpartition(".")[0]


def test_the_package_has_no_import_circle():
    circle = _circle(_graph())
    assert circle is None, "import circle: " + " -> ".join(circle)


def test_no_private_name_crosses_a_package_border():
    """What two packages share is public: a module takes no ``_name`` from (or of) a module in
    another package."""
    crossings = []
    for name in MODULES:
        for target, names, _inner in _imports(name):
            if _subpackage(target) == _subpackage(name):
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if any(part.startswith("_") and not part.startswith("__") for part in target.split(".")):
                private.append(f"(the private module {target})")
            crossings += [f"{name} takes {n} from {target}" for n in private]
    assert not crossings, "private names across package borders:\n" + "\n".join(crossings)


def test_the_graph_reader_sees_relative_deferred_and_absolute_imports():
    """The reader itself: a circle made of a deferred relative import is found, and private names."""
    graph = _graph()
    assert "nbexplain.core.taps" in graph["nbexplain.explainer"]  # from .core.taps import ... (module level)
    assert _circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _circle({"a": {"b"}, "b": set()}) is None
    deferred = [t for t, _n, inner in _imports("nbexplain.explanation") if inner]
    assert "nbexplain.display" in deferred  # from .display import ... inside a method
