"""TelemetryPipeline end to end: the wrapper, the bus, the four stages, the report."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from time import perf_counter

import anyio
import anyio.to_thread
import pytest

from orket_pipeline._exceptions import PipelineClosedError
from orket_pipeline.constraints import Constraints
from orket_pipeline.providers import Chunk
from orket_pipeline.report._model import GenerationOptions, Metadata, TestRun
from orket_pipeline.telemetry._pipeline import TelemetryPipeline
from orket_pipeline.telemetry.stages import latency
from tests.providers_fakes import Blocking, Delayed, Failing, Gated, Instant, Streaming

pytestmark = pytest.mark.anyio

CODE = "```python\ndef add(a: int, b: int) -> int:\n    return a + b\n```"


def only_run(pipeline: TelemetryPipeline) -> TestRun:
    (run,) = pipeline.report.test_runs
    return run


def seconds(value: Decimal | None) -> float:
    assert value is not None
    return float(value)


# The report rounds to 1 ms, half up: a value can read up to 0.5 ms off the raw one.
ROUNDING = 0.0005
# What the wrapper may add to the provider's own timing: a few system calls between the
# provider's stamp and the wrapper's in the same task; 5 ms leaves room for a loaded machine.
WRAPPER_SLACK = 0.005


class TestLatency:
    async def test_streaming_init_latency_is_time_to_first_non_empty_chunk(self) -> None:
        provider = Streaming([(0.05, ""), (0.0, "def f"), (0.03, "():\n    return 1\n")])
        async with TelemetryPipeline() as pipeline:
            t_before = perf_counter()
            text = await pipeline.generate("t1", provider, "p")
            elapsed = perf_counter() - t_before
            pipeline.record_outcome("t1", "pass")
        assert text == "def f():\n    return 1\n"
        telemetry = only_run(pipeline).telemetry
        assert telemetry is not None
        # The empty first chunk does not count: init is the first non-empty one, after the
        # injected 50 ms, and within 5 ms of when the provider really yielded it.
        first_text_at = provider.yielded_at[1]
        init = seconds(telemetry.init_latency)
        assert init >= 0.050 and first_text_at - ROUNDING <= init
        assert init <= first_text_at + WRAPPER_SLACK
        total = seconds(telemetry.total_latency)
        assert provider.yielded_at[-1] - ROUNDING <= total <= elapsed + ROUNDING
        assert telemetry.chunk_count == 2
        stream = seconds(telemetry.stream_duration)
        between = provider.yielded_at[2] - provider.yielded_at[1]
        assert stream >= 0.030 - ROUNDING and abs(stream - between) <= WRAPPER_SLACK

    async def test_non_streaming_provider_has_null_init_latency(self) -> None:
        provider = Delayed(0.02)
        async with TelemetryPipeline() as pipeline:
            t_before = perf_counter()
            await pipeline.generate("t1", provider, "p")
            elapsed = perf_counter() - t_before
            pipeline.record_outcome("t1", "pass")
        telemetry = only_run(pipeline).telemetry
        assert telemetry is not None
        assert telemetry.init_latency is None
        total = seconds(telemetry.total_latency)
        assert 0.020 - ROUNDING <= provider.observed_s - ROUNDING <= total <= elapsed + ROUNDING

    async def test_single_burst_streaming_is_visible_as_one_chunk(self) -> None:
        async with TelemetryPipeline() as pipeline:
            await pipeline.generate("t1", Streaming([(0.01, "whole answer")]), "p")
        telemetry = only_run(pipeline).telemetry
        assert telemetry is not None and telemetry.chunk_count == 1
        assert telemetry.stream_duration == Decimal("0.000")

    async def test_blocking_provider_runs_in_a_thread_and_the_loop_keeps_ticking(self) -> None:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await anyio.sleep(0.005)
                ticks += 1

        async with TelemetryPipeline() as pipeline, anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            await pipeline.generate("t1", Blocking(0.2), "p")
            tg.cancel_scope.cancel()
        telemetry = only_run(pipeline).telemetry
        assert telemetry is not None and telemetry.init_latency is None
        assert seconds(telemetry.total_latency) >= 0.2
        assert ticks >= 10  # 40 possible in 0.2 s; a blocked loop would give 0 or 1


class TestFailures:
    @pytest.mark.parametrize("fail_after", [0, 2])
    async def test_failed_generation_still_reports_latency_and_memory(
        self, fail_after: int
    ) -> None:
        provider = Streaming([(0.01, "a"), (0.01, "b")], ConnectionError("reset"), fail_after)
        async with TelemetryPipeline() as pipeline:
            with pytest.raises(ConnectionError):
                await pipeline.generate("t1", provider, "p", Constraints(regex_required=("a",)))
            pipeline.record_outcome("t1", "error")
        run = only_run(pipeline)
        assert run.outcome == "error"
        assert run.error is not None and run.error.type == "ConnectionError"
        telemetry = run.telemetry
        assert telemetry is not None
        assert telemetry.total_latency is not None and telemetry.peak_memory_rss is not None
        assert telemetry.adherence_score is None
        assert telemetry.error_type == "ConnectionError"
        assert (telemetry.init_latency is None) == (fail_after == 0)

    async def test_cancelled_generation_still_emits_telemetry(self) -> None:
        async with TelemetryPipeline() as pipeline:
            with anyio.move_on_after(0.02):
                await pipeline.generate("t1", Delayed(5.0), "p")
        run = only_run(pipeline)
        assert run.outcome == "error"
        assert run.telemetry is not None
        assert 0.02 <= seconds(run.telemetry.total_latency) < 1.0
        assert run.telemetry.error_type in ("CancelledError", "Cancelled")

    async def test_a_stage_raising_on_every_event_is_isolated(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        def explode(event: object, output_cap: object = None) -> None:
            raise RuntimeError("boom")

        monkeypatch.setattr(latency, "measure", explode)
        report_path = tmp_path / "orket_report.json"
        async with TelemetryPipeline(report_path) as pipeline:
            for index in range(5):
                await pipeline.generate(f"t{index}", Instant(CODE), "p")
                pipeline.record_outcome(f"t{index}", "pass")
        report = json.loads(report_path.read_text())
        assert [run["test_id"] for run in report["test_runs"]] == [f"t{i}" for i in range(5)]
        for run in report["test_runs"]:
            assert run["outcome"] == "pass"
            assert run["telemetry"]["total_latency"] is None  # the broken stage's part
            assert run["telemetry"]["peak_memory_rss"] is not None
            assert run["telemetry"]["adherence_score"] == 1.0
        assert report["metadata"]["pipeline"]["stage_errors"] == {"latency": 5}

    async def test_provider_error_is_reraised_unchanged(self) -> None:
        error = ValueError("bad request")
        async with TelemetryPipeline() as pipeline:
            with pytest.raises(ValueError) as caught:
                await pipeline.generate("t1", Failing(error), "p")
        assert caught.value is error


class TestLifecycle:
    async def test_closed_pipeline_cannot_be_reopened_and_close_is_idempotent(self) -> None:
        pipeline = TelemetryPipeline()
        async with pipeline:
            pass
        await pipeline.aclose()
        with pytest.raises(PipelineClosedError):
            async with pipeline:
                pass
        with pytest.raises(PipelineClosedError):
            await pipeline.generate("t1", Instant(), "p")

    async def test_report_is_written_with_three_decimals_and_journal_removed(
        self, tmp_path: Path
    ) -> None:
        report_path = tmp_path / "orket_report.json"
        async with TelemetryPipeline(report_path, suite="demo") as pipeline:
            await pipeline.generate("t1", Instant(CODE), "p", Constraints(regex_required=("x",)))
            pipeline.record_outcome("t1", "fail", "expected 3, got 4")
        text = report_path.read_text()
        assert '"adherence_score":0.000' in text
        assert not list(tmp_path.glob("*.journal.jsonl"))
        run = only_run(pipeline)
        assert run.reason == "expected 3, got 4"
        assert pipeline.report.metadata.suite == "demo"

    async def test_runs_keep_registration_order_whatever_order_they_finish_in(self) -> None:
        ids = [f"t{i}" for i in range(20)]
        async with TelemetryPipeline() as pipeline, anyio.create_task_group() as tg:
            pipeline.register(ids)
            for index, test_id in enumerate(ids):
                tg.start_soon(pipeline.generate, test_id, Delayed(0.002 * (20 - index)), "p")
        assert [run.test_id for run in pipeline.report.test_runs] == ids

    async def test_record_outcome_rejects_unknown_outcomes(self) -> None:
        async with TelemetryPipeline() as pipeline:
            with pytest.raises(ValueError, match="outcome"):
                pipeline.record_outcome("t1", "skipped")

    async def test_outcome_without_generation_has_null_telemetry(self) -> None:
        async with TelemetryPipeline() as pipeline:
            pipeline.record_outcome("t1", "fail", "gate crashed")
        run = only_run(pipeline)
        assert run.outcome == "fail" and run.telemetry is None


class TestLoad:
    async def test_ten_thousand_concurrent_generations_lose_nothing(self) -> None:
        count = 10_000
        async with TelemetryPipeline() as pipeline, anyio.create_task_group() as tg:

            async def one(index: int) -> None:
                await pipeline.generate(f"t{index}", Delayed(0.001, CODE), "p")
                pipeline.record_outcome(f"t{index}", "pass")

            for index in range(count):
                tg.start_soon(one, index)
        runs = pipeline.report.test_runs
        assert len(runs) == count
        assert all(run.telemetry and run.telemetry.total_latency is not None for run in runs)
        statistics = pipeline.report.metadata.pipeline
        assert statistics is not None
        assert statistics.events_dropped == 0 and statistics.stage_errors == {}
        assert statistics.events_published == count * 2  # each run's end and its outcome


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


@pytest.mark.anyio
async def test_an_exception_that_cannot_be_printed_is_still_reraised_unchanged() -> None:
    error = Unprintable()
    async with TelemetryPipeline() as pipeline:
        with pytest.raises(Unprintable):
            await pipeline.generate("t1", Failing(error), "p")
    run = only_run(pipeline)
    assert run.error is not None and run.error.message == "<unprintable Unprintable>"


@pytest.mark.anyio
async def test_cancelling_the_engine_still_drains_stages_and_writes_the_report(
    tmp_path: Path,
) -> None:
    report_path = tmp_path / "orket_report.json"
    pipeline = TelemetryPipeline(report_path)

    class CancelsItsEngine:
        """Cancels the engine's scope once it is generating, then hangs."""

        supports_streaming = False

        async def generate(self, prompt: str) -> str:
            scope.cancel()
            await anyio.sleep(10.0)
            return "never"

    with anyio.CancelScope() as scope:
        async with pipeline:
            await pipeline.generate("done", Instant(CODE), "p")
            pipeline.record_outcome("done", "pass")
            await pipeline.generate("hung", CancelsItsEngine(), "p")
    runs = {run.test_id: run for run in pipeline.report.test_runs}
    assert runs["done"].outcome == "pass"
    assert runs["done"].telemetry is not None
    assert runs["done"].telemetry.adherence_score is not None
    assert runs["hung"].outcome == "error"
    assert runs["hung"].telemetry is not None
    assert runs["hung"].telemetry.total_latency is not None
    assert json.loads(report_path.read_text())["test_runs"][1]["outcome"] == "error"


