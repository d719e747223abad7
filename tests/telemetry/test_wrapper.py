"""The generation wrapper: what it publishes, what it returns, and one truth about errors."""

from __future__ import annotations

import anyio
import pytest

from orket_pipeline._exceptions import PipelineClosedError
from orket_pipeline.engine import Suite, Task
from orket_pipeline.engine._runner import execute
from orket_pipeline.telemetry._events import (
    Event,
    GenerationFinished,
    GenerationStarted,
    OutcomeRecorded,
)
from orket_pipeline.telemetry._wrapper import GenerationWrapper, State
from tests.providers_fakes import Delayed, Failing, Instant, Streaming

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
