"""EventBus and Scheduler: publish never awaits, wakes or raises; stages run in batches."""

from __future__ import annotations

import anyio
import pytest

from orket_pipeline.telemetry._bus import EventBus, Scheduler
from orket_pipeline.telemetry._events import (
    Event,
    GenerationFinished,
    GenerationStarted,
    MemoryMeasured,
    OutcomeRecorded,
)
from orket_pipeline.telemetry.stages import Stage, StageErrors


def started(test_id: str = "t") -> GenerationStarted:
    return GenerationStarted(test_id=test_id, t_perf=1.0, streaming=True)


class Recorder(Stage):
    """Keeps each batch it was woken for."""

    name = "recorder"
    event_types = (GenerationStarted,)

    def __init__(self) -> None:
        super().__init__(StageErrors())
        self.batches: list[list[str]] = [[]]

    def handle(self, event: Event) -> None:
        self.batches[-1].append(event.test_id)

    async def after_batch(self) -> None:
        if self.batches[-1]:
            self.batches.append([])

    def seen(self) -> list[list[str]]:
        return [batch for batch in self.batches if batch]


class TestPublish:
    def test_events_are_routed_by_type_to_subscribed_inboxes_only(self) -> None:
        bus = EventBus()
        timing = bus.subscribe("timing", [GenerationStarted], 10)
        outcomes = bus.subscribe("outcomes", [OutcomeRecorded], 10)
        bus.publish(started())
        bus.publish(OutcomeRecorded(test_id="t", outcome="pass"))
        assert not timing.items  # publishing only queues; the scheduler routes per batch
        bus.route()
        assert [type(e).__name__ for e in timing.items] == ["GenerationStarted"]
        assert [type(e).__name__ for e in outcomes.items] == ["OutcomeRecorded"]
        assert bus.statistics().published == 2

    def test_full_inbox_drops_and_counts_without_affecting_others(self) -> None:
        bus = EventBus()
        small = bus.subscribe("small", [GenerationStarted], 2)
        large = bus.subscribe("large", [GenerationStarted], 10)
        for index in range(5):
            bus.publish(started(str(index)))
        bus.route()
        assert len(small.items) == 2 and small.dropped == 3
        assert len(large.items) == 5
        assert bus.statistics().dropped == 3

    def test_events_after_close_are_counted_as_late(self) -> None:
        bus = EventBus()
        inbox = bus.subscribe("s", [GenerationStarted], 10)
        bus.close()
        bus.publish(started())
        bus.route()
        assert not inbox.items
        statistics = bus.statistics()
        assert statistics.late == 1 and statistics.published == 0
        assert not inbox.closed  # stages are closed one by one, by the pipeline

    def test_parts_are_forwarded_after_close_and_never_dropped(self) -> None:
        bus = EventBus()
        inbox = bus.subscribe("aggregator", [MemoryMeasured], 1)
        bus.close()
        for index in range(3):
            bus.forward(MemoryMeasured(test_id=str(index), peak_rss_bytes=1))
        assert len(inbox.items) == 3
        statistics = bus.statistics()
        assert (statistics.late, statistics.dropped) == (0, 0)

    def test_a_full_queue_drops_and_counts_before_routing(self) -> None:
        bus = EventBus(capacity=3)
        inbox = bus.subscribe("s", [GenerationStarted], 10)
        for index in range(5):
            bus.publish(started(str(index)))
        bus.route()
        assert [e.test_id for e in inbox.items] == ["0", "1", "2"]
        statistics = bus.statistics()
        assert (statistics.published, statistics.dropped) == (5, 2)

    def test_the_bus_rings_once_when_it_turns_busy_and_once_at_each_fill_mark(self) -> None:
        bus = EventBus(fill_mark=4)
        bus.subscribe("s", [GenerationStarted], 100)
        rings: list[int] = []
        bus.on_ring(lambda: rings.append(bus.statistics().published))
        for index in range(10):
            bus.publish(started(str(index)))
        # Busy at the first event; the queue reached 4 at the fourth. Nothing else rings.
        assert rings == [1, 4]


@pytest.mark.anyio
class TestScheduler:
    async def test_publish_wakes_no_stage_and_a_fill_mark_wakes_them_in_one_batch(self) -> None:
        bus = EventBus(fill_mark=5)
        stage = Recorder()
        stage.attach(bus, 100)
        stage.prepare()
        # A delay far longer than the test: only the fill mark can start the batch.
        scheduler = Scheduler(bus, [stage], delay=3600)
        async with anyio.create_task_group() as tg:
            tg.start_soon(stage.run)
            tg.start_soon(scheduler.run)
            await anyio.wait_all_tasks_blocked()
            for index in range(4):
                bus.publish(started(str(index)))
                await anyio.wait_all_tasks_blocked()
            assert stage.seen() == [] and scheduler.ticks == 0
            bus.publish(started("4"))
            await anyio.wait_all_tasks_blocked()
            assert stage.seen() == [["0", "1", "2", "3", "4"]]
            assert scheduler.ticks == 1
            tg.cancel_scope.cancel()

    async def test_the_schedule_delay_wakes_stages_and_an_idle_scheduler_stops_ticking(
        self,
    ) -> None:
        bus = EventBus()
        stage = Recorder()
        stage.attach(bus, 100)
        stage.prepare()
        scheduler = Scheduler(bus, [stage], delay=0.001)
        async with anyio.create_task_group() as tg:
            tg.start_soon(stage.run)
            tg.start_soon(scheduler.run)
            bus.publish(started("a"))
            bus.publish(started("b"))
            with anyio.fail_after(10):
                while bus.busy:  # noqa: ASYNC110 - waits for the scheduler to go idle
                    await anyio.sleep(0.001)
            assert stage.seen() == [["a", "b"]]
            ticks = scheduler.ticks
            # Elapsed time is the thing under test: idle for 50 delays, it does not tick.
            await anyio.sleep(0.05)
            assert scheduler.ticks == ticks
            bus.publish(started("c"))  # busy again: one ring wakes it
            with anyio.fail_after(10):
                while bus.busy:  # noqa: ASYNC110 - waits for the scheduler to go idle
                    await anyio.sleep(0.001)
            assert stage.seen() == [["a", "b"], ["c"]]
            tg.cancel_scope.cancel()


