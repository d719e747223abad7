"""The events on the bus: frozen, tagged msgspec Structs in one union.

Two kinds travel on it. Facts the generation wrapper publishes from the engine's task
(`GenerationFinished` and `OutcomeRecorded`, two per run; `GenerationStarted` only at close, for
a generation still in flight then), and parts the stages hand on to the report
(`LatencyMeasured`, `MemoryMeasured`, `AdherenceScored`): a stage never calls another, so the
report waits for exactly the parts the wired stages produce.

Every `t_perf` is `time.perf_counter()` taken in the engine's task at the moment the thing
happened, never when a stage reads the event, so a slow stage cannot skew a latency. Part values
are raw (seconds, bytes, the validator's score): rounding happens once, when a run is reported.
With `tag=True` the class name is the wire tag: renaming an event is a format change. With
`gc=False` the garbage collector does not track them (an event holds no cycle), which keeps the
allocation on the engine's path cheap.

There is no event at dispatch and none at the first chunk: `GenerationFinished` carries both
stamps (`t_started`, `t_first_chunk`) and no stage needs either moment earlier, so publishing
them would cost every generation for nothing. The wrapper keeps the dispatch stamps of the
generations in flight instead (the memory stage keeps the probe's segments they may need).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from ..constraints import Constraints
    from ..providers import Chunk
    from ..report._model import CheckRecord, RunError, ServerTimings

__all__ = [
    "ENGINE_EVENTS",
    "AdherenceScored",
    "Event",
    "GenerationFinished",
    "GenerationStarted",
    "LatencyMeasured",
    "MemoryMeasured",
    "OutcomeRecorded",
    "Part",
]


class GenerationStarted(msgspec.Struct, frozen=True, tag=True, kw_only=True, gc=False):
    """The request was dispatched to the provider and had not finished when the pipeline
    closed (published then, at close: its run is reported as a generation that did not
    finish)."""

    test_id: str
    t_perf: float
    streaming: bool


class GenerationFinished(msgspec.Struct, frozen=True, tag=True, kw_only=True, gc=False):
    """The generation completed (`error_type` is None) or failed (`output` is None).

    Carries everything the stages need about the run, so that they keep no per-run state from
    earlier events and a dropped earlier event costs nothing: the dispatch stamp again
    (`t_started`), whether the provider streams, the output to score, its constraints, and the
    chunk accounting (`t_first_chunk`/`t_last_chunk` are None when no non-empty chunk arrived;
    `t_first_content` is the first answer text; `chunk_times` every chunk's stamp, kept for
    streams of two chunks or more) and the provider's `facts` (token counts, server timings,
    attempts: the `Chunk`s that carried them, or an error's `attempts`).
    """

    test_id: str
    t_perf: float
    t_started: float
    streaming: bool
    output: str | None
    constraints: Constraints | None = None
    chunk_count: int = 0
    t_first_chunk: float | None = None
    t_last_chunk: float | None = None
    error_type: str | None = None
    error_message: str | None = None
    t_first_content: float | None = None
    chunk_times: list[float] | None = None
    facts: list[Chunk] | None = None
    attempts: int | None = None


class OutcomeRecorded(msgspec.Struct, frozen=True, tag=True, kw_only=True, gc=False):
    """The engine decided the run's outcome (`pass`, `fail` or `error`), with its reason and,
    when the engine has one, its own account of the run's error."""

    test_id: str
    outcome: str
    reason: str | None = None
    error: RunError | None = None


class LatencyMeasured(msgspec.Struct, frozen=True, tag=True, kw_only=True, gc=False):
    """The LatencyTracker's part of a run: raw seconds, chunk accounting, the server's token
    counts and timings, the output as the report keeps it (cut at the cap), the wrapper's
    error."""

    test_id: str
    init_latency: float | None
    total_latency: float
    stream_duration: float | None
    chunk_count: int
    output_chars: int | None
    error_type: str | None = None
    error_message: str | None = None
    first_content_latency: float | None = None
    inter_chunk_p50: float | None = None
    inter_chunk_max: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    time_per_output_token: float | None = None
    server: ServerTimings | None = None
    attempts: int | None = None
    output: str | None = None
    output_truncated: bool | None = None
    #: True when every schema-1.1 extra above (first content, gaps, tokens, per-token time,
    #: server timings) is None, as `measure` knows without looking: the report skips them.
    plain: bool = False


class MemoryMeasured(msgspec.Struct, frozen=True, tag=True, kw_only=True, gc=False):
    """The MemorySampler's part of a run: peak RSS in bytes (None: the probe had nothing)."""

    test_id: str
    peak_rss_bytes: int | None


class AdherenceScored(msgspec.Struct, frozen=True, tag=True, kw_only=True, gc=False):
    """The ConstraintStage's part of a run: the validator's score and every check with its
    result (both None: nothing to score)."""

    test_id: str
    score: float | None
    checks: tuple[CheckRecord, ...] | None = None


Part = LatencyMeasured | MemoryMeasured | AdherenceScored
#: The wrapper's events, in the order one run publishes them (the bus routes them so).
ENGINE_EVENTS = (GenerationStarted, GenerationFinished, OutcomeRecorded)
Event = GenerationStarted | GenerationFinished | OutcomeRecorded | Part
