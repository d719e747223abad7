"""TelemetryPipeline: the generation wrapper, the bus, and the stages' task group.

The wrapper (`generate`) is the only code on the engine's path. It takes `perf_counter()`
stamps when things happen and publishes frozen events with `EventBus.publish`, which never
awaits; all other work happens in the stages, each in its own task of the pipeline's task group.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterable
from contextlib import aclosing, nullcontext
from pathlib import Path
from time import perf_counter
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from ._bus import EventBus
from ._events import FirstChunkReceived, GenerationFinished, GenerationStarted, OutcomeRecorded
from ._exceptions import PipelineClosedError
from ._lag import LagMonitor
from ._memory_probe import MemoryProbe
from ._report import OUTCOMES, Metadata, PipelineStatistics, Report, current_metadata
from ._rounding import round3
from .stages import (
    ConstraintStage,
    LatencyTracker,
    MemorySampler,
    ReportAggregator,
    Stage,
    StageErrors,
)

if TYPE_CHECKING:
    from ._journal import JournalWriter
    from .constraints import Constraints
    from .providers import Provider

__all__ = ["TelemetryPipeline"]

_NEW, _OPEN, _CLOSED = "new", "open", "closed"
_ERROR_MESSAGE_CHARS = 500

# Whether a provider's `generate` is a coroutine function, by the underlying function object:
# inspecting on every call would cost a microsecond on the engine's path.
_is_async: dict[Any, bool] = {}


class TelemetryPipeline:
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
        memory_method: ``"auto"``, ``"hwm"`` or ``"poll"`` (see `MemoryProbe`).
        memory_interval: seconds between memory samples while a generation runs.
        drain_timeout: the shared deadline, in seconds, for draining every stage on exit.
        inbox_capacity: events each stage may have queued before new ones are dropped
            (and counted).
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
    ) -> None:
        self.report_path = None if report_path is None else Path(report_path)
        self._keep_journal = journal_path is not None
        if journal_path is None and self.report_path is not None:
            journal_path = self.report_path.with_name(self.report_path.name + ".journal.jsonl")
        self.journal_path = None if journal_path is None else Path(journal_path)
        self._suite, self._provider = suite, provider
        self._drain_timeout = drain_timeout
        self._state = _NEW
        self._report: Report | None = None
        self._bus = EventBus()
        self._publish = self._bus.publish
        self._errors = StageErrors()
        self._probe = MemoryProbe(memory_pid, memory_method, memory_interval)
        self._lag = LagMonitor()
        self._journal: JournalWriter | None = None
        self._aggregator = ReportAggregator(self._errors)
        self._producers = (
            LatencyTracker(self._errors, self._aggregator),
            MemorySampler(self._errors, self._aggregator, self._probe),
            ConstraintStage(self._errors, self._aggregator),
        )
        for stage in (*self._producers, self._aggregator):
            stage.attach(self._bus, inbox_capacity)
        self._task_group: Any = None
        self._stage_scopes: list[anyio.CancelScope] = []

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> TelemetryPipeline:
        if self._state is not _NEW:
            raise PipelineClosedError("a TelemetryPipeline can be entered only once")
        self._state = _OPEN
        if self.journal_path is not None:
            metadata = current_metadata(suite=self._suite, provider=self._provider)
            self._journal = await anyio.to_thread.run_sync(
                _open_journal, self.journal_path, metadata
            )
            self._aggregator.set_journal(self._journal)
        await anyio.to_thread.run_sync(self._probe.start)
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        for stage in (*self._producers, self._aggregator):
            stage.prepare()
            task_group.start_soon(self._run_stage, stage, name=f"orket-pipeline {stage.name}")
        task_group.start_soon(self._lag.run, name="orket-pipeline lag monitor")
        return self

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
        returns at once. Blocks (awaits) at most about `drain_timeout`, plus the write.
        """
        if self._state is not _OPEN:
            self._state = _CLOSED
            return
        self._state = _CLOSED
        self._lag.stop()
        # Shielded: an engine being cancelled still gets every finished run reported.
        with anyio.CancelScope(shield=True):
            await self._drain()
            if not self._aggregator.finished:
                await self._aggregator.finish()  # the deadline passed: build from what arrived
            await anyio.to_thread.run_sync(self._probe.stop)
            await self._write()
        # The task group was entered before the shield, so it is exited outside it; every
        # stage has ended, only the lag monitor is left to cancel.
        self._task_group.cancel_scope.cancel()
        await self._task_group.__aexit__(None, None, None)

    async def _run_stage(self, stage: Stage) -> None:
        # Shielded, so that cancelling the engine (whose code runs inside this task group's
        # scope) does not kill the stages before they drain; `_drain` cancels this scope
        # itself when the shared deadline passes.
        with anyio.CancelScope(shield=True) as scope:
            self._stage_scopes.append(scope)
            await stage.run()

    async def _drain(self) -> None:
        self._bus.close()
        with anyio.move_on_after(self._drain_timeout):
            # Producers first: the aggregator needs all their parts before it finishes.
            for stage in self._producers:
                stage.close_inbox()
            await _wait_all(self._producers)
            self._aggregator.close_inbox()
            await _wait_all((self._aggregator,))
        for scope in self._stage_scopes:
            scope.cancel()  # past the deadline: stop whatever is still running
        await _wait_all((*self._producers, self._aggregator))

    async def _write(self) -> None:
        from ._report_io import write_report

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

    def register(self, test_ids: Iterable[str]) -> None:
        """Fix the order of these runs in the report (suite order). Never blocks or raises."""
        self._aggregator.register(test_ids)

    async def generate(
        self,
        test_id: str,
        provider: Provider,
        prompt: str,
        constraints: Constraints | None = None,
    ) -> str:
        """Generate through `provider`, recording the run's telemetry.

        Awaits only the provider. Streams when the provider declares
        `supports_streaming = True`; a plain-`def` `generate` runs in a worker thread.
        Returns the output text. Raises whatever the provider raised (cancellation included),
        after recording its telemetry; raises `PipelineClosedError` outside the context.
        """
        if self._state is not _OPEN:
            raise PipelineClosedError("generate() needs an open TelemetryPipeline")
        if getattr(provider, "supports_streaming", False) is True:
            return await self._generate_streaming(test_id, provider, prompt, constraints)
        generate = provider.generate
        is_async = _is_async.get(getattr(generate, "__func__", generate))
        if is_async is None:
            is_async = _remember_kind(generate)
        publish = self._publish
        # Stamped here, in the engine's task, at dispatch: a slow stage cannot skew it.
        t_started = perf_counter()
        publish(GenerationStarted(test_id, t_started, False))
        try:
            if is_async:
                output = await generate(prompt)  # type: ignore[misc]
            else:
                output = await anyio.to_thread.run_sync(generate, prompt)
        except BaseException as exc:
            publish(_failed(test_id, t_started, False, constraints, exc, 0, None, None))
            raise
        text = output if type(output) is str else None
        publish(
            GenerationFinished(
                test_id, perf_counter(), t_started, False, text, constraints, 1 if text else 0
            )
        )
        return output  # type: ignore[no-any-return]

    async def _generate_streaming(
        self,
        test_id: str,
        provider: Provider,
        prompt: str,
        constraints: Constraints | None,
    ) -> str:
        publish = self._publish
        chunks = 0
        t_first = t_last = None
        parts = []
        t_started = perf_counter()
        publish(GenerationStarted(test_id, t_started, True))
        try:
            stream = provider.stream(prompt)
            # aclosing: a cancelled or timed-out run closes the provider's stream (and its
            # connection) at once, not whenever the generator is garbage-collected.
            closing: Any = aclosing(stream) if hasattr(stream, "aclose") else nullcontext()
            async with closing:
                async for chunk in stream:
                    if chunk:
                        # Stamped as the chunk reaches the engine's task, before anything else.
                        t_last = perf_counter()
                        if t_first is None:
                            t_first = t_last
                            publish(FirstChunkReceived(test_id, t_first))
                        chunks += 1
                        parts.append(chunk)
                t_done = perf_counter()
        except BaseException as exc:
            publish(_failed(test_id, t_started, True, constraints, exc, chunks, t_first, t_last))
            raise
        output = "".join(parts)
        publish(
            GenerationFinished(
                test_id, t_done, t_started, True, output, constraints, chunks, t_first, t_last
            )
        )
        return output

    def record_outcome(self, test_id: str, outcome: str, reason: str | None = None) -> None:
        """Record the engine's verdict for a run. Never blocks.

        Raises `ValueError` for an outcome other than pass, fail or error (a programming
        error in the caller); after close the outcome is counted as late, not raised.
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
        self._publish(OutcomeRecorded(test_id, outcome, reason))

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
        )

    def _build_report(self) -> Report:
        metadata = current_metadata(
            suite=self._suite, provider=self._provider, pipeline=self.statistics()
        )
        return Report(metadata=metadata, test_runs=self._aggregator.test_runs())


def _open_journal(path: Path, metadata: Metadata) -> JournalWriter:
    from ._journal import JournalWriter

    writer = JournalWriter(path, metadata)
    writer.open()
    return writer


def _remember_kind(generate: Any) -> bool:
    if len(_is_async) > 4096:
        _is_async.clear()  # providers built per call (closures): keep the cache bounded
    is_async = _is_async[getattr(generate, "__func__", generate)] = inspect.iscoroutinefunction(
        generate
    )
    return is_async


def _failed(
    test_id: str,
    t_started: float,
    streaming: bool,
    constraints: Constraints | None,
    exc: BaseException,
    chunks: int,
    t_first: float | None,
    t_last: float | None,
) -> GenerationFinished:
    t_failed = perf_counter()
    return GenerationFinished(
        test_id,
        t_failed,
        t_started,
        streaming,
        None,
        constraints,
        chunks,
        t_first,
        t_last,
        type(exc).__name__,
        _message(exc),
    )


def _message(exc: BaseException) -> str:
    # A provider's exception may have a __str__ that raises; telemetry must not turn that
    # into a different exception in the engine.
    try:
        return str(exc)[:_ERROR_MESSAGE_CHARS]
    except Exception:
        return f"<unprintable {type(exc).__name__}>"


async def _wait_all(stages: Iterable[Stage]) -> None:
    for stage in stages:
        if stage.done is not None:
            await stage.done.wait()
