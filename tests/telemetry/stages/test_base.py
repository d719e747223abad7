"""Stage: batches when woken, failures isolated, parts handed on, drained in wiring order."""

from __future__ import annotations

import anyio
import pytest

from orket_pipeline.telemetry._bus import EventBus
from orket_pipeline.telemetry._events import (
    Event,
    GenerationFinished,
    GenerationStarted,
    LatencyMeasured,
    MemoryMeasured,
    OutcomeRecorded,
)
from orket_pipeline.telemetry.stages import (
    ConstraintStage,
    LatencyTracker,
    ReportAggregator,
    Stage,
    StageErrors,
)
from orket_pipeline.telemetry.stages._base import drain_order

pytestmark = pytest.mark.anyio


def started(test_id: str) -> GenerationStarted:
    return GenerationStarted(test_id=test_id, t_perf=1.0, streaming=False)


class Counting(Stage):
    """Records the slices it handled; raises on test ids starting with "bad"."""

    name = "counting"
    event_types = (GenerationStarted,)
    slice_size = 3

    def __init__(self, errors: StageErrors | None = None) -> None:
        super().__init__(errors or StageErrors())
        self.slices: list[list[str]] = [[]]

    def handle(self, event: Event) -> None:
        if event.test_id.startswith("bad"):
            raise RuntimeError("bad event")
        self.slices[-1].append(event.test_id)

    async def after_batch(self) -> None:
        self.slices.append([])


def attached(stage: Stage, capacity: int = 100) -> EventBus:
    bus = EventBus()
    stage.attach(bus, capacity)
    stage.prepare()
    return bus


async def test_a_stage_sleeps_until_woken_then_handles_its_backlog_in_slices() -> None:
    stage = Counting()
    bus = attached(stage)
    async with anyio.create_task_group() as tg:
        tg.start_soon(stage.run)
        for index in range(7):
            bus.publish(started(str(index)))
        bus.route()
        await anyio.wait_all_tasks_blocked()
        assert stage.slices == [[]]  # queued, not woken: nothing handled
        stage.wake()
        await anyio.wait_all_tasks_blocked()
        assert [s for s in stage.slices if s] == [["0", "1", "2"], ["3", "4", "5"], ["6"]]
        stage.close_inbox()
    assert stage.finished and stage.done is not None and stage.done.is_set()


async def test_an_event_that_raises_is_counted_and_the_rest_are_handled() -> None:
    errors = StageErrors()
    stage = Counting(errors)
    bus = attached(stage)
    for test_id in ("a", "bad1", "b", "bad2"):
        bus.publish(started(test_id))
    bus.close()
    stage.close_inbox()
    await stage.run()
    assert [t for s in stage.slices for t in s] == ["a", "b"]
    assert errors.counts == {"counting": 2}


async def test_a_stopped_stage_still_handles_what_it_had_queued() -> None:
    stage = Counting()
    bus = attached(stage)
    scope = anyio.CancelScope()
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            with scope:
                await stage.run()

        tg.start_soon(run)
        bus.publish(started("queued"))
        bus.close()
        await anyio.wait_all_tasks_blocked()
        await stage.stop(scope)  # the drain deadline passed before it was woken
    assert [t for s in stage.slices for t in s] == ["queued"] and stage.finished


def test_the_drain_order_puts_every_feeder_before_the_stage_it_feeds() -> None:
    errors = StageErrors()
    aggregator = ReportAggregator(errors)
    latency, constraints = LatencyTracker(errors), ConstraintStage(errors)
    order = drain_order([aggregator, latency, constraints])
    assert [stage for stage, _ in order] == [latency, constraints, aggregator]
    assert dict(order)[aggregator] == (latency, constraints)


def test_a_wiring_with_a_cycle_has_no_drain_order() -> None:
    class Ping(Stage):
        event_types = (LatencyMeasured,)
        produces = (MemoryMeasured,)

    class Pong(Stage):
        event_types = (MemoryMeasured,)
        produces = (LatencyMeasured,)

    errors = StageErrors()
    with pytest.raises(ValueError, match="cycle"):
        drain_order([Ping(errors), Pong(errors)])


async def test_parts_emitted_while_draining_reach_the_stage_that_consumes_them() -> None:
    errors = StageErrors()
    bus = EventBus()
    latency, aggregator = LatencyTracker(errors), ReportAggregator(errors)
    for stage in (latency, aggregator):
        stage.attach(bus, 100)
        stage.prepare()
    aggregator.expect(1)
    bus.publish(started("t"))
    bus.publish(
        GenerationFinished(test_id="t", t_perf=2.0, t_started=1.0, streaming=False, output="x")
    )
    bus.publish(OutcomeRecorded(test_id="t", outcome="pass"))
    bus.close()
    async with anyio.create_task_group() as tg:
        for stage in (latency, aggregator):
            tg.start_soon(stage.run)
        for stage, feeders in drain_order([latency, aggregator]):
            for feeder in feeders:
                assert feeder.done is not None
                await feeder.done.wait()
            stage.close_inbox()
    (run,) = aggregator.test_runs()
    assert run.telemetry is not None and run.telemetry.total_latency == 1
    assert errors.counts == {}
