"""LatencyTracker: turns the wrapper's timestamps and the provider's facts into each run's
latencies, token figures and server timings, and keeps the output as the report saves it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ...providers._base import FACT_FIELDS
from ...report._model import ServerTimings
from .._events import Event, GenerationFinished, LatencyMeasured
from ._base import Stage, StageErrors

if TYPE_CHECKING:
    from ...providers import Chunk

__all__ = ["DEFAULT_OUTPUT_CAP", "LatencyTracker", "measure"]

#: Bytes of each run's output the report keeps by default (UTF-8).
DEFAULT_OUTPUT_CAP = 64 * 1024


class LatencyTracker(Stage):
    """`init_latency`: dispatch → first non-empty chunk of any kind, only for providers that
    declare streaming; `first_content_latency`: dispatch → first chunk of answer text;
    `total_latency`: dispatch → completion or failure. Every timestamp was taken by the wrapper
    in the engine's task, so how late this stage runs changes nothing. Emits one
    `LatencyMeasured` per finished generation, in raw (unrounded) seconds.

    Args:
        errors: the pipeline's stage error counts.
        output_cap: bytes of output the report keeps per run (cut on a character boundary);
            None keeps none.
    """

    name = "latency"
    # GenerationFinished repeats the dispatch and first-chunk stamps, so this stage needs no
    # other event and keeps no per-run state: a dropped earlier event cannot cost a latency.
    event_types = (GenerationFinished,)
    produces = (LatencyMeasured,)

    def __init__(self, errors: StageErrors, output_cap: int | None = DEFAULT_OUTPUT_CAP) -> None:
        super().__init__(errors)
        self.output_cap = output_cap

    def handle(self, event: Event) -> None:
        """Compute a finished run's latencies and hand them on. Never blocks."""
        if type(event) is GenerationFinished:
            self.emit(measure(event, self.output_cap))

    def handle_batch(self, events: list[Event]) -> None:
        """`handle` for a slice (only `GenerationFinished` is routed here), the parts handed
        on together. `measure` never raises."""
        cap = self.output_cap
        try:
            parts: list[Event] = [measure(event, cap) for event in events]  # type: ignore[arg-type]
        except Exception:
            # Cannot happen by `measure`'s contract; if it does, one event at a time, so one
            # bad event costs only its own part.
            parts = []
            for event in events:
                try:
                    parts.append(measure(event, cap))  # type: ignore[arg-type]
                except Exception as exc:
                    self.errors.record(self.name, exc)
        self.emit_all(parts)


def measure(
    finished: GenerationFinished, output_cap: int | None = DEFAULT_OUTPUT_CAP
) -> LatencyMeasured:
    """The measurements of one finished generation, from the wrapper's stamps and the
    provider's facts. Never raises."""
    t0 = finished.t_started
    t_first = finished.t_first_chunk
    t_last = finished.t_last_chunk
    output = finished.output
    streaming = finished.streaming
    init = t_first - t0 if streaming and t_first is not None else None
    total = finished.t_perf - t0
    kept, truncated = _capped(output, output_cap)
    stream = t_last - t_first if t_first is not None and t_last is not None else None
    if finished.facts is None and finished.chunk_times is None and finished.t_first_content is None:
        # The common case (no stream of two chunks, no facts from the server): every other
        # field is None, so the work of finding that out is skipped.
        return LatencyMeasured(
            test_id=finished.test_id,
            init_latency=init,
            total_latency=total,
            stream_duration=stream,
            chunk_count=finished.chunk_count,
            output_chars=None if output is None else len(output),
            error_type=finished.error_type,
            error_message=finished.error_message,
            attempts=finished.attempts,
            output=kept,
            output_truncated=truncated,
            plain=True,
        )
    first_content = (
        finished.t_first_content - t0
        if streaming and finished.t_first_content is not None
        else None
    )
    p50, largest = _gaps(finished.chunk_times)
    if finished.facts is None:
        # A stream with no facts from the server (the usual stream): no tokens, no server
        # timings, no per-token time, so none of the work of finding that out.
        return LatencyMeasured(
            test_id=finished.test_id,
            init_latency=init,
            total_latency=total,
            stream_duration=stream,
            chunk_count=finished.chunk_count,
            output_chars=None if output is None else len(output),
            error_type=finished.error_type,
            error_message=finished.error_message,
            attempts=finished.attempts,
            output=kept,
            output_truncated=truncated,
            first_content_latency=first_content,
            inter_chunk_p50=p50,
            inter_chunk_max=largest,
        )
    # The server's facts, a later value replacing an earlier one.
    facts = _facts(finished.facts)
    completion = _count(facts.get("completion_tokens"))
    return LatencyMeasured(
        test_id=finished.test_id,
        init_latency=init,
        total_latency=total,
        stream_duration=stream,
        chunk_count=finished.chunk_count,
        output_chars=None if output is None else len(output),
        error_type=finished.error_type,
        error_message=finished.error_message,
        attempts=_count(facts.get("attempts")) or finished.attempts,
        output=kept,
        output_truncated=truncated,
        first_content_latency=first_content,
        inter_chunk_p50=p50,
        inter_chunk_max=largest,
        prompt_tokens=_count(facts.get("prompt_tokens")),
        completion_tokens=completion,
        reasoning_tokens=_count(facts.get("reasoning_tokens")),
        time_per_output_token=_per_token(init, total, completion),
        server=_server(facts),
    )


