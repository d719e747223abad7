"""LatencyTracker: turns the wrapper's timestamps into each run's latencies."""

from __future__ import annotations

from .._events import Event, GenerationFinished, LatencyMeasured
from ._base import Stage

__all__ = ["LatencyTracker"]


class LatencyTracker(Stage):
    """`init_latency`: dispatch → first non-empty chunk, only for providers that declare
    streaming; `total_latency`: dispatch → completion or failure. Every timestamp was taken
    by the wrapper in the engine's task, so how late this stage runs changes nothing. Emits
    one `LatencyMeasured` per finished generation, in raw (unrounded) seconds."""

    name = "latency"
    # GenerationFinished repeats the dispatch and first-chunk stamps, so this stage needs no
    # other event and keeps no per-run state: a dropped earlier event cannot cost a latency.
    event_types = (GenerationFinished,)
    produces = (LatencyMeasured,)

    def handle(self, event: Event) -> None:
        """Compute a finished run's latencies and hand them on. Never blocks."""
        if type(event) is GenerationFinished:
            self.emit(measure(event))


def measure(finished: GenerationFinished) -> LatencyMeasured:
    """The latencies of one finished generation, from the wrapper's stamps. Never raises."""
    t0 = finished.t_started
    t_first = finished.t_first_chunk
    t_last = finished.t_last_chunk
    output = finished.output
    return LatencyMeasured(
        test_id=finished.test_id,
        init_latency=t_first - t0 if finished.streaming and t_first is not None else None,
        total_latency=finished.t_perf - t0,
        stream_duration=t_last - t_first if t_first is not None and t_last is not None else None,
        chunk_count=finished.chunk_count,
        output_chars=None if output is None else len(output),
        error_type=finished.error_type,
        error_message=finished.error_message,
    )
