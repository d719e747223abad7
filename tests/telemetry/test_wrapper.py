"""The generation wrapper: what it publishes, what it returns, and one truth about errors."""

from __future__ import annotations

import asyncio
import gc
import sys
import weakref

import anyio
import pytest

from orket_pipeline._exceptions import PipelineClosedError, ProviderCallError
from orket_pipeline.engine import Suite, Task
from orket_pipeline.engine._runner import execute
from orket_pipeline.providers import Chunk
from orket_pipeline.telemetry._bus import EventBus
from orket_pipeline.telemetry._call import plain_async
from orket_pipeline.telemetry._events import (
    Event,
    GenerationFinished,
    GenerationStarted,
    OutcomeRecorded,
)
from orket_pipeline.telemetry._wrapper import GenerationWrapper, State
from tests.providers_fakes import Delayed, Failing, Gated, Instant, Streaming

pytestmark = pytest.mark.anyio


class AwakeProbe:
    idle = False
    sample_at_dispatch = False


class Recording(GenerationWrapper):
    """The wrapper alone: events go to a list instead of a bus."""

    def __init__(self, state: State = State.OPEN) -> None:
        self.events: list[Event] = []
        self._state = state
        self._publish = self.events.append
        self._probe = AwakeProbe()  # type: ignore[assignment]
        self._dispatched = {}


async def test_a_generation_publishes_one_event_at_its_end_carrying_the_dispatch_stamp() -> None:
    wrapper = Recording()
    gate = anyio.Event()
    seen: list[list[GenerationStarted]] = []

    class Held:
        supports_streaming = False

        async def generate(self, prompt: str) -> str:
            seen.append(wrapper.unfinished())  # in flight: known, and nothing published yet
            seen.append(list(wrapper.events))  # type: ignore[arg-type]
            await gate.wait()
            return "x = 1\n"

    async with anyio.create_task_group() as tg:
        tg.start_soon(wrapper.generate, "t1", Held(), "p")
        await anyio.wait_all_tasks_blocked()
        gate.set()
    (started,), published_while_in_flight = seen
    assert published_while_in_flight == []
    (finished,) = wrapper.events
    assert isinstance(finished, GenerationFinished)
    assert (started.test_id, finished.test_id) == ("t1", "t1")
    assert finished.t_started == started.t_perf <= finished.t_perf
    assert (finished.output, finished.chunk_count, finished.error_type) == ("x = 1\n", 1, None)
    assert wrapper.unfinished() == []  # finished: no longer in flight


async def test_a_stream_is_published_with_its_chunk_stamps_and_no_event_per_chunk() -> None:
    wrapper = Recording()
    text = await wrapper.generate("t1", Streaming([(0, "a"), (0, ""), (0, "b")]), "p")
    assert text == "ab"
    (finished,) = wrapper.events  # no first-chunk event: the end carries the stamps
    assert isinstance(finished, GenerationFinished) and finished.streaming
    assert finished.chunk_count == 2
    assert finished.t_first_chunk is not None and finished.t_last_chunk is not None
    assert finished.t_started <= finished.t_first_chunk <= finished.t_last_chunk <= finished.t_perf


async def test_a_failure_is_published_then_reraised_unchanged() -> None:
    wrapper = Recording()
    error = ConnectionError("reset")
    with pytest.raises(ConnectionError) as caught:
        await wrapper.generate("t1", Failing(error), "p")
    assert caught.value is error
    assert wrapper.unfinished() == []
    (finished,) = wrapper.events
    assert isinstance(finished, GenerationFinished)
    assert (finished.output, finished.error_type, finished.error_message) == (
        None,
        "ConnectionError",
        "reset",
    )


@pytest.mark.parametrize("state", [State.NEW, State.CLOSED])
async def test_generate_outside_an_open_pipeline_is_refused_and_publishes_nothing(
    state: State,
) -> None:
    wrapper = Recording(state)
    with pytest.raises(PipelineClosedError):
        await wrapper.generate("t1", Instant(), "p")
    assert wrapper.events == []


def test_record_outcome_publishes_the_engines_verdict_and_refuses_unknown_ones() -> None:
    wrapper = Recording()
    wrapper.record_outcome("t1", "fail", "expected 3")
    assert wrapper.events == [OutcomeRecorded(test_id="t1", outcome="fail", reason="expected 3")]
    with pytest.raises(ValueError, match="outcome"):
        wrapper.record_outcome("t1", "skipped")


