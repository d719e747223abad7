"""`compare`'s renderers: a terminal table and a self-contained HTML page.

The terminal table shows every string from a report as plain text with control characters
escaped. The HTML page has no script and fetches nothing (it opens from file://; its
Content-Security-Policy allows no fetch and no script), and every text taken from a report is
HTML-escaped. It shares the report page's stylesheet and SVG charts (`_html`). Per metric, both
runs' distributions are drawn as empirical CDFs on one chart (baseline grey, candidate blue):
a shift right is slower, a fatter upper tail shows as a later approach to 1. Each curve is
drawn through at most `_POINTS` quantiles, so a 100,000-run report makes a page of the same
size as a 100-run one.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Final

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .._text import printable
from ..report._compare import Comparison, MetricChange, finished_values
from ..report._model import Report
from ._html._page import page
from ._html._svg import Series, cdf, figure

__all__ = ["render_compare_html", "render_compare_table"]

_COLUMNS: Final = ("metric", "baseline", "candidate", "change", "CI", "p", "verdict")
_VERDICTS: Final = {
    "regression": "REGRESSED",
    "improvement": "improved",
    "unchanged": "",
    "not_tested": "-",
}
_POINTS: Final = 200  # quantiles drawn per curve
_COLOURS: Final = ("#888888", "#1f6fd1")


def render_compare_html(
    comparison: Comparison, names: tuple[str, str], baseline: Report, candidate: Report
) -> str:
    """The comparison as a self-contained HTML page, every text escaped. Never raises."""
    rows = [(change_row(c), c.verdict) for c in comparison.changes]
    changes = _html_table(_COLUMNS, rows)
    flips = _html_table(
        ("test id", "baseline", "candidate"),
        [((f.test_id, f.baseline, f.candidate), "") for f in comparison.flips],
    )
    base_values, cand_values = finished_values(baseline), finished_values(candidate)
    charts = "".join(
        _chart(metric, names, base_values[metric], cand_values[metric])
        for metric in dict.fromkeys(c.metric for c in comparison.changes)
        if metric != "pass_rate"
    )
    title = f"compare {names[0]} → {names[1]}"
    legend = (
        f"<p class='legend'><span class='base'>■ baseline</span> {_e(names[0])} &nbsp; "
        f"<span class='cand'>■ candidate</span> {_e(names[1])}</p>"
    )
    only = "".join(
        f"<h2>{label} ({len(ids)})</h2><p>{_e(', '.join(ids))}</p>"
        for label, ids in (
            ("only in baseline", comparison.only_in_baseline),
            ("only in candidate", comparison.only_in_candidate),
        )
        if ids
    )
    body = (
        f"<header><h1>{_e(title)}</h1></header>\n"
        f"<p><strong>{_e(verdict_line(comparison))}</strong></p>\n"
        f"{changes}\n<p>{_e(pass_rate_line(comparison))}</p>\n"
        f"<h2>distributions (finished runs)</h2>\n{legend}\n<div class='grid'>{charts}</div>\n"
        f"<h2>flips ({len(comparison.flips)})</h2>\n{flips}\n{only}"
    )
    return page(title, body)


def render_compare_table(
    comparison: Comparison, names: tuple[str, str], console: Console, *, max_rows: int
) -> None:
    """Print the changes, the pass rate, the flips (at most `max_rows`; 0: all) and the tasks
    found in one report only, then the verdict. Blocks on the console's output."""
    confidence = f"{100 * (1 - comparison.alpha):g}%"
    title = f"{names[0]} → {names[1]} (p one-sided, Holm over all tests; CI {confidence})"
    table = _table(_COLUMNS, title=title, text_columns=1)
    for change in comparison.changes:
        table.add_row(*map(_cell, change_row(change)))
    console.print(table)
    console.print(_cell(pass_rate_line(comparison)))
    flips = comparison.flips if max_rows == 0 else comparison.flips[:max_rows]
    if flips:
        shown = f"first {len(flips)} of " if len(flips) < len(comparison.flips) else ""
        flip_table = _table(
            ("test id", "baseline", "candidate"), title=f"{shown}flips", text_columns=3
        )
        for flip in flips:
            flip_table.add_row(*map(_cell, (flip.test_id, flip.baseline, flip.candidate)))
        console.print(flip_table)
    for label, ids in (
        ("only in baseline", comparison.only_in_baseline),
        ("only in candidate", comparison.only_in_candidate),
    ):
        if ids:
            console.print(_cell(_id_list(label, ids, max_rows)))
    console.print(_cell(verdict_line(comparison)))


