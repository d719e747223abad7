"""Hand-written SVG charts: histogram, empirical CDF, scatter and bars, as strings.

Why no charting library: every one worth inlining (Chart.js, uPlot, Vega) is 40 to 800 KB of
minified script that would have to be pasted into each page and audited for what it does with
the report's text; the page's seven charts are axes, rectangles, circles and polylines, which take
a couple of hundred lines of Python, need no script to show (the page's charts appear even with
JavaScript off), and scale with the number of marks drawn, which the callers cap (bins,
quantiles, a sample), not with the number of runs. Every text put into the SVG (titles,
labels, tooltips) is escaped here; numbers are formatted here. Nothing here blocks or raises for
finite numbers.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Final, NamedTuple

__all__ = ["Bar", "Point", "Series", "bars", "cdf", "figure", "histogram", "nice_ticks", "scatter"]

W: Final = 460
H: Final = 220
_L, _R, _T, _B = 52, 14, 12, 34  # plot margins: left, right, top, bottom


class Series(NamedTuple):
    """One curve of a CDF: its label, ascending values and colour."""

    label: str
    sorted_values: Sequence[float]
    colour: str


class Point(NamedTuple):
    """One scatter mark: position, colour, the run it opens (index) and its tooltip."""

    x: float
    y: float
    colour: str
    run: int
    tip: str


class Bar(NamedTuple):
    """One bar: label, value, colour, tooltip, and the run it opens (-1: none)."""

    label: str
    value: float
    colour: str
    tip: str
    run: int = -1


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def fmt(value: float) -> str:
    """A number short enough for an axis label: 0.012, 1.5, 250, 12,000, 3e+07."""
    if value == 0:
        return "0"
    if abs(value) >= 1_000_000:
        return f"{value:.3g}"
    if abs(value) >= 1_000 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:.3g}"


def nice_ticks(low: float, high: float, count: int = 5, *, whole: bool = False) -> list[float]:
    """About `count` round tick values (1, 2 or 5 times a power of ten) covering low..high;
    `whole`: steps of at least 1 (counts)."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low]
    raw = max((high - low) / count, 1.0 if whole else 0.0)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


class _Frame:
    """Maps data to pixels inside the margins and draws the axes with their ticks."""

    def __init__(
        self, x: tuple[float, float], y: tuple[float, float], *, counts: bool = False
    ) -> None:
        self.counts = counts  # y holds counts: whole ticks
        self.x0, self.x1 = x[0], x[1] if x[1] > x[0] else x[0] + 1.0
        self.y0, self.y1 = y[0], y[1] if y[1] > y[0] else y[0] + 1.0

    def px(self, value: float) -> float:
        share = (value - self.x0) / (self.x1 - self.x0)
        return _L + min(1.0, max(0.0, share)) * (W - _L - _R)

    def py(self, value: float) -> float:
        share = (value - self.y0) / (self.y1 - self.y0)
        return H - _B - min(1.0, max(0.0, share)) * (H - _T - _B)

    def axes(self, x_label: str, y_label: str, *, x_ticks: bool = True) -> str:
        parts = [
            f"<line class='axis' x1='{_L}' y1='{H - _B}' x2='{W - _R}' y2='{H - _B}'/>",
            f"<line class='axis' x1='{_L}' y1='{_T}' x2='{_L}' y2='{H - _B}'/>",
        ]
        for tick in nice_ticks(self.y0, self.y1, whole=self.counts):
            y = self.py(tick)
            parts.append(f"<line class='grid' x1='{_L}' y1='{y:.1f}' x2='{W - _R}' y2='{y:.1f}'/>")
            parts.append(f"<text x='{_L - 4}' y='{y + 4:.1f}' text-anchor='end'>{fmt(tick)}</text>")
        if x_ticks:
            for tick in nice_ticks(self.x0, self.x1, 6):
                x = self.px(tick)
                parts.append(
                    f"<text x='{x:.1f}' y='{H - _B + 14}' text-anchor='middle'>{fmt(tick)}</text>"
                )
        parts.append(
            f"<text x='{(_L + W - _R) / 2}' y='{H - 4}' text-anchor='middle'>{_e(x_label)}</text>"
        )
        parts.append(
            f"<text transform='translate(12 {(H - _B + _T) / 2}) rotate(-90)' "
            f"text-anchor='middle'>{_e(y_label)}</text>"
        )
        return "".join(parts)


def figure(chart_id: str, caption: str, body: str, note: str = "") -> str:
    """One chart as a <figure>: caption, the SVG (an empty-state text when `body` is empty)."""
    if not body:
        body = f"<text x='{W / 2}' y='{H / 2}' text-anchor='middle'>no data</text>"
    small = f"<small>{_e(note)}</small>" if note else ""
    return (
        f"<figure class='chart' id='{_e(chart_id)}'><figcaption>{_e(caption)}{small}"
        f"</figcaption><svg viewBox='0 0 {W} {H}' "
        f"role='img' aria-label='{_e(caption)}'>{body}</svg></figure>"
    )