async def test_a_timed_out_run_names_one_error_type_in_error_and_telemetry() -> None:
    suite = Suite(name="s", tasks=(Task(id="slow", prompt="p"),))
    with anyio.fail_after(30):
        report = await execute(suite, Delayed(10.0), report_path=None, timeout_s=0.01)
    (run,) = report.test_runs
    assert run.outcome == "error" and run.error is not None and run.telemetry is not None
    assert run.error.type == run.telemetry.error_type == "TimeoutError"


async def test_generations_in_flight_with_one_test_id_are_each_tracked() -> None:
    # Test ids should be unique, but an engine retrying a run while its first attempt still
    # runs sends one id twice. Each attempt in flight must be tracked on its own: the oldest
    # dispatch stamp (the memory probe keeps the segments from then on) must be the oldest
    # one, and an attempt still running at close must be reported as not finished.
    wrapper = Recording()
    first, other, second = Gated(), Gated(), Gated()
    async with anyio.create_task_group() as group:
        for test_id, provider in (("x", first), ("y", other), ("x", second)):
            group.start_soon(wrapper.generate, test_id, provider, "p")
            await provider.entered.wait()
        in_flight = wrapper.unfinished()
        assert [started.test_id for started in in_flight] == ["x", "y", "x"]
        assert [s.t_perf for s in in_flight] == sorted(s.t_perf for s in in_flight)
        first.release.set()
        await anyio.wait_all_tasks_blocked()
        assert [started.test_id for started in wrapper.unfinished()] == ["y", "x"]
        assert wrapper._max_in_flight == 3
        other.release.set()
        second.release.set()
    assert wrapper.unfinished() == []


class TestTestIds:
    async def test_a_test_id_that_is_not_a_str_is_refused_at_the_call(self) -> None:
        wrapper = Recording()
        provider = Instant()
        for _ in range(2):  # the first call of a provider, and the inline path after it
            with pytest.raises(TypeError, match="test_id must be a str, not int"):
                await wrapper.generate(7, provider, "p")  # type: ignore[arg-type]
            await wrapper.generate("ok", provider, "p")
        with pytest.raises(TypeError, match="test_id must be a str, not NoneType"):
            wrapper.record_outcome(None, "pass")  # type: ignore[arg-type]
        assert [event.test_id for event in wrapper.events] == ["ok", "ok"]
        assert wrapper.unfinished() == []

    async def test_a_str_subclass_test_id_is_recorded_as_its_plain_text(self) -> None:
        class Named(str):
            def __hash__(self) -> int:
                raise RuntimeError("no hash")

        wrapper = Recording()
        await wrapper.generate(Named("t1"), Instant(), "p")
        wrapper.record_outcome(Named("t1"), "pass")
        assert [type(event.test_id) for event in wrapper.events] == [str, str]
        assert [event.test_id for event in wrapper.events] == ["t1", "t1"]