@pytest.mark.anyio
async def test_a_run_still_generating_when_the_pipeline_closes_is_an_error_not_a_pass() -> None:
    provider = Gated()
    async with anyio.create_task_group() as tg:
        async with TelemetryPipeline() as pipeline:
            tg.start_soon(pipeline.generate, "slow", provider, "p")
            await provider.entered.wait()
            pipeline.record_outcome("other", "pass")
        provider.release.set()
    (slow, other) = pipeline.report.test_runs
    assert (slow.test_id, slow.outcome, slow.reason) == (
        "slow",
        "error",
        "generation did not finish",
    )
    assert other.outcome == "pass"
    # "slow" finished after the close: its end was counted as late, not lost silently.
    assert pipeline.statistics().late_events == 1


class OutcomeOnly:
    supports_streaming = False

    async def generate(self, prompt: str) -> str:
        return "def f():\n    return 1\n"


@pytest.mark.anyio
async def test_a_zero_drain_deadline_loses_no_outcome_and_does_not_hang() -> None:
    pipeline = TelemetryPipeline(drain_timeout=0.0)
    with anyio.fail_after(10):
        async with pipeline:
            for index in range(300):
                await pipeline.generate(f"t{index}", OutcomeOnly(), "p")
                pipeline.record_outcome(f"t{index}", "fail", "assertion failed")
    runs = pipeline.report.test_runs
    assert len(runs) == 300
    # Events the stopped stages left queued were handled at close: no "fail" became "pass".
    assert {(run.outcome, run.reason) for run in runs} == {("fail", "assertion failed")}


