"""The house rule: a lower layer never imports a higher one (not even inside a function), packages
of one layer never import each other, and no module imports closes a cycle.

Imports are read with ``ast`` from every module of the package, at any depth of the code.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lossnet

PACKAGE = Path(lossnet.__file__).parent

# Bottom to top. Same number: one layer (its packages must not import each other).
LAYERS = {
    "errors": 0,
    "inputs": 1, "utils": 1,
    "networks": 2, "data": 2,
    "distances": 3,
    "loss": 4,
    "scoring": 5,
    "tasks": 6,
    "sweeps": 7,
    "report": 8,
    "demo": 9,
    "cli": 10,
}
FACADE = {"__init__", "__main__"}  # lossnet/__init__.py and __main__.py sit above everything


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(["lossnet", *parts])] = path
    return out


def _imports(module: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("lossnet")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("lossnet"):
                found.add(target)
                found |= {f"{target}.{a.name}" for a in node.names}
    return found


def _top(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


MODULES = _modules()


def test_every_package_has_a_layer():
    tops = {_top(m) for m in MODULES} - {None} - FACADE
    assert tops <= set(LAYERS), f"packages without a layer: {sorted(tops - set(LAYERS))}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _top(m) not in FACADE and _top(m) is not None))
def test_no_upward_or_sideways_import(module):
    own = _top(module)
    bad = []
    for target in _imports(module, MODULES[module]):
        other = _top(target)
        if other is None or other == own or target not in MODULES and other not in LAYERS:
            continue
        if LAYERS[other] >= LAYERS[own]:
            bad.append(f"{target} (layer {LAYERS[other]} {other})")
    assert not bad, f"{module} (layer {LAYERS[own]} {own}) imports {sorted(set(bad))}"


def test_no_import_cycles():
    graph = {m: {t for t in _imports(m, p) if t in MODULES and t != m} for m, p in MODULES.items()}
    # a package's __init__ re-exporting its modules is not a cycle with those modules
    for m in graph:
        graph[m] = {t for t in graph[m] if not (m.startswith(t + ".") and t in MODULES)}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles[:5])