@pytest.mark.anyio
@pytest.mark.parametrize("fill_mark", [1, 2, 5])
async def test_a_fill_mark_reached_before_the_scheduler_ran_still_starts_a_batch(
    fill_mark: int,
) -> None:
    # The engine publishes a run's events back to back: the fill mark is reached before the
    # scheduler has run for the ring that the bus turning busy gave. That batch must not wait
    # for the delay (here longer than the test): the fill mark says the queue is full enough.
    bus = EventBus(fill_mark=fill_mark)
    stage = Recorder()
    stage.attach(bus, 100)
    stage.prepare()
    scheduler = Scheduler(bus, [stage], delay=3600)
    async with anyio.create_task_group() as tg:
        tg.start_soon(stage.run)
        tg.start_soon(scheduler.run)
        await anyio.wait_all_tasks_blocked()
        for index in range(fill_mark):
            bus.publish(started(str(index)))
        await anyio.wait_all_tasks_blocked()
        assert stage.seen() == [[str(index) for index in range(fill_mark)]]
        tg.cancel_scope.cancel()


def finished(test_id: str) -> GenerationFinished:
    return GenerationFinished(
        test_id=test_id, t_perf=2.0, t_started=1.0, streaming=False, output=""
    )


def direct(bus: EventBus, event: Event) -> None:
    """What the wrapper does with its own two events: append while the bus allows, else
    publish."""
    queue = bus.queue(type(event))
    if len(queue) < bus.direct_limit:
        queue.append(event)
    else:
        bus.publish(event)


class TestDirectAppends:
    @pytest.mark.parametrize("capacity", [3, 11, 1000])
    @pytest.mark.parametrize("fill_mark", [1, 2, 4, 7, 1024])
    def test_direct_appends_ring_count_and_drop_exactly_as_publish_does(
        self, fill_mark: int, capacity: int
    ) -> None:
        seen: list[tuple[list[int], list[list[str]], tuple[int, int, int]]] = []
        for put in (EventBus.publish, direct):
            bus = EventBus(capacity=capacity, fill_mark=fill_mark)
            inbox = bus.subscribe("s", [GenerationStarted, GenerationFinished, OutcomeRecorded], 99)
            rings: list[int] = []
            bus.on_ring(lambda bus=bus, rings=rings: rings.append(bus.queued()))  # type: ignore[misc]
            batches = []
            for index in range(12):
                put(bus, finished(str(index)))
                if index == 5:
                    bus.publish(started("other"))  # another type queued between
                put(bus, OutcomeRecorded(test_id=str(index), outcome="pass"))
                if index == 8:
                    bus.route()  # a batch, the bus still busy
                    batches.append([e.test_id for e in inbox.items])
            bus.close()
            put(bus, OutcomeRecorded(test_id="late", outcome="pass"))
            batches.append([e.test_id for e in inbox.items])
            statistics = bus.statistics()
            seen.append(
                (rings, batches, (statistics.published, statistics.dropped, statistics.late))
            )
        published, appended = seen
        assert appended == published
        assert published[2][2] == 1  # the one after close is late either way

    def test_no_direct_append_while_the_bus_is_idle_so_the_next_event_rings(self) -> None:
        bus = EventBus(fill_mark=100)
        rings: list[int] = []
        bus.on_ring(lambda: rings.append(bus.queued()))
        assert bus.direct_limit == 0  # idle: the first event goes through publish
        direct(bus, finished("a"))
        assert rings == [1] and bus.direct_limit > 0
        bus.route()
        bus.busy = False  # as the scheduler does when nothing is pending
        assert bus.direct_limit == 0
        direct(bus, finished("b"))
        assert rings == [1, 1]

    def test_route_empties_the_queues_it_hands_out_and_keeps_them(self) -> None:
        bus = EventBus()
        inbox = bus.subscribe("s", [GenerationFinished], 10)
        queue = bus.queue(GenerationFinished)
        direct(bus, finished("a"))
        direct(bus, finished("b"))
        bus.route()
        assert bus.queue(GenerationFinished) is queue and queue == []
        assert [e.test_id for e in inbox.items] == ["a", "b"]
        assert bus.statistics().published == 2
