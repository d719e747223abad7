"""What every stage shares: draining its inbox in slices, isolating its own failures."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anyio
import anyio.lowlevel

from .._bus import EventBus, Inbox
from .._events import Event

__all__ = ["Stage", "StageErrors"]

logger = logging.getLogger("orket_pipeline")


class StageErrors:
    """Counts exceptions per stage and logs the first of each kind, so a stage failing on
    every event cannot flood the log. Never raises."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._logged: set[tuple[str, type[BaseException]]] = set()

    def record(self, stage: str, exc: Exception) -> None:
        """Count `exc` against `stage`; log it with its traceback the first time its kind
        is seen for that stage."""
        self.counts[stage] = self.counts.get(stage, 0) + 1
        key = (stage, type(exc))
        if key not in self._logged:
            self._logged.add(key)
            logger.error(
                "orket-pipeline stage %s failed (%s); further %s errors are only counted",
                stage,
                exc,
                type(exc).__name__,
                exc_info=exc,
            )


class Stage:
    """A consumer of the bus: handles events one by one, in slices, with failures isolated.

    Subclasses set `name` and `event_types`, implement `handle` (synchronous and quick), and
    may override `after_batch` (async work for what the slice gathered), `wait_timeout`
    (wake up periodically while they have pending work) and `finish` (the final drain).
    """

    name: str = "stage"
    event_types: Sequence[type[Event]] = ()
    #: Events handled before yielding to the event loop, so a backlog cannot stall it.
    slice_size: int = 256

    def __init__(self, errors: StageErrors) -> None:
        self.errors = errors
        self.inbox: Inbox | None = None
        self.done: anyio.Event | None = None
        self.finished = False
        #: Work this stage could not do because the drain deadline stopped it.
        self.abandoned = 0

    def attach(self, bus: EventBus, capacity: int) -> None:
        """Subscribe this stage's inbox to its event types."""
        self.inbox = bus.subscribe(self.name, self.event_types, capacity)

    def prepare(self) -> None:
        """Create the stage's `done` event; call inside the event loop, before `run`."""
        self.done = anyio.Event()

    def close_inbox(self) -> None:
        """No more events will come: drain what is queued, finish, and end. Never raises."""
        if self.inbox is not None:
            self.inbox.close()

    def handle(self, event: Event) -> None:
        """Handle one event. Runs on the event loop: must not block. May raise (counted)."""
        raise NotImplementedError

    async def after_batch(self) -> None:
        """Called after each slice of events, and on each periodic wake-up."""

    def wait_timeout(self) -> float | None:
        """Seconds after which to wake up with no new event, or None to wait for one."""
        return None

    async def finish(self) -> None:
        """Called once the inbox is closed and drained; settles what is still pending."""

    async def salvage(self) -> None:
        """After the stage was stopped (at the drain deadline or not): handle what is still
        queued, then finish, if the stage did not get to. Never raises; runs once the stage's
        task has ended."""
        inbox = self.inbox
        while inbox is not None and inbox.items:
            event = inbox.items.popleft()
            try:
                self.handle(event)
            except Exception as exc:
                self.errors.record(self.name, exc)
        if not self.finished:
            self.finished = True
            try:
                await self.finish()
            except Exception as exc:
                self.errors.record(self.name, exc)

    async def run(self) -> None:
        """Consume the inbox until it is closed and drained, then `finish`; set `done`.

        Exceptions are counted and logged, never propagated (one escaping would cancel the
        task group, and with it the engine's code inside `async with TelemetryPipeline`);
        cancellation always propagates.
        """
        try:
            await self._consume()
            self.finished = True
            await self.finish()
        except Exception as exc:
            self.errors.record(self.name, exc)
        finally:
            if self.done is not None:
                self.done.set()

    async def _consume(self) -> None:
        inbox = self.inbox
        assert inbox is not None, "attach() the stage before running it"
        items = inbox.items
        while True:
            if not items:
                if inbox.closed:
                    break
                await self._wait(inbox)
            for _ in range(min(len(items), self.slice_size)):
                event = items.popleft()
                try:
                    self.handle(event)
                except Exception as exc:
                    self.errors.record(self.name, exc)
            await self._after_batch_isolated()
            if items:
                await anyio.lowlevel.checkpoint()
        await self._after_batch_isolated()

    async def _wait(self, inbox: Inbox) -> None:
        timeout = self.wait_timeout()
        if timeout is None:
            await inbox.wait()
        else:
            with anyio.move_on_after(timeout):
                await inbox.wait()

    async def _after_batch_isolated(self) -> None:
        try:
            await self.after_batch()
        except Exception as exc:
            self.errors.record(self.name, exc)
