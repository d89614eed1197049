"""No import circles anywhere in the project (issue #44, item 2): a module's imports, at its top, inside a
function or under TYPE_CHECKING, never lead back to it. A circle makes a room impossible to read on its own."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("model", "worker", "pipelines", "benchmarks")


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Each project module → the project modules it imports (a `from package import name` counts as the
    module `package.name` when there is one, else as `package`)."""
    modules = {_module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                          for alias in node.names}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_there_is_no_import_circle():
    assert circles(import_graph()) == []


def test_the_circle_finder_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_rooms_import_in_one_direction():
    """model ← worker ← pipelines ← benchmarks: nothing imports a room above its own."""
    order = {package: rank for rank, package in enumerate(PACKAGES)}
    upward = [(a, b) for a, targets in import_graph().items() for b in targets
              if order[b.split(".")[0]] > order[a.split(".")[0]]]
    assert upward == []


def listed_modules() -> set[str]:
    """The module list of docs/architecture.md ("Every module"), as paths."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("## Every module", 1)[1].split("```", 2)[1]
    folders: list[str] = []
    found = set()
    for line in block.splitlines():
        if not line.strip():
            continue
        depth, name = (len(line) - len(line.lstrip())) // 2, line.split()[0]
        if name.endswith("/"):
            folders = [*folders[:depth], name.rstrip("/")]
        else:
            found.add("/".join([*folders[:depth], name]))
    return found


def test_the_architecture_page_lists_every_module_and_no_other():
    tree = {str(p.relative_to(ROOT)) for package in ("model", "worker", "pipelines")
            for p in (ROOT / package).rglob("*.py")}
    listed = listed_modules()
    assert sorted(tree - listed) == [], "modules missing from docs/architecture.md"
    assert sorted(listed - tree) == [], "docs/architecture.md lists modules that do not exist"
