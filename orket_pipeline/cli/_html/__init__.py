"""`report --format html` and the shared pieces of `compare --format html`.

One self-contained page: a header with the report's metadata, summary figures, seven inline SVG
charts drawn here (see `_svg` for why no charting library), then a sortable, filterable,
paginated run table with a drill-down per run (telemetry, reason, error, checks, output) built
in the browser by `report.js` from the runs embedded as JSON. The page fetches nothing and
works from `file://`; see `_page` for how hostile text stays text. Its size grows with the
runs' numbers and ids (columns) and with their outputs up to a bound (`_columns`); what it
draws is bounded whatever the number of runs (`_charts`).
"""

from __future__ import annotations

import html
from typing import Any, Final

import msgspec

from ...report._model import Report
from ...report._summary import MetricSummary, summarize
from ._charts import charts
from ._columns import columns
from ._page import asset, page

__all__ = ["PAGE_SIZE", "render_report_html"]

PAGE_SIZE: Final = 100  # runs per page of the table
_METRICS: Final = (
    ("init_latency", "time to first token", "s"),
    ("total_latency", "total latency", "s"),
    ("peak_memory_rss", "peak memory", "MiB"),
)
_META_KEYS: Final = ("suite", "provider", "model", "executor", "sandbox", "python", "platform")
_TABLE_HEAD: Final = (
    ("id", "test id"),
    ("outcome", "outcome"),
    ("init_latency", "first token s"),
    ("total_latency", "total s"),
    ("peak_memory_rss", "peak MiB"),
    ("adherence_score", "adherence"),
    ("why", "why not passed"),
)


def render_report_html(report: Report) -> str:
    """The report as one self-contained HTML page. Never blocks; never raises for a report the
    reader accepted."""
    cols = columns(report)
    title = f"orket-pipeline report {report.report_generated_at or ''}".strip()
    body = "\n".join(
        (
            f"<header><h1>{_e(title)}</h1>{_metadata(report)}</header>",
            _summary(report),
            f"<section id='charts'><h2>charts</h2><div class='grid'>{charts(cols)}</div></section>",
            _runs_section(cols.n),
            "<section id='run-detail' hidden></section>",
        )
    )
    data: dict[str, Any] = cols.payload()
    data["pageSize"] = PAGE_SIZE
    return page(title, body, data=data, script=asset("report.js"))


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _metadata(report: Report) -> str:
    meta: dict[str, Any] = msgspec.to_builtins(report.metadata)
    items = [(key, meta.get(key)) for key in _META_KEYS]
    generator = meta.get("generator") or {}
    items.append(("written by", f"{generator.get('name', '')} {generator.get('version', '')}"))
    items.append(("schema", report.schema_version))
    cells = "".join(
        f"<div><dt>{_e(key)}</dt><dd>{_e(str(value))}</dd></div>"
        for key, value in items
        if value not in (None, "", " ")
    )
    return f"<dl class='meta'>{cells}</dl>"


def _summary(report: Report) -> str:
    summary = summarize(report.test_runs)
    passed = summary.outcomes.get("pass", 0)
    rate = f"{100 * passed / summary.runs:.1f}%" if summary.runs else "-"
    cards = [("runs", f"{summary.runs:,}"), ("passed", rate)]
    cards += [(f"{o}", f"{c:,}") for o, c in summary.outcomes.items() if o != "pass"]
    for name, label, unit in _METRICS:
        metric: MetricSummary = getattr(summary, name)
        cards.append((f"{label} p50 / p90", f"{_num(metric.p50)} / {_num(metric.p90)} {unit}"))
    cards.append(("adherence mean", _num(summary.adherence_mean)))
    card_html = "".join(
        f"<div class='card'><span>{_e(label)}</span><strong>{_e(value)}</strong></div>"
        for label, value in cards
    )
    rows = "".join(
        f"<tr><td>{_e(label)} ({unit})</td><td>{m.count:,}</td>"
        + "".join(f"<td>{_num(v)}</td>" for v in (m.p50, m.p90, m.p99, m.max))
        + "</tr>"
        for name, label, unit in _METRICS
        for m in [getattr(summary, name)]
    )
    table = (
        "<table class='stats'><thead><tr><th>metric</th><th>runs</th><th>p50</th><th>p90</th>"
        f"<th>p99</th><th>max</th></tr></thead><tbody>{rows}</tbody></table>"
    )
    note = "<p class='note'>nearest-rank percentiles over the runs that have the figure</p>"
    return f"<section id='summary'><div class='cards'>{card_html}</div>{table}{note}</section>"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _runs_section(total: int) -> str:
    head = "".join(
        f"<th data-key='{key}' aria-sort='none'><button type='button'>{_e(label)}</button></th>"
        for key, label in _TABLE_HEAD
    )
    return (
        "<section id='runs'><h2>runs</h2><div class='controls'>"
        "<input id='run-filter' type='search' placeholder='filter: id, reason, error'>"
        "<select id='run-outcome'><option value=''>every outcome</option></select></div>"
        f"<p id='run-count' data-total='{total}'>{total:,} runs</p>"
        f"<table id='run-table'><thead><tr>{head}</tr></thead><tbody></tbody></table>"
        "<nav class='pager' id='run-pager'></nav>"
        "<noscript><p>The run table needs JavaScript; the charts above do not.</p></noscript>"
        "</section>"
    )