@pytest.mark.anyio
async def test_a_failed_enter_leaves_nothing_open(tmp_path: Path) -> None:
    pipeline = TelemetryPipeline(tmp_path / "r.json", memory_pid=2**22 + 12345, memory_method="hwm")
    with pytest.raises(OSError):
        async with pipeline:
            pass
    assert list(tmp_path.iterdir()) == []  # the journal it had opened is gone
    with pytest.raises(PipelineClosedError):
        await pipeline.generate("t", OutcomeOnly(), "p")
    await pipeline.aclose()  # still idempotent


class TextSubclass(str):
    pass


class Odd:
    supports_streaming = False

    def __init__(self, output: object) -> None:
        self.output = output

    async def generate(self, prompt: str) -> object:
        return self.output


@pytest.mark.anyio
async def test_a_str_subclass_output_is_text_and_the_engine_gets_its_plain_str() -> None:
    output = TextSubclass("def f():\n    return 1\n")
    async with TelemetryPipeline() as pipeline:
        text = await pipeline.generate("t", Odd(output), "p")  # type: ignore[arg-type]
    assert type(text) is str and text == output
    telemetry = only_run(pipeline).telemetry
    assert telemetry is not None
    assert (telemetry.adherence_score, telemetry.output_chars) == (1, len(output))


