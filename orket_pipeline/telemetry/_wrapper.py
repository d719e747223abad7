"""The generation wrapper: the only code of the pipeline on the engine's path.

`GenerationWrapper.generate` awaits only the provider. It stamps `time.perf_counter()` in the
engine's task when things happen (dispatch, each non-empty chunk, completion or failure) and
publishes one frozen event per generation, at its end, and one per outcome; the bus never
awaits or wakes a stage for them. Every other piece of work happens in the stages, with one
exception: when the memory probe is asleep or has been sampling less often (no generation for
a while, or memory flat), dispatch takes one sample first (`MemoryProbe.wake`, a few
microseconds), so a spike before it is not charged to this run.

Two paths, one behaviour. A provider seen before with a plain `async def generate` and no
`supports_streaming = True` (`_call.plain_async`, read at its first call) is awaited inline:
stamps in locals, its generation in flight keyed by its test id, and the two events appended
straight to the bus's queues while the bus allows it (`EventBus.direct_limit`: busy, open and
below its fill mark; otherwise through `publish`, which rings, drops or counts late). Anything
else (a stream, a thread, an async callable, a first call, an odd output, a failure) takes the
steps of `call_provider`, which `--no-telemetry` uses, with a `Call` to hold its stamps.
`TelemetryPipeline` inherits it, so the engine calls `pipeline.generate(...)` with no extra
frame in between.
"""

from __future__ import annotations

import enum
import weakref
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final, Protocol

from .._exceptions import PipelineClosedError
from ..report._model import OUTCOMES, RunError
from ._bus import EventBus
from ._call import (
    Call,
    call_failed,
    error_text,
    error_type_name,
    output_text,
    start_call,
)
from ._call import plain_async as _plain_async
from ._events import Event, GenerationFinished, GenerationStarted, OutcomeRecorded

if TYPE_CHECKING:
    from ..constraints import Constraints
    from ..providers import Provider
    from ._memory_probe import MemoryProbe

__all__ = ["GenerationWrapper", "State"]


class State(enum.Enum):
    """A pipeline's lifecycle: entered once, closed once, never reopened."""

    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


_OPEN = State.OPEN  # read on every generate: a global is quicker than the class attribute


class _Window(Protocol):
    direct_limit: int


class _Closed:
    """No direct appends: every event goes through `_publish`."""

    direct_limit = 0


class _Gone:
    """Stands for a provider: a weak reference to it dies at once."""


_NO_WINDOW: Final[_Window] = _Closed()
_NO_QUEUE: Final[list[Event]] = []  # never appended to (its limit is 0)
_DEAD: Final[weakref.ref[Any]] = weakref.ref(_Gone())


