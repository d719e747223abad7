"""The constraint and result types: frozen msgspec Structs, hashable and picklable.

`Constraints` and `AstRule` forbid unknown fields. Constraints are written by people, and a
misspelt primitive (`regex_requried`) silently ignored would score every run on fewer checks than
its author meant, with nothing to show for it. The cost is forward compatibility: a suite that
uses a primitive added in a later release is rejected by an older one, loudly, instead of being
scored differently. Reports, by contrast, are read leniently (see `_report.py`).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = ["AstRule", "CheckResult", "Constraints", "ValidationResult"]

_NonNegative = Annotated[int, msgspec.Meta(ge=0)]
_Positive = Annotated[int, msgspec.Meta(ge=1)]


class AstRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Checks on one function, found by name or, without a name, the first top-level function.

    Every field that is set (a boolean set to `True`) is one check.

    Attributes:
        required_function_name: a `def` or `async def` with this name exists (searched
            breadth-first, so a top-level function wins over a method or a nested one).
        argument_count: positional-only + positional + keyword-only parameters, plus one each
            for `*args` and `**kwargs`.
        return_type_annotation: the return annotation, compared by `ast.unparse` of both sides.
        requires_docstring: the function has a non-empty docstring.
        requires_type_hints: every parameter (but a method's `self`/`cls`) and the return value
            are annotated.
        max_function_lines: the function spans at most this many lines, `def` to last line.
    """

    required_function_name: str | None = None
    argument_count: _NonNegative | None = None
    return_type_annotation: str | None = None
    requires_docstring: bool = False
    requires_type_hints: bool = False
    max_function_lines: _Positive | None = None


class Constraints(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Everything one task asks of its code payload; each regex and each primitive is one check.

    Attributes:
        regex_required: patterns that must match somewhere in the payload.
        regex_forbidden: patterns that must match nowhere in the payload.
        ast_rules: per-function checks, see `AstRule`.
        forbidden_imports: modules that must not be imported (one check for the whole list);
            `"os"` also forbids `os.path` and `from os import system`.
        forbidden_calls: callables that must not be called (one check for the whole list);
            `"eval"` matches `eval(...)` and `builtins.eval(...)`, `"os.system"` matches
            `os.system(...)` and `system(...)` after `from os import system`.
        no_imports: the payload imports nothing at all (one check).
    """

    regex_required: tuple[str, ...] = ()
    regex_forbidden: tuple[str, ...] = ()
    ast_rules: tuple[AstRule, ...] = ()
    forbidden_imports: tuple[str, ...] = ()
    forbidden_calls: tuple[str, ...] = ()
    no_imports: bool = False


class CheckResult(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of one check.

    Attributes:
        kind: the primitive: `regex_required`, `argument_count`, `forbidden_calls`...
        rule: where the check comes from and what it asks, e.g. `ast_rules[0].argument_count: 2`.
        passed: whether the payload satisfied it.
        reason: why it failed (`"3 parameters, expected 2"`, `"timed out"`), else `None`.
    """

    kind: str
    rule: str
    passed: bool
    reason: str | None = None


class ValidationResult(msgspec.Struct, frozen=True, kw_only=True):
    """The adherence of one payload to its constraints.

    Attributes:
        adherence_score: `passed_checks / total_checks` rounded by `round3` to a plain float
            with three places (`0.167`; `1.0` when no checks are configured), or `None` when
            there was no code payload.
        passed_checks: how many checks passed.
        total_checks: how many checks ran (0 when there was no payload).
        checks: every check, in the order the constraints list them.
    """

    adherence_score: float | None
    passed_checks: int = 0
    total_checks: int = 0
    checks: tuple[CheckResult, ...] = ()
