"""The event bus: a queue per event type, filled by a publish that never awaits or wakes anything.

Publishing is on the engine's path, so it is one append to its type's queue, whatever the
number of stages: no lock (everything runs on the event loop's thread), no await, no wake-up.
The wrapper appends its two events to their queues itself while the bus is busy and below its
fill mark (`direct_limit`), and calls `publish` otherwise: the event that turns the bus busy,
reaches the fill mark, finds it full or comes after close always goes through `publish`, and
what is queued is counted from the queues' lengths, so the counters stay exact.
Stages run in batches instead, as OpenTelemetry's BatchSpanProcessor exports spans: the
`Scheduler` hands each queue to the inboxes subscribed to its type (one list extend per inbox,
nothing per event) and wakes the stages `delay` seconds after the bus turned busy, or sooner when
the bus or an inbox reaches its fill mark; the pipeline wakes each one at close. While nothing is
pending the scheduler sleeps with no timer at all; the first publish after a pause wakes it (one
`anyio.Event.set` per batch, never per event).

Why: waking a waiting stage on every publish cost ~4.6 us per wake-up (~10 us with a timeout),
four per generation, whenever the engine yielded between generations, as every real provider
does (2.5-3.9x one OpenTelemetry span per generation). Batched, the cost no longer depends on
how often the engine yields; routing by type a batch at a time costs nothing per event. What is
left is the stages' own work (`python -m benchmarks.profile_pipeline`, part 6).

A full bus or inbox refuses the event and counts it; a closed bus counts the engine's event as
late: nothing is lost silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from time import perf_counter
from typing import Protocol

import anyio

from ._events import ENGINE_EVENTS, Event, GenerationFinished, OutcomeRecorded
from ._lag import LagMonitor

__all__ = ["DIRECT_EVENTS", "BusStatistics", "EventBus", "Inbox", "Scheduler", "Wakeable"]

#: The events the wrapper appends to their queues itself on the engine's path, while the bus
#: allows (`EventBus.direct_limit`): a run's two.
DIRECT_EVENTS = (GenerationFinished, OutcomeRecorded)


class Inbox:
    """One stage's bounded queue of events (a list: the bus extends it a batch at a time and
    the stage takes slices off its front).

    Only the event loop's thread touches an inbox, so no lock is needed. `wake_at` is the length
    at which one more part makes the bus ring the scheduler early (the fill mark, minus one).
    """

    __slots__ = ("capacity", "closed", "dropped", "items", "name", "wake_at")

    def __init__(self, name: str, capacity: int, fill_mark: int) -> None:
        self.name = name
        self.capacity = capacity
        self.wake_at = max(fill_mark, 1) - 1
        self.items: list[Event] = []
        self.dropped = 0
        self.closed = False

    def take(self, events: list[Event]) -> None:
        """Append a batch, as much of it as there is room for; count the rest as dropped."""
        room = self.capacity - len(self.items)
        if len(events) <= room:
            self.items += events
        else:
            room = max(room, 0)
            self.items += events[:room]
            self.dropped += len(events) - room


class Wakeable(Protocol):
    """What the scheduler needs of a stage."""

    def has_work(self) -> bool:
        """Whether to wake it now: events are queued, or it asks for a tick. Never raises."""
        ...

    def wake(self) -> None:
        """Run a batch soon. Never blocks or raises."""
        ...


def _nothing() -> None:
    pass


class BusStatistics:
    """Counters of a bus: events published, dropped by full inboxes, and arrived late."""

    __slots__ = ("dropped", "late", "published")

    def __init__(self, published: int, dropped: int, late: int) -> None:
        self.published = published
        self.dropped = dropped
        self.late = late


class EventBus:
    """The engine's events, queued per type and routed into the stages' inboxes per batch.

    `publish` appends the event to its type's queue (O(1) on the engine's path, whatever the
    number of stages); `route`, called by the scheduler at each batch and by the pipeline at
    close, hands each type's queue to every inbox subscribed to it, a batch at a time (one
    `list` extend per inbox, no work per event). Types are routed in the order they were first
    subscribed, and the wrapper publishes a run's `GenerationFinished` before its outcome, so a
    stage never sees a run's outcome before its generation when both are in one batch.

    Args:
        capacity: events the queues may hold together before new ones are dropped (and
            counted).
        fill_mark: queued events at which the bus (or an inbox) rings the scheduler before
            its delay.
    """

    def __init__(self, capacity: int = 1 << 18, fill_mark: int = 1024) -> None:
        self.fill_mark = fill_mark
        self._routes: dict[type[Event], tuple[Inbox, ...]] = {}
        self._inboxes: list[Inbox] = []
        #: Each routed type's queue of published events, in routing order: the engine's
        #: events in the order a run publishes them, then the rest as first subscribed. Each
        #: list lives as long as the bus (`route` empties it): the wrapper appends to the
        #: ones of its own events directly (see `direct_limit`). What is queued is counted
        #: from their lengths.
        self._queues: dict[type[Event], list[Event]] = {}
        for event_type in ENGINE_EVENTS:
            self._queues[event_type] = []
        self._finished = self._queues[GenerationFinished]
        self._outcomes = self._queues[OutcomeRecorded]
        self._others = 0  # events queued in the other queues (those two count by their length)
        self._room = capacity  # 0 once closed: every later event is refused (and counted)
        self._wake_at = max(fill_mark, 1) - 1
        #: The most events direct appends may bring the queues to: below the fill mark and
        #: the capacity, so `publish` sees the event that reaches either.
        self._direct_room = min(self._wake_at, capacity)
        self._routed = 0
        self._dropped = 0
        self._late = 0
        self._closed = False
        self._busy = False
        #: How long each queue of `DIRECT_EVENTS` may grow by appends that bypass `publish`
        #: (the wrapper's, on the engine's path): 0 while the bus is idle or closed, so the
        #: first event after a pause, and every late one, goes through `publish`; else low
        #: enough that those appends cannot reach the fill mark or the capacity, so `publish`
        #: sees the event that does (and rings, or drops it).
        self.direct_limit = 0
        #: `perf_counter()` of the last `route()`: every event still queued was published later.
        self.routed_at = float("-inf")
        self._ring: Callable[[], None] = _nothing

    @property
    def busy(self) -> bool:
        """True from the first event after a pause until the scheduler finds nothing pending
        (and sets it False, which closes the direct appends until the next `publish`)."""
        return self._busy

    @busy.setter
    def busy(self, busy: bool) -> None:
        self._busy = busy
        if not busy:
            self.direct_limit = 0

    def subscribe(self, name: str, event_types: Iterable[type[Event]], capacity: int) -> Inbox:
        """Create a stage's inbox receiving the given event types. Call before publishing."""
        inbox = Inbox(name, capacity, self.fill_mark)
        self._inboxes.append(inbox)
        for event_type in event_types:
            self._routes[event_type] = (*self._routes.get(event_type, ()), inbox)
            if event_type not in self._queues:
                self._queues[event_type] = []
        return inbox

    def queue(self, event_type: type[Event]) -> list[Event]:
        """The queue of one of `DIRECT_EVENTS`, for the wrapper to append to while its length
        is below `direct_limit` (else it calls `publish`). Never raises for those types."""
        return self._queues[event_type]

    def on_ring(self, ring: Callable[[], None]) -> None:
        """Call `ring` when the bus turns busy or a queue reaches its fill mark.

        `ring` runs inside `publish`: it must be quick and must not raise.
        """
        self._ring = ring

    def publish(self, event: Event) -> None:
        """Queue one of the engine's events. Never awaits, blocks, wakes a stage or raises.

        A full bus drops the event and counts it; after `close()` the event is counted as
        late; an event no stage subscribes to is counted and forgotten. The first event after
        a pause rings the scheduler, once, and so does the event that reaches the fill mark.
        """
        queue = self._queues.get(type(event))
        first, second = self._finished, self._outcomes
        queued = len(first) + len(second) + self._others
        if queued < self._room:
            if queue is None:
                self._routed += 1  # nobody listens: routed nowhere
                return
            queue.append(event)
            if queue is not first and queue is not second:
                self._others += 1
            if not self._busy:
                self._busy = True
                self._ring()
            elif queued == self._wake_at:
                self._ring()
            # Room for direct appends: each of the two queues may take half of what is left
            # below the fill mark once the other queues' events are counted.
            limit = (self._direct_room - self._others) >> 1
            self.direct_limit = limit if limit > 0 else 0
        elif self._closed:
            self._late += 1
        else:
            self._dropped += 1

    def route(self) -> None:
        """Hand every queued event to the inboxes subscribed to its type. Never raises.

        A full inbox drops what does not fit and counts it. Runs on the loop, off the engine's
        path: at each of the scheduler's batches, and at close.
        """
        self.routed_at = perf_counter()
        self._others = 0
        routes = self._routes
        for event_type, queue in self._queues.items():
            if queue:
                self._routed += len(queue)
                for inbox in routes.get(event_type, ()):
                    inbox.take(queue)  # a copy: the queue is emptied and kept
                queue.clear()

    def queued(self) -> int:
        """Events published and not yet routed."""
        return len(self._finished) + len(self._outcomes) + self._others

    def full(self) -> bool:
        """Whether the queued events have reached the fill mark (a batch is due now)."""
        return self.queued() > self._wake_at

    def queued_events(self, event_type: type[Event]) -> Sequence[Event]:
        """The events of `event_type` published and not yet routed (read only)."""
        return self._queues.get(event_type, ())

    def forward(self, part: Event) -> None:
        """Put a stage's part into the inboxes of the stages that consume it. Never awaits,
        blocks or raises.

        Unlike `publish` this goes on after `close()`: the pipeline closes each stage's inbox
        only after the stages feeding it have finished. A part is never dropped for a full
        inbox: each answers one event its producer accepted from its own bounded inbox, so
        the parts queued are bounded by the producers' capacities, and dropping one would
        lose a measurement the run already paid for.
        """
        self.forward_all([part])

    def forward_all(self, parts: list[Event]) -> None:
        """`forward` for a batch of parts of one type (as one stage hands them on), in one
        extend per consuming inbox. Never awaits, blocks or raises."""
        if not parts:
            return
        for inbox in self._routes.get(type(parts[0]), ()):
            items = inbox.items
            if len(items) <= inbox.wake_at < len(items) + len(parts):
                self._ring()
            items += parts
        if not self.busy:
            self.busy = True
            self._ring()

    def close(self) -> None:
        """Refuse further events from the engine (they are counted as late) and route what is
        queued. Idempotent.

        The inboxes stay open: the pipeline closes them stage by stage, so that a stage whose
        input comes from other stages drains after them.
        """
        self._closed = True
        self._room = self._direct_room = 0
        self.direct_limit = 0
        self.route()

    @property
    def closed(self) -> bool:
        """Whether `close()` was called."""
        return self._closed

    def statistics(self) -> BusStatistics:
        """Counts so far. Never blocks or raises."""
        dropped = self._dropped + sum(inbox.dropped for inbox in self._inboxes)
        published = self._routed + self.queued() + self._dropped
        return BusStatistics(published, dropped, self._late)


