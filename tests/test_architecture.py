"""The import graph of medaudit's packages follows docs/architecture.md (section 2).

The graph is read from the source with :mod:`ast` (module-level *and* lazy
imports inside functions count), so a forbidden direction or a circle fails here
before it confuses a reader.
"""

from __future__ import annotations

import ast
import itertools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ingest", "training", "audit", "reports", "dashboard", "medaudit")

#: What each package may import of ours, as module-name prefixes.
ALLOWED: dict[str, tuple[str, ...]] = {
    "audit": ("audit",),
    "ingest": ("ingest", "audit.rundir", "audit._schemas", "audit.validation", "audit.consistency",
               "audit.transaction"),
    "training": ("training", "audit.rundir", "audit._schemas", "audit.stats", "audit.metrics",
                 "audit.consistency", "audit.transaction", "audit.masking"),
    "reports": ("reports", "audit"),
    "dashboard": ("dashboard", "reports", "audit"),
    "medaudit": tuple(p for p in PACKAGES if p != "dashboard"),  # nothing imports dashboard/
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def _imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target, node.lineno
            for alias in node.names:  # `from pkg import submodule`
                yield f"{target}.{alias.name}", node.lineno


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        for target, _ in _imports(m, p):
            if target.split(".")[0] in PACKAGES and target in mods and target != m:
                graph[m].add(target)
    return graph


def test_every_package_imports_only_what_it_may() -> None:
    mods = _modules()
    bad = []
    for m, p in mods.items():
        top = m.split(".")[0]
        for target, line in _imports(m, p):
            if target.split(".")[0] not in PACKAGES:
                continue
            if not any(target == a or target.startswith(a + ".") for a in ALLOWED[top]):
                bad.append(f"{p.relative_to(ROOT)}:{line} imports {target}")
    assert bad == [], "forbidden imports (see docs/architecture.md):\n" + "\n".join(bad)


def test_no_import_circles() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append([*stack[stack.index(t):], t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    # A package __init__ re-exporting its own submodules is not a circle of concerns.
    real = [c for c in cycles if not any(a == b.rpartition(".")[0] or b == a.rpartition(".")[0]
                                         for a, b in itertools.pairwise(c))]
    assert real == [], "import circles:\n" + "\n".join(" -> ".join(c) for c in real)


@pytest.mark.parametrize("package", ["audit", "ingest"])
def test_importing_a_package_stays_light(package: str) -> None:
    code = (f"import sys, {package}; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'torch', 'timm', 'cleanlab', 'training', 'ingest', 'medaudit', 'dashboard', 'streamlit'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    loaded = eval(out.stdout)  # a printed list of names
    allowed = {"audit": [], "ingest": ["ingest"]}[package]
    assert loaded == allowed
