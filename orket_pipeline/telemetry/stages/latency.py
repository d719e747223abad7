"""LatencyTracker: turns the wrapper's timestamps into each run's latencies."""

from __future__ import annotations

from typing import NamedTuple

from .._events import Event, GenerationFinished
from ._base import Stage, StageErrors
from .aggregator import ReportAggregator

__all__ = ["LatencyPart", "LatencyTracker"]


class LatencyPart(NamedTuple):
    """Raw latencies of one run, in seconds (unrounded), and its chunk accounting."""

    init_latency: float | None
    total_latency: float
    stream_duration: float | None
    chunk_count: int
    output_chars: int | None
    error_type: str | None
    error_message: str | None


class LatencyTracker(Stage):
    """`init_latency`: dispatch → first non-empty chunk, only for providers that declare
    streaming; `total_latency`: dispatch → completion or failure. Every timestamp was taken
    by the wrapper in the engine's task, so how late this stage runs changes nothing."""

    name = "latency"
    # GenerationFinished repeats the dispatch and first-chunk stamps, so this stage needs no
    # other event and keeps no per-run state: a dropped earlier event cannot cost a latency.
    event_types = (GenerationFinished,)

    def __init__(self, errors: StageErrors, sink: ReportAggregator) -> None:
        super().__init__(errors)
        self._sink = sink

    def handle(self, event: Event) -> None:
        """Compute a finished run's latencies and deliver them."""
        if type(event) is GenerationFinished:
            self._sink.latency_measured(event.test_id, _measure(event))


def _measure(finished: GenerationFinished) -> LatencyPart:
    t0 = finished.t_started
    t_first = finished.t_first_chunk
    init = t_first - t0 if finished.streaming and t_first is not None else None
    t_last = finished.t_last_chunk
    stream = t_last - t_first if t_first is not None and t_last is not None else None
    output = finished.output
    return LatencyPart(
        init_latency=init,
        total_latency=finished.t_perf - t0,
        stream_duration=stream,
        chunk_count=finished.chunk_count,
        output_chars=None if output is None else len(output),
        error_type=finished.error_type,
        error_message=finished.error_message,
    )
