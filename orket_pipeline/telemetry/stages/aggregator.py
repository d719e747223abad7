"""ReportAggregator: joins each run's parts, keeps registration order, journals finished runs."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ...report._model import RunError, Telemetry, TestRun
from ...report._rounding import round3, round3_or_none
from .._events import Event, GenerationStarted, OutcomeRecorded
from ._base import Stage, StageErrors

if TYPE_CHECKING:
    from ...report._journal import JournalWriter
    from .latency import LatencyPart

__all__ = ["ReportAggregator"]

logger = logging.getLogger("orket_pipeline")

_MIB = 1024 * 1024


class _Run:
    """One run's parts as they arrive from the stages, in any order."""

    __slots__ = (
        "adherence",
        "generated",
        "latency",
        "order",
        "outcome",
        "parts",
        "peak",
        "reason",
        "result",
        "run_error",
    )

    def __init__(self, order: int | None) -> None:
        self.order = order
        self.generated = False
        self.parts = 0  # how many of latency, peak and adherence have arrived
        self.latency: LatencyPart | None = None
        self.peak: int | None = None
        self.adherence: float | None = None
        self.outcome: str | None = None
        self.reason: str | None = None
        self.run_error: RunError | None = None
        self.result: TestRun | None = None

    def complete(self) -> bool:
        if self.outcome is None:
            return False
        return not self.generated or self.parts >= 3


class ReportAggregator(Stage):
    """Collects GenerationStarted (registration) and OutcomeRecorded from the bus and the
    other stages' measurements by direct call (`latency_measured`, `memory_measured`,
    `adherence_scored`); each run whose parts are all in becomes a `TestRun`, appended to the
    journal at the end of the slice. `test_runs()` lists them in registration order.
    """

    name = "aggregator"
    event_types = (GenerationStarted, OutcomeRecorded)

    def __init__(self, errors: StageErrors, journal: JournalWriter | None = None) -> None:
        super().__init__(errors)
        self._runs: dict[str, _Run] = {}
        self._next_order = 0
        self._warned_duplicate = False
        self._unjournaled: list[tuple[int, TestRun]] = []
        self._journal = journal
        self.journal_errors = 0

    def set_journal(self, journal: JournalWriter) -> None:
        """Journal finished runs to `journal` from now on."""
        self._journal = journal

    def register(self, test_ids: Iterable[str]) -> None:
        """Fix the order of these runs in the report (suite order). Never blocks."""
        for test_id in test_ids:
            self._registered(test_id)

    def handle(self, event: Event) -> None:
        """Register a generation, or record an outcome."""
        if type(event) is GenerationStarted:
            run = self._registered(event.test_id)
            if run.generated and not self._warned_duplicate:
                self._warned_duplicate = True
                logger.warning(
                    "orket-pipeline: test id %r was generated twice; test ids must be unique "
                    "within a pipeline, or a run's telemetry may mix its attempts",
                    event.test_id,
                )
            run.generated = True
        elif type(event) is OutcomeRecorded:
            run = self._registered(event.test_id)
            run.outcome, run.reason, run.run_error = event.outcome, event.reason, event.error
            self._check(event.test_id, run)

    def latency_measured(self, test_id: str, part: LatencyPart) -> None:
        """The LatencyTracker's part of a run. Never raises."""
        run = self._run(test_id)
        run.latency = part
        run.parts += 1
        self._check(test_id, run)

    def memory_measured(self, test_id: str, peak_bytes: int | None) -> None:
        """The MemorySampler's part of a run. Never raises."""
        run = self._run(test_id)
        run.peak = peak_bytes
        run.parts += 1
        self._check(test_id, run)

    def adherence_scored(self, test_id: str, score: float | None) -> None:
        """The ConstraintStage's part of a run. Never raises."""
        run = self._run(test_id)
        run.adherence = score
        run.parts += 1
        self._check(test_id, run)

    async def after_batch(self) -> None:
        """Append the runs finished since the last slice to the journal, in one write."""
        if not self._unjournaled:
            return
        entries, self._unjournaled = self._unjournaled, []
        if self._journal is None:
            return
        try:
            self._journal.append_many(entries)
        except OSError as exc:
            self.journal_errors += 1
            if self.journal_errors == 1:
                logger.error("orket-pipeline: journal write failed, runs go on: %s", exc)

    async def finish(self) -> None:
        """Build every run still incomplete from the parts that did arrive, then journal."""
        self.finished = True
        for test_id, run in self._runs.items():
            if run.result is None and (run.generated or run.parts or run.outcome is not None):
                self._finalise(test_id, run)
        await self.after_batch()

    def test_runs(self) -> list[TestRun]:
        """Finished runs in registration order."""
        # Every finished run has its order (`_finalise` gives one, last, to a run whose start
        # was never seen); records are created in any order, so sort by it.
        finished = [run for run in self._runs.values() if run.result is not None]
        finished.sort(key=lambda run: run.order if run.order is not None else -1)
        return [run.result for run in finished if run.result is not None]

    def _registered_late(self, run: _Run) -> None:
        # Gives a run its place in the report's order, once.
        if run.order is None:
            run.order = self._next_order
            self._next_order += 1

    def _run(self, test_id: str) -> _Run:
        # A stage's part may arrive before the aggregator has seen the run's start (stages
        # run in any order): such a record gets its place in the order when it is registered.
        run = self._runs.get(test_id)
        if run is None:
            run = self._runs[test_id] = _Run(None)
        return run

    def _registered(self, test_id: str) -> _Run:
        run = self._run(test_id)
        self._registered_late(run)
        return run

    def _check(self, test_id: str, run: _Run) -> None:
        if run.result is None and run.complete():
            self._finalise(test_id, run)
            if self.inbox is not None:
                self.inbox.wake()  # so the journal write happens soon, even with no new event

    def _finalise(self, test_id: str, run: _Run) -> None:
        latency = run.latency
        error = run.run_error
        telemetry = None
        if run.generated or run.parts:
            telemetry = _telemetry(latency, run.peak, run.adherence)
            if error is None and latency is not None and latency.error_type is not None:
                error = RunError(type=latency.error_type, message=latency.error_message or "")
        outcome, reason = run.outcome, run.reason
        if outcome is None:
            # The engine never decided. Only a generation that finished cleanly passes (as a
            # task with no gate does); one that failed, or never finished, is an error.
            if latency is None and (run.generated or run.parts):
                outcome, reason = "error", "generation did not finish"
            else:
                outcome = "error" if error is not None else "pass"
        test_run = TestRun(
            test_id=test_id, outcome=outcome, telemetry=telemetry, error=error, reason=reason
        )
        run.result = test_run
        self._registered_late(run)
        assert run.order is not None
        self._unjournaled.append((run.order, test_run))


def _telemetry(latency: LatencyPart | None, peak: int | None, adherence: float | None) -> Telemetry:
    telemetry = Telemetry(
        peak_memory_rss=None if peak is None else round3(peak / _MIB),
        adherence_score=round3_or_none(adherence),
    )
    if latency is not None:
        telemetry.init_latency = round3_or_none(latency.init_latency)
        telemetry.total_latency = round3(latency.total_latency)
        telemetry.stream_duration = round3_or_none(latency.stream_duration)
        telemetry.chunk_count = latency.chunk_count
        telemetry.output_chars = latency.output_chars
        telemetry.error_type = latency.error_type
    return telemetry
