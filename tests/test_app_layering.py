"""The application layer's imports point one way: no cycles, a layering list, click only in p2pfl.cli.

Read from the source (every ``import``, also the ones inside functions), so a lazy import
that closes a cycle fails here as a module-level one would. The layers of the library
core (filters, attacks, node, protocol, ...) are checked by tests/test_layering.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "p2pfl"

# Lower layers first; a module may import only modules of a lower rank (unranked modules,
# the protocol core, are free to be imported by anything ranked above config).
RANKS = {
    "p2pfl.errors": 0,
    "p2pfl.validate": 1, "p2pfl.resources": 1, "p2pfl.logs": 1,
    "p2pfl.config": 2,
    "p2pfl.topology": 3, "p2pfl.metrics": 3,
    "p2pfl.runfolder": 4,
    "p2pfl.plan": 5,
    "p2pfl.wiring": 6,
    "p2pfl.deployment": 7,
    "p2pfl.launch": 8,
    "p2pfl.updates": 9,
    "p2pfl.report": 10,
    "p2pfl.experiment": 11,
    "p2pfl.sweep": 12, "p2pfl.demo": 12,
    "p2pfl.cli": 13,
}
# Modules of the packages another change restructures (p2pfl.attacks, p2pfl.filters):
# their internal cycles are theirs; the checks below cover everything that imports them.
OTHERS = ("p2pfl.attacks", "p2pfl.adaptive", "p2pfl.constrained", "p2pfl.backdoor", "p2pfl.filters")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _walk(tree: ast.AST):
    """ast.walk, leaving out ``if TYPE_CHECKING:`` blocks (annotations, not imports at run time)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def imports_of(name: str) -> set[str]:
    """Every module ``name`` imports (p2pfl modules by name, others by their top-level package)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m if m.startswith("p2pfl") else m.split(".")[0] for m in found} - {name}


def layer(name: str) -> str | None:
    """The ranked module or package ``name`` belongs to (p2pfl.cli.runs -> p2pfl.cli)."""
    while name:
        if name in RANKS:
            return name
        name = name.rpartition(".")[0]
    return None


def test_only_the_cli_package_uses_click():
    users = sorted(m for m in MODULES if not m.startswith("p2pfl.cli") and m != "p2pfl.__main__"
                   and imports_of(m) & {"click"} | {i for i in imports_of(m) if i.startswith("p2pfl.cli")})
    assert users == []


@pytest.mark.parametrize("name", sorted(m for m in MODULES if layer(m) is not None))
def test_imports_follow_the_layering(name):
    own = layer(name)
    upward = sorted(i for i in imports_of(name) if layer(i) is not None and layer(i) != own
                    and RANKS[layer(i)] >= RANKS[own])
    assert upward == [], f"{name} (layer {RANKS[own]}) imports a module of the same or a higher layer"


def test_no_import_cycles():
    graph = {m: {i for i in imports_of(m) if i in MODULES} for m in MODULES if not m.startswith(OTHERS)}
    for m in graph:
        graph[m] = {i for i in graph[m] if not i.startswith(OTHERS)}
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(node):] + [node]))
        if node in done:
            return
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, [*path, node])
        done.add(node)

    for m in sorted(graph):
        visit(m, [])
