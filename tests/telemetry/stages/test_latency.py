"""LatencyTracker: latencies from the wrapper's stamps, handed on as a part on the bus."""

from __future__ import annotations

import pytest

from orket_pipeline.telemetry._bus import EventBus
from orket_pipeline.telemetry._events import GenerationFinished, LatencyMeasured
from orket_pipeline.telemetry.stages import LatencyTracker, StageErrors
from orket_pipeline.telemetry.stages.latency import measure


def finished(**fields: object) -> GenerationFinished:
    base: dict[str, object] = {
        "test_id": "t",
        "t_perf": 10.5,
        "t_started": 10.0,
        "streaming": True,
        "output": "abc",
        "chunk_count": 2,
        "t_first_chunk": 10.125,
        "t_last_chunk": 10.375,
    }
    return GenerationFinished(**{**base, **fields})  # type: ignore[arg-type]


def test_a_stream_has_init_latency_total_latency_and_stream_duration() -> None:
    part = measure(finished())
    assert (part.init_latency, part.total_latency, part.stream_duration) == (0.125, 0.5, 0.25)
    assert (part.chunk_count, part.output_chars, part.error_type) == (2, 3, None)


def test_a_non_streaming_provider_has_no_init_latency_even_with_a_chunk_stamp() -> None:
    part = measure(finished(streaming=False))
    assert part.init_latency is None and part.total_latency == 0.5


def test_a_failure_before_any_chunk_keeps_its_total_latency_and_its_error() -> None:
    part = measure(
        finished(
            output=None,
            chunk_count=0,
            t_first_chunk=None,
            t_last_chunk=None,
            error_type="ConnectionError",
            error_message="reset",
        )
    )
    assert (part.init_latency, part.stream_duration, part.output_chars) == (None, None, None)
    assert part.total_latency == 0.5
    assert (part.error_type, part.error_message) == ("ConnectionError", "reset")


@pytest.mark.anyio
async def test_the_tracker_emits_one_part_per_finished_generation_onto_the_bus() -> None:
    bus = EventBus()
    tracker = LatencyTracker(StageErrors())
    tracker.attach(bus, 10)
    sink = bus.subscribe("sink", [LatencyMeasured], 10)
    tracker.prepare()
    bus.publish(finished(test_id="a"))
    bus.publish(finished(test_id="b"))
    bus.close()  # routes what is queued
    tracker.close_inbox()
    await tracker.run()
    assert [part.test_id for part in sink.items] == ["a", "b"]
    assert all(isinstance(part, LatencyMeasured) for part in sink.items)
