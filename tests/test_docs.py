"""RELIABILITY.md: every test a guarantee names exists, so no claim points at nothing.

A reference is `tests/PATH.py::NAME` (or `R/PATH.py::...` for tests/reliability/), optionally
`::Class::method`, with a parametrization in brackets; `::NAME` alone continues the file of the
reference before it in the same cell.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
REFERENCE = re.compile(r"`((?:tests/|R/)[\w/]+\.py)?((?:::\w+)+)(?:\[[^\]`]*\])?`")


def _names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.add(node.name)
    return found


def _references() -> list[tuple[str, str]]:
    refs = []
    for line in (ROOT / "RELIABILITY.md").read_text().splitlines():
        if not line.startswith("|"):
            continue
        for cell in line.split(" | "):
            current = None
            for match in REFERENCE.finditer(cell):
                path, names = match.groups()
                if path is not None:
                    current = path.replace("R/", "tests/reliability/", 1)
                if current is not None:
                    refs.append((current, names))
    return refs


def test_every_test_named_in_reliability_md_exists() -> None:
    refs = _references()
    assert len(refs) > 50  # the parser reads the table at all
    missing = []
    for path, names in refs:
        file = ROOT / path
        if not file.exists():
            missing.append(f"{path} (no such file)")
            continue
        defined = _names(file)
        missing += [f"{path}::{n}" for n in names.strip(":").split("::") if n not in defined]
    assert missing == []