class AsyncCallable:
    """`generate` is an object with an async __call__ (unhashable, not a function)."""

    __hash__ = None  # type: ignore[assignment]

    async def __call__(self, prompt: str) -> str:
        return "x = 1\n"


class CallableProvider:
    supports_streaming = False

    def __init__(self) -> None:
        self.generate = AsyncCallable()


@pytest.mark.anyio
async def test_an_unhashable_async_callable_generate_is_awaited_not_run_in_a_thread() -> None:
    async with TelemetryPipeline() as pipeline:
        text = await pipeline.generate("t", CallableProvider(), "p")  # type: ignore[arg-type]
    assert text == "x = 1\n"
    assert only_run(pipeline).outcome == "pass"


@pytest.mark.anyio
async def test_a_plain_def_provider_is_timed_in_its_thread_not_while_queued_for_one() -> None:
    limiter = anyio.to_thread.current_default_thread_limiter()
    tokens, limiter.total_tokens = limiter.total_tokens, 2
    try:
        async with TelemetryPipeline() as pipeline, anyio.create_task_group() as tg:
            for index in range(6):  # 3 waves of 2 threads, 0.1 s each
                tg.start_soon(pipeline.generate, f"t{index}", Blocking(0.1), "p")
    finally:
        limiter.total_tokens = tokens
    totals = [
        seconds(run.telemetry.total_latency) for run in pipeline.report.test_runs if run.telemetry
    ]
    assert len(totals) == 6 and max(totals) < 0.19