class Scheduler:
    """Wakes the stages in batches: the one timer of the pipeline.

    Asleep (no timer at all) until the bus turns busy; then every `delay` seconds, or as soon as
    an inbox reaches its fill mark, it wakes each stage that has queued events or asks for a
    tick (`Stage.has_work`), and goes back to sleep once none has.

    The delay is a plain sleep in a companion task (the ticker), which rings like the bus does:
    a timeout (`move_on_after`) would cost a cancellation per batch, and anyio's cancellation
    formats the cancelling task's repr each time (~70 us measured, per tick).

    Args:
        bus: the bus whose ring wakes it.
        stages: the stages to wake.
        delay: seconds between a batch's first event and the stages' wake-up.
        lag: where to record how late each timed wake-up came (the loop's lag).
    """

    def __init__(
        self,
        bus: EventBus,
        stages: Sequence[Wakeable],
        delay: float = 0.005,
        lag: LagMonitor | None = None,
    ) -> None:
        self.delay = delay
        self._lag = lag
        self._bus = bus
        self._stages = tuple(stages)
        self._alarm: anyio.Event | None = None
        self._timer: anyio.Event | None = None  # set to start the ticker's sleep
        self._tick_wanted = False  # a batch waits for the delay (read when the ticker loops)
        #: Batches started so far (a measure of wake-ups, for tests and benchmarks).
        self.ticks = 0
        bus.on_ring(self._ring)

    def _ring(self) -> None:
        alarm = self._alarm
        if alarm is not None:
            self._alarm = None
            alarm.set()

    def _pending(self) -> bool:
        return self._bus.queued() > 0 or any(stage.has_work() for stage in self._stages)

    async def _rung(self) -> None:
        alarm = self._alarm = anyio.Event()
        await alarm.wait()

    async def run(self) -> None:
        """Wake the stages until cancelled. Blocks (awaits) forever; never raises but
        cancellation."""
        async with anyio.create_task_group() as ticker:
            ticker.start_soon(self._tick)
            await self._batches()

    async def _batches(self) -> None:
        bus = self._bus
        while True:
            if not self._pending():
                bus.busy = False
                await self._rung()
                continue  # a late tick may ring too: look again
            if not bus.full():
                # A ring lost while this task was not waiting (the engine reached the fill
                # mark before this task ran for the ring of the bus turning busy) is read
                # here: a full queue does not wait for the delay.
                self._tick_wanted = True
                timer = self._timer
                if timer is not None:  # the ticker is idle: start its sleep
                    self._timer = None
                    timer.set()
                await self._rung()
            self.ticks += 1
            bus.route()
            for stage in self._stages:
                if stage.has_work():
                    stage.wake()

    async def _tick(self) -> None:
        while True:
            if not self._tick_wanted:
                timer = self._timer = anyio.Event()
                await timer.wait()
            self._tick_wanted = False
            t_asleep = perf_counter()
            await anyio.sleep(self.delay)
            if self._lag is not None:
                # How late the loop ran the timed wake-up is its lag.
                self._lag.record(perf_counter() - t_asleep - self.delay)
            self._ring()
