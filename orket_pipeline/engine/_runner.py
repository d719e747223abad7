"""The reference engine: generate each task's answer, run its gate, record its outcome.

One loop serves both modes. With a `TelemetryPipeline` every generation goes through
`pipeline.generate` and every outcome through `pipeline.record_outcome`; without one
(`--no-telemetry`) the provider is called directly and nothing else changes, so telemetry cannot
change an outcome. Gates know nothing of telemetry.

Runs start in suite order (each run is started, and has dispatched its generation, before the
next one starts), at most `concurrency` at a time; `pipeline.register` gets the suite's ids first.
Gates run in the sandbox resolved once for the suite, at most `gate_concurrency` at a time. A
gate that cannot judge (no sandbox, too many open files) makes the run an `error`, and a run
interrupted while its gate runs is recorded as an `error`: an unfinished gate is never a pass.

A provider that is not there is told once, not as a column of errors (see `_guard`): `execute`
connects before the first run (`provider.connect()`, when it has one), and a suite whose runs
keep failing to connect (`stop_after` in a row) stops starting runs and raises `SuiteStopped`
once the finished runs are recorded.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import msgspec
from anyio.abc import TaskStatus

from ..constraints import extract_payload
from ..report._io import write_report
from ..report._model import Metadata, Report, RunError, TestRun, current_metadata
from ..telemetry._call import Call, call_provider, error_text, error_type_name, streams
from ..telemetry._pipeline import TelemetryPipeline
from ..telemetry.stages.latency import DEFAULT_OUTPUT_CAP
from ._gates import GateResult, run_gate
from ._guard import UNREACHABLE_LIMIT, InFlight, UnreachableWatch, connect
from ._resume import journal_for, kept_runs, remove_journal, resume_with_telemetry, suite_digest
from ._suite import Suite, Task
from .sandbox import Sandbox, SandboxLimits, resolve_sandbox

if TYPE_CHECKING:
    from ..providers import Provider
    from ..telemetry.stages.otel import OtelExport

__all__ = ["RunResult", "execute", "generate_directly", "run_suite"]

_MESSAGE_CHARS = 300


class RunResult(msgspec.Struct, frozen=True, kw_only=True):
    """A finished run: `outcome` is `pass`, `fail` (the gate said no) or `error` (the generation
    failed or timed out); `reason` says why it did not pass; `error` holds a generation error."""

    test_id: str
    outcome: str
    reason: str | None = None
    error: RunError | None = None


ResultHook = Callable[[RunResult], None]


@dataclass
class _Loop:
    provider: Provider
    pipeline: TelemetryPipeline | None
    timeout_s: float | None
    gate_limits: SandboxLimits | None
    on_result: ResultHook | None
    semaphore: anyio.Semaphore
    sandbox: Sandbox | None = None
    gate_slots: anyio.Semaphore | None = None
    results: dict[str, RunResult] = field(default_factory=dict)
    watch: UnreachableWatch | None = None
    in_flight: InFlight = field(default_factory=InFlight)


async def run_suite(
    suite: Suite,
    provider: Provider,
    *,
    pipeline: TelemetryPipeline | None = None,
    concurrency: int = 4,
    timeout_s: float | None = 120.0,
    gate_limits: SandboxLimits | None = None,
    on_result: ResultHook | None = None,
    sandbox: Sandbox | None = None,
    gate_concurrency: int | None = None,
    skip: Collection[str] = (),
    stop_after: int | None = None,
    in_flight: InFlight | None = None,
) -> list[RunResult]:
    """Run every task of `suite` through `provider`, at most `concurrency` at a time.

    Args:
        suite: the tasks, in the order their runs start and are reported.
        provider: the model; not closed here.
        pipeline: an open `TelemetryPipeline` to record through, or None for no telemetry.
        concurrency: runs in flight at once (>= 1).
        timeout_s: limit per generation in seconds (None: none); past it the run is an error.
        gate_limits: sandbox limits for the gates (a gate's `timeout_s` still wins).
        on_result: called in the engine's task as each run finishes; must not block or raise.
        sandbox: where gates run (default: `resolve_sandbox("auto")` at the first gate).
        gate_concurrency: gates running at once (None: as many as runs in flight).
        skip: ids of tasks not to run (finished by an earlier run being resumed); they are
            still registered with `pipeline`, so every run keeps its suite index.
        stop_after: stop starting runs once this many in a row failed to connect (fewer when
            fewer run); None: never stop.
        in_flight: counts the generations in flight without a pipeline (`max_in_flight`).

    Returns:
        The runs made, in suite order. Awaits generations and gates; never blocks the event loop.

    Raises:
        ValueError: `concurrency` or `gate_concurrency` < 1, or `timeout_s` <= 0. Cancellation
            propagates; runs already finished have been recorded (and passed to `on_result`).
        SuiteStopped: `stop_after` runs in a row failed to connect; the runs in flight were
            let finish and every finished run was recorded.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    if gate_concurrency is not None and gate_concurrency < 1:
        raise ValueError(f"gate concurrency must be at least 1, not {gate_concurrency}")
    if timeout_s is not None and timeout_s <= 0:
        raise ValueError(f"timeout must be positive, not {timeout_s}")
    if pipeline is not None:
        pipeline.register([task.id for task in suite.tasks])
    loop = _Loop(
        provider, pipeline, timeout_s, gate_limits, on_result, anyio.Semaphore(concurrency)
    )
    loop.sandbox = sandbox
    if gate_concurrency is not None:
        loop.gate_slots = anyio.Semaphore(gate_concurrency)
    if in_flight is not None:
        loop.in_flight = in_flight
    skipped = set(skip)
    tasks = [task for task in suite.tasks if task.id not in skipped]
    if stop_after is not None and tasks:
        loop.watch = UnreachableWatch(max(1, min(stop_after, len(tasks))))
    async with anyio.create_task_group() as tg:
        for task in tasks:
            await loop.semaphore.acquire()
            if loop.watch is not None and loop.watch.stopped is not None:
                loop.semaphore.release()
                break
            await tg.start(_run_one, loop, task)
    if loop.watch is not None and loop.watch.stopped is not None:
        raise loop.watch.stopped
    return [loop.results[task.id] for task in tasks]


async def _run_one(loop: _Loop, task: Task, *, task_status: TaskStatus[None]) -> None:
    try:
        # The starter resumes only once this task yields, i.e. after the generation started.
        task_status.started()
        result = await _attempt(loop, task)
        loop.results[task.id] = result
        if loop.pipeline is not None:
            loop.pipeline.record_outcome(task.id, result.outcome, result.reason, result.error)
        if loop.on_result is not None:
            loop.on_result(result)
        if loop.watch is not None:
            loop.watch.record(result.error)
    finally:
        loop.semaphore.release()


async def _attempt(loop: _Loop, task: Task) -> RunResult:
    text: Any = None
    try:
        with anyio.move_on_after(loop.timeout_s) as scope:
            text = await _generate(loop, task)
    except Exception as exc:
        # error_text: a message whose __str__ raises, or holds a lone surrogate, still reads.
        kind, message = error_type_name(exc), " ".join(error_text(exc).split())[:_MESSAGE_CHARS]
        reason = f"{kind}: {message}" if message else kind
        return _error(task, reason, RunError(type=kind, message=message))
    if scope.cancelled_caught:
        reason = f"generation timed out after {loop.timeout_s:g} s"
        return _error(task, reason, RunError(type="TimeoutError", message=reason))
    if not isinstance(text, str):
        reason = f"the provider returned {type(text).__name__}, not str"
        return _error(task, reason, RunError(type="TypeError", message=reason))
    payload = extract_payload(text) or ""
    try:
        verdict = await _judge(loop, task, payload)
    except anyio.get_cancelled_exc_class():
        if loop.pipeline is not None and task.gate is not None:
            # Otherwise a finished generation with no outcome would be reported as a pass.
            loop.pipeline.record_outcome(task.id, "error", "interrupted before its gate finished")
        raise
    if verdict.passed:
        return RunResult(test_id=task.id, outcome="pass")
    if verdict.error:
        message = verdict.reason or "the gate could not run"
        return _error(task, message, RunError(type="GateError", message=message))
    return RunResult(test_id=task.id, outcome="fail", reason=verdict.reason)


async def _judge(loop: _Loop, task: Task, payload: str) -> GateResult:
    if task.gate is None:
        return await run_gate(None, payload)
    if loop.gate_slots is None:
        return await run_gate(task.gate, payload, limits=loop.gate_limits, sandbox=loop.sandbox)
    async with loop.gate_slots:
        return await run_gate(task.gate, payload, limits=loop.gate_limits, sandbox=loop.sandbox)


def _error(task: Task, reason: str, error: RunError) -> RunResult:
    return RunResult(test_id=task.id, outcome="error", reason=reason, error=error)


async def _generate(loop: _Loop, task: Task) -> Any:
    if loop.pipeline is not None:
        return await loop.pipeline.generate(task.id, loop.provider, task.prompt, task.constraints)
    loop.in_flight.enter()
    try:
        return await generate_directly(loop.provider, task.prompt)
    finally:
        loop.in_flight.leave()


async def generate_directly(provider: Provider, prompt: str) -> str:
    """Call `provider` through the very function the pipeline's wrapper uses, with no telemetry
    (`telemetry._call.call_provider`: streams closed as `aclosing` does, async `__call__`, a thread
    for a plain `def`, abandoned when the run is cancelled or times out). Raises what it
    raises."""
    return await call_provider(provider, prompt, Call(streams(provider)))


async def execute(
    suite: Suite,
    provider: Provider,
    *,
    report_path: str | os.PathLike[str] | None,
    journal_path: str | os.PathLike[str] | None = None,
    telemetry: bool = True,
    provider_name: str | None = None,
    memory_pid: int | None = None,
    sandbox: Sandbox | str | None = "auto",
    resume_from: str | os.PathLike[str] | None = None,
    otel: bool | OtelExport = False,
    metadata: Metadata | None = None,
    output_cap: int | None = DEFAULT_OUTPUT_CAP,
    stop_after: int | None = UNREACHABLE_LIMIT,
    **options: Any,
) -> Report:
    """Run `suite` and write the report; what `orket-pipeline run` does.

    With `telemetry`, a `TelemetryPipeline` records every run and writes `report_path` (and
    journals to `journal_path`); without, an outcomes-only report is written (runs with
    `test_id`, `outcome`, `reason`; telemetry null). Either way the runs that finished are
    written even when the engine is cancelled (Ctrl-C). The provider's `aclose()`, if any,
    is awaited at the end. `memory_pid` measures another process's peak RSS (a local model
    server) instead of this one. `sandbox` (a `Sandbox`, or a kind for `resolve_sandbox`) runs
    the gates; it is resolved before any run starts, only when the suite has gates, and named
    in the report's metadata. `otel` exports spans and metrics (see `TelemetryPipeline`).
    `metadata` adds to the report's metadata (model, generation options, executor,
    concurrency, the memory pid and how it was chosen); `max_in_flight` is counted either way.
    `output_cap` bytes of each answer are kept in the report (None: none). Before the first
    run the provider connects (`provider.connect()`, when it has one), and the suite stops
    once `stop_after` runs in a row failed to connect (None: never). `options` go to
    `run_suite`.

    `resume_from` continues a run that did not finish: the runs that journal holds are kept as
    they are (not run again), the other tasks run, and the report holds all in suite order.
    With telemetry the new journal (`journal_path`, default beside the report, which may be
    `resume_from` itself) holds the kept runs too, so a second crash loses none of them; a
    default journal is removed once the report is written, as in any run.

    Raises:
        ValueError: bad options (see `run_suite`). OSError: the journal could not be opened
            (before any run started) or the report could not be written. InputError: the suite
            has gates and the sandbox asked for is not available (nothing has run), or
            `resume_from` is missing or belongs to another suite (see `kept_runs`).
        ProviderConnectionError: the provider's `connect()` could not reach it (nothing has
            run, nothing was written). SuiteStopped: the suite stopped early (see `run_suite`);
            the finished runs are in the report.
    """
    try:
        kept: dict[str, TestRun] = {}
        if resume_from is not None:
            kept = await anyio.to_thread.run_sync(kept_runs, suite, resume_from)
            options["skip"] = frozenset(kept)
        chosen = await _sandbox_for(suite, sandbox)
        options["sandbox"] = chosen
        options["stop_after"] = stop_after
        kind = None if chosen is None else chosen.kind
        await connect(provider)  # before anything is written: unreachable is one line, exit 2
        if not telemetry:
            facts = _metadata_without_telemetry(metadata, provider_name, kind, suite)
            return await _execute_without_telemetry(
                suite, provider, report_path, facts, options, kept, resume_from
            )
        settings: dict[str, Any] = {
            "suite": suite.name,
            "provider": provider_name,
            "memory_pid": memory_pid,
            "sandbox": kind,
            "otel": otel,
            "suite_digest": suite_digest(suite),
            "metadata": metadata,
            "output_cap": output_cap,
        }
        if resume_from is not None:
            return await resume_with_telemetry(
                suite,
                partial(run_suite, suite, provider, **options),
                report_path=report_path,
                journal_path=journal_path,
                kept=kept,
                settings=settings,
            )
        pipeline = TelemetryPipeline(report_path, journal_path=journal_path, **settings)
        async with pipeline:
            await run_suite(suite, provider, pipeline=pipeline, **options)
        return pipeline.report
    finally:
        with anyio.CancelScope(shield=True):
            await _aclose(provider)


def _metadata_without_telemetry(
    given: Metadata | None, provider_name: str | None, sandbox: str | None, suite: Suite
) -> Metadata:
    metadata = current_metadata(
        suite=suite.name,
        provider=provider_name,
        sandbox=sandbox,
        suite_digest=suite_digest(suite),
    )
    if given is not None:
        for name in ("model", "options", "executor", "concurrency"):
            value = getattr(given, name)
            if value is not None:
                setattr(metadata, name, value)
    # Nothing is measured and no output is kept without telemetry: no memory pid, no cap.
    return metadata


async def _execute_without_telemetry(
    suite: Suite,
    provider: Provider,
    report_path: str | os.PathLike[str] | None,
    metadata: Metadata,
    options: dict[str, Any],
    kept: dict[str, TestRun],
    resume_from: str | os.PathLike[str] | None,
) -> Report:
    finished: dict[str, RunResult] = {}
    user_hook: ResultHook | None = options.pop("on_result", None)
    flight = options["in_flight"] = InFlight()

    def collect(result: RunResult) -> None:
        finished[result.test_id] = result
        if user_hook is not None:
            user_hook(result)

    report = Report(metadata=metadata, test_runs=[])
    try:
        await run_suite(suite, provider, on_result=collect, **options)
    finally:
        metadata.max_in_flight = flight.most
        runs = [kept.get(t.id) or _made(finished.get(t.id)) for t in suite.tasks]
        report.test_runs = [run for run in runs if run is not None]
        if report_path is not None:
            with anyio.CancelScope(shield=True):
                report = await anyio.to_thread.run_sync(write_report, report_path, report)
                if resume_from is not None and journal_for(report_path, None) == Path(resume_from):
                    # The default journal, now fully in the report, as a telemetry run's is.
                    await anyio.to_thread.run_sync(remove_journal, Path(resume_from))
    return report


async def _sandbox_for(suite: Suite, sandbox: Sandbox | str | None) -> Sandbox | None:
    if not isinstance(sandbox, str):
        return sandbox
    if not any(task.gate is not None for task in suite.tasks):
        return None
    return await anyio.to_thread.run_sync(resolve_sandbox, sandbox)


def _made(result: RunResult | None) -> TestRun | None:
    return None if result is None else _test_run(result)


def _test_run(result: RunResult) -> TestRun:
    return TestRun(
        test_id=result.test_id, outcome=result.outcome, error=result.error, reason=result.reason
    )


async def _aclose(provider: Any) -> None:
    aclose = getattr(provider, "aclose", None)
    if aclose is not None and inspect.iscoroutinefunction(aclose):
        await aclose()