def _facts(chunks: list[Chunk] | None) -> dict[str, object]:
    """The provider's facts, a later value replacing an earlier one."""
    facts: dict[str, object] = {}
    for chunk in chunks or ():
        for name in FACT_FIELDS:
            value = getattr(chunk, name)
            if value is not None:
                facts[name] = value
    return facts


_HUGE: Final = 1 << 63  # past any real count; 10**400 cannot even become a float


def _count(value: object) -> int | None:
    # A server's count is a non-negative int; anything else (a bool, a float, 10**400) is not.
    return value if type(value) is int and 0 <= value < _HUGE else None


def _seconds(value: object) -> float | None:
    if type(value) in (int, float) and 0 <= value < 1e300:  # type: ignore[operator]
        return float(value)  # type: ignore[arg-type]
    return None


def _server(facts: dict[str, object]) -> ServerTimings | None:
    prompt = _seconds(facts.get("server_prompt_s"))
    generation = _seconds(facts.get("server_generation_s"))
    load = _seconds(facts.get("server_load_s"))
    if prompt is None and generation is None and load is None:
        return None
    return ServerTimings(prompt_s=prompt, generation_s=generation, load_s=load)


def _per_token(init: float | None, total: float, completion: int | None) -> float | None:
    """(total - init) / (completion_tokens - 1): the first token is in `init`."""
    if init is None or completion is None or completion < 2:
        return None
    return (total - init) / (completion - 1)


def _gaps(times: list[float] | None) -> tuple[float | None, float | None]:
    """Median and largest gap between consecutive chunks (None with fewer than two)."""
    if not times or len(times) < 2:
        return None, None
    gaps: list[float] = []
    gap = gaps.append
    previous = times[0]
    for now in times:  # the first gap is 0.0 (a stamp minus itself): dropped below
        gap(now - previous)
        previous = now
    del gaps[0]
    gaps.sort()
    middle = len(gaps) // 2
    p50 = gaps[middle] if len(gaps) % 2 else (gaps[middle - 1] + gaps[middle]) / 2
    return p50, gaps[-1]


def _capped(output: str | None, cap: int | None) -> tuple[str | None, bool | None]:
    """The output the report keeps: at most `cap` bytes of UTF-8, whole characters."""
    if output is None or cap is None:
        return None, None
    if len(output) * 4 <= cap:
        return output, False  # no character takes more than four bytes
    data = output.encode("utf-8", "surrogatepass")
    if len(data) <= cap:
        return output, False
    return data[:cap].decode("utf-8", "ignore"), True
