"""EventBus: publish never awaits or raises; drops and late events are counted."""

from __future__ import annotations

import anyio
import pytest

from orket_pipeline.telemetry._bus import EventBus
from orket_pipeline.telemetry._events import FirstChunkReceived, GenerationStarted, OutcomeRecorded


def started(test_id: str = "t") -> GenerationStarted:
    return GenerationStarted(test_id, 1.0, True)


def test_events_are_routed_by_type_to_subscribed_inboxes_only() -> None:
    bus = EventBus()
    timing = bus.subscribe("timing", [GenerationStarted, FirstChunkReceived], 10)
    outcomes = bus.subscribe("outcomes", [OutcomeRecorded], 10)
    bus.publish(started())
    bus.publish(FirstChunkReceived("t", 2.0))
    bus.publish(OutcomeRecorded("t", "pass"))
    assert [type(e).__name__ for e in timing.items] == ["GenerationStarted", "FirstChunkReceived"]
    assert [type(e).__name__ for e in outcomes.items] == ["OutcomeRecorded"]
    assert bus.statistics().published == 3


def test_full_inbox_drops_and_counts_without_affecting_others() -> None:
    bus = EventBus()
    small = bus.subscribe("small", [GenerationStarted], 2)
    large = bus.subscribe("large", [GenerationStarted], 10)
    for index in range(5):
        bus.publish(started(str(index)))
    assert len(small.items) == 2 and small.dropped == 3
    assert len(large.items) == 5
    assert bus.statistics().dropped == 3


def test_events_after_close_are_counted_as_late() -> None:
    bus = EventBus()
    inbox = bus.subscribe("s", [GenerationStarted], 10)
    bus.close()
    bus.publish(started())
    assert not inbox.items
    statistics = bus.statistics()
    assert statistics.late == 1 and statistics.published == 0
    assert not inbox.closed  # stages are closed one by one, by the pipeline


@pytest.mark.anyio
async def test_a_waiting_stage_is_woken_by_publish() -> None:
    bus = EventBus()
    inbox = bus.subscribe("s", [GenerationStarted], 10)
    received: list[object] = []

    async def consumer() -> None:
        await inbox.wait()
        received.append(inbox.items.popleft())

    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer)
        await anyio.wait_all_tasks_blocked()
        assert inbox.waiter is not None
        bus.publish(started())
    assert len(received) == 1
