"""The event bus: one bounded inbox per stage, filled by a publish that never awaits.

Publishing is on the engine's path, so it is a handful of attribute reads and deque appends:
no lock (everything runs on the event loop's thread), no await, no allocation beyond the
deque slot. A stage waiting on an empty inbox is woken through an `anyio.Event` it created
before sleeping; a busy stage is not woken at all. A full inbox refuses the event and counts
it, a closed bus counts the event as late: nothing is lost silently.

Measured before choosing (`python -m benchmarks.bench_bus`, figures in benchmarks/README.md):
delivering one event to four anyio memory object streams with `send_nowait` costs about 1.6x
this deque-and-wake-up, and the streams add a receive-side cost per event besides.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import anyio

from ._events import Event

__all__ = ["BusStatistics", "EventBus", "Inbox"]


class Inbox:
    """One stage's bounded queue of events, with the stage's wake-up.

    Only the event loop's thread touches an inbox, so no lock is needed.
    """

    __slots__ = ("capacity", "closed", "dropped", "items", "name", "waiter")

    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self.capacity = capacity
        self.items: deque[Event] = deque()
        self.waiter: anyio.Event | None = None
        self.dropped = 0
        self.closed = False

    async def wait(self) -> None:
        """Wait until an event arrives or the bus closes. Blocks (awaits); never raises."""
        if self.items or self.closed:
            return
        waiter = self.waiter = anyio.Event()
        await waiter.wait()

    def close(self) -> None:
        """Tell the stage no more events will come, waking it to drain. Never raises."""
        self.closed = True
        self.wake()

    def wake(self) -> None:
        """Wake the stage if it is waiting. Never blocks or raises."""
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            waiter.set()


class BusStatistics:
    """Counters of a bus: events published, dropped by full inboxes, and arrived late."""

    __slots__ = ("dropped", "late", "published")

    def __init__(self, published: int, dropped: int, late: int) -> None:
        self.published = published
        self.dropped = dropped
        self.late = late


class EventBus:
    """Routes each event, by its type, to the inboxes of the stages subscribed to that type."""

    def __init__(self) -> None:
        self._routes: dict[type[Event], tuple[Inbox, ...]] = {}
        self._inboxes: list[Inbox] = []
        self._published = 0
        self._late = 0
        self._closed = False

    def subscribe(self, name: str, event_types: Iterable[type[Event]], capacity: int) -> Inbox:
        """Create a stage's inbox receiving the given event types. Call before publishing."""
        inbox = Inbox(name, capacity)
        self._inboxes.append(inbox)
        for event_type in event_types:
            self._routes[event_type] = (*self._routes.get(event_type, ()), inbox)
        return inbox

    def publish(self, event: Event) -> None:
        """Put `event` into every subscribed inbox. Never awaits, blocks or raises.

        A full inbox drops the event and counts it; after `close()` the event is counted as
        late and delivered nowhere.
        """
        if self._closed:
            self._late += 1
            return
        self._published += 1
        for inbox in self._routes.get(type(event), ()):
            items = inbox.items
            if len(items) >= inbox.capacity:
                inbox.dropped += 1
                continue
            items.append(event)
            waiter = inbox.waiter
            if waiter is not None:
                inbox.waiter = None
                waiter.set()

    def close(self) -> None:
        """Refuse further events (they are counted as late). Idempotent.

        The inboxes stay open: the pipeline closes them stage by stage, so that a stage whose
        input comes from other stages drains after them.
        """
        self._closed = True

    @property
    def closed(self) -> bool:
        """Whether `close()` was called."""
        return self._closed

    def statistics(self) -> BusStatistics:
        """Counts so far. Never blocks or raises."""
        dropped = sum(inbox.dropped for inbox in self._inboxes)
        return BusStatistics(self._published, dropped, self._late)
