"""`ConstraintValidator`: scoring one code payload against one set of constraints."""

from __future__ import annotations

import functools
import re

from ..report._rounding import round3
from ._ast_checks import module_checks, rule_checks, wants_tree
from ._load import CompiledConstraints, compile_constraints
from ._model import CheckResult, Constraints, ValidationResult
from ._parse import parse_payload
from ._payload import extract_payload
from ._regex import SearchPattern

__all__ = ["ConstraintValidator", "validate_output"]

_NO_PAYLOAD = ValidationResult(adherence_score=None)
_NO_CONSTRAINTS = Constraints()
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class ConstraintValidator:
    """Scores code payloads against one `Constraints`.

    Pure and deterministic: the same payload always gets the same result. Thread-safe: it holds
    only compiled patterns, so one instance may be shared (the pipeline keeps one per
    `Constraints`). It parses the payload with `ast.parse` and never imports or runs it.
    """

    __slots__ = ("_compiled", "_wants_tree")

    def __init__(self, constraints: Constraints) -> None:
        """Check and compile `constraints`.

        Raises:
            ConstraintError: an invalid regex or an ill-typed rule (constraints built directly
                or with `msgspec.convert` are checked here, as `load_constraints` checks them).
        """
        self._compiled: CompiledConstraints = compile_constraints(constraints, where=None)
        self._wants_tree = wants_tree(constraints)

    @property
    def constraints(self) -> Constraints:
        """The constraints this validator scores against."""
        return self._compiled.constraints

    def validate(self, source: str | None) -> ValidationResult:
        """Score an already-extracted code payload.

        Args:
            source: the payload, or `None` when there is none.

        Returns:
            The result; its `adherence_score` is `None` when `source` is `None`, empty or
            whitespace. Never raises. Blocks the calling thread while it works, holding the GIL
            in `ast.parse` (about 0.3 ms for a 50-line function, seconds for megabytes) and up to
            about one second per regex check that falls back to the `regex` engine: run it off
            an event loop, in a process for large payloads.
        """
        if source is None or not source.strip():
            return _NO_PAYLOAD
        checks = self._regex_checks(source)
        if self._wants_tree:
            checks.extend(self._ast_checks(source))
        return _scored(checks)

    def _regex_checks(self, source: str) -> list[CheckResult]:
        text_is_ascii = source.isascii()
        text = source if text_is_ascii else _utf8_safe(source)
        compiled = self._compiled
        return [
            *(
                _regex_check("regex_required", i, p, text, text_is_ascii, want=True)
                for i, p in enumerate(compiled.required)
            ),
            *(
                _regex_check("regex_forbidden", i, p, text, text_is_ascii, want=False)
                for i, p in enumerate(compiled.forbidden)
            ),
        ]

    def _ast_checks(self, source: str) -> list[CheckResult]:
        tree = parse_payload(source)
        compiled = self._compiled
        checks: list[CheckResult] = []
        for index, rule in enumerate(compiled.constraints.ast_rules):
            checks.extend(rule_checks(tree, rule, index, compiled.annotations[index]))
        checks.extend(module_checks(tree, compiled.constraints))
        return checks


def validate_output(constraints: Constraints | None, output: str | None) -> ValidationResult:
    """Extract the code payload from a model's raw output and score it.

    A module-level function of picklable arguments with a picklable result, so that it can run
    in a worker process (`ast.parse` holds the GIL for its whole duration). Validators are
    cached per `Constraints`, per process.

    Args:
        constraints: the task's constraints; `None` scores any payload `1.000`.
        output: the model's output, or `None` when the generation failed.

    Returns:
        The result; `adherence_score` is `None` when there is no payload (`None`, empty or
        whitespace output, or only empty code blocks). Blocks as `ConstraintValidator.validate`.

    Raises:
        ConstraintError: `constraints` are invalid (never for any `output`).
    """
    payload = extract_payload(output)
    return _validator_for(constraints or _NO_CONSTRAINTS).validate(payload)


@functools.lru_cache(maxsize=64)
def _validator_for(constraints: Constraints) -> ConstraintValidator:
    return ConstraintValidator(constraints)


def _regex_check(
    kind: str, index: int, pattern: SearchPattern, text: str, text_is_ascii: bool, *, want: bool
) -> CheckResult:
    found = pattern.search(text, text_is_ascii=text_is_ascii)
    if found is None:
        reason: str | None = "timed out"
    elif found == want:
        reason = None
    else:
        reason = "no match" if want else "matched"
    return CheckResult(
        kind=kind, rule=f"{kind}[{index}]: {pattern.pattern}", passed=reason is None, reason=reason
    )


def _utf8_safe(text: str) -> str:
    """`text` with each lone surrogate (not encodable, so not searchable) as U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _LONE_SURROGATE.sub("\ufffd", text)
    return text


def _scored(checks: list[CheckResult]) -> ValidationResult:
    passed = sum(check.passed for check in checks)
    total = len(checks)
    return ValidationResult(
        # int / int is one correctly rounded IEEE division, identical on every platform;
        # round3 then rounds its shortest repr half up to the float nearest three places.
        adherence_score=round3(passed / total if total else 1),
        passed_checks=passed,
        total_checks=total,
        checks=tuple(checks),
    )
