"""The AST primitives: checks on a parsed tree. Nothing here recurses over the tree, so a deep
tree cannot overflow the stack; `ast.unparse` (recursive) only ever sees one annotation and its
RecursionError is caught."""

from __future__ import annotations

import ast
from collections import deque

from ._model import AstRule, CheckResult, Constraints

__all__ = ["module_checks", "rule_checks", "wants_tree"]

_Function = ast.FunctionDef | ast.AsyncFunctionDef
_DYNAMIC_IMPORTS = frozenset({"__import__", "importlib.import_module"})


def wants_tree(constraints: Constraints) -> bool:
    """Whether any AST primitive is configured (else the payload need not be parsed)."""
    return bool(
        constraints.ast_rules
        or constraints.forbidden_imports
        or constraints.forbidden_calls
        or constraints.no_imports
    )


def rule_checks(
    tree: ast.Module | str, rule: AstRule, index: int, annotation: str | None
) -> list[CheckResult]:
    """One check per primitive set in `rule`; `tree` is a reason when parsing failed."""
    present = _present(rule, annotation)
    label = f"ast_rules[{index}]"
    if isinstance(tree, str):
        return [
            CheckResult(kind=k, rule=f"{label}.{k}: {v}", passed=False, reason=tree)
            for k, v in present
        ]
    target, in_class, missing = _target(tree, rule.required_function_name)
    results = []
    for kind, value in present:
        reason = missing if target is None else _RULE_CHECKS[kind](target, in_class, value)
        results.append(
            CheckResult(
                kind=kind, rule=f"{label}.{kind}: {value}", passed=reason is None, reason=reason
            )
        )
    return results


def module_checks(tree: ast.Module | str, constraints: Constraints) -> list[CheckResult]:
    """The whole-payload primitives: forbidden_imports, forbidden_calls, no_imports."""
    wanted: list[tuple[str, str]] = []
    if constraints.forbidden_imports:
        wanted.append(("forbidden_imports", ", ".join(constraints.forbidden_imports)))
    if constraints.forbidden_calls:
        wanted.append(("forbidden_calls", ", ".join(constraints.forbidden_calls)))
    if constraints.no_imports:
        wanted.append(("no_imports", "true"))
    if not wanted:
        return []
    reasons = (
        {kind: tree for kind, _ in wanted}
        if isinstance(tree, str)
        else _module_reasons(tree, constraints)
    )
    return [
        CheckResult(
            kind=kind,
            rule=f"{kind}: {value}",
            passed=reasons.get(kind) is None,
            reason=reasons.get(kind),
        )
        for kind, value in wanted
    ]


def _present(rule: AstRule, annotation: str | None) -> list[tuple[str, object]]:
    candidates: list[tuple[str, object]] = [
        ("required_function_name", rule.required_function_name),
        ("argument_count", rule.argument_count),
        ("return_type_annotation", annotation),
        ("requires_docstring", True if rule.requires_docstring else None),
        ("requires_type_hints", True if rule.requires_type_hints else None),
        ("max_function_lines", rule.max_function_lines),
    ]
    return [(kind, value) for kind, value in candidates if value is not None]


def _target(tree: ast.Module, name: str | None) -> tuple[_Function | None, bool, str]:
    """The rule's function, whether it is a method, and the reason when there is none."""
    if name is None:
        first = next((n for n in tree.body if isinstance(n, _Function)), None)
        return first, False, "no top-level function"
    # Breadth-first, so a top-level function wins over a method or a nested function.
    queue: deque[ast.AST] = deque([tree])
    while queue:
        node = queue.popleft()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, _Function) and child.name == name:
                return child, isinstance(node, ast.ClassDef), ""
            queue.append(child)
    return None, False, f"function {name} not found"


def _found(fn: _Function, in_class: bool, value: object) -> str | None:
    return None


def _argument_count(fn: _Function, in_class: bool, value: object) -> str | None:
    a = fn.args
    count = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs)
    count += (a.vararg is not None) + (a.kwarg is not None)
    if count == value:
        return None
    return f"{count} parameter{'' if count == 1 else 's'}, expected {value}"