def change_row(change: MetricChange) -> tuple[str, ...]:
    """One row of the changes table, as text."""
    ci = "" if change.ci_low is None else f"[{_num(change.ci_low)}, {_num(change.ci_high)}]"
    return (
        f"{change.metric} {change.statistic}",
        _num(change.baseline),
        _num(change.candidate),
        _delta(change),
        ci,
        "" if change.p_worse is None else f"{min(change.p_worse, change.p_better or 1):.2g}",
        _VERDICTS[change.verdict],
    )


def pass_rate_line(comparison: Comparison) -> str:
    """The paired pass rates and flip counts in one sentence."""
    rate = comparison.pass_rate
    if rate.paired == 0:
        return "pass rate: no task is in both reports"
    return (
        f"pass rate over the {rate.paired} tasks in both: "
        f"{100 * rate.baseline_passed / rate.paired:.1f}% → "
        f"{100 * rate.candidate_passed / rate.paired:.1f}%; "
        f"{rate.pass_to_fail} pass → not pass, {rate.fail_to_pass} back to pass"
    )


def verdict_line(comparison: Comparison) -> str:
    """What the exit code says, in words."""
    if not comparison.regressed:
        return f"no significant regression (alpha {comparison.alpha:g})"
    found = ", ".join(f"{c.metric} {c.statistic} {_delta(c)}" for c in comparison.regressions)
    return f"REGRESSED (alpha {comparison.alpha:g}): {found}"


def _delta(change: MetricChange) -> str:
    if change.change is None:
        return ""
    text = f"{change.change:+.4g}"
    if change.relative_change is not None:
        text += f" ({100 * change.relative_change:+.1f}%)"
    return text


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 10_000 else f"{value:.4g}"


def _id_list(label: str, ids: Sequence[str], max_rows: int) -> str:
    shown = ids if max_rows == 0 else ids[:max_rows]
    more = f", … ({len(ids) - len(shown)} more)" if len(shown) < len(ids) else ""
    return f"{label} ({len(ids)}): {', '.join(shown)}{more}"


def _cell(text: str) -> Text:
    # Text, not str: "[bold]" prints as itself, not as rich markup; printable: "\x1b[2J" too.
    return Text(printable(text))


def _table(header: Sequence[str], *, title: str, text_columns: int) -> Table:
    table = Table(title=_cell(title))
    for index, name in enumerate(header):
        left = index < text_columns
        table.add_column(name, justify="left" if left else "right", no_wrap=index == 0)
    return table


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _html_table(header: Sequence[str], rows: Sequence[tuple[Sequence[str], str]]) -> str:
    head = "".join(f"<th>{_e(cell)}</th>" for cell in header)
    body = "".join(
        f"<tr class='{_e(kind)}'>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>\n"
        for row, kind in rows
    )
    return f"<table class='stats'><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>"


def _chart(metric: str, names: tuple[str, str], base: list[float], cand: list[float]) -> str:
    """A figure with both empirical CDFs of `metric` on shared axes (the x axis to the larger
    p99, so one extreme run cannot squash the rest into a corner)."""
    if not base and not cand:
        return ""
    series = [
        Series(f"baseline {names[0]}", base, _COLOURS[0]),
        Series(f"candidate {names[1]}", cand, _COLOURS[1]),
    ]
    body = cdf(series, f"{metric} (axis to p99)", points=_POINTS)
    return figure(f"cdf-{metric}", metric, body, f"n = {len(base):,} / {len(cand):,}")
