"""The events the generation wrapper publishes: frozen, tagged msgspec Structs in one union.

Every `t_perf` is `time.perf_counter()` taken in the engine's task at the moment the thing
happened, never when a stage reads the event, so a slow stage cannot skew a latency. With
`tag=True` the class name is the wire tag: renaming an event is a format change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from ..constraints import Constraints
    from ..report._model import RunError

__all__ = [
    "Event",
    "FirstChunkReceived",
    "GenerationFinished",
    "GenerationStarted",
    "OutcomeRecorded",
]


class GenerationStarted(msgspec.Struct, frozen=True, tag=True):
    """The request was dispatched to the provider."""

    test_id: str
    t_perf: float
    streaming: bool


class FirstChunkReceived(msgspec.Struct, frozen=True, tag=True):
    """The first non-empty chunk of a streaming provider arrived."""

    test_id: str
    t_perf: float


class GenerationFinished(msgspec.Struct, frozen=True, tag=True):
    """The generation completed (`error_type` is None) or failed (`output` is None).

    Carries everything the stages need about the run, so that they keep no per-run state from
    earlier events and a dropped earlier event costs nothing: the dispatch stamp again
    (`t_started`), whether the provider streams, the output to score, its constraints, and the
    chunk accounting (`t_first_chunk`/`t_last_chunk` are None when no non-empty chunk arrived).
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


class OutcomeRecorded(msgspec.Struct, frozen=True, tag=True):
    """The engine decided the run's outcome (`pass`, `fail` or `error`), with its reason and,
    when the engine has one, its own account of the run's error."""

    test_id: str
    outcome: str
    reason: str | None = None
    error: RunError | None = None


Event = GenerationStarted | FirstChunkReceived | GenerationFinished | OutcomeRecorded
