"""A report's summary, computed from its runs' raw values, and the renderers of `report`.

Percentiles use the nearest-rank method: the p-th percentile of n sorted values is the value at
1-based rank ceil(p * n / 100), so every percentile is one of the measured values (no
interpolation) and p100 is the maximum. Nulls are left out; a metric with no values has null
percentiles. Nothing pre-aggregated in a report is read: the summary is always recomputed.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from collections.abc import Sequence
from operator import attrgetter
from typing import Final

import msgspec
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ._model import OUTCOMES, Metadata, Report, Telemetry, TestRun, encode_json
from ._rounding import round3

__all__ = [
    "MetricSummary",
    "ReportSummary",
    "Summary",
    "percentile",
    "render_html",
    "render_json",
    "render_table",
    "summarize",
    "summarize_report",
]

_METRICS: Final = ("init_latency", "total_latency", "peak_memory_rss")
_OUTCOME: Final = attrgetter("outcome")
_TELEMETRY: Final = attrgetter("telemetry")
_PERCENTILES: Final = (50, 90, 99)
_COLUMNS: Final = ("test id", "outcome", "init s", "total s", "peak MiB", "adherence")


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
    """The report's runs with their summary, ready for `render_json`. Never raises."""
    return ReportSummary(
        report_generated_at=report.report_generated_at,
        metadata=report.metadata,
        summary=summarize(report.test_runs),
        test_runs=report.test_runs,
    )


def render_table(report: Report, console: Console, *, max_rows: int | None = None) -> None:
    """Print one row per run, then the summary, to `console`. Blocks on the console's output.

    With `max_rows`, a report with more runs than that shows only the runs that did not pass
    (at most `max_rows` of them) and says so; the summary always covers every run.
    """
    runs: Sequence[TestRun] = report.test_runs
    title = "test runs"
    if max_rows is not None and len(runs) > max_rows:
        not_passed = [run for run in runs if run.outcome != "pass"]
        runs = not_passed[:max_rows]
        shown = f"first {len(runs)} of " if len(not_passed) > len(runs) else ""
        title = f"{shown}{len(not_passed)} runs that did not pass (of {len(report.test_runs)})"
    table = _table(_COLUMNS, title=title, text_columns=2)
    for row in _run_rows(runs):
        # Text, not str: a test id like "[bold]" must print as itself, not as rich markup.
        table.add_row(*(Text(cell) for cell in row))
    console.print(table)
    console.print(_summary_table(summarize(report.test_runs)))


def render_json(report: Report) -> bytes:
    """`ReportSummary` as JSON (three-decimal numbers), newline-terminated. Never raises."""
    return encode_json(summarize_report(report)) + b"\n"


def render_html(report: Report) -> str:
    """A self-contained HTML page: the runs table and the summary. Never raises."""
    summary = summarize(report.test_runs)
    runs = _html_table(_COLUMNS, _run_rows(report.test_runs))
    stats = _html_table(("metric", "count", "p50", "p90", "p99", "max"), _metric_rows(summary))
    title = html.escape(f"orket-pipeline report {report.report_generated_at or ''}".strip())
    return (
        "<!doctype html>\n<html><head><meta charset='utf-8'>"
        f"<title>{title}</title><style>{_CSS}</style></head><body>\n"
        f"<h1>{title}</h1>\n<p>{html.escape(_outcome_line(summary))}</p>\n"
        f"{stats}\n<h2>test runs</h2>\n{runs}\n</body></html>\n"
    )


_CSS: Final = (
    "body{font-family:sans-serif}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:2px 8px}td{text-align:right}"
    "td:first-child,td:nth-child(2){text-align:left}"
)


def _values(telemetry: Sequence[Telemetry], name: str) -> list[float]:
    return [value for value in map(attrgetter(name), telemetry) if value is not None]


def _metric(telemetry: Sequence[Telemetry], name: str) -> MetricSummary:
    values = sorted(_values(telemetry, name))
    p50, p90, p99 = (percentile(values, p) for p in _PERCENTILES)
    return MetricSummary(count=len(values), p50=p50, p90=p90, p99=p99, max=percentile(values, 100))


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _run_rows(runs: Sequence[TestRun]) -> list[tuple[str, ...]]:
    rows = []
    for run in runs:
        tel = run.telemetry
        numbers = (
            (tel.init_latency, tel.total_latency, tel.peak_memory_rss, tel.adherence_score)
            if tel is not None
            else (None, None, None, None)
        )
        rows.append((run.test_id, run.outcome, *(_fmt(n) for n in numbers)))
    return rows


def _metric_rows(summary: Summary) -> list[tuple[str, ...]]:
    rows = []
    for name in _METRICS:
        metric: MetricSummary = getattr(summary, name)
        rows.append((name, str(metric.count), *map(_fmt, _quartet(metric))))
    mean = _fmt(summary.adherence_mean)
    rows.append(("adherence (mean)", str(summary.adherence_count), mean, "", "", ""))
    return rows


def _quartet(metric: MetricSummary) -> tuple[float | None, ...]:
    return (metric.p50, metric.p90, metric.p99, metric.max)


def _outcome_line(summary: Summary) -> str:
    counts = ", ".join(f"{count} {outcome}" for outcome, count in summary.outcomes.items())
    return f"{summary.runs} runs: {counts}"


def _summary_table(summary: Summary) -> Table:
    header = ("metric", "count", "p50", "p90", "p99", "max")
    table = _table(header, title="summary (s, MiB; nearest-rank percentiles)", text_columns=1)
    table.caption = _outcome_line(summary)
    for row in _metric_rows(summary):
        table.add_row(*row)
    return table


def _table(header: Sequence[str], *, title: str, text_columns: int) -> Table:
    table = Table(title=title)
    for index, name in enumerate(header):
        table.add_column(name, justify="left" if index < text_columns else "right")
    return table


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>\n"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>"
