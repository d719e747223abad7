"""ReportAggregator: a run is complete when its outcome and every wired part are in."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from orket_pipeline.report._model import RunError, TestRun
from orket_pipeline.telemetry._events import (
    AdherenceScored,
    Event,
    GenerationStarted,
    LatencyMeasured,
    MemoryMeasured,
    OutcomeRecorded,
)
from orket_pipeline.telemetry.stages import ReportAggregator, StageErrors

pytestmark = pytest.mark.anyio


class Journal:
    def __init__(self) -> None:
        self.writes: list[list[tuple[int, TestRun]]] = []

    def append_many(self, entries: Sequence[tuple[int, TestRun]]) -> None:
        self.writes.append(list(entries))


def latency(
    test_id: str, total: float = 0.0123456, error_type: str | None = None
) -> LatencyMeasured:
    return LatencyMeasured(
        test_id=test_id,
        init_latency=None,
        total_latency=total,
        stream_duration=None,
        chunk_count=1,
        output_chars=5,
        error_type=error_type,
        error_message="boom" if error_type else None,
    )


def started(test_id: str) -> GenerationStarted:
    return GenerationStarted(test_id=test_id, t_perf=1.0, streaming=False)


def outcome(test_id: str, verdict: str = "pass", error: RunError | None = None) -> OutcomeRecorded:
    return OutcomeRecorded(test_id=test_id, outcome=verdict, error=error)


def aggregator(parts: int, journal: Journal | None = None) -> ReportAggregator:
    stage = ReportAggregator(StageErrors(), journal)  # type: ignore[arg-type]
    stage.expect(parts)
    return stage


async def reported(stage: ReportAggregator) -> list[TestRun]:
    """The report's runs, as the pipeline reads them: once the stage has finished."""
    await stage.finish()
    return stage.test_runs()


async def feed(stage: ReportAggregator, *events: Event) -> None:
    for event in events:
        stage.handle(event)
    await stage.after_batch()


async def test_a_generated_run_waits_for_every_expected_part_then_is_journaled() -> None:
    journal = Journal()
    stage = aggregator(2, journal)
    await feed(stage, started("t"), outcome("t"), latency("t"))
    assert journal.writes == []  # one part of two: not complete
    await feed(stage, MemoryMeasured(test_id="t", peak_rss_bytes=3 * 1024 * 1024))
    ((order, run),) = journal.writes[0]
    assert (order, run.test_id, run.outcome) == (0, "t", "pass")
    assert run.telemetry is not None
    assert float(run.telemetry.total_latency or 0) == 0.012  # rounded once, when reported
    assert run.telemetry.peak_memory_rss == 3


async def test_the_number_of_parts_follows_the_wiring_not_a_constant() -> None:
    journal = Journal()
    stage = aggregator(1, journal)
    await feed(stage, started("t"), latency("t"), outcome("t"))
    assert len(journal.writes) == 1


async def test_an_outcome_without_a_generation_completes_at_once_with_no_telemetry() -> None:
    journal = Journal()
    stage = aggregator(3, journal)
    await feed(stage, outcome("t", "fail"))
    ((_, run),) = journal.writes[0]
    assert (run.outcome, run.telemetry) == ("fail", None)


async def test_parts_may_arrive_before_the_start_and_runs_keep_registration_order() -> None:
    stage = aggregator(1)
    stage.register(["a", "b"])
    await feed(stage, latency("b"), started("b"), outcome("b"), started("a"))
    await feed(stage, AdherenceScored(test_id="a", score=1.0), outcome("a"))
    assert [run.test_id for run in (await reported(stage))] == ["a", "b"]


async def test_the_engines_error_type_is_the_one_truth_for_telemetry_too() -> None:
    stage = aggregator(1)
    timeout = RunError(type="TimeoutError", message="generation timed out after 1 s")
    await feed(stage, started("t"), latency("t", error_type="CancelledError"))
    await feed(stage, outcome("t", "error", timeout))
    (run,) = await reported(stage)
    assert run.error == timeout
    assert run.telemetry is not None and run.telemetry.error_type == "TimeoutError"


async def test_without_the_engines_account_the_wrappers_error_is_reported() -> None:
    stage = aggregator(1)
    await feed(stage, started("t"), latency("t", error_type="ConnectionError"))
    await stage.finish()
    (run,) = await reported(stage)
    assert run.outcome == "error" and run.error == RunError(type="ConnectionError", message="boom")


async def test_at_finish_a_run_still_generating_is_an_error_and_an_unstarted_one_is_left_out() -> (
    None
):
    stage = aggregator(3)
    stage.register(["never", "slow"])
    await feed(stage, started("slow"))
    await stage.finish()
    (run,) = await reported(stage)
    assert (run.test_id, run.outcome, run.reason) == ("slow", "error", "generation did not finish")


async def test_a_journal_that_fails_is_counted_and_the_runs_go_on() -> None:
    class Full:
        def append_many(self, entries: object) -> None:
            raise OSError(28, "No space left on device")

    stage = aggregator(0, Full())  # type: ignore[arg-type]
    await feed(stage, outcome("a"))
    await feed(stage, outcome("b"))
    assert stage.journal_errors == 2
    assert [run.test_id for run in (await reported(stage))] == ["a", "b"]


async def test_an_aggregator_that_failed_reports_registered_runs_as_errors_not_passes() -> None:
    stage = aggregator(0)
    stage.register(["a"])
    stage.errors.record(stage.name, RuntimeError("lost an event"))
    await stage.finish()
    (run,) = await reported(stage)
    assert run.outcome == "error" and run.reason is not None and "aggregator failed" in run.reason


@pytest.mark.parametrize("init", [None, 0.0104999])
@pytest.mark.parametrize("peak", [None, 3 * 1024 * 1024 + 1])
@pytest.mark.parametrize("score", [None, 1.0, 0.6666])
@pytest.mark.parametrize("error", [None, RunError(type="TimeoutError", message="slow")])
async def test_a_plain_runs_quick_build_is_the_general_build(
    init: float | None, peak: int | None, score: float | None, error: RunError | None
) -> None:
    runs = []
    for plain in (True, False):
        stage = aggregator(3)
        part = LatencyMeasured(
            test_id="t",
            init_latency=init,
            total_latency=0.0125,
            stream_duration=None if init is None else 0.0020005,
            chunk_count=2,
            output_chars=7,
            attempts=2,
            output="x = 1\n",
            output_truncated=False,
            plain=plain,
        )
        await feed(
            stage,
            part,
            MemoryMeasured(test_id="t", peak_rss_bytes=peak),
            AdherenceScored(test_id="t", score=score, checks=None if score is None else ()),
            outcome("t", "error" if error else "pass", error),
        )
        (run,) = await reported(stage)
        runs.append(run)
    assert runs[0] == runs[1]


async def test_a_journal_set_late_still_gets_the_runs_complete_before_it() -> None:
    stage = aggregator(1)
    await feed(stage, latency("early"), outcome("early"), latency("waiting"))
    journal = Journal()
    stage.set_journal(journal)  # type: ignore[arg-type]
    await feed(stage, outcome("waiting"))
    journaled = [run.test_id for write in journal.writes for _, run in write]
    assert journaled == ["early", "waiting"]
