"""The renderers of `run` and `report`: a terminal table, JSON, a self-contained HTML page.

Everything a report holds is someone else's text: a test id, an outcome, a provider's name can
carry rich markup (`[/bold]`), ANSI escape sequences (clear the screen, print a fake "ALL TESTS
PASSED") or HTML (`<script>`). The terminal table shows every cell as plain text with control
characters escaped (`\\x1b`); the HTML page (`_html`) keeps every text as text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .._text import printable
from ..report._model import Report, TestRun, encode_json
from ..report._summary import MetricSummary, Summary, summarize, summarize_report
from ._hints import hints, summary_lines
from ._html import render_report_html

__all__ = ["render_html", "render_json", "render_table"]

_METRICS: Final = ("init_latency", "total_latency", "peak_memory_rss")
_EXTRA_METRICS: Final = ("first_content_latency", "time_per_output_token")  # when measured
_COLUMNS: Final = ("test id", "outcome", "init s", "total s", "peak MiB", "adherence")
_STATS_COLUMNS: Final = ("metric", "count", "p50", "p90", "p99", "max")
_REASON_CHARS: Final = 80  # the reason column shows a short form; the report keeps it whole
_REASON_WIDTH: Final = 40  # terminal columns it may take before it wraps


def render_table(report: Report, console: Console, *, max_rows: int | None = None) -> None:
    """Print one row per run, then the summary, to `console`. Blocks on the console's output.

    Each row ends with why the run did not pass (the gate's reason, else the generation's
    error), shortened to one line.

    With `max_rows`, a report with more runs than that shows only the runs that did not pass
    (at most `max_rows` of them) and says so; the summary always covers every run. Every cell
    is plain text with control characters escaped: nothing in a report acts on the terminal.

    Under the summary: the errors grouped by cause, token totals, the concurrency with the
    most generations in flight, and a hint when the runs show a known symptom (`_hints`).
    """
    runs: Sequence[TestRun] = report.test_runs
    title = "test runs"
    if max_rows is not None and len(runs) > max_rows:
        not_passed = [run for run in runs if run.outcome != "pass"]
        runs = not_passed[:max_rows]
        shown = f"first {len(runs)} of " if len(not_passed) > len(runs) else ""
        title = f"{shown}{len(not_passed)} runs that did not pass (of {len(report.test_runs)})"
    table = _table(_COLUMNS, title=title, text_columns=2)
    table.add_column("reason", max_width=_REASON_WIDTH, overflow="fold")
    for run, row in zip(runs, _run_rows(runs), strict=True):
        table.add_row(*map(_cell, (*row, _reason(run))))
    console.print(table)
    summary = summarize(report.test_runs)
    console.print(_summary_table(summary))
    for line in summary_lines(summary, report.metadata) + hints(report, summary):
        console.print(_cell(line))


def render_json(report: Report) -> bytes:
    """`ReportSummary` as JSON (three-decimal numbers), newline-terminated. Never raises."""
    return encode_json(summarize_report(report)) + b"\n"


def render_html(report: Report) -> str:
    """A self-contained HTML page with charts, the run table and a drill-down per run (see
    `_html`). Never raises."""
    return render_report_html(report)


def _reason(run: TestRun) -> str:
    """Why a run did not pass, on one line and shortened: the gate's reason, else the
    generation's error (type: message); empty for a run that passed without either."""
    if run.reason:
        text = run.reason
    elif run.error is not None:
        text = f"{run.error.type}: {run.error.message}" if run.error.message else run.error.type
    else:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 1] + "…"


def _cell(text: str) -> Text:
    # Text, not str: "[bold]" prints as itself, not as rich markup; printable: "\x1b[2J" too.
    return Text(printable(text))


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
    title = "summary (s, MiB; nearest-rank percentiles"
    title += f", {summary.errors} errored runs left out)" if summary.errors else ")"
    table = _table(_STATS_COLUMNS, title=title, text_columns=1)
    table.caption = _cell(_outcome_line(summary))  # outcomes are the report's own text
    for row in _metric_rows(summary) + _extra_rows(summary):
        table.add_row(*map(_cell, row))
    return table


def _extra_rows(summary: Summary) -> list[tuple[str, ...]]:
    rows = []
    for name in _EXTRA_METRICS:
        metric: MetricSummary | None = getattr(summary, name)
        if metric is not None and metric.count:
            rows.append((name, str(metric.count), *map(_fmt, _quartet(metric))))
    return rows


def _table(header: Sequence[str], *, title: str, text_columns: int) -> Table:
    table = Table(title=Text(title))
    for index, name in enumerate(header):
        table.add_column(name, justify="left" if index < text_columns else "right")
    return table
