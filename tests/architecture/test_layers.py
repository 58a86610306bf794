"""The shape of the house, as tests: data flows one way and no module imports itself back.

Every ``import`` of the project's own packages is read from the source (module-level and
function-level alike: a local import is still a dependency), without importing anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("telemetry", "forecasting", "training", "serving", "evaluation", "testbed", "pycemaker")
#: What each package may import from the others (data flows one way: sources ->
#: store -> frames -> model -> registry -> API). The CLI (pycemaker) registers every side's commands.
ALLOWED = {
    "telemetry": set(),
    "forecasting": {"telemetry"},
    "training": {"telemetry", "forecasting"},
    "serving": {"telemetry", "forecasting", "pycemaker"},
    "evaluation": {"telemetry", "forecasting"},
    "testbed": {"telemetry"},
    "pycemaker": {"telemetry", "forecasting", "training", "serving", "evaluation", "testbed"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports (``from a import b`` counts as ``a.b`` when that is a module)."""
    found: set[str] = set()
    package = module_name(path).rpartition(".")[0] if path.name != "__init__.py" else module_name(path)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


GRAPH = {name: imports_of(path, project_modules()) - {name} for name, path in project_modules().items()}


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_follow_the_layers(module):
    package = module.split(".")[0]
    crossing = {m for m in GRAPH[module] if m.split(".")[0] != package}
    wrong = sorted(m for m in crossing if m.split(".")[0] not in ALLOWED[package])
    assert not wrong, f"{module} imports {wrong}; {package} may import only {sorted(ALLOWED[package])}"


def test_there_are_no_import_cycles():
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(GRAPH):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_serving_side_never_imports_torch_or_training():
    for name, path in project_modules().items():
        if name.split(".")[0] not in ("serving", "forecasting", "telemetry"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            roots = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            for root in roots:
                assert root.split(".")[0] not in ("torch", "lightning", "training"), f"{name} imports {root}"
