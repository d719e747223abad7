"""The generation wrapper: the only code of the pipeline on the engine's path.

`GenerationWrapper.generate` awaits only the provider (through `start_call`, `output_text` and
`call_failed`, the steps of `call_provider`, which `--no-telemetry` uses). It stamps
`time.perf_counter()` in the engine's task when things happen (dispatch, each non-empty chunk,
completion or failure) and publishes one frozen event per generation, at its end, and one per
outcome, with `EventBus.publish`, which never awaits or wakes a stage; every other piece of work
happens in the stages, with one exception: when the memory probe is asleep or has been sampling
less often (no generation for a while, or memory flat), dispatch takes one sample first
(`MemoryProbe.wake`, a few microseconds), so a spike before it is not charged to this run.
`TelemetryPipeline` inherits it, so the engine calls `pipeline.generate(...)` with no extra
frame in between.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING

from .._exceptions import PipelineClosedError
from ..report._model import OUTCOMES, RunError
from ._call import Call, call_failed, error_text, error_type_name, output_text, start_call
from ._events import GenerationFinished, GenerationStarted, OutcomeRecorded

if TYPE_CHECKING:
    from ..constraints import Constraints
    from ..providers import Provider
    from ._events import Event
    from ._memory_probe import MemoryProbe

__all__ = ["GenerationWrapper", "State"]


class State(enum.Enum):
    """A pipeline's lifecycle: entered once, closed once, never reopened."""

    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


_OPEN = State.OPEN  # read on every generate: a global is quicker than the class attribute


class GenerationWrapper:
    """`generate` and `record_outcome`, publishing with `self._publish` (the bus's `publish`,
    bound once) while `self._state` is `State.OPEN`."""

    _state: State
    _publish: Callable[[Event], None]
    _probe: MemoryProbe
    #: The most generations there ever were in flight at once (`max_in_flight`).
    _max_in_flight: int = 0
    #: The dispatch stamp of each generation in flight, by test id, oldest first: the memory
    #: stage keeps the probe's segments they may need, and at close the ones still here are
    #: reported as started and never finished.
    _dispatched: dict[str, float]

    async def generate(
        self,
        test_id: str,
        provider: Provider,
        prompt: str,
        constraints: Constraints | None = None,
    ) -> str:
        """Generate through `provider`, recording the run's telemetry.

        Awaits only the provider. Streams when the provider declares
        `supports_streaming = True`; a plain-`def` `generate` runs in a worker thread.

        Returns:
            The output text (a plain `str`).

        Raises:
            Whatever the provider raised (cancellation included), after recording its
            telemetry; `ProviderCallError` for an output that is not encodable text and
            `ProviderCallError` for a CancelledError the provider raised of its own (both
            recorded as the run's error); `PipelineClosedError` outside the context.
        """
        if self._state is not _OPEN:
            raise PipelineClosedError("generate() needs an open TelemetryPipeline")
        streaming = getattr(provider, "supports_streaming", False) is True  # as `streams`
        if self._probe.sample_at_dispatch:
            self._probe.wake()  # see MemoryProbe.wake: after a pause or a flat stretch only
        # Stamped here, in the engine's task, at dispatch: a slow stage cannot skew it. No
        # event is published at dispatch: `GenerationFinished` carries this stamp.
        t_started = perf_counter()
        call = Call(streaming, t_started)
        dispatched = self._dispatched
        dispatched[test_id] = t_started
        if len(dispatched) > self._max_in_flight:  # in flight now (ids are unique)
            self._max_in_flight = len(dispatched)
        try:
            # `call_provider`'s three steps, inline (one coroutine fewer per generation).
            output = await start_call(provider, prompt, call)
            t_done = call.t_done or perf_counter()  # a stream or a thread stamped it already
            text = output if type(output) is str and output.isascii() else output_text(output, call)
        except BaseException as exc:
            dispatched.pop(test_id, None)
            if not call.t_done:
                call.t_done = perf_counter()
            try:
                error = await call_failed(exc)
            except BaseException as noticed:  # trio: a cancellation seen at its checkpoint
                error = noticed
            self._publish(_failed(test_id, call, constraints, error))
            if error is exc:
                raise
            raise error from None
        dispatched.pop(test_id, None)
        if streaming or call.facts is not None:
            self._publish(
                GenerationFinished(
                    test_id=test_id,
                    t_perf=t_done,
                    t_started=call.t_started,
                    streaming=streaming,
                    output=text,
                    constraints=constraints,
                    chunk_count=call.chunk_count if text else 0,
                    t_first_chunk=call.t_first_chunk,
                    t_last_chunk=call.t_last_chunk,
                    t_first_content=call.t_first_content,
                    chunk_times=call.chunk_times,
                    facts=call.facts,
                )
            )
        else:
            # A plain answer: one chunk, none of the stream's stamps, no facts (the fields
            # left out are None), so fewer arguments to pass on the engine's path.
            self._publish(
                GenerationFinished(
                    test_id=test_id,
                    t_perf=t_done,
                    t_started=call.t_started,
                    streaming=False,
                    output=text,
                    constraints=constraints,
                    chunk_count=1 if text else 0,
                )
            )
        return text

    def unfinished(self) -> list[GenerationStarted]:
        """A `GenerationStarted` for each generation still in flight (dispatched, never
        finished: its engine task is still awaiting it as the pipeline closes)."""
        return [
            GenerationStarted(test_id=test_id, t_perf=t_started, streaming=False)
            for test_id, t_started in self._dispatched.items()
        ]

    def record_outcome(
        self,
        test_id: str,
        outcome: str,
        reason: str | None = None,
        error: RunError | None = None,
    ) -> None:
        """Record the engine's verdict for a run. Never blocks.

        Args:
            test_id: the run.
            outcome: ``"pass"``, ``"fail"`` or ``"error"``.
            reason: a short explanation (a gate's failing assertion, a timeout).
            error: the run's error as the engine sees it, reported instead of the exception
                the wrapper saw (a timeout is a cancellation inside `generate`, but a
                `TimeoutError` to the engine); the run's `telemetry.error_type` then says the
                same.

        Raises `ValueError` for an outcome other than pass, fail or error (a programming
        error in the caller); after close the outcome is counted as late, not raised.
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
        if reason is None and error is None:
            self._publish(OutcomeRecorded(test_id=test_id, outcome=outcome))  # fewer arguments
        else:
            self._publish(
                OutcomeRecorded(test_id=test_id, outcome=outcome, reason=reason, error=error)
            )


def _failed(
    test_id: str, call: Call, constraints: Constraints | None, exc: BaseException
) -> GenerationFinished:
    # A plain def was stamped in its thread, a stream when it ended: else the failure is now.
    return GenerationFinished(
        test_id=test_id,
        t_perf=call.t_done or perf_counter(),
        t_started=call.t_started,
        streaming=call.streaming,
        output=None,
        constraints=constraints,
        chunk_count=call.chunk_count if call.streaming else 0,
        t_first_chunk=call.t_first_chunk,
        t_last_chunk=call.t_last_chunk,
        error_type=error_type_name(exc),
        error_message=error_text(exc),
        t_first_content=call.t_first_content,
        chunk_times=call.chunk_times,
        facts=call.facts,
        attempts=_attempts(exc),
    )


def _attempts(exc: BaseException) -> int | None:
    # A provider that retried says how often on the error it finally raised. Never raises.
    try:
        attempts = getattr(exc, "attempts", None)
    except Exception:
        return None
    return attempts if type(attempts) is int and attempts > 0 else None
