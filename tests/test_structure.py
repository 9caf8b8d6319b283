"""The project's layering, checked from the source: data flows one way (docs, design notes).

- nothing below `bot/` imports `bot` (diagnosis and knowledge are usable without the chat);
- `knowledge/` never imports `diagnosis` or torch, and serving code never imports torch or the
  training package at module level;
- no import cycle among the project's modules, counting every import anywhere in a module
  (a function-level import that closes a cycle is still a cycle a reader has to untangle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "diagnosis", "envconfig", "knowledge")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


MODULES = _modules()


def _imports(name: str, *, top_level_only: bool = False) -> set[str]:
    """Project modules (and other top-level packages) that module `name` imports."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = tree.body if top_level_only else ast.walk(tree)
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.If) and top_level_only:
            continue  # `if TYPE_CHECKING:` blocks are for readers and type checkers only
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _project_targets(imported: set[str]) -> set[str]:
    """The project modules among imported names (`a.b.c` -> the longest that is a module)."""
    targets = set()
    for name in imported:
        parts = name.split(".")
        for end in range(len(parts), 0, -1):
            candidate = ".".join(parts[:end])
            if candidate in MODULES:
                targets.add(candidate)
                break
    return targets


@pytest.mark.parametrize("layer", ["diagnosis", "knowledge", "envconfig"])
def test_nothing_below_bot_imports_bot(layer):
    offenders = sorted(
        f"{name} imports {target}"
        for name in MODULES
        if name.split(".")[0] == layer
        for target in _imports(name)
        if target == "bot" or target.startswith("bot.")
    )
    assert not offenders, offenders


def test_knowledge_knows_nothing_of_diagnosis_or_torch():
    offenders = sorted(
        f"{name} imports {target}"
        for name in MODULES
        if name.startswith("knowledge")
        for target in _imports(name)
        if target.split(".")[0] in ("diagnosis", "torch", "timm", "torchvision")
    )
    assert not offenders, offenders


def test_envconfig_imports_nothing_of_the_project():
    offenders = sorted(
        f"{name} imports {target}"
        for name in MODULES
        if name.startswith("envconfig")
        for target in _project_targets(_imports(name))
        if not target.startswith("envconfig")
    )
    assert not offenders, offenders


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _graph() -> dict[str, set[str]]:
    graph = {}
    for name in MODULES:
        # A package's __init__ re-exporting its own modules is not a cycle a reader untangles;
        # a module importing its own package's __init__ is (it runs the whole package first).
        targets = _project_targets(_imports(name)) - {name}
        if MODULES[name].name == "__init__.py":
            targets = {t for t in targets if not t.startswith(name + ".")}
        graph[name] = targets
    return graph


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_among_the_projects_modules():
    assert _cycles(_graph()) == []
