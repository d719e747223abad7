"""A report's summary, computed from its runs' raw values (rendered by `cli/_render.py`).

Percentiles use the nearest-rank method: the p-th percentile of n sorted values is the value at
1-based rank ceil(p * n / 100), so every percentile is one of the measured values (no
interpolation) and p100 is the maximum. Nulls are left out; a metric with no values has null
percentiles. Nothing pre-aggregated in a report is read: the summary is always recomputed.

Latency, memory and token figures are taken over the runs whose generation finished: a run
that errored (a refused connection fails in a millisecond) is counted in `errors` and grouped
by cause in `error_causes`, never mixed into the percentiles. A run whose gate could not run
(`GateError`) did finish its generation, and counts.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Final

import msgspec

from ._causes import error_cause
from ._model import OUTCOMES, Metadata, Report, Telemetry, TestRun
from ._rounding import round3

__all__ = [
    "MetricSummary",
    "ReportSummary",
    "Summary",
    "generation_failed",
    "percentile",
    "run_cause",
    "summarize",
    "summarize_report",
]

_METRICS: Final = (
    "init_latency",
    "total_latency",
    "peak_memory_rss",
    "first_content_latency",
    "time_per_output_token",
)
_PERCENTILES: Final = (50, 90, 99)
_OUTCOME: Final = attrgetter("outcome")
_TELEMETRY: Final = attrgetter("telemetry")


class MetricSummary(msgspec.Struct, kw_only=True):
    """Nearest-rank percentiles of one metric over the runs that have it (`count`)."""

    count: int
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None


class Summary(msgspec.Struct, kw_only=True):
    """Counts by outcome (`pass`, `fail`, `error` always present, others as found), latency,
    memory and token figures over the runs whose generation finished, the mean adherence over
    the runs that have a score, and the errored runs beside: `errors` (runs whose generation
    failed, left out of the figures) and `error_causes` (every `error` run by short cause,
    most frequent first). Token totals are null when no run reported tokens."""

    runs: int
    outcomes: dict[str, int]
    init_latency: MetricSummary
    total_latency: MetricSummary
    peak_memory_rss: MetricSummary
    adherence_mean: float | None
    adherence_count: int
    errors: int = 0
    error_causes: dict[str, int] = msgspec.field(default_factory=dict)
    first_content_latency: MetricSummary | None = None
    time_per_output_token: MetricSummary | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class ReportSummary(msgspec.Struct, kw_only=True):
    """`report --format json`: the summary beside the runs it was computed from."""

    report_generated_at: str | None
    metadata: Metadata
    summary: Summary
    test_runs: list[TestRun]


def percentile(sorted_values: Sequence[float], p: int) -> float | None:
    """Nearest-rank p-th percentile (0 < p <= 100) of ascending values; None when empty."""
    if not sorted_values:
        return None
    rank = max(1, -(-p * len(sorted_values) // 100))  # ceil without floats
    return sorted_values[rank - 1]


Cause = Callable[[str, str], str]


def summarize(runs: Sequence[TestRun], *, cause: Cause = error_cause) -> Summary:
    """Summarize runs from their raw values. Never blocks; never raises for a read report
    (nor for a `cause` that raises: its run is grouped by error type).

    Args:
        runs: the report's runs.
        cause: maps an error's (type, message) to a short cause for `error_causes`.

    Lean for large reports: each pass over the runs is a C-level map (200,000 runs take about
    0.1 s), and only the lists of values being sorted are held beside the runs.
    """
    outcomes = dict.fromkeys(OUTCOMES, 0)
    for outcome, count in Counter(map(_OUTCOME, runs)).items():
        outcomes[outcome] = outcomes.get(outcome, 0) + count
    failed = [run for run in runs if generation_failed(run)]
    finished = runs if not failed else [run for run in runs if not generation_failed(run)]
    telemetry = [t for t in map(_TELEMETRY, finished) if t is not None]
    metrics = {name: _metric(telemetry, name) for name in _METRICS}
    scores = _values(telemetry, "adherence_score")
    # fsum is the correctly rounded sum, whatever the order: the same mean on every platform.
    mean = None if not scores else round3(math.fsum(scores) / len(scores))
    return Summary(
        runs=len(runs),
        outcomes=outcomes,
        init_latency=metrics["init_latency"],
        total_latency=metrics["total_latency"],
        peak_memory_rss=metrics["peak_memory_rss"],
        adherence_mean=mean,
        adherence_count=len(scores),
        errors=len(failed),
        error_causes=_causes([run for run in runs if run.outcome == "error"], cause),
        first_content_latency=metrics["first_content_latency"],
        time_per_output_token=metrics["time_per_output_token"],
        prompt_tokens=_total(telemetry, "prompt_tokens"),
        completion_tokens=_total(telemetry, "completion_tokens"),
    )


def generation_failed(run: TestRun) -> bool:
    """Whether `run`'s generation failed (or never finished): an `error` outcome, unless only
    its gate could not run. Never raises."""
    if run.outcome != "error":
        return False
    return run.error is None or run.error.type != "GateError"


def run_cause(run: TestRun, cause: Cause = error_cause) -> str:
    """The short cause of an errored run: from its error, else from its reason. Never raises."""
    if run.error is not None:
        error_type, message = run.error.type, run.error.message
    else:
        error_type, message = "", run.reason or ""
    try:
        return cause(error_type, message)
    except Exception:  # a caller's classifier must not cost the summary
        return error_type or "unknown"


def summarize_report(report: Report) -> ReportSummary:
    """The report's runs with their summary (`report --format json`). Never raises."""
    return ReportSummary(
        report_generated_at=report.report_generated_at,
        metadata=report.metadata,
        summary=summarize(report.test_runs),
        test_runs=report.test_runs,
    )


def _causes(errored: Sequence[TestRun], cause: Cause) -> dict[str, int]:
    counts = Counter(run_cause(run, cause) for run in errored)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _total(telemetry: Sequence[Telemetry], name: str) -> int | None:
    values = _values(telemetry, name)
    return int(sum(values)) if values else None


def _values(telemetry: Sequence[Telemetry], name: str) -> list[float]:
    return [value for value in map(attrgetter(name), telemetry) if value is not None]


def _metric(telemetry: Sequence[Telemetry], name: str) -> MetricSummary:
    values = sorted(_values(telemetry, name))
    p50, p90, p99 = (percentile(values, p) for p in _PERCENTILES)
    return MetricSummary(count=len(values), p50=p50, p90=p90, p99=p99, max=percentile(values, 100))