class Flagless:
    """`supports_streaming` raises: a provider failure like any other."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    @property
    def supports_streaming(self) -> bool:
        raise self.error

    async def generate(self, prompt: str) -> str:
        return "x = 1\n"


async def test_a_supports_streaming_that_raises_fails_the_run_and_is_recorded() -> None:
    wrapper = Recording()
    error = RuntimeError("no flag")
    with pytest.raises(RuntimeError) as caught:
        await wrapper.generate("t1", Flagless(error), "p")
    assert caught.value is error
    (finished,) = wrapper.events
    assert isinstance(finished, GenerationFinished)
    assert (finished.output, finished.error_type, finished.error_message) == (
        None,
        "RuntimeError",
        "no flag",
    )
    assert wrapper.unfinished() == []


class TestTheInlinePath:
    """An `async def` provider seen before is awaited inline: the same telemetry, the same
    errors as its first call."""

    async def test_each_odd_output_is_handled_as_on_the_first_call(self) -> None:
        class Answers:
            supports_streaming = False

            def __init__(self, *outputs: object) -> None:
                self.outputs = list(outputs)

            async def generate(self, prompt: str) -> object:
                output = self.outputs.pop(0)
                if isinstance(output, BaseException):
                    raise output
                return output

        class Loud(str):
            def __len__(self) -> int:
                raise RuntimeError("no length")

        wrapper = Recording()
        error = ConnectionError("reset")
        provider = Answers(
            "first",
            "é = 1",
            Loud("x = 1"),
            Chunk(text="ok", completion_tokens=2),
            "",
            42,
            "bad \ud800",
            error,
        )
        results = []
        for index in range(8):
            try:
                results.append(await wrapper.generate(str(index), provider, "p"))
            except BaseException as exc:
                results.append(exc)
        assert results[:5] == ["first", "é = 1", "x = 1", "ok", ""]
        assert type(results[2]) is str
        assert isinstance(results[5], ProviderCallError) and "int, not str" in str(results[5])
        assert isinstance(results[6], ProviderCallError) and "lone surrogate" in str(results[6])
        assert results[7] is error
        events = [e for e in wrapper.events if isinstance(e, GenerationFinished)]
        assert [e.test_id for e in events] == [str(index) for index in range(8)]
        assert [e.chunk_count for e in events[:5]] == [1, 1, 1, 1, 0]
        assert events[3].facts == [Chunk(text="ok", completion_tokens=2)]
        assert [e.error_type for e in events[5:]] == [
            "ProviderCallError",
            "ProviderCallError",
            "ConnectionError",
        ]
        assert all(e.t_started <= e.t_perf for e in events)
        assert wrapper.unfinished() == []

    async def test_a_spurious_cancellation_is_an_error_on_the_inline_path_too(
        self, anyio_backend: str
    ) -> None:
        if anyio_backend == "asyncio" and sys.version_info < (3, 11):
            pytest.skip("Python 3.10 cannot tell it from a real cancellation (no cancelling())")
        wrapper = Recording()
        provider = Failing(asyncio.CancelledError())
        for _ in range(2):
            with pytest.raises(ProviderCallError, match="CancelledError of its own"):
                await wrapper.generate("t", provider, "p")
        assert [e.error_type for e in wrapper.events] == ["ProviderCallError"] * 2  # type: ignore[union-attr]

    async def test_one_test_id_twice_in_flight_is_tracked_twice(self) -> None:
        wrapper = Recording()
        first, second = Gated(), Gated()
        for provider in (first, second):  # seen once: inline from now on
            provider.release.set()
            await wrapper.generate("warm", provider, "p")
            provider.entered, provider.release = anyio.Event(), anyio.Event()
        async with anyio.create_task_group() as group:
            for provider in (first, second):
                group.start_soon(wrapper.generate, "x", provider, "p")
                await provider.entered.wait()
            assert [s.test_id for s in wrapper.unfinished()] == ["x", "x"]
            first.release.set()
            await anyio.wait_all_tasks_blocked()
            assert [s.test_id for s in wrapper.unfinished()] == ["x"]
            second.release.set()
        assert wrapper.unfinished() == [] and wrapper._max_in_flight == 2

    async def test_no_provider_is_kept_alive_and_a_reused_id_is_not_trusted(self) -> None:
        wrapper = Recording()
        provider = Instant()
        await wrapper.generate("a", provider, "p")
        await wrapper.generate("b", provider, "p")
        gone = weakref.ref(provider)
        del provider
        gc.collect()
        assert gone() is None
        # A streaming provider at a dead one's id is read afresh, not taken as its kind.
        streaming = Streaming([(0, "s")])
        plain_async[id(streaming)] = weakref.ref(Instant())
        assert await wrapper.generate("c", streaming, "p") == "s"
        assert wrapper.events[-1].streaming  # type: ignore[union-attr]


async def test_through_a_bus_every_event_is_counted_once_and_routed_in_order() -> None:
    bus = EventBus(fill_mark=5)
    inbox = bus.subscribe("s", [GenerationFinished, OutcomeRecorded], 100)
    rings: list[int] = []
    bus.on_ring(lambda: rings.append(bus.queued()))
    wrapper = Recording()
    wrapper._publish = bus.publish
    provider = Instant()
    for index in range(6):
        await wrapper.generate(str(index), provider, "p")
        wrapper.record_outcome(str(index), "pass")
    assert rings == [1, 5]  # busy, then the fill mark: as with publish alone
    assert bus.statistics().published == 12
    bus.route()
    assert [type(e).__name__[0] + e.test_id for e in inbox.items] == [
        *(f"G{index}" for index in range(6)),
        *(f"O{index}" for index in range(6)),
    ]
    bus.close()
    wrapper.record_outcome("5", "fail")  # after close: late, not lost, not raised
    assert bus.statistics().late == 1
