"""ReportAggregator: joins each run's parts, keeps registration order, journals finished runs."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING

import msgspec

from ...report._model import CheckRecord, RunError, ServerTimings, Telemetry, TestRun
from ...report._rounding import round3, round3_or_none
from .._events import (
    AdherenceScored,
    Event,
    GenerationFinished,
    GenerationStarted,
    LatencyMeasured,
    MemoryMeasured,
    OutcomeRecorded,
)
from ._base import Stage, StageErrors

if TYPE_CHECKING:
    from ...report._journal import JournalWriter

__all__ = ["ReportAggregator"]

logger = logging.getLogger("orket_pipeline")

_MIB = 1024 * 1024
_LOST = "the report aggregator failed on this run's events (see pipeline.stage_errors)"


class _Run(msgspec.Struct, gc=False):
    """One run's parts as they arrive from the stages, in any order (a Struct: its defaults
    are set in C, once per run)."""

    order: int = 0  # its place in the report (`register`, else first seen)
    generated: bool = False
    parts: int = 0  # how many of the expected parts have arrived
    latency: LatencyMeasured | None = None
    peak: int | None = None
    adherence: float | None = None
    checks: tuple[CheckRecord, ...] | None = None
    outcome: str | None = None
    reason: str | None = None
    run_error: RunError | None = None
    complete: bool = False
    result: TestRun | None = None


class ReportAggregator(Stage):
    """Joins, per run, the engine's events (`GenerationFinished`: the run was generated;
    `OutcomeRecorded`; at close, `GenerationStarted` for a generation still in flight) and the
    parts the other stages emit on the bus. A run is complete when its outcome and every
    expected part are in; how many parts that is follows from the wiring (`expect`), not from a
    constant. With a journal, complete runs are journaled at the end of each batch (an outcome
    that comes a batch before its generation is journaled as a run with none; the report still
    gets what came later); without one, they are completed at `finish`. `test_runs()` lists the
    runs in registration order (`register`; else the order each run was first seen here).
    Values are rounded once per run, when it is reported (the journal line or the report),
    never per event.
    """

    name = "aggregator"
    event_types = (
        GenerationStarted,
        GenerationFinished,
        OutcomeRecorded,
        LatencyMeasured,
        MemoryMeasured,
        AdherenceScored,
    )

    def __init__(self, errors: StageErrors, journal: JournalWriter | None = None) -> None:
        super().__init__(errors)
        self._runs: dict[str, _Run] = {}
        self._expected = 0
        self._next_order = 0
        self._warned_duplicate = False
        self._unjournaled: list[tuple[str, _Run]] = []
        self._journal = journal
        self.journal_errors = 0

    def expect(self, parts: int) -> None:
        """Each generated run waits for `parts` parts (one per wired producing stage)."""
        self._expected = parts

    def set_journal(self, journal: JournalWriter) -> None:
        """Journal finished runs to `journal` from now on (and those complete already, at the
        end of the next batch)."""
        self._journal = journal
        for test_id, run in self._runs.items():
            if (
                not run.complete
                and run.outcome is not None
                and (run.parts >= self._expected or not run.generated)
            ):
                self._complete(test_id, run)

    def register(self, test_ids: Iterable[str]) -> None:
        """Fix the order of these runs in the report (suite order). Never blocks."""
        for test_id in test_ids:
            self._run(test_id)

    def handle(self, event: Event) -> None:
        """Record one part or engine event of a run; complete the run when all are in."""
        self.handle_batch([event])

    def handle_batch(self, events: list[Event]) -> None:
        """`handle` for a slice, in one loop (the per-run work of every run goes through
        here: kept inline). Each event's failure is counted; the others are still handled."""
        runs, expected = self._runs, self._expected
        # A run is complete once its outcome and parts are in; that matters only to a journal
        # (it gets the run at the end of this batch): without one, `finish` completes them all.
        completing = self._journal is not None
        for event in events:
            try:
                kind = type(event)
                test_id = event.test_id
                run = runs.get(test_id)
                if run is None:
                    run = runs[test_id] = _Run(order=self._next_order)
                    self._next_order += 1
                if kind is GenerationFinished:
                    # Generated: its outcome alone does not complete it, its parts must come.
                    # Recorded with or without a journal: it places the run (first seen), and
                    # a journal set later (`set_journal`) must know the parts are to come.
                    run.generated = True
                    run.result = None  # journaled already (its outcome came first): rebuilt
                    continue
                if kind is LatencyMeasured:
                    if run.latency is not None:  # one per generation: a second generation
                        self._generated_twice(test_id)
                    run.latency = event  # type: ignore[assignment]
                    run.parts += 1
                elif kind is OutcomeRecorded:
                    run.outcome, run.reason = event.outcome, event.reason  # type: ignore[union-attr]
                    run.run_error = event.error  # type: ignore[union-attr]
                elif kind is MemoryMeasured:
                    run.peak = event.peak_rss_bytes  # type: ignore[union-attr]
                    run.parts += 1
                elif kind is AdherenceScored:
                    run.adherence = event.score  # type: ignore[union-attr]
                    run.checks = event.checks  # type: ignore[union-attr]
                    run.parts += 1
                elif kind is GenerationStarted:
                    run.generated = True  # still in flight at close: it never finished
                    run.result = None
                    continue
                if completing:
                    if run.complete:
                        # More came after the run was journaled (its outcome came a batch
                        # before its generation): the journal line stays, the report has all.
                        run.result = None
                    elif run.outcome is not None and (run.parts >= expected or not run.generated):
                        self._complete(test_id, run)
            except Exception as exc:
                self.errors.record(self.name, exc)

    async def after_batch(self) -> None:
        """Append the runs completed in this batch to the journal, in one write."""
        if not self._unjournaled:
            return
        completed, self._unjournaled = self._unjournaled, []
        journal = self._journal
        if journal is None:
            return  # built when the report is, in `test_runs()`
        entries = []
        for test_id, run in completed:
            entries.append((run.order, self._result(test_id, run)))
        try:
            journal.append_many(entries)
        except OSError as exc:
            self.journal_errors += 1
            if self.journal_errors == 1:
                logger.error("orket-pipeline: journal write failed, runs go on: %s", exc)

    async def finish(self) -> None:
        """Complete every run still waiting with the parts that did arrive, then journal.

        A registered run of which nothing arrived is left out (it never ran), unless this stage
        failed to handle events: then it may have run, and it is reported as an error rather
        than lost.
        """
        failed = self.errors.counts.get(self.name, 0) > 0
        journal = self._journal  # `_complete`, inline: once for every run
        for test_id, run in self._runs.items():
            if run.complete:
                continue
            if not (run.generated or run.parts or run.outcome is not None):
                if not failed:
                    continue
                run.outcome, run.reason = "error", _LOST
            run.complete = True
            if journal is not None:
                self._unjournaled.append((test_id, run))
        await self.after_batch()

    def test_runs(self) -> list[TestRun]:
        """Completed runs in registration order."""
        # A run gets its place when its record is made (`register`, or the first event seen
        # for it), and records are kept in a dict in the order they were made: the dict's
        # order is the report's, no sort needed.
        build, rows = self._build, []
        for test_id, run in self._runs.items():
            if run.complete:
                result = run.result
                if result is None:
                    result = run.result = build(test_id, run)
                rows.append(result)
        return rows

    def _run(self, test_id: str) -> _Run:
        run = self._runs.get(test_id)
        if run is None:
            run = self._runs[test_id] = _Run(order=self._next_order)
            self._next_order += 1
        return run

    def _generated_twice(self, test_id: str) -> None:
        if not self._warned_duplicate:
            self._warned_duplicate = True
            logger.warning(
                "orket-pipeline: test id %r was generated twice; test ids must be unique "
                "within a pipeline, or a run's telemetry may mix its attempts",
                test_id,
            )

    def _complete(self, test_id: str, run: _Run) -> None:
        run.complete = True
        if self._journal is not None:  # without one, the report builds it (`test_runs`)
            self._unjournaled.append((test_id, run))

    def _result(self, test_id: str, run: _Run) -> TestRun:
        if run.result is None:
            run.result = self._build(test_id, run)
        return run.result

    def _build(self, test_id: str, run: _Run) -> TestRun:
        latency = run.latency
        outcome = run.outcome
        if latency is not None and outcome is not None and latency.error_type is None:
            # The usual run (generated cleanly and decided): the same record as
            # `_build_any` makes, in one go.
            # `_telemetry`, inline: this runs once for every run of the report.
            init, stream, peak, adherence = (
                latency.init_latency,
                latency.stream_duration,
                run.peak,
                run.adherence,
            )
            telemetry = Telemetry(
                init_latency=None if init is None else round3(init),
                total_latency=round3(latency.total_latency),
                peak_memory_rss=None if peak is None else _peak_mib(peak),
                adherence_score=None if adherence is None else _score(adherence),
                chunk_count=latency.chunk_count,
                output_chars=latency.output_chars,
                stream_duration=None if stream is None else round3(stream),
            )
            if not latency.plain:
                _extras(telemetry, latency)
            checks = run.checks
            return TestRun(
                test_id=test_id,
                outcome=outcome,
                telemetry=telemetry,
                error=run.run_error,
                reason=run.reason,
                checks=None if checks is None else [*checks],
                output=latency.output,
                output_truncated=latency.output_truncated,
                attempts=latency.attempts,
            )
        return self._build_any(test_id, run)

    def _build_any(self, test_id: str, run: _Run) -> TestRun:
        latency = run.latency
        error = run.run_error
        telemetry = None
        if run.generated or run.parts:
            telemetry = self._telemetry(latency, run.peak, run.adherence)
            if latency is not None and latency.error_type is not None:
                if error is None:
                    error = RunError(type=latency.error_type, message=latency.error_message or "")
                # One truth: where the engine named the error (a timeout is a cancellation
                # inside the wrapper, a TimeoutError to the engine), telemetry says the same.
                telemetry.error_type = error.type
        outcome, reason = run.outcome, run.reason
        if outcome is None:
            # The engine never decided. Only a generation that finished cleanly passes (as a
            # task with no gate does); one that failed, or never finished, is an error.
            if latency is None and (run.generated or run.parts):
                outcome, reason = "error", "generation did not finish"
            else:
                outcome = "error" if error is not None else "pass"
        result = TestRun(
            test_id=test_id, outcome=outcome, telemetry=telemetry, error=error, reason=reason
        )
        if run.checks is not None:
            result.checks = list(run.checks)
        if latency is not None:
            result.output, result.output_truncated = latency.output, latency.output_truncated
            result.attempts = latency.attempts
        return result

    def _telemetry(
        self,
        latency: LatencyMeasured | None,
        peak: int | None,
        adherence: float | None,
    ) -> Telemetry:
        peak_mib = None if peak is None else _peak_mib(peak)
        score = None if adherence is None else _score(adherence)
        if latency is None:
            return Telemetry(peak_memory_rss=peak_mib, adherence_score=score)
        init, stream = latency.init_latency, latency.stream_duration
        telemetry = Telemetry(
            init_latency=None if init is None else round3(init),
            total_latency=round3(latency.total_latency),
            peak_memory_rss=peak_mib,
            adherence_score=score,
            chunk_count=latency.chunk_count,
            output_chars=latency.output_chars,
            stream_duration=None if stream is None else round3(stream),
            error_type=latency.error_type,
        )
        if not latency.plain:  # `plain`: none of schema 1.1's extras, nothing more to look at
            _extras(telemetry, latency)
        return telemetry


