"""The package's layers: no module imports one of a higher layer, and no import cycles.

``LAYERS`` is the architecture, lowest first; edit it when a module moves. A module may
import modules of its own layer or lower ones. Two checks:

* at run time: each module imported alone (all p2pfl modules dropped from ``sys.modules``
  before each import, in one subprocess) pulls in no module of a higher layer;
* statically: every ``import p2pfl.x`` / ``from .x import`` / ``from p2pfl.x import``,
  including those inside functions, points to the same layer or a lower one, and the
  import graph has no cycle.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "p2pfl"

#: Lowest first. Names are relative to ``p2pfl``; ``*`` matches submodules of a package.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("errors", "validate", "wire", "behaviour", "metrics", "logs", "resources", "imports", "timing")),
    ("core", ("config", "config.*", "data", "data.*", "models", "train", "transport", "faults", "security", "protocol",
              "checkpoint", "topology", "topology.*")),
    ("filters", ("filters", "filters.*")),
    ("attacks", ("attacks", "attacks.*")),
    ("node", ("node", "gossip_async", "plan", "runfolder")),
    ("wiring", ("wiring", "deployment", "host", "rayhosts")),
    ("launch", ("launch", "updates")),
    ("report", ("report", "report.*")),
    ("experiment", ("experiment",)),
    ("sweep", ("sweep", "demo")),
    ("cli", ("cli", "cli.*", "__main__")),
]

#: Imports that must not run when testing (``python -m p2pfl`` runs the CLI).
NOT_IMPORTED = ("__main__",)

def all_modules() -> list[str]:
    """Every module of the package, relative to ``p2pfl`` (a package by its own name)."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:
            out.append(".".join(parts))
    return out


def layer_of(module: str) -> int:
    for rank, (_, patterns) in enumerate(LAYERS):
        if any(fnmatch.fnmatchcase(module, p) for p in patterns):
            return rank
    raise LookupError(module)


def _is_package(module: str) -> bool:
    return (PACKAGE / module.replace(".", "/") / "__init__.py").is_file()


def _exists(module: str) -> bool:
    return _is_package(module) or (PACKAGE / (module.replace(".", "/") + ".py")).is_file()


def static_imports(module: str) -> set[str]:
    """The p2pfl modules ``module`` imports anywhere in its source (relative to ``p2pfl``)."""
    path = PACKAGE / (module.replace(".", "/") + ("/__init__.py" if _is_package(module) else ".py"))
    here = module.split(".") if _is_package(module) else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name.removeprefix("p2pfl.") for a in node.names if a.name.startswith("p2pfl."))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base, rel = here[: len(here) - (node.level - 1)], node.module
            elif node.module and (node.module == "p2pfl" or node.module.startswith("p2pfl.")):
                base, rel = [], node.module.removeprefix("p2pfl").removeprefix(".") or None
            else:
                continue
            target = ".".join([*base, *(rel.split(".") if rel else [])])
            subs = [f"{target}.{a.name}" if target else a.name for a in node.names]
            subs = [s for s in subs if _exists(s)]
            if subs:
                found.update(subs)
            if target and (not subs or len(subs) < len(node.names)):
                found.add(target)
    found.discard(module)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


_PROBE = """
import importlib, json, sys
out = {}
for name in sys.argv[1:]:
    for m in [m for m in sys.modules if m == "p2pfl" or m.startswith("p2pfl.")]:
        del sys.modules[m]
    importlib.import_module("p2pfl" if name == "" else "p2pfl." + name)
    out[name] = sorted(m[len("p2pfl."):] for m in sys.modules if m.startswith("p2pfl."))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def pulled_in() -> dict[str, list[str]]:
    """For each module, the p2pfl modules importing it alone loads."""
    names = ["", *(m for m in all_modules() if m not in NOT_IMPORTED)]
    proc = subprocess.run([sys.executable, "-c", _PROBE, *names], capture_output=True, text=True,
                          cwd=ROOT, check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_module_has_a_layer():
    missing = []
    for m in all_modules():
        try:
            layer_of(m)
        except LookupError:
            missing.append(m)
    assert not missing, f"add these modules to LAYERS in tests/test_layering.py: {missing}"


def test_importing_the_package_loads_nothing_else(pulled_in):
    assert pulled_in[""] == []


def test_no_module_pulls_in_a_higher_layer_when_imported_alone(pulled_in):
    bad = {}
    for module, loaded in pulled_in.items():
        if not module:
            continue
        higher = [m for m in loaded if layer_of(m) > layer_of(module)]
        if higher:
            bad[module] = higher
    assert not bad, f"modules that import a higher layer: {bad}"


def test_filters_and_attacks_do_not_import_the_node_the_launcher_or_the_cli(pulled_in):
    for module in ("filters", "attacks"):
        assert not {"node", "launch", "cli"} & set(pulled_in[module])


def test_no_import_anywhere_in_a_module_points_to_a_higher_layer():
    bad = {m: sorted(t for t in static_imports(m) if layer_of(t) > layer_of(m)) for m in all_modules()}
    assert not {m: t for m, t in bad.items() if t}


def test_no_import_cycles():
    graph = {m: static_imports(m) for m in all_modules()}
    assert not _cycles(graph), f"import cycles: {[sorted(c) for c in _cycles(graph)]}"


def test_only_the_cli_package_uses_click(pulled_in):
    """Library modules are usable without click: no source outside p2pfl.cli imports it."""
    users = []
    for m in all_modules():
        if layer_of(m) == layer_of("cli"):
            continue
        path = PACKAGE / (m.replace(".", "/") + ("/__init__.py" if _is_package(m) else ".py"))
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        if any(x == "click" or x.startswith("click.") for x in names):
            users.append(m)
    assert users == []


def test_the_cycle_finder_finds_a_cycle_and_the_parser_resolves_relative_imports():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    assert {"attacks.base", "attacks.params", "behaviour"} <= static_imports("attacks.paper") | \
        static_imports("attacks.base")
    assert "filters.numerics" in static_imports("attacks.adaptive")