@pytest.mark.anyio
async def test_an_idle_pipeline_wakes_nothing_and_still_measures_the_loops_lag() -> None:
    async with TelemetryPipeline() as pipeline:
        await pipeline.generate("t", Delayed(0.02), "p")
        with anyio.fail_after(10):
            while not pipeline._probe.idle or pipeline._bus.busy:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        ticks = pipeline._scheduler.ticks
        # Elapsed time is the thing under test: idle for 20 schedule delays, nothing ticks.
        await anyio.sleep(0.1)
        assert pipeline._scheduler.ticks == ticks
    statistics = pipeline.report.metadata.pipeline
    assert statistics is not None and statistics.max_loop_lag is not None


class RichStream:
    """A reasoning model's stream: thinking first, then answer text, then the server's facts."""

    supports_streaming = True

    def __init__(self, gate: anyio.Event | None = None) -> None:
        self.gate = gate

    async def stream(self, prompt: str):  # type: ignore[no-untyped-def]
        yield Chunk(reasoning="let me think")
        await anyio.sleep(0.02)  # the answer starts measurably later than the thinking
        yield CODE[:20]
        yield Chunk(text=CODE[20:])
        yield Chunk(prompt_tokens=12, completion_tokens=9, reasoning_tokens=3)
        yield Chunk(server_prompt_s=0.001, server_generation_s=0.0015, attempts=2)


class TestSchema11:
    async def test_reasoning_tokens_server_facts_checks_and_output_reach_the_report(
        self,
    ) -> None:
        rules = Constraints(regex_required=("return a",), regex_forbidden=(r"\bimport\b",))
        async with TelemetryPipeline() as pipeline:
            text = await pipeline.generate("t1", RichStream(), "p", constraints=rules)
            pipeline.record_outcome("t1", "pass")
        assert text == CODE  # reasoning is not part of the output
        run = only_run(pipeline)
        telemetry = run.telemetry
        assert telemetry is not None
        assert telemetry.init_latency is not None and telemetry.first_content_latency is not None
        assert telemetry.first_content_latency - telemetry.init_latency >= 0.02 - ROUNDING
        assert (telemetry.prompt_tokens, telemetry.completion_tokens) == (12, 9)
        assert telemetry.reasoning_tokens == 3
        assert telemetry.chunk_count == 3 and telemetry.inter_chunk_max is not None
        assert telemetry.server is not None and telemetry.server.generation_s == 0.002
        assert run.attempts == 2
        assert (run.output, run.output_truncated) == (CODE, False)
        assert run.checks is not None
        assert [check.passed for check in run.checks] == [True, True]
        assert pipeline.report.metadata.output_cap == 64 * 1024

    async def test_a_failed_check_says_which_and_why(self) -> None:
        rules = Constraints(regex_required=("return b",))
        async with TelemetryPipeline() as pipeline:
            await pipeline.generate("t1", Instant(CODE), "p", constraints=rules)
            pipeline.record_outcome("t1", "fail")
        (check,) = only_run(pipeline).checks or []
        assert not check.passed and "return b" in check.check and check.detail

    async def test_a_failed_generation_has_no_checks_and_no_output(self) -> None:
        async with TelemetryPipeline() as pipeline:
            with pytest.raises(RuntimeError):
                await pipeline.generate("t1", Failing(RuntimeError("down")), "p")
            pipeline.record_outcome("t1", "error")
        run = only_run(pipeline)
        assert (run.checks, run.output) == (None, None)

    async def test_max_in_flight_counts_generations_that_were_really_concurrent(self) -> None:
        async with TelemetryPipeline() as pipeline:
            async with anyio.create_task_group() as group:
                for index in range(3):
                    group.start_soon(pipeline.generate, f"t{index}", Delayed(0.05, "x"), "p")
            await pipeline.generate("t9", Instant("x"), "p")
        assert pipeline.report.metadata.max_in_flight == 3

    async def test_given_metadata_is_kept_and_no_output_cap_keeps_no_output(self) -> None:
        given = Metadata(model="m", concurrency=4, options=GenerationOptions(seed=1))
        async with TelemetryPipeline(metadata=given, output_cap=None) as pipeline:
            await pipeline.generate("t1", Instant(CODE), "p")
        metadata = pipeline.report.metadata
        assert (metadata.model, metadata.concurrency, metadata.output_cap) == ("m", 4, None)
        assert metadata.options == GenerationOptions(seed=1)
        assert metadata.python is not None  # the pipeline's own fields are still its own
        assert only_run(pipeline).output is None


