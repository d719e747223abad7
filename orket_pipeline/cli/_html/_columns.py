"""The runs of a report as columns: what the charts draw and what the page's script reads.

One pass over the runs as plain dicts (`msgspec.to_builtins`, so fields a newer report
model adds — `checks`, `output`, `attempts`, new telemetry — are picked up by name, and their
absence is no error). Columns are lists aligned by run index, in suite order; JSON of columns is
much smaller than JSON of per-run objects (the keys are written once), which is what keeps a
100,000-run page near the size of the report's own numbers.

What the page embeds is bounded: each run's `output` is cut at `OUTPUT_CHARS` characters and
all outputs together at `OUTPUT_BUDGET` (runs that did not pass first, then the rest in suite
order; a run past the budget says so in its drill-down), each `reason` and error message at
`TEXT_CHARS`. The report keeps everything whole. Never blocks; never raises for a report the
reader accepted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from ...report._model import Report

__all__ = ["MAIN_METRICS", "OUTPUT_BUDGET", "OUTPUT_CHARS", "TEXT_CHARS", "Columns", "columns"]

MAIN_METRICS: Final = ("init_latency", "total_latency", "peak_memory_rss", "adherence_score")
OUTPUT_CHARS: Final = 4_096
OUTPUT_BUDGET: Final = 16 * 2**20
TEXT_CHARS: Final = 2_000
_SCALARS: Final = (str, int, float)
_KNOWN: Final = frozenset(
    ("test_id", "outcome", "telemetry", "error", "reason", "checks", "output", "output_truncated")
)


@dataclass
class Columns:
    """The runs of a report, one list per field, aligned by run index."""

    n: int = 0
    ids: list[str] = field(default_factory=list)
    outcome_names: list[str] = field(default_factory=list)
    outcome_codes: list[int] = field(default_factory=list)
    numbers: dict[str, list[Any]] = field(default_factory=dict)  # telemetry, flattened
    extras: dict[str, list[Any]] = field(default_factory=dict)  # other per-run scalars
    reasons: list[str | None] = field(default_factory=list)
    error_types: list[str | None] = field(default_factory=list)
    error_messages: list[str | None] = field(default_factory=list)
    check_names: list[str] = field(default_factory=list)
    checks: list[list[Any] | None] = field(default_factory=list)
    outputs: list[str | None] = field(default_factory=list)
    output_lengths: list[int | None] = field(default_factory=list)  # the whole output's length
    output_truncated: list[bool | None] = field(default_factory=list)  # cut by the report's cap

    def outcome(self, index: int) -> str:
        """The outcome of run `index` as text."""
        return self.outcome_names[self.outcome_codes[index]]

    def payload(self) -> dict[str, Any]:
        """What the page's script reads (`report.js`): the columns under short keys."""
        data: dict[str, Any] = {
            "n": self.n,
            "ids": self.ids,
            "outcomes": self.outcome_names,
            "o": self.outcome_codes,
            "num": _kept(self.numbers, MAIN_METRICS),
            "extra": _kept(self.extras, ()),
            "reason": self.reasons,
            "errType": self.error_types,
            "errMsg": self.error_messages,
        }
        if any(c is not None for c in self.checks):
            data["checkNames"], data["checks"] = self.check_names, self.checks
        if any(o is not None for o in self.output_lengths):
            data["out"], data["outLen"] = self.outputs, self.output_lengths
            data["outTrunc"] = self.output_truncated
        return data


def columns(report: Report) -> Columns:
    """The report's runs as `Columns`, texts cut as the module says."""
    n = len(report.test_runs)
    cols = Columns(n=n, numbers={name: [None] * n for name in MAIN_METRICS})
    outcome_index: dict[str, int] = {}
    check_index: dict[str, int] = {}
    to_builtins = msgspec.to_builtins
    for i, one in enumerate(report.test_runs):
        run: dict[str, Any] = to_builtins(one)  # one at a time: the dicts never all live at once
        cols.ids.append(run["test_id"])
        code = outcome_index.setdefault(run["outcome"], len(outcome_index))
        cols.outcome_codes.append(code)
        for name, value in _flat(run.get("telemetry") or {}):
            _column(cols.numbers, name, n)[i] = value
        for name, value in run.items():
            if value is not None and name not in _KNOWN and isinstance(value, _SCALARS):
                _column(cols.extras, name, n)[i] = value
        cols.reasons.append(_cut(run.get("reason")))
        error = run.get("error") or {}
        cols.error_types.append(error.get("type"))
        cols.error_messages.append(_cut(error.get("message")))
        cols.checks.append(_checks(run.get("checks"), check_index))
        output = run.get("output")
        cols.outputs.append(output if isinstance(output, str) else None)
        cols.output_lengths.append(len(output) if isinstance(output, str) else None)
        cols.output_truncated.append(run.get("output_truncated"))
    cols.outcome_names = list(outcome_index)
    cols.check_names = list(check_index)
    _fit_outputs(cols)
    return cols


def _column(table: dict[str, list[Any]], name: str, n: int) -> list[Any]:
    """The column `name` of `table`, made (all None) on first use."""
    column = table.get(name)
    if column is None:
        column = table[name] = [None] * n
    return column


def _kept(table: dict[str, list[Any]], always: tuple[str, ...]) -> dict[str, list[Any]]:
    """The columns that hold a value for some run (and those in `always`)."""
    return {k: v for k, v in table.items() if k in always or any(x is not None for x in v)}


def _flat(telemetry: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Telemetry fields that hold a value as (name, value), one nested level flattened
    (`server.prompt_s`). Nulls are skipped: every column starts as nulls."""
    for name, value in telemetry.items():
        if value is None:
            continue
        if isinstance(value, dict):
            for inner, inner_value in value.items():
                if inner_value is not None and isinstance(inner_value, _SCALARS):
                    yield f"{name}.{inner}", inner_value
        elif isinstance(value, _SCALARS):
            yield name, value


def _cut(text: object, limit: int = TEXT_CHARS) -> str | None:
    if not isinstance(text, str):
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _checks(checks: object, index: dict[str, int]) -> list[Any] | None:
    """[[name index, passed (1/0), detail], ...], failed checks first; None when not scored."""
    if not isinstance(checks, list):
        return None
    rows = []
    for check in checks:
        if isinstance(check, dict):
            name = str(check.get("check", ""))
            code = index.setdefault(name, len(index))
            rows.append([code, 1 if check.get("passed") else 0, _cut(check.get("detail")) or ""])
    rows.sort(key=lambda row: row[1])  # stable: failed first, each in the report's order
    return rows


def _fit_outputs(cols: Columns) -> None:
    """Cut each output to `OUTPUT_CHARS` and drop those past `OUTPUT_BUDGET`, the outputs of
    runs that did not pass being kept first."""
    order = sorted(range(cols.n), key=lambda i: cols.outcome(i) == "pass")
    left = OUTPUT_BUDGET
    for i in order:
        output = cols.outputs[i]
        if output is None:
            continue
        kept = output[:OUTPUT_CHARS]
        if len(kept) > left:
            cols.outputs[i] = None  # the drill-down says it was left out of the page
            continue
        cols.outputs[i] = kept
        left -= len(kept)
