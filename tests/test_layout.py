"""The package's import rules, as docs/ARCHITECTURE.md states them: checked from the source, so they stay true.

Every import statement counts, at module level or inside a function: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lstmviz"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str) -> set[str]:
    """The lstmviz modules that module ``name`` imports (``from .x import y`` counts y when y is a module)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.add(prefix)
            found.update(f"{prefix}.{a.name}" for a in node.names)
    # a module's own package __init__ runs first anyway; it is not an edge of the design
    return {m for m in found if m in MODULES and m != name and not name.startswith(m + ".") and m != "lstmviz"}


GRAPH = {name: _imports(name) for name in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan): each is an import cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while (w := stack.pop()) != v:
                group.append(w)
            group.append(v)
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def test_there_are_no_import_cycles():
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_sees_a_cycle_through_a_lazy_import():
    """The check above can fail: a ring is found whatever its length, a one-way chain is not, and an import
    inside a method (``Run.top_contexts`` imports the cards' reads when called) is an edge of the graph."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert "lstmviz.cards.read" in GRAPH["lstmviz.store.run"]


def test_streamlit_is_imported_only_by_the_dashboard():
    users = [n for n, p in MODULES.items() if "streamlit" in _raw_imports(p)]
    assert users and all(n.startswith("lstmviz.dashboard") for n in users), users


def test_nothing_below_the_cli_and_the_dashboard_imports_them():
    front = ("lstmviz.cli", "lstmviz.dashboard", "lstmviz.__main__")
    wrong = [f"{n} -> {d}" for n, deps in GRAPH.items() if not n.startswith(front) for d in deps if d.startswith(front)]
    assert wrong == []


def _raw_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def floating_strings(source: str) -> list[int]:
    """Lines of the bare string statements after a module's docstring: Streamlit's magic writes each one on the
    page (an attribute docstring in a page script shows above its title)."""
    body = ast.parse(source).body
    return [n.lineno for n in body[1:] if isinstance(n, ast.Expr) and isinstance(getattr(n.value, "value", None), str)]


def test_no_page_script_has_a_string_that_magic_would_write():
    assert floating_strings('"""doc"""\nX = 1\n"""shown"""\n') == [3]  # the finder finds one
    scripts = [*sorted((PACKAGE / "dashboard" / "pages").glob("*.py")), PACKAGE.parent / "app.py"]
    found = {p.name: floating_strings(p.read_text(encoding="utf-8")) for p in scripts}
    assert not {k: v for k, v in found.items() if v}
