"""What every stage shares: batches of its inbox when woken, parts handed on through the bus,
its own failures isolated, and the drain order that follows from the wiring."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anyio
import anyio.lowlevel

from .._bus import EventBus, Inbox
from .._events import Event

__all__ = ["Stage", "StageErrors", "drain_order"]

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
                _printable(exc),
                type(exc).__name__,
                exc_info=exc,
            )


class Stage:
    """A consumer of the bus: handles the events of its inbox in batches, when woken.

    Subclasses set `name`, `event_types` (what they consume) and `produces` (the parts they
    hand on with `emit` or, a slice at a time, `emit_all`), implement `handle` (synchronous and
    quick), and may override `handle_batch` (one loop over a slice, where per-event work is
    tiny; it is what the stage runs, calling `handle` per event by default), `after_batch`
    (async work for what the batch gathered), `wants_tick` (keep being woken while
    they have work pending with no new event) and `finish` (the final drain).

    A stage is woken by the pipeline's `Scheduler`, never by a publish, and once more when its
    inbox is closed; it then drains what is queued, in slices of `slice_size` events with a
    checkpoint between them, so a backlog cannot stall the event loop.
    """

    name: str = "stage"
    event_types: Sequence[type[Event]] = ()
    produces: Sequence[type[Event]] = ()
    #: Events handled before yielding to the event loop, so a backlog cannot stall it.
    slice_size: int = 256

    def __init__(self, errors: StageErrors) -> None:
        self.errors = errors
        self.inbox: Inbox | None = None
        self.done: anyio.Event | None = None
        self.finished = False
        #: Work this stage could not do because the drain deadline stopped it.
        self.abandoned = 0
        self._bus: EventBus | None = None
        self._woken = False
        self._waiter: anyio.Event | None = None

    def attach(self, bus: EventBus, capacity: int) -> None:
        """Subscribe this stage's inbox to its event types; `emit` forwards onto `bus`."""
        self._bus = bus
        self.inbox = bus.subscribe(self.name, self.event_types, capacity)

    def prepare(self) -> None:
        """Create the stage's `done` event; call inside the event loop, before `run`."""
        self.done = anyio.Event()

    # -- what subclasses implement -------------------------------------------------------------

    def handle(self, event: Event) -> None:
        """Handle one event. Runs on the event loop: must not block. May raise (counted)."""
        raise NotImplementedError

    def handle_batch(self, events: list[Event]) -> None:
        """Handle a slice of the inbox, in order. Runs on the event loop: must not block.

        By default `handle` for each event, each failure counted and the rest still handled.
        A stage whose per-event work is tiny overrides it with one loop (it must keep that
        isolation: one bad event may not cost the others).
        """
        handle = self.handle
        for event in events:
            try:
                handle(event)
            except Exception as exc:
                self.errors.record(self.name, exc)

    async def after_batch(self) -> None:
        """Called after each slice of events, and on each tick asked for by `wants_tick`."""

    def wants_tick(self) -> bool:
        """Whether to be woken on the scheduler's next tick with no new event."""
        return False

    async def finish(self) -> None:
        """Called once the inbox is closed and drained; settles what is still pending."""

    # -- what the stage offers the others ------------------------------------------------------

    @property
    def bus(self) -> EventBus | None:
        """The bus this stage is attached to (None before `attach`)."""
        return self._bus

    def emit(self, part: Event) -> None:
        """Hand a part on, through the bus, to the stages consuming it. Never blocks or raises
        (see `EventBus.forward`)."""
        if self._bus is not None:
            self._bus.forward(part)

    def emit_all(self, parts: list[Event]) -> None:
        """Hand on a batch of parts of one type, in one go. Never blocks or raises."""
        if self._bus is not None:
            self._bus.forward_all(parts)

    def has_work(self) -> bool:
        """Whether the scheduler should wake this stage. Never raises."""
        inbox = self.inbox
        if inbox is not None and inbox.items:
            return True
        try:
            return self.wants_tick()
        except Exception as exc:
            self.errors.record(self.name, exc)
            return False

    def wake(self) -> None:
        """Run a batch soon (now if the stage is waiting). Never blocks or raises."""
        self._woken = True
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()

    def close_inbox(self) -> None:
        """No more events will come: drain what is queued, finish, and end. Never raises."""
        if self.inbox is not None:
            self.inbox.closed = True
        self.wake()

    # -- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Handle batches until the inbox is closed and drained, then `finish`; set `done`.

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

    async def stop(self, scope: anyio.CancelScope) -> None:
        """End the stage now (the drain deadline passed): cancel `scope`, wait for its task,
        then handle here, synchronously, whatever is still queued, and `finish`, so that no
        event (an outcome, say) is lost. Work that needs awaiting (scoring) is abandoned and
        counted by `finish`. Never raises; blocks (awaits) only for the task to end."""
        if self.done is None or not self.done.is_set():
            scope.cancel()  # not when the task has ended: a cancellation is dear (see Scheduler)
        if self.done is not None:
            await self.done.wait()
        inbox = self.inbox
        if inbox is not None:
            inbox.closed = True
            self._handle_slice(len(inbox.items))
        if not self.finished:
            self.finished = True
            try:
                await self.finish()
            except Exception as exc:
                self.errors.record(self.name, exc)

    async def _consume(self) -> None:
        inbox = self.inbox
        assert inbox is not None, "attach() the stage before running it"
        while not (inbox.closed and not inbox.items):
            if not self._woken:
                waiter = self._waiter = anyio.Event()
                await waiter.wait()
            self._woken = False
            while True:
                self._handle_slice(self.slice_size)
                await self._after_batch_isolated()
                if not inbox.items:  # `_handle_slice` may replace the list
                    break
                await anyio.lowlevel.checkpoint()

    def _handle_slice(self, count: int) -> None:
        assert self.inbox is not None, "attach() the stage before running it"
        items = self.inbox.items
        if count >= len(items):
            self.inbox.items, batch = [], items
        else:
            batch = items[:count]
            del items[:count]
        try:
            self.handle_batch(batch)
        except Exception as exc:  # an override that let one escape: counted, batch over
            self.errors.record(self.name, exc)

    async def _after_batch_isolated(self) -> None:
        try:
            await self.after_batch()
        except Exception as exc:
            self.errors.record(self.name, exc)


def drain_order(stages: Sequence[Stage]) -> list[tuple[Stage, tuple[Stage, ...]]]:
    """Each stage with the stages that feed it (produce what it consumes), feeders first.

    Closing a stage's inbox only after every feeder has finished means no part can arrive
    after it drained. Raises `ValueError` when the wiring has a cycle (no such order exists).
    """
    feeders = {
        stage: tuple(
            other
            for other in stages
            if other is not stage and set(other.produces) & set(stage.event_types)
        )
        for stage in stages
    }
    order: list[tuple[Stage, tuple[Stage, ...]]] = []
    placed: set[Stage] = set()
    while len(order) < len(stages):
        ready = [s for s in stages if s not in placed and set(feeders[s]) <= placed]
        if not ready:
            raise ValueError("the stages' wiring has a cycle: no drain order exists")
        for stage in ready:
            order.append((stage, feeders[stage]))
            placed.add(stage)
    return order


def _printable(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__}>"
