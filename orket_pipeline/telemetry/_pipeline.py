"""TelemetryPipeline: the bus, the stages' task group, and the report at close.

It inherits the generation wrapper (`_wrapper.GenerationWrapper.generate`), the only code on the
engine's path; all other work happens in the stages, each in its own task of the pipeline's
task group, woken in batches by the scheduler (one more task, with the pipeline's only timer).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import msgspec

from .._exceptions import PipelineClosedError
from ..report._model import Metadata, PipelineStatistics, Report, current_metadata
from ..report._rounding import round3
from ._bus import EventBus, Scheduler
from ._lag import LagMonitor
from ._memory_probe import MemoryProbe
from ._wrapper import GenerationWrapper, State
from .stages import (
    ConstraintStage,
    LatencyTracker,
    MemorySampler,
    ReportAggregator,
    Stage,
    StageErrors,
)
from .stages._base import drain_order
from .stages.latency import DEFAULT_OUTPUT_CAP
from .stages.memory import NONE_OPEN

if TYPE_CHECKING:
    from ..report._journal import JournalWriter
    from .stages.otel import OtelExport

__all__ = ["TelemetryPipeline"]


class TelemetryPipeline(GenerationWrapper):
    """Telemetry for every generation, without blocking or changing the engine.

    Use it as an async context manager; it owns the stages' task group. On exit every stage
    drains under one shared deadline, then the report is built and, with `report_path`,
    written atomically. A closed pipeline cannot be reopened.

    Args:
        report_path: where to write `orket_report.json` on exit (None: keep it in memory).
        journal_path: where to journal finished runs (kept). By default, with `report_path`,
            the journal sits beside the report and is removed once the report is written.
        suite: suite name for the report metadata.
        provider: provider description for the report metadata.
        memory_pid: process whose peak RSS is measured (default: this one).
        sandbox: the sandbox that runs the gates (`"bwrap"`, `"process"`), for the metadata.
        memory_method: ``"auto"``, ``"hwm"`` or ``"poll"`` (see `MemoryProbe`).
        memory_interval: seconds between memory samples while a generation runs.
        drain_timeout: the shared deadline, in seconds, for draining every stage on exit.
        inbox_capacity: events each stage may have queued before new ones are dropped
            (and counted); the bus's queue, shared until each batch routes it, holds as many
            as all the stages' inboxes.
        schedule_delay: seconds from the first event of a batch to the stages' wake-up; an
            inbox reaching `fill_mark` events wakes them sooner.
        fill_mark: queued events at which an inbox wakes the stages before the delay.
        otel: export a GenAI span per generation and the client metrics (`stages.otel`):
            True for OTLP/HTTP as the ``OTEL_*`` variables say, or an `OtelExport` with your
            own TracerProvider/MeterProvider. Raises `InputError` when the `otel` extra is
            not installed.
        suite_digest: a hash of the suite's tasks, for the metadata (see `Metadata`).
        output_cap: bytes of each run's output the report keeps (default 64 KiB); None
            keeps no output.
        metadata: more report metadata (`model`, `options`, `executor`, `concurrency`,
            `memory_pid_source`...): its fields that are set are kept; the pipeline fills in
            the interpreter, platform, its statistics, `max_in_flight` and `output_cap`.

    Raises:
        ValueError: `schedule_delay` or `drain_timeout` negative or NaN, `memory_interval`
            not a positive finite number, `inbox_capacity` or `fill_mark` not an int >= 1,
            or an unknown `memory_method`.
    """

    def __init__(
        self,
        report_path: str | os.PathLike[str] | None = None,
        *,
        journal_path: str | os.PathLike[str] | None = None,
        suite: str | None = None,
        provider: str | None = None,
        memory_pid: int | None = None,
        memory_method: str = "auto",
        memory_interval: float = 0.005,
        drain_timeout: float = 30.0,
        inbox_capacity: int = 1 << 18,
        schedule_delay: float = 0.005,
        fill_mark: int = 1024,
        sandbox: str | None = None,
        otel: bool | OtelExport = False,
        suite_digest: str | None = None,
        output_cap: int | None = DEFAULT_OUTPUT_CAP,
        metadata: Metadata | None = None,
    ) -> None:
        for name, seconds in (("schedule_delay", schedule_delay), ("drain_timeout", drain_timeout)):
            if not seconds >= 0:  # NaN too: it broke the scheduler's sleep or hung the close
                raise ValueError(f"{name} must be a number of seconds >= 0, not {seconds!r}")
        for name, count in (("inbox_capacity", inbox_capacity), ("fill_mark", fill_mark)):
            if type(count) is not int or count < 1:  # 0 dropped every event (counted)
                raise ValueError(f"{name} must be a whole number >= 1, not {count!r}")
        self.report_path = None if report_path is None else Path(report_path)
        self._keep_journal = journal_path is not None
        if journal_path is None and self.report_path is not None:
            journal_path = self.report_path.with_name(self.report_path.name + ".journal.jsonl")
        self.journal_path = None if journal_path is None else Path(journal_path)
        self._suite, self._provider, self._sandbox = suite, provider, sandbox
        self._suite_digest = suite_digest
        self._output_cap = output_cap
        self._metadata = metadata
        self._drain_timeout = drain_timeout
        self._state = State.NEW
        self._dispatched = {}
        self._report: Report | None = None
        self._errors = StageErrors()
        self._probe = MemoryProbe(memory_pid, memory_method, memory_interval)
        self._lag = LagMonitor()
        self._journal: JournalWriter | None = None
        self._journal_given = False  # `journal_to` was called: no journal file
        self._aggregator = ReportAggregator(self._errors)
        self._stages: tuple[Stage, ...] = (
            LatencyTracker(self._errors, output_cap),
            MemorySampler(self._errors, self._probe, self._oldest_open),
            ConstraintStage(self._errors),
            self._aggregator,
        )
        if otel is not False:
            from .stages.otel import OtelExporter

            export = None if otel is True else otel
            # The last export gets part of the drain's deadline, never all of it.
            flush = min(3.0, drain_timeout / 2)
            exporter = OtelExporter(self._errors, export, provider=provider, flush_timeout=flush)
            self._stages += (exporter,)
        # The wiring decides how many parts a run waits for, the drain order, and the room
        # each inbox needs: a stage fed parts by k others may hold k parts per engine event.
        self._drain_order = drain_order(self._stages)
        self._aggregator.expect(len(dict(self._drain_order)[self._aggregator]))
        # The queue every event waits in until the next batch holds as much as all the
        # stages' inboxes together: the same bound as one queue per stage.
        self._bus = EventBus(inbox_capacity * len(self._stages), fill_mark)
        self._publish = self._bus.publish
        for stage, feeders in self._drain_order:
            stage.attach(self._bus, inbox_capacity * (1 + len(feeders)))
        self._scheduler = Scheduler(self._bus, self._stages, schedule_delay, self._lag)
        self._task_group: Any = None
        self._stage_scopes: dict[Stage, anyio.CancelScope] = {}
        self._scheduler_scope: anyio.CancelScope | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> TelemetryPipeline:
        if self._state is not State.NEW:
            raise PipelineClosedError("a TelemetryPipeline can be entered only once")
        self._state = State.OPEN
        try:
            await self._open()
        except BaseException:
            # Nothing half-open: no journal left behind, no sampler running, no generate().
            self._state = State.CLOSED
            await self._undo_open()
            raise
        return self

    async def _open(self) -> None:
        if self.journal_path is not None and not self._journal_given:
            metadata = self._metadata_now(None)
            self._journal = await anyio.to_thread.run_sync(
                _open_journal, self.journal_path, metadata
            )
            self._aggregator.set_journal(self._journal)
        await anyio.to_thread.run_sync(self._probe.start)
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        for stage in self._stages:
            stage.prepare()
            # Created here, not in the task: the deadline must be able to cancel a stage
            # that has not started running yet.
            scope = self._stage_scopes[stage] = anyio.CancelScope(shield=True)
            task_group.start_soon(_shielded, stage.run, scope, name=f"orket-pipeline {stage.name}")
        # Shielded too, so the stages keep being woken while a cancelled engine unwinds.
        scope = self._scheduler_scope = anyio.CancelScope(shield=True)
        task_group.start_soon(
            _shielded, self._scheduler.run, scope, name="orket-pipeline scheduler"
        )

    async def _undo_open(self) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._probe.stop)
            journal = self._journal
            if journal is not None:
                journal.close()
                journal.remove()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        await self.aclose()
        return None

    async def aclose(self) -> None:
        """Drain every stage under one deadline, then build and write the report.

        Idempotent: the flag is set first, so a second call (or one racing the first)
        returns at once (before the report exists: read `report` after the first call ends).
        Blocks (awaits) about `drain_timeout` at most, plus what follows it: handling what the
        stages left queued (synchronous, quick), stopping the sampler thread (up to 2 s) and
        the write.
        """
        if self._state is not State.OPEN:
            self._state = State.CLOSED
            return
        self._state = State.CLOSED
        try:
            # Shielded: an engine being cancelled still gets every finished run reported.
            with anyio.CancelScope(shield=True):
                await self._drain()
                await anyio.to_thread.run_sync(self._probe.stop)
                await self._write()
        finally:
            # The task group was entered before the shield, so it is exited outside it, and
            # even when the write failed; every stage has ended, only the scheduler is left.
            if self._scheduler_scope is not None:
                self._scheduler_scope.cancel()
            if not all(stage.done is not None and stage.done.is_set() for stage in self._stages):
                self._task_group.cancel_scope.cancel()
            await self._task_group.__aexit__(None, None, None)

    async def _drain(self) -> None:
        """Close each stage once every stage feeding it has finished (the wiring's order),
        all under one deadline; past it, stop them in the same order, each handling what it
        still has queued (see `Stage.stop`)."""
        for started in self.unfinished():
            self._bus.publish(started)
        self._bus.close()
        with anyio.move_on_after(self._drain_timeout):
            for stage, feeders in self._drain_order:
                for feeder in feeders:
                    await _finished(feeder)
                stage.close_inbox()
            for stage, _ in self._drain_order:
                await _finished(stage)
        for stage, _ in self._drain_order:
            await stage.stop(self._stage_scopes[stage])

    async def _write(self) -> None:
        from ..report._io import write_report

        self._report = self._build_report()
        if self.report_path is not None:
            self._report = await anyio.to_thread.run_sync(
                write_report, self.report_path, self._report
            )
        journal = self._journal
        if journal is not None:
            journal.close()
            if not self._keep_journal and self.report_path is not None:
                journal.remove()

    # -- the engine's path ---------------------------------------------------------------------

    def journal_to(self, journal: JournalWriter) -> None:
        """Hand every run completed from now on to `journal` (`append_many` of (order, run)
        pairs, once per batch) instead of the journal file: a distributed worker's way to
        stream its finished runs to the driver. Never blocks; `journal`'s errors are counted
        as `journal_errors`. Called before the pipeline opens, no journal file is opened."""
        self._journal_given = True
        self._aggregator.set_journal(journal)

    def register(self, test_ids: Iterable[str]) -> None:
        """Fix the order of these runs in the report (suite order). Never blocks or raises."""
        self._aggregator.register(test_ids)

    def _oldest_open(self) -> float:
        # The dispatch stamp of the oldest generation in flight (dicts keep insertion order,
        # and a generation is added at dispatch); `inf` when none is. Never raises.
        return next(iter(self._dispatched.values()), NONE_OPEN)

    # -- results -------------------------------------------------------------------------------

    @property
    def report(self) -> Report:
        """The report, once the pipeline has closed. Raises `RuntimeError` before."""
        if self._report is None:
            raise RuntimeError("the report exists once the TelemetryPipeline has closed")
        return self._report

    def statistics(self) -> PipelineStatistics:
        """The pipeline's own counters so far. Never blocks or raises."""
        bus = self._bus.statistics()
        lag = self._lag.max_lag
        return PipelineStatistics(
            events_published=bus.published,
            events_dropped=bus.dropped,
            late_events=bus.late,
            stage_errors=dict(self._errors.counts),
            journal_errors=self._aggregator.journal_errors,
            max_loop_lag=None if lag is None else round3(lag),
            memory_method=self._probe.method,
            abandoned_events=sum(stage.abandoned for stage in self._stages),
        )

    def _build_report(self) -> Report:
        metadata = self._metadata_now(self.statistics())
        return Report(metadata=metadata, test_runs=self._aggregator.test_runs())

    def _metadata_now(self, statistics: PipelineStatistics | None) -> Metadata:
        metadata = current_metadata(
            suite=self._suite,
            provider=self._provider,
            pipeline=statistics,
            sandbox=self._sandbox,
            suite_digest=self._suite_digest,
        )
        given = self._metadata
        if given is not None:
            for field in msgspec.structs.fields(Metadata):
                value = getattr(given, field.name)
                if value is not None and field.name not in _OWN_METADATA:
                    setattr(metadata, field.name, value)
        metadata.output_cap = self._output_cap
        metadata.max_in_flight = self._max_in_flight if statistics is not None else None
        return metadata


# Metadata the pipeline always writes itself.
_OWN_METADATA = frozenset({"generator", "python", "platform", "units", "pipeline"})


def _open_journal(path: Path, metadata: Metadata) -> JournalWriter:
    from ..report._journal import JournalWriter

    writer = JournalWriter(path, metadata)
    writer.open()
    return writer


async def _shielded(run: Callable[[], Awaitable[None]], scope: anyio.CancelScope) -> None:
    # Shielded, so that cancelling the engine (whose code runs inside this task group's
    # scope) does not kill the stages before they drain; `_drain` cancels the scope itself
    # when the shared deadline passes.
    with scope:
        await run()


async def _finished(stage: Stage) -> None:
    if stage.done is not None:
        await stage.done.wait()
