"""Side-by-side measurement: loops timed in interleaved rounds, figures as min of rounds.

A *loop* runs `n` generations the way an engine does (one generation, its outcome, then a
yield to the event loop: `anyio.lowlevel.checkpoint()`, once per generation, as the CLI's
engine yields on every run) and returns the seconds spent inside the generation calls
themselves (the engine path, see `bench_overhead`). `Sample` holds what one timed run of a
loop cost: CPU seconds of the whole process (every thread, so background exporters and probes
count) and wall seconds.
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from time import perf_counter, process_time
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = ["CountingExporter", "Figures", "Loop", "Sample", "spread", "timed"]

Loop = Callable[[int], Awaitable[float]]


class CountingExporter(SpanExporter):
    """A no-op exporter that only counts the spans handed to it (to prove they were made)."""

    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


@dataclass
class Sample:
    """Microseconds per generation of one timed run: CPU, wall, and inside the calls."""

    cpu_us: float
    wall_us: float
    call_us: float


async def timed(loop: Loop, n: int) -> Sample:
    """Run `loop` over `n` generations and time it."""
    cpu0, wall0 = process_time(), perf_counter()
    inside = await loop(n)
    cpu, wall = process_time() - cpu0, perf_counter() - wall0
    return Sample(cpu / n * 1e6, wall / n * 1e6, inside / n * 1e6)


@dataclass
class Figures:
    """Every round's sample of each variant, in the order measured."""

    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def add(self, variant: str, sample: Sample) -> None:
        self.samples.setdefault(variant, []).append(sample)

    def best(self, variant: str, what: str = "cpu_us") -> float:
        return min(getattr(s, what) for s in self.samples[variant])

    def per_round(self, variant: str, what: str = "cpu_us") -> list[float]:
        return [getattr(s, what) for s in self.samples[variant]]

    def as_dict(self) -> dict[str, Any]:
        return {
            name: {
                what: [round(getattr(s, what), 3) for s in samples]
                for what in ("cpu_us", "wall_us", "call_us")
            }
            for name, samples in self.samples.items()
        }


def spread(values: Sequence[float]) -> str:
    """`min to max (median m)` of per-round values, for the reader to judge the noise."""
    values = [v for v in values if v == v]  # a ratio of an unresolved round is NaN
    if not values:
        return "not resolved"
    if len(values) == 1:
        return f"{values[0]:.2f} (one round)"
    return f"{min(values):.2f} to {max(values):.2f} (median {statistics.median(values):.2f})"
