"""Checking constraints once, when they are loaded, and compiling them for the validator."""

from __future__ import annotations

import ast
import re
from typing import NamedTuple

import msgspec

from .._exceptions import ConstraintError
from ._model import Constraints
from ._parse import parse_expression
from ._regex import PatternError, SearchPattern, compile_pattern

__all__ = ["CompiledConstraints", "compile_constraints", "load_constraints"]

_MSGSPEC_PATH = re.compile(r"^(?P<problem>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)


class CompiledConstraints(NamedTuple):
    """Constraints with every pattern compiled and every annotation normalized."""

    constraints: Constraints
    required: tuple[SearchPattern, ...]
    forbidden: tuple[SearchPattern, ...]
    annotations: tuple[str | None, ...]
    """`ast.unparse` of each AST rule's `return_type_annotation`, in rule order."""


def load_constraints(obj: object, *, where: str) -> Constraints:
    """Convert decoded JSON or TOML (a dict) to `Constraints`, checking every field.

    Args:
        obj: the constraints object, as decoded.
        where: what to name in an error, e.g. `"suite.json: task t3"`.

    Returns:
        The constraints. Never blocks for long.

    Raises:
        ConstraintError: an ill-typed or unknown field, an invalid regex, an annotation that is
            not a Python expression, a name that is not an identifier. The message is one line:
            `"suite.json: task t3: constraints.regex_required[1]: invalid regex 'a(': ..."`.
    """
    try:
        constraints = msgspec.convert(obj, Constraints)
    except msgspec.ValidationError as exc:
        raise ConstraintError(_prefix(where) + _describe(exc)) from None
    compile_constraints(constraints, where=where)
    return constraints


def compile_constraints(constraints: Constraints, *, where: str | None) -> CompiledConstraints:
    """Check `constraints` again (they may have been built without `load_constraints`) and
    compile them.

    Raises:
        ConstraintError: as `load_constraints`.
    """
    try:
        checked = msgspec.convert(msgspec.to_builtins(constraints), Constraints)
    except (msgspec.ValidationError, TypeError) as exc:
        raise ConstraintError(_prefix(where) + _describe(exc)) from None
    try:
        _check_names(checked)
        return CompiledConstraints(
            constraints=constraints,
            required=_compile_all(checked.regex_required, "regex_required"),
            forbidden=_compile_all(checked.regex_forbidden, "regex_forbidden"),
            annotations=tuple(
                _annotation(r.return_type_annotation, i) for i, r in enumerate(checked.ast_rules)
            ),
        )
    except ConstraintError as exc:
        raise ConstraintError(_prefix(where) + str(exc)) from None


def _compile_all(patterns: tuple[str, ...], field: str) -> tuple[SearchPattern, ...]:
    compiled = []
    for i, pattern in enumerate(patterns):
        try:
            compiled.append(compile_pattern(pattern))
        except PatternError as exc:
            raise ConstraintError(
                f"constraints.{field}[{i}]: invalid regex {_short(pattern)}: {exc}"
            ) from None
    return tuple(compiled)


def _annotation(text: str | None, index: int) -> str | None:
    if text is None:
        return None
    tree = parse_expression(text)
    if isinstance(tree, str):
        raise ConstraintError(
            f"constraints.ast_rules[{index}].return_type_annotation: "
            f"not a Python expression {_short(text)}: {tree}"
        )
    return ast.unparse(tree)


def _check_names(constraints: Constraints) -> None:
    for i, rule in enumerate(constraints.ast_rules):
        name = rule.required_function_name
        if name is not None and not name.isidentifier():
            raise ConstraintError(
                f"constraints.ast_rules[{i}].required_function_name: "
                f"not a Python identifier {_short(name)}"
            )
    for field in ("forbidden_imports", "forbidden_calls"):
        for i, dotted in enumerate(getattr(constraints, field)):
            if not all(part.isidentifier() for part in dotted.split(".")):
                raise ConstraintError(
                    f"constraints.{field}[{i}]: not a dotted Python name {_short(dotted)}"
                )


def _describe(exc: Exception) -> str:
    """msgspec's `Expected `int`, got `str` - at `$.a[0]`` as `constraints.a[0]: expected ...`."""
    found = _MSGSPEC_PATH.match(str(exc))
    if found is None or found["path"] is None:
        return f"constraints: {_lower_first(str(exc))}"
    return f"constraints{found['path']}: {_lower_first(found['problem'])}"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _prefix(where: str | None) -> str:
    return f"{where}: " if where else ""


def _short(text: str, limit: int = 80) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 4] + "...'"
