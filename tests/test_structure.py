"""The package's import graph has no cycle: data flows one way, and no module reaches back up for state
it could have been handed (../shared/DESIGN.md).

A pure AST walk over the source tree (nothing is imported): every `import` / `from ... import`
statement that names a module of the package counts, at module level, inside functions (the lazy
imports that would otherwise hide a circle) and under `if TYPE_CHECKING:` alike. A package's
`__init__` is a module like any other, so a submodule that imports its own package while the
package imports it is a cycle too.
"""

from __future__ import annotations

import ast
from itertools import pairwise
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "lf_thinkplugin"


def _modules(root: Path) -> dict[str, tuple[Path, bool]]:
    """dotted name -> (file, is a package's __init__)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        modules[".".join(parts)] = (path, is_package)
    return modules


def import_graph(root: Path = PACKAGE) -> dict[str, dict[str, int]]:
    """module -> {imported module of the package: line of the first such import}."""
    modules = _modules(root)
    top = root.name
    graph: dict[str, dict[str, int]] = {}
    for name, (path, is_package) in modules.items():
        here = name if is_package else name.rpartition(".")[0]
        found: list[tuple[str, int]] = []
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == top:
                        found.append((alias.name, node.lineno))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                if source.split(".")[0] != top:
                    continue
                for alias in node.names:  # `from pkg import submodule` imports the submodule
                    sub = f"{source}.{alias.name}"
                    found.append((sub if sub in modules else source, node.lineno))
        graph[name] = {}
        for target, line in found:
            if target in modules and target != name:
                graph[name].setdefault(target, line)
    return graph


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as one cycle through them."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph[node]:
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_through(graph, set(component)) for component in components]


def _cycle_through(graph: dict[str, dict[str, int]], component: set[str]) -> list[str]:
    """One concrete cycle inside a strongly connected component (breadth-first back to its start)."""
    start = min(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for succ in sorted(graph[node]):
            if succ == start:
                return paths[node] + [start]
            if succ in component and succ not in paths:
                paths[succ] = paths[node] + [succ]
                queue.append(succ)
    raise AssertionError(f"no cycle through {sorted(component)}")


def _describe(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    return " -> ".join(f"{a} (line {graph[a][b]})" for a, b in pairwise(cycle)) + f" -> {cycle[-1]}"


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert "lf_thinkplugin.options" in graph and "lf_thinkplugin.activation.seam" in graph  # the walk saw the tree
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(_describe(graph, c) for c in cycles)


def test_the_walk_sees_lazy_and_relative_imports(tmp_path):
    """The checker itself: a circle closed by a function-level relative import, and one through a package's
    own __init__, are each found (as a closed path); the tree without them has none."""
    pkg = tmp_path / "lf_thinkplugin"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "options.py").write_text("def f():\n    from .sub.guard import g\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "guard.py").write_text("from ..options import f\n")
    assert find_cycles(import_graph(pkg)) == [["lf_thinkplugin.options", "lf_thinkplugin.sub.guard", "lf_thinkplugin.options"]]

    (pkg / "sub" / "guard.py").write_text("from lf_thinkplugin import sub\n")
    (pkg / "sub" / "__init__.py").write_text("def h():\n    from . import guard\n")
    assert find_cycles(import_graph(pkg)) == [["lf_thinkplugin.sub", "lf_thinkplugin.sub.guard", "lf_thinkplugin.sub"]]

    (pkg / "sub" / "guard.py").write_text("import lf_thinkplugin.options as options\n")
    (pkg / "options.py").write_text("if True:\n    import lf_thinkplugin.sub.guard\n")
    assert find_cycles(import_graph(pkg)) == [["lf_thinkplugin.options", "lf_thinkplugin.sub.guard", "lf_thinkplugin.options"]]

    (pkg / "sub" / "guard.py").write_text("def g():\n    pass\n")
    assert find_cycles(import_graph(pkg)) == []


def test_no_test_module_imports_another():
    """Shared test code lives in helper modules (conftest, lfrun, native_families, ...), never in a `test_*` module:
    importing one runs its module-level set-up and collects its fixtures twice."""
    found = []
    for path in sorted(Path(__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            found += [f"{path.name}:{node.lineno} imports {n}" for n in names if n.split(".")[0].startswith("test_")]
    assert not found, "\n".join(found)
