"""The generation wrapper: the only code of the pipeline on the engine's path.

`GenerationWrapper.generate` awaits only the provider. It stamps `time.perf_counter()` in the
engine's task when things happen (dispatch, first non-empty chunk, completion or failure) and
publishes frozen events with `EventBus.publish`, which never awaits; every other piece of work
happens in the stages, with one exception: when the memory probe is asleep (no generation for a
while), dispatch takes one sample first (`MemoryProbe.wake`, a few microseconds), so a spike
during the pause is not charged to this run. `TelemetryPipeline` inherits it, so the engine
calls `pipeline.generate(...)` with no extra frame in between.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from contextlib import aclosing, nullcontext
from time import perf_counter
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from .._exceptions import PipelineClosedError
from ..report._model import OUTCOMES, RunError
from ._events import FirstChunkReceived, GenerationFinished, GenerationStarted, OutcomeRecorded

if TYPE_CHECKING:
    from ..constraints import Constraints
    from ..providers import Provider
    from ._events import Event
    from ._memory_probe import MemoryProbe

__all__ = ["CLOSED", "NEW", "OPEN", "GenerationWrapper"]

NEW, OPEN, CLOSED = "new", "open", "closed"
_ERROR_MESSAGE_CHARS = 500

# Whether a provider's `generate` is a coroutine function, by its code object: inspecting on
# every call would cost a microsecond on the engine's path.
_is_async: dict[Any, bool] = {}


class GenerationWrapper:
    """`generate` and `record_outcome`, publishing with `self._publish` (the bus's `publish`,
    bound once) while `self._state` is OPEN."""

    _state: str
    _publish: Callable[[Event], None]
    _probe: MemoryProbe

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
        Returns the output text. Raises whatever the provider raised (cancellation included),
        after recording its telemetry; raises `PipelineClosedError` outside the context.
        """
        if self._state is not OPEN:
            raise PipelineClosedError("generate() needs an open TelemetryPipeline")
        if getattr(provider, "supports_streaming", False) is True:
            return await self._generate_streaming(test_id, provider, prompt, constraints)
        generate = provider.generate
        code = getattr(getattr(generate, "__func__", generate), "__code__", None)
        is_async = _is_async.get(code)
        if is_async is None:
            is_async = _remember_kind(generate, code)
        publish = self._publish
        if self._probe.idle:
            self._probe.wake()  # see MemoryProbe.wake: only after a pause, never back to back
        # Stamped here, in the engine's task, at dispatch: a slow stage cannot skew it.
        t_started = perf_counter()
        publish(GenerationStarted(test_id, t_started, False))
        stamps: list[float] = []
        try:
            if is_async:
                output = await generate(prompt)  # type: ignore[misc]
            else:
                # abandon_on_cancel: a timeout or Ctrl-C must not wait for a stuck thread.
                output = await anyio.to_thread.run_sync(
                    _timed, generate, prompt, stamps, abandon_on_cancel=True
                )
        except BaseException as exc:
            t_from = stamps[0] if stamps else t_started
            publish(_failed(test_id, t_from, False, constraints, exc, 0, None, None))
            raise
        text = output if type(output) is str else _as_text(output)
        # A plain def is timed in its thread: waiting for a free worker thread is not latency.
        t_from, t_done = (stamps[0], stamps[1]) if stamps else (t_started, perf_counter())
        publish(
            GenerationFinished(test_id, t_done, t_from, False, text, constraints, 1 if text else 0)
        )
        return output  # type: ignore[no-any-return]

    async def _generate_streaming(
        self,
        test_id: str,
        provider: Provider,
        prompt: str,
        constraints: Constraints | None,
    ) -> str:
        publish = self._publish
        if self._probe.idle:
            self._probe.wake()
        chunks = 0
        t_first = t_last = None
        parts = []
        t_started = perf_counter()
        publish(GenerationStarted(test_id, t_started, True))
        try:
            stream = provider.stream(prompt)
            # aclosing: a cancelled or timed-out run closes the provider's stream (and its
            # connection) at once, not whenever the generator is garbage-collected.
            closing: Any = aclosing(stream) if hasattr(stream, "aclose") else nullcontext()
            async with closing:
                async for chunk in stream:
                    if chunk:
                        # Stamped as the chunk reaches the engine's task, before anything else.
                        t_last = perf_counter()
                        if t_first is None:
                            t_first = t_last
                            publish(FirstChunkReceived(test_id, t_first))
                        chunks += 1
                        parts.append(chunk)
                t_done = perf_counter()
            output = "".join(parts)  # inside the try: a chunk that is not text is a failure
        except BaseException as exc:
            publish(_failed(test_id, t_started, True, constraints, exc, chunks, t_first, t_last))
            raise
        publish(
            GenerationFinished(
                test_id, t_done, t_started, True, output, constraints, chunks, t_first, t_last
            )
        )
        return output

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
                `TimeoutError` to the engine).

        Raises `ValueError` for an outcome other than pass, fail or error (a programming
        error in the caller); after close the outcome is counted as late, not raised.
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
        self._publish(OutcomeRecorded(test_id, outcome, reason, error))


def _remember_kind(generate: Any, code: Any) -> bool:
    call = type(generate).__call__  # for an object with an async __call__
    is_async = inspect.iscoroutinefunction(generate) or inspect.iscoroutinefunction(call)
    if code is not None:
        # Keyed by code object, not function: it keeps no provider or closure alive.
        if len(_is_async) > 4096:
            _is_async.clear()  # code compiled at run time: keep the cache bounded
        _is_async[code] = is_async
    return is_async


def _timed(generate: Callable[[str], Any], prompt: str, stamps: list[float]) -> Any:
    # Runs in the worker thread: the stamps bracket the call itself.
    stamps.append(perf_counter())
    try:
        return generate(prompt)
    finally:
        stamps.append(perf_counter())


def _as_text(output: object) -> str | None:
    # A str subclass is text too (its plain str is what gets scored); anything else is not.
    return str.__str__(output) if isinstance(output, str) else None


def _failed(
    test_id: str,
    t_started: float,
    streaming: bool,
    constraints: Constraints | None,
    exc: BaseException,
    chunks: int,
    t_first: float | None,
    t_last: float | None,
) -> GenerationFinished:
    t_failed = perf_counter()
    return GenerationFinished(
        test_id,
        t_failed,
        t_started,
        streaming,
        None,
        constraints,
        chunks,
        t_first,
        t_last,
        type(exc).__name__,
        _message(exc),
    )


def _message(exc: BaseException) -> str:
    if isinstance(exc, anyio.get_cancelled_exc_class()):
        return "cancelled"  # not the backend's internal text ("Cancelled via cancel scope 7f…")
    # A provider's exception may have a __str__ that raises; telemetry must not turn that
    # into a different exception in the engine.
    try:
        return str(exc)[:_ERROR_MESSAGE_CHARS]
    except Exception:
        return f"<unprintable {type(exc).__name__}>"