class GenerationWrapper:
    """`generate` and `record_outcome`, publishing with `self._publish` (the bus's `publish`,
    bound once) while `self._state` is `State.OPEN`."""

    _state: State
    _publish: Callable[[Event], None]
    _probe: MemoryProbe
    #: The most generations there ever were in flight at once (`max_in_flight`).
    _max_in_flight: int = 0
    #: The dispatch stamp of each generation in flight, oldest first, by its test id (a plain
    #: `async def` provider's) or its `Call` (by identity: any other provider's, and a test id
    #: already in flight, since one sent twice at once is two generations): the memory stage
    #: keeps the probe's segments they may need, and at close the ones still here are
    #: reported as started and never finished.
    _dispatched: dict[str | Call, float]
    #: A weak reference to the last provider seen with a plain `async def generate` (a dead
    #: one until then): `generate` takes its inline path for it.
    _plain: weakref.ref[Any] = _DEAD
    #: The bus `_publish` belongs to and its queues of the wrapper's two events, appended to
    #: directly while their length is below its `direct_limit` (bound by `_learn`; none
    #: until then, nor when `_publish` is not a bus's, so a test's list or spy sees it all).
    _window: _Window = _NO_WINDOW
    _finished_queue: list[Event] = _NO_QUEUE
    _outcome_queue: list[Event] = _NO_QUEUE

    async def generate(
        self,
        test_id: str,
        provider: Provider,
        prompt: str,
        constraints: Constraints | None = None,
    ) -> str:
        """Generate through `provider`, recording the run's telemetry.

        Awaits only the provider. Streams when the provider declares
        `supports_streaming = True`; a plain-`def` `generate` runs in a worker thread. What
        kind of provider it is, is read at its first call (see `_call.plain_async`).

        Returns:
            The output text (a plain `str`).

        Raises:
            Whatever the provider raised (cancellation included), after recording its
            telemetry; `ProviderCallError` for an output that is not encodable text and
            `ProviderCallError` for a CancelledError the provider raised of its own (both
            recorded as the run's error); `PipelineClosedError` outside the context;
            `TypeError` for a `test_id` that is not a `str` (nothing recorded).
        """
        if self._state is not _OPEN:
            raise PipelineClosedError("generate() needs an open TelemetryPipeline")
        if (self._plain() is not provider or type(test_id) is not str) and not self._learn(
            provider, test_id
        ):
            # Any other provider: a stream, a thread, an async callable, a first call. Inline,
            # not a coroutine of its own: every chunk of a stream passes each level.
            if type(test_id) is not str:
                test_id = _checked_test_id(test_id)
            if self._probe.sample_at_dispatch:
                self._probe.wake()
            t_started = perf_counter()
            call = Call(False, t_started, test_id)
            dispatched = self._dispatched
            dispatched[call] = t_started
            if len(dispatched) > self._max_in_flight:
                self._max_in_flight = len(dispatched)
            try:
                # A `supports_streaming` that raises fails the run, as any provider failure does.
                call.streaming = getattr(provider, "supports_streaming", False) is True  # `streams`
                # `call_provider`'s steps, inline (one coroutine fewer per generation).
                output = await start_call(provider, prompt, call)
            except BaseException as exc:
                del dispatched[call]
                error = await self._failed(test_id, call, constraints, exc)
                if error is exc:
                    raise
                raise error from None
            if not call.t_done:  # a stream or a thread stamped it already
                call.t_done = perf_counter()
            del dispatched[call]
            if type(output) is not str or not output.isascii():
                return await self._settle(call, output, constraints)
            self._publish(_finished(call, output, constraints))
            return output
        # The common case, inline: an `async def generate` that does not stream. No `Call`:
        # the stamps are locals, the generation in flight is keyed by its test id.
        if self._probe.sample_at_dispatch:
            self._probe.wake()  # see MemoryProbe.wake: after a pause or a flat stretch only
        dispatched = self._dispatched
        # Stamped here, in the engine's task, at dispatch: a slow stage cannot skew it.
        t_started = perf_counter()
        key: str | Call = test_id
        if dispatched.setdefault(test_id, t_started) is not t_started:  # already in flight
            key = Call(False, t_started, test_id)
            dispatched[key] = t_started
        if len(dispatched) > self._max_in_flight:  # in flight now
            self._max_in_flight = len(dispatched)
        try:
            # An `async def` (`_plain`): a coroutine.
            output = await provider.generate(prompt)  # type: ignore[misc]
        except BaseException as exc:
            call = Call(False, t_started, test_id, perf_counter())  # the failure's stamp
            del dispatched[key]
            error = await self._failed(test_id, call, constraints, exc)
            if error is exc:
                raise
            raise error from None
        t_done = perf_counter()
        del dispatched[key]
        if type(output) is not str or not output.isascii():
            call = Call(False, t_started, test_id, t_done, chunk_count=1)
            return await self._settle(call, output, constraints)
        # A plain answer: one chunk, none of the stream's stamps, no facts (the fields left
        # out are None), so fewer arguments to pass on the engine's path.
        finished = GenerationFinished(
            test_id=test_id,
            t_perf=t_done,
            t_started=t_started,
            streaming=False,
            output=output,
            constraints=constraints,
            chunk_count=1 if output else 0,
        )
        queue = self._finished_queue
        if len(queue) < self._window.direct_limit:  # `publish`, inline (see EventBus)
            queue.append(finished)
        else:
            self._publish(finished)
        return output

    def _learn(self, provider: Provider, test_id: object) -> bool:
        """Whether `generate` may take its inline path for `provider` (remembered, with the
        bus to append to, for the next generations) and `test_id`. Never raises."""
        if self._window is _NO_WINDOW:
            publish = self._publish
            bus = getattr(publish, "__self__", None)
            if type(bus) is EventBus and publish == bus.publish:
                self._window = bus
                self._finished_queue = bus.queue(GenerationFinished)
                self._outcome_queue = bus.queue(OutcomeRecorded)
            # else events go through `_publish` alone (a test's list, a spy)
        known = _plain_async.get(id(provider))
        if known is None or known() is not provider:
            return False
        self._plain = known
        return type(test_id) is str

    async def _settle(self, call: Call, output: object, constraints: Constraints | None) -> str:
        """Publish a call that returned `output`: its text, or its failure when `output` is not
        encodable text (`output_text`). Returns the text; raises that failure."""
        try:
            text = output_text(output, call)
        except BaseException as exc:
            error = await self._failed(call.test_id, call, constraints, exc)
            if error is exc:
                raise
            raise error from None
        self._publish(_finished(call, text, constraints))
        return text

    async def _failed(
        self, test_id: str, call: Call, constraints: Constraints | None, exc: BaseException
    ) -> BaseException:
        """Publish the failure of a call that raised `exc`; return what the engine gets
        (`call_failed`). Never raises (but cancellation, at a checkpoint under trio)."""
        if not call.t_done:
            call.t_done = perf_counter()
        try:
            error = await call_failed(exc)
        except BaseException as noticed:  # trio: a cancellation seen at its checkpoint
            error = noticed
        self._publish(_failure(test_id, call, constraints, error))
        return error

    def unfinished(self) -> list[GenerationStarted]:
        """A `GenerationStarted` for each generation still in flight (dispatched, never
        finished: its engine task is still awaiting it as the pipeline closes)."""
        return [
            GenerationStarted(test_id=key.test_id, t_perf=t_started, streaming=key.streaming)
            if isinstance(key, Call)
            else GenerationStarted(test_id=key, t_perf=t_started, streaming=False)
            for key, t_started in self._dispatched.items()
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

        Raises `ValueError` for an outcome other than pass, fail or error and `TypeError` for
        a `test_id` that is not a `str` (programming errors in the caller); after close the
        outcome is counted as late, not raised.
        """
        if type(test_id) is not str:
            test_id = _checked_test_id(test_id)
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
        if reason is None and error is None:
            outcome_recorded = OutcomeRecorded(test_id=test_id, outcome=outcome)  # fewer arguments
        else:
            outcome_recorded = OutcomeRecorded(
                test_id=test_id, outcome=outcome, reason=reason, error=error
            )
        queue = self._outcome_queue
        if len(queue) < self._window.direct_limit:  # `publish`, inline (see EventBus)
            queue.append(outcome_recorded)
        else:
            self._publish(outcome_recorded)


def _finished(call: Call, text: str, constraints: Constraints | None) -> GenerationFinished:
    """The event of a call that returned `text`."""
    if call.streaming or call.facts is not None:
        return GenerationFinished(
            test_id=call.test_id,
            t_perf=call.t_done,
            t_started=call.t_started,
            streaming=call.streaming,
            output=text,
            constraints=constraints,
            chunk_count=call.chunk_count if text else 0,
            t_first_chunk=call.t_first_chunk,
            t_last_chunk=call.t_last_chunk,
            t_first_content=call.t_first_content,
            chunk_times=call.chunk_times,
            facts=call.facts,
        )
    # A plain answer: one chunk, none of the stream's stamps, no facts (the fields left out
    # are None), so fewer arguments to pass.
    return GenerationFinished(
        test_id=call.test_id,
        t_perf=call.t_done,
        t_started=call.t_started,
        streaming=False,
        output=text,
        constraints=constraints,
        chunk_count=1 if text else 0,
    )


def _checked_test_id(test_id: object) -> str:
    """A test id as a plain `str` (a subclass's text); raises TypeError for anything else."""
    if not isinstance(test_id, str):
        raise TypeError(f"test_id must be a str, not {error_type_name(test_id)}")
    return str.__str__(test_id)


def _failure(
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