def histogram(counts: Sequence[int], low: float, high: float, x_label: str, colour: str) -> str:
    """Bars of `counts` over equal bins spanning low..high; empty when every count is 0."""
    top = max(counts, default=0)
    if top == 0:
        return ""
    frame = _Frame((low, high), (0, top), counts=True)
    width = (high - low) / len(counts)
    parts = [frame.axes(x_label, "runs")]
    for i, count in enumerate(counts):
        if count:
            a, b = low + i * width, low + (i + 1) * width
            x, y = frame.px(a), frame.py(count)
            wide = max(1.0, frame.px(b) - x - 1)
            parts.append(
                f"<rect class='mark' x='{x:.1f}' y='{y:.1f}' width='{wide:.1f}'"
                f" height='{H - _B - y:.1f}' fill='{colour}'><title>{fmt(a)} to {fmt(b)}: "
                f"{count:,} runs</title></rect>"
            )
    return "".join(parts)


def cdf(series: Sequence[Series], x_label: str, *, points: int = 200, top_pct: int = 99) -> str:
    """Empirical CDFs on shared axes, each through at most `points` quantiles.

    The x axis ends at the largest `top_pct` percentile of the series, so one extreme run cannot
    squash the rest into a corner; the curves run on to the right edge.
    """
    drawn = [s for s in series if s.sorted_values]
    if not drawn:
        return ""
    low = min(s.sorted_values[0] for s in drawn)
    high = max(_rank(s.sorted_values, top_pct) for s in drawn)
    frame = _Frame((low, high), (0, 1))
    parts = [frame.axes(x_label, "share of runs")]
    for s in drawn:
        line = " ".join(
            f"{frame.px(v):.1f},{frame.py(f):.1f}" for v, f in _quantiles(s.sorted_values, points)
        )
        parts.append(
            f"<polyline class='mark' fill='none' stroke='{s.colour}' stroke-width='2' "
            f"points='{line}'><title>{_e(s.label)} (n = {len(s.sorted_values):,})</title>"
            "</polyline>"
        )
    return "".join(parts)


def _rank(sorted_values: Sequence[float], p: int) -> float:
    """The nearest-rank p-th percentile of non-empty ascending values."""
    return sorted_values[max(1, -(-p * len(sorted_values) // 100)) - 1]


def _quantiles(sorted_values: Sequence[float], points: int) -> list[tuple[float, float]]:
    n = len(sorted_values)
    steps = min(n, points)
    out = [(sorted_values[0], 0.0)]
    for i in range(1, steps + 1):
        rank = max(1, math.ceil(i * n / steps))
        out.append((sorted_values[rank - 1], rank / n))
    return out


def scatter(marks: Sequence[Point], x_label: str, y_label: str) -> str:
    """One circle per point, each opening its run (`data-run`); empty when there are none."""
    if not marks:
        return ""
    frame = _Frame(
        (0, max(p.x for p in marks) * 1.02 or 1.0), (0, max(p.y for p in marks) * 1.02 or 1.0)
    )
    parts = [frame.axes(x_label, y_label)]
    parts.extend(
        f"<circle class='mark run-link' data-run='{p.run}' cx='{frame.px(p.x):.1f}' "
        f"cy='{frame.py(p.y):.1f}' r='2.2' fill='{p.colour}' fill-opacity='0.75'>"
        f"<title>{_e(p.tip)}</title></circle>"
        for p in marks
    )
    return "".join(parts)


def bars(
    items: Sequence[Bar], x_label: str, y_label: str, *, labels: bool = True, counts: bool = True
) -> str:
    """Vertical bars side by side, labelled under each when `labels` (few bars); a bar with a
    run opens it (`data-run`); `counts`: the values are counts (whole ticks)."""
    if not items:
        return ""
    top = max((b.value for b in items), default=0.0)
    frame = _Frame((0, len(items)), (0, top or 1.0), counts=counts)
    parts = [frame.axes(x_label, y_label, x_ticks=False)]
    slot = (W - _L - _R) / len(items)
    for i, b in enumerate(items):
        x, y = _L + i * slot, frame.py(b.value)
        link = f" run-link' data-run='{b.run}" if b.run >= 0 else ""
        parts.append(
            f"<rect class='mark{link}' x='{x + slot * 0.1:.2f}' y='{y:.1f}' "
            f"width='{max(0.5, slot * 0.8):.2f}' height='{H - _B - y:.1f}' fill='{b.colour}'>"
            f"<title>{_e(b.tip)}</title></rect>"
        )
        if labels:
            parts.append(
                f"<text x='{x + slot / 2:.1f}' y='{H - _B + 14}' text-anchor='middle'>"
                f"{_e(b.label[:14])}</text>"
            )
    return "".join(parts)