async def test_a_test_id_generated_twice_is_warned_about_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with TelemetryPipeline() as pipeline:
        for _ in range(3):
            await pipeline.generate("same", Instant(CODE), "p")
        await pipeline.generate("other", Instant(CODE), "p")
    warnings = [r for r in caplog.records if "generated twice" in r.getMessage()]
    assert len(warnings) == 1 and "'same'" in warnings[0].getMessage()


@pytest.mark.parametrize(
    "argument",
    [
        {"schedule_delay": -1.0},
        {"schedule_delay": float("nan")},
        {"drain_timeout": float("nan")},
        {"drain_timeout": -1.0},
        {"memory_interval": float("nan")},
        {"memory_interval": float("inf")},
    ],
)
def test_a_delay_that_is_not_a_number_of_seconds_is_refused_at_construction(
    argument: dict[str, float],
) -> None:
    # Accepted, a negative or NaN delay raised out of the scheduler into the engine's task
    # group, a NaN drain deadline hung the close (shielded: no outer timeout could end it),
    # and an infinite sampling interval killed the sampler thread.
    (name,) = argument
    with pytest.raises(ValueError, match=name.rsplit("_", 1)[-1]):
        TelemetryPipeline(**argument)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "argument",
    [
        {"inbox_capacity": 0},
        {"inbox_capacity": -5},
        {"inbox_capacity": 2.5},
        {"fill_mark": 0},
        {"fill_mark": True},
    ],
)
def test_a_capacity_that_is_not_a_count_of_events_is_refused_at_construction(
    argument: dict[str, object],
) -> None:
    # Accepted, a capacity of 0 dropped every event (counted, but the report was empty).
    (name,) = argument
    with pytest.raises(ValueError, match=name):
        TelemetryPipeline(**argument)  # type: ignore[arg-type]


class Collected:
    """A journal that keeps what it was handed (as `journal_to` takes one)."""

    def __init__(self) -> None:
        self.runs: list[TestRun] = []

    def append_many(self, entries: list[tuple[int, TestRun]]) -> None:
        self.runs.extend(run for _, run in entries)


async def test_a_journal_given_before_the_pipeline_opens_is_not_replaced_by_the_file(
    tmp_path: Path,
) -> None:
    # `journal_to` hands the runs to the caller's journal "instead of the journal file":
    # given before `async with`, opening the pipeline must not put the file back in its place.
    journal = Collected()
    pipeline = TelemetryPipeline(tmp_path / "orket_report.json")
    pipeline.journal_to(journal)  # type: ignore[arg-type]
    async with pipeline:
        await pipeline.generate("t1", Instant(CODE), "p")
        pipeline.record_outcome("t1", "pass")
    assert [run.test_id for run in journal.runs] == ["t1"]
    assert [run.test_id for run in pipeline.report.test_runs] == ["t1"]
