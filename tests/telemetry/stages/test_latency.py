"""LatencyTracker: latencies from the wrapper's stamps, handed on as a part on the bus."""

from __future__ import annotations

import pytest

from orket_pipeline.providers import Chunk
from orket_pipeline.report._model import ServerTimings
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


class TestSchema11Figures:
    def test_a_reasoning_token_starts_init_latency_and_answer_text_first_content(self) -> None:
        part = measure(finished(t_first_content=10.25))
        assert (part.init_latency, part.first_content_latency) == (0.125, 0.25)

    def test_a_non_streaming_run_has_no_first_content_latency(self) -> None:
        part = measure(finished(streaming=False, t_first_content=10.25))
        assert part.first_content_latency is None

    def test_chunk_gaps_give_their_median_and_maximum(self) -> None:
        part = measure(finished(chunk_times=[10.0, 10.25, 10.375, 11.0, 11.125]))
        # gaps 0.25, 0.125, 0.625, 0.125: median of four is the mean of the middle two
        assert (part.inter_chunk_p50, part.inter_chunk_max) == (0.1875, 0.625)

    def test_one_chunk_has_no_gaps(self) -> None:
        part = measure(finished(chunk_times=None, chunk_count=1))
        assert (part.inter_chunk_p50, part.inter_chunk_max) == (None, None)

    def test_token_counts_and_time_per_output_token_come_from_the_last_facts(self) -> None:
        facts = [
            Chunk(prompt_tokens=3, completion_tokens=1),
            Chunk(completion_tokens=5, reasoning_tokens=2, server_generation_s=0.25),
        ]
        part = measure(finished(facts=facts))
        assert (part.prompt_tokens, part.completion_tokens, part.reasoning_tokens) == (3, 5, 2)
        # (total 0.5 - init 0.125) / (5 - 1)
        assert part.time_per_output_token == 0.09375
        assert part.server == ServerTimings(prompt_s=None, generation_s=0.25, load_s=None)

    def test_counts_that_are_not_counts_are_dropped(self) -> None:
        facts = [Chunk(prompt_tokens=-1, completion_tokens=True, server_load_s=float("nan"))]  # type: ignore[arg-type]
        part = measure(finished(facts=facts))
        assert (part.prompt_tokens, part.completion_tokens, part.server) == (None, None, None)
        assert part.time_per_output_token is None

    def test_counts_and_seconds_too_large_for_a_float_are_dropped_not_the_latencies(
        self,
    ) -> None:
        facts = [Chunk(completion_tokens=10**400, server_prompt_s=10**400)]  # type: ignore[arg-type]
        part = measure(finished(facts=facts))
        assert (part.completion_tokens, part.time_per_output_token, part.server) == (None,) * 3
        assert part.total_latency == 0.5  # the run's own figures survive

    def test_attempts_come_from_the_facts_or_from_the_error(self) -> None:
        assert measure(finished(facts=[Chunk(attempts=3)])).attempts == 3
        assert measure(finished(output=None, attempts=2)).attempts == 2
        assert measure(finished()).attempts is None


class TestOutputCap:
    def test_an_output_under_the_cap_is_kept_whole(self) -> None:
        part = measure(finished(output="é" * 10), output_cap=20)
        assert (part.output, part.output_truncated) == ("é" * 10, False)

    def test_an_output_over_the_cap_is_cut_on_a_character_boundary(self) -> None:
        part = measure(finished(output="é" * 10), output_cap=5)
        assert (part.output, part.output_truncated) == ("éé", True)
        assert part.output_chars == 10

    def test_no_cap_keeps_no_output(self) -> None:
        part = measure(finished(), output_cap=None)
        assert (part.output, part.output_truncated) == (None, None)


class TestTheFastPathsAgreeWithTheFullOne:
    """`measure` skips work for a plain answer and for a stream with no facts; with an empty
    list of facts it takes the full path, which must give the same figures."""

    @pytest.mark.parametrize("seed", range(40))
    def test_a_stream_with_no_facts_measures_as_one_with_empty_facts(self, seed: int) -> None:
        import itertools
        import random
        import statistics

        rng = random.Random(seed)
        times = sorted(10.0 + rng.random() for _ in range(rng.randint(2, 12)))
        event = finished(
            chunk_times=times,
            chunk_count=len(times),
            t_first_chunk=times[0],
            t_last_chunk=times[-1],
            t_first_content=rng.choice([None, times[rng.randrange(len(times))]]),
            t_perf=times[-1] + rng.random(),
        )
        fast = measure(event)
        full = measure(GenerationFinished(**{**_fields(event), "facts": []}))
        assert fast == full
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert fast.inter_chunk_p50 == statistics.median(gaps)
        assert fast.inter_chunk_max == max(gaps)


def _fields(event: GenerationFinished) -> dict[str, object]:
    return {name: getattr(event, name) for name in event.__struct_fields__}