def _return_type(fn: _Function, in_class: bool, value: object) -> str | None:
    if fn.returns is None:
        return f"no return annotation, expected {value}"
    try:
        actual = ast.unparse(fn.returns)
    except RecursionError:
        return "return annotation too deeply nested"
    return None if actual == value else f"returns {_short(actual)}, expected {value}"


def _docstring(fn: _Function, in_class: bool, value: object) -> str | None:
    doc = ast.get_docstring(fn, clean=False)
    return None if doc and doc.strip() else "no docstring"


def _type_hints(fn: _Function, in_class: bool, value: object) -> str | None:
    a = fn.args
    params = [*a.posonlyargs, *a.args, a.vararg, *a.kwonlyargs, a.kwarg]  # signature order
    positional = [*a.posonlyargs, *a.args]
    if in_class and positional and positional[0].arg in ("self", "cls"):
        params.remove(positional[0])
    missing = [p.arg for p in params if p is not None and p.annotation is None]
    if fn.returns is None:
        missing.append("return")
    return f"missing annotations: {_short(', '.join(missing))}" if missing else None


def _max_lines(fn: _Function, in_class: bool, value: object) -> str | None:
    lines = (fn.end_lineno or fn.lineno) - fn.lineno + 1
    fits = isinstance(value, int) and lines <= value
    return None if fits else f"{lines} lines, max {value}"


_RULE_CHECKS = {
    "required_function_name": _found,
    "argument_count": _argument_count,
    "return_type_annotation": _return_type,
    "requires_docstring": _docstring,
    "requires_type_hints": _type_hints,
    "max_function_lines": _max_lines,
}


def _module_reasons(tree: ast.Module, constraints: Constraints) -> dict[str, str]:
    """The first violation of each whole-payload primitive, in source order."""
    reasons: dict[str, str] = {}
    for line, kind, name in sorted(_imports_and_calls(tree)):
        if kind == "import":
            reasons.setdefault("no_imports", f"imports {name} at line {line}")
            if _matches_module(name, constraints.forbidden_imports):
                reasons.setdefault("forbidden_imports", f"imports {name} at line {line}")
        elif _matches_call(name, constraints.forbidden_calls):
            reasons.setdefault("forbidden_calls", f"calls {name} at line {line}")
    return reasons


def _imports_and_calls(tree: ast.Module) -> list[tuple[int, str, str]]:
    """(line, "import" or "call", dotted name) for every import and every call by name.

    One walk over the tree (it can hold millions of nodes); calls are resolved through the
    payload's imports afterwards (`from os import system as s; s()` calls `os.system`).
    """
    found: list[tuple[int, str, str]] = []
    aliases: dict[str, str] = {}
    calls: list[tuple[int, str, ast.Call]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                found.append((node.lineno, "import", a.name))
                if a.asname:
                    aliases[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, "import", node.module))
            for a in node.names:
                found.append((node.lineno, "import", f"{node.module}.{a.name}"))
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        elif isinstance(node, ast.Call) and (name := _dotted(node.func)) is not None:
            calls.append((node.lineno, name, node))
    for line, name, call in calls:
        resolved = _resolve(name, aliases)
        found.append((line, "call", resolved))
        module = _first_str_argument(call) if resolved in _DYNAMIC_IMPORTS else None
        if module is not None:
            found.append((line, "import", module))
    return found


def _first_str_argument(call: ast.Call) -> str | None:
    first = call.args[0] if call.args else None
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value
    return None


def _dotted(node: ast.expr) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _resolve(name: str, aliases: dict[str, str]) -> str:
    head, _, rest = name.partition(".")
    base = aliases.get(head)
    if base is None:
        return name
    return f"{base}.{rest}" if rest else base


def _matches_module(name: str, forbidden: tuple[str, ...]) -> bool:
    return any(name == f or name.startswith(f + ".") for f in forbidden)


def _matches_call(name: str, forbidden: tuple[str, ...]) -> bool:
    return any(name in (f, f"builtins.{f}") for f in forbidden)


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
