"""The report page's charts, drawn from a `Columns` view of the runs.

Each chart draws a bounded number of marks whatever the number of runs: latencies are binned
(`_BINS`) or drawn through quantiles, the scatter shows at most `SCATTER_POINTS` runs (a seeded
sample, so the same report draws the same page), memory per run is bucketed into at most
`_MEMORY_BARS` bars (each the bucket's largest run). Never blocks; never raises for a report
the reader accepted.
"""

from __future__ import annotations

import bisect
import math
import random
from collections import Counter
from collections.abc import Sequence
from typing import Final

from ...report._stats import nearest_rank
from ._columns import Columns
from ._svg import Bar, Point, Series, bars, cdf, figure, histogram, scatter

__all__ = ["OUTCOME_COLOURS", "SCATTER_POINTS", "charts", "outcome_colour"]

SCATTER_POINTS: Final = 5_000
_BINS: Final = 40
_MEMORY_BARS: Final = 400
_BARS: Final = 8  # outcomes, and error causes, drawn each; the rest are summed in one bar
OUTCOME_COLOURS: Final = {"pass": "#2e8b57", "fail": "#d0453f", "error": "#e69a1c"}
_INIT, _TOTAL, _MEMORY = "#7b52c4", "#1f6fd1", "#4f7cac"


def outcome_colour(outcome: str) -> str:
    """The colour an outcome is drawn in everywhere on the page (grey for unknown ones)."""
    return OUTCOME_COLOURS.get(outcome, "#8a8a8a")


def charts(cols: Columns) -> str:
    """Every chart of the report page as HTML figures, in reading order."""
    init = sorted(v for v in cols.numbers["init_latency"] if v is not None)
    total = sorted(v for v in cols.numbers["total_latency"] if v is not None)
    return "".join(
        (
            _latency_histogram("chart-ttft", "time to first token (s)", init, _INIT),
            _latency_histogram("chart-total", "total latency (s)", total, _TOTAL),
            figure(
                "chart-cdf",
                "latency distribution (CDF)",
                cdf(
                    [Series("first token", init, _INIT), Series("total", total, _TOTAL)],
                    "seconds (axis to p99)",
                ),
                "purple: first token, blue: total",
            ),
            _scatter(cols),
            _memory(cols),
            _adherence(cols),
            _outcomes(cols),
        )
    )


def _latency_histogram(chart_id: str, caption: str, values: list[float], colour: str) -> str:
    if not values:
        return figure(chart_id, caption, "")
    low, high = values[0], nearest_rank(values, 99) or values[0]
    if high <= low:
        high = low + 0.001
    bins = max(8, min(_BINS, round(2 * math.sqrt(len(values)))))
    counts = [0] * bins
    width = (high - low) / bins
    for value in values:
        counts[min(bins - 1, int((value - low) / width))] += 1
    beyond = len(values) - bisect.bisect_right(values, high)
    note = f"n = {len(values):,}" + (f"; {beyond:,} above p99 in the last bin" if beyond else "")
    return figure(chart_id, caption, histogram(counts, low, high, "seconds", colour), note)


def _scatter(cols: Columns) -> str:
    init, total = cols.numbers["init_latency"], cols.numbers["total_latency"]
    both = [i for i in range(cols.n) if init[i] is not None and total[i] is not None]
    drawn = both
    if len(both) > SCATTER_POINTS:
        drawn = sorted(random.Random(0).sample(both, SCATTER_POINTS))
    marks = [
        Point(
            total[i] or 0.0,
            init[i] or 0.0,
            outcome_colour(cols.outcome(i)),
            i,
            f"{cols.ids[i]}: first token {init[i]} s, total {total[i]} s ({cols.outcome(i)})",
        )
        for i in drawn
    ]
    note = f"{len(drawn):,} of {len(both):,} runs" + (
        " (a seeded sample)" if len(drawn) < len(both) else ""
    )
    body = scatter(marks, "total latency (s)", "first token (s)")
    return figure("chart-scatter", "first token vs total, per run", body, note)


def _memory(cols: Columns) -> str:
    memory = cols.numbers["peak_memory_rss"]
    size = max(1, -(-cols.n // _MEMORY_BARS))
    items = []
    for start in range(0, cols.n, size):
        chunk = [(v, i) for i, v in enumerate(memory[start : start + size], start) if v is not None]
        if not chunk:
            continue
        value, run = max(chunk)
        where = cols.ids[run] if size == 1 else f"runs {start + 1:,} to {start + len(chunk):,}"
        colour = outcome_colour(cols.outcome(run)) if size == 1 else _MEMORY
        items.append(Bar("", value, colour, f"{where}: {value} MiB", run))
    note = (
        "in suite order; coloured by outcome"
        if size == 1
        else (f"in suite order; each bar the largest of {size:,} runs")
    )
    body = bars(items, "runs, in suite order", "MiB", labels=False, counts=False)
    return figure("chart-memory", "peak memory per run (MiB)", body, note)


def _adherence(cols: Columns) -> str:
    scores = [v for v in cols.numbers["adherence_score"] if v is not None]
    counts = [0] * 11  # [0, 0.1), ..., [0.9, 1), exactly 1
    for score in scores:
        counts[10 if score >= 1 else min(9, max(0, int(score * 10)))] += 1
    labels = [f".{i}" if i else "0" for i in range(10)] + ["1"]
    items = [
        Bar(label, count, "#3a8fb7", f"{_band(i)}: {count:,} runs")
        for i, (label, count) in enumerate(zip(labels, counts, strict=True))
    ]
    body = bars(items, "adherence score (band start)", "runs") if scores else ""
    note = f"{len(scores):,} scored; {cols.n - len(scores):,} not scored"
    return figure("chart-adherence", "adherence distribution", body, note)


def _band(i: int) -> str:
    return "exactly 1" if i == 10 else f"{i / 10:.1f} to {(i + 1) / 10:.1f}"


def _outcomes(cols: Columns) -> str:
    counts = Counter(cols.outcome_codes)
    rank = {name: i for i, name in enumerate(OUTCOME_COLOURS)}  # pass, fail, error, the rest
    order = sorted(counts, key=lambda c: (rank.get(cols.outcome_names[c], 3), -counts[c]))
    items = [
        Bar(name, counts[code], outcome_colour(name), f"{name}: {counts[code]:,} runs")
        for code in order[:_BARS]
        for name in [cols.outcome_names[code]]
    ]
    rest = sum(counts[code] for code in order[_BARS:])
    if rest:
        items.append(Bar("other", rest, outcome_colour(""), f"{rest:,} runs of other outcomes"))
    causes = Counter(t for t in cols.error_types if t is not None).most_common()
    items += _bars_of(causes, "error ")
    note = "the report records no gate type; errors split by cause" if causes else ""
    return figure("chart-outcomes", "outcomes", bars(items, "", "runs"), note)


def _bars_of(causes: Sequence[tuple[str, int]], prefix: str) -> list[Bar]:
    shown = list(causes[:_BARS])
    rest = sum(count for _, count in causes[_BARS:])
    if rest:
        shown.append(("others", rest))
    return [Bar(name, n, "#b8860b", f"{prefix}{name}: {n:,} runs") for name, n in shown]
