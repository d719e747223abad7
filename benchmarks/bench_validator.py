"""Validations per second: a typical 50-line function against 6 checks, on one core.

Run: python -m benchmarks.bench_validator [--quick]

The figure is `ConstraintValidator.validate` on an already-extracted payload, one validator reused
(as the pipeline caches one per Constraints): 2 required regexes, 1 forbidden regex and an AST
rule with a name, an argument count and a return annotation. Every call parses the payload
afresh: nothing is cached per payload. The script also prints the cost of `ast.parse` alone on
the same payload, which bounds what any validator with AST checks can reach on this machine.
"""

from __future__ import annotations

import argparse
import ast
import time
from collections.abc import Callable

from benchmarks._common import header
from orket_pipeline.constraints import AstRule, Constraints, ConstraintValidator, validate_output

PAYLOAD = '''\
def merge_intervals(intervals: list[tuple[int, int]], gap: int = 0) -> list[tuple[int, int]]:
    """Merge overlapping or touching intervals.

    Args:
        intervals: (start, end) pairs, in any order.
        gap: intervals closer than this are merged too.

    Returns:
        The merged intervals, sorted by start.
    """
    if not intervals:
        return []
    ordered = sorted(intervals, key=lambda pair: (pair[0], pair[1]))
    merged: list[tuple[int, int]] = []
    current_start, current_end = ordered[0]
    for start, end in ordered[1:]:
        if start > end:
            raise ValueError(f"bad interval ({start}, {end})")
        if start <= current_end + gap:
            current_end = max(current_end, end)
            continue
        merged.append((current_start, current_end))
        current_start, current_end = start, end
    merged.append((current_start, current_end))
    result = []
    for start, end in merged:
        width = end - start
        if width < 0:
            continue
        if result and result[-1][1] == start:
            previous_start, _ = result.pop()
            result.append((previous_start, end))
        else:
            result.append((start, end))
    total = 0
    for start, end in result:
        total += end - start
    if total > 10_000:
        # Very large spans are rare; keep them but note it.
        note = "large"
    else:
        note = "small"
    stats = {
        "count": len(result),
        "total": total,
        "note": note,
    }
    assert stats["count"] <= len(intervals)
    if gap and stats["count"] == 1:
        return [(result[0][0], result[0][1])]
    return result
'''

CONSTRAINTS = Constraints(
    regex_required=(r"\bsorted\(", r"return\s+result"),
    regex_forbidden=(r"\bimport\b",),
    ast_rules=(
        AstRule(
            required_function_name="merge_intervals",
            argument_count=2,
            return_type_annotation="list[tuple[int, int]]",
        ),
    ),
)


def per_second(call: Callable[[], object], seconds: float) -> float:
    """Calls per second: the best of five rounds of about `seconds` / 5 each."""
    call()
    batch = 1
    while True:
        start = time.perf_counter()
        for _ in range(batch):
            call()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds / 5:
            break
        batch *= 2
    best = elapsed
    for _ in range(4):
        start = time.perf_counter()
        for _ in range(batch):
            call()
        best = min(best, time.perf_counter() - start)
    return batch / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a run of a few seconds")
    seconds = 1.0 if parser.parse_args().quick else 10.0

    validator = ConstraintValidator(CONSTRAINTS)
    result = validator.validate(PAYLOAD)
    assert result.total_checks == 6 and result.passed_checks == 6, result
    lines = len(PAYLOAD.splitlines())
    answer = f"Here is the function:\n\n```python\n{PAYLOAD}```\n\nIt runs in O(n log n)."

    rates = {
        "validate (6 checks)": per_second(lambda: validator.validate(PAYLOAD), seconds),
        "validate_output (extract + 6 checks)": per_second(
            lambda: validate_output(CONSTRAINTS, answer), seconds
        ),
        "ast.parse alone (the ceiling)": per_second(lambda: ast.parse(PAYLOAD), seconds),
    }
    print(header("validations per second"))
    print(f"payload: a {lines}-line function, {len(PAYLOAD)} characters; one core, one thread")
    for name, rate in rates.items():
        print(f"{name:<40} {rate:>10,.0f} /s  {1e6 / rate:>8.1f} us each")
    print("target:  >= 5,000 validations/s")


if __name__ == "__main__":
    main()
