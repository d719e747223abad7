"""A report's summary, computed from its runs' raw values (rendered by `cli/_render.py`).

Percentiles use the nearest-rank method: the p-th percentile of n sorted values is the value at
1-based rank ceil(p * n / 100), so every percentile is one of the measured values (no
interpolation) and p100 is the maximum. Nulls are left out; a metric with no values has null
percentiles. Nothing pre-aggregated in a report is read: the summary is always recomputed.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from operator import attrgetter
from typing import Final

import msgspec

from ._model import OUTCOMES, Metadata, Report, Telemetry, TestRun
from ._rounding import round3

__all__ = [
    "MetricSummary",
    "ReportSummary",
    "Summary",
    "percentile",
    "summarize",
    "summarize_report",
]

_METRICS: Final = ("init_latency", "total_latency", "peak_memory_rss")
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
    """Counts by outcome (`pass`, `fail`, `error` always present, others as found), latency and
    memory percentiles, and the mean adherence over the runs that have a score."""

    runs: int
    outcomes: dict[str, int]
    init_latency: MetricSummary
    total_latency: MetricSummary
    peak_memory_rss: MetricSummary
    adherence_mean: float | None
    adherence_count: int


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


def summarize(runs: Sequence[TestRun]) -> Summary:
    """Summarize runs from their raw values. Never blocks; never raises for a read report.

    Lean for large reports: each pass over the runs is a C-level map (200,000 runs take about
    0.1 s), and only the lists of values being sorted are held beside the runs.
    """
    outcomes = dict.fromkeys(OUTCOMES, 0)
    for outcome, count in Counter(map(_OUTCOME, runs)).items():
        outcomes[outcome] = outcomes.get(outcome, 0) + count
    telemetry = [t for t in map(_TELEMETRY, runs) if t is not None]
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
    )


def summarize_report(report: Report) -> ReportSummary:
    """The report's runs with their summary (`report --format json`). Never raises."""
    return ReportSummary(
        report_generated_at=report.report_generated_at,
        metadata=report.metadata,
        summary=summarize(report.test_runs),
        test_runs=report.test_runs,
    )


def _values(telemetry: Sequence[Telemetry], name: str) -> list[float]:
    return [value for value in map(attrgetter(name), telemetry) if value is not None]


def _metric(telemetry: Sequence[Telemetry], name: str) -> MetricSummary:
    values = sorted(_values(telemetry, name))
    p50, p90, p99 = (percentile(values, p) for p in _PERCENTILES)
    return MetricSummary(count=len(values), p50=p50, p90=p90, p99=p99, max=percentile(values, 100))