def _extras(telemetry: Telemetry, latency: LatencyMeasured) -> None:
    """The telemetry schema 1.1 added: tokens, chunk gaps, the server's timings (each left at
    its default, None, when the part has none: most streams have gaps and nothing else)."""
    if latency.first_content_latency is not None:
        telemetry.first_content_latency = round3(latency.first_content_latency)
    if latency.inter_chunk_p50 is not None:
        telemetry.inter_chunk_p50 = round3(latency.inter_chunk_p50)
    if latency.inter_chunk_max is not None:
        telemetry.inter_chunk_max = round3(latency.inter_chunk_max)
    if latency.completion_tokens is not None or latency.prompt_tokens is not None:
        telemetry.prompt_tokens = latency.prompt_tokens
        telemetry.completion_tokens = latency.completion_tokens
        telemetry.reasoning_tokens = latency.reasoning_tokens
        telemetry.time_per_output_token = round3_or_none(latency.time_per_output_token)
    else:
        telemetry.reasoning_tokens = latency.reasoning_tokens
    server = latency.server
    if server is not None:
        telemetry.server = ServerTimings(
            prompt_s=round3_or_none(server.prompt_s),
            generation_s=round3_or_none(server.generation_s),
            load_s=round3_or_none(server.load_s),
        )


# Peaks are whole kibibytes and scores a few fractions: most repeat from run to run, so their
# rounding is remembered (bounded) rather than done again.
_peak_mib = lru_cache(maxsize=4096)(lambda peak: round3(peak / _MIB))
_score = lru_cache(maxsize=4096)(round3)
