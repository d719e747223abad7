"""The package layout: imports point down only, and no module imports itself back in a cycle.

cli → engine → telemetry → report; telemetry and engine use providers and constraints; report
imports none of telemetry, engine or providers. Read from the source with `ast`, so that an
import inside a function or under TYPE_CHECKING counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import orket_pipeline

ROOT = Path(orket_pipeline.__file__).parent
PACKAGES = ("cli", "engine", "telemetry", "report", "providers", "constraints", "integrations")
# What each top-level package may import from the others (itself and the root modules aside).
ALLOWED = {
    "cli": {"engine", "telemetry", "report", "providers", "constraints"},
    "engine": {"telemetry", "report", "providers", "constraints"},
    "telemetry": {"report", "providers", "constraints"},
    "providers": set(),
    "constraints": {"report"},
    "report": set(),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["orket_pipeline", *parts])


def _imports(path: Path) -> set[str]:
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.startswith("orket_pipeline"):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("orket_pipeline"))
    modules = {_module_name(p) for p in ROOT.rglob("*.py")}
    return {t for t in found if t in modules and t != name}


GRAPH = {_module_name(p): _imports(p) for p in ROOT.rglob("*.py")}


def _top(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in PACKAGES else None


def test_packages_import_only_downwards() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if (top := _top(module)) is not None and top in ALLOWED
        for target in targets
        if (other := _top(target)) is not None and other != top and other not in ALLOWED[top]
    ]
    assert wrong == []


def test_no_module_is_part_of_an_import_cycle() -> None:
    # Package __init__ files re-export their children; an edge into one is an edge into the
    # package's surface, which is not a cycle by itself, so only module-to-module edges count.
    def edges(module: str) -> set[str]:
        return {
            t
            for t in GRAPH[module]
            if not (ROOT / Path(*t.split(".")[1:]) / "__init__.py").exists()
        }

    cycles = []
    for start in GRAPH:
        stack, seen = [(start, (start,))], set()
        while stack:
            module, path = stack.pop()
            for target in edges(module):
                if target == start:
                    cycles.append(" -> ".join((*path, start)))
                elif target not in seen:
                    seen.add(target)
                    stack.append((target, (*path, target)))
    assert cycles == []
