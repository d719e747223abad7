"""One Ray worker's share of a suite: its own provider, `TelemetryPipeline` and sandboxed gates.

`RayWorker` is a plain class; the driver (`_ray`) makes it a Ray actor with `ray.remote`, so this
module imports no Ray and can be tried without it. Each worker loads its provider from the spec
(a replica's), opens one pipeline for its life (peak memory is measured in the worker's own
process, on the node where generation happens) and resolves the sandbox on its own node. The
driver submits task indices (`submit`) and collects finished runs (`collect`); each task runs
through the very loop a local run uses (`run_suite`), and its run, telemetry and all, is ready
to collect as soon as the pipeline has put it together, so the driver can journal it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import Sequence
from typing import Any

import anyio
import msgspec

from ..providers import Provider, ProviderOptions, load_provider
from ..report._journal import JournalWriter
from ..report._model import Metadata, RunError, TestRun
from ..telemetry._pipeline import TelemetryPipeline
from ..telemetry.stages.latency import DEFAULT_OUTPUT_CAP
from ._runner import RunResult, run_suite
from ._suite import Suite
from .sandbox import Sandbox, SandboxLimits, resolve_sandbox

__all__ = ["RUN_WAIT_S", "RayWorker", "WorkerSettings", "worker_name"]

RUN_WAIT_S = 30.0
"""How long `run` waits for the pipeline to put a run together (its telemetry parts) after
the run's outcome; past it the run is returned with its outcome alone (the pipeline's drain
deadline by default)."""


class WorkerSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What every worker of one distributed run is told, beside the suite and its spec."""

    telemetry: bool = True
    timeout_s: float | None = 120.0
    sandbox: str | None = None  # the kind to resolve on the worker's node; None: no gates
    gate_limits: SandboxLimits | None = None
    provider_name: str | None = None
    suite_digest: str | None = None
    otel: bool = False
    metadata: Metadata | None = None  # more report metadata (`model`, `options`...)
    provider_options: ProviderOptions | None = None
    output_cap: int | None = DEFAULT_OUTPUT_CAP


class WorkerInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What a started worker says about itself: its name in the report, its sandbox."""

    name: str
    sandbox: str | None


def worker_name() -> str:
    """`NODE/PID`: the node's address (Ray's, else the host name) and this process's id.
    Never raises."""
    node = os.environ.get("ORKET_RAY_NODE") or _ray_node_ip() or socket.gethostname()
    return f"{node}/{os.getpid()}"


class _Stream(JournalWriter):
    """The pipeline's journal, kept in memory: each run the aggregator completes goes to the
    `run` call waiting for it. Runs in the worker's event loop; never blocks or raises."""

    def __init__(self) -> None:
        super().__init__(os.devnull, Metadata())
        self.done: dict[str, TestRun] = {}
        self.waiting: dict[str, anyio.Event] = {}

    def open(self) -> None:
        return None

    def append_many(self, entries: Sequence[tuple[int, TestRun]]) -> None:
        for _, run in entries:
            self.done[run.test_id] = run
            event = self.waiting.pop(run.test_id, None)
            if event is not None:
                event.set()

    def close(self) -> None:
        return None


class RayWorker:
    """Runs tasks of one suite: `submit(indices)` starts them, `collect()` hands back the
    finished runs, `exchange(indices)` does both. Call `ready()` first and `finish()` last.
    Its methods run in the actor's event loop (asyncio); the runs are tasks of that loop.

    Args:
        suite: the whole suite (tasks are named by their index in it).
        spec: the provider spec this worker uses (one replica's).
        settings: what the driver was asked (timeouts, sandbox kind, telemetry).

    The driver never submits more runs than the worker's share of the concurrency.
    """

    def __init__(self, suite: Suite, spec: str, settings: WorkerSettings) -> None:
        self._suite, self._spec, self._settings = suite, spec, settings
        self._started: set[asyncio.Task[None]] = set()
        self._finished: list[tuple[int, TestRun]] = []
        self._arrived: asyncio.Event | None = None
        self._provider: Provider | None = None
        self._sandbox: Sandbox | None = None
        self._pipeline: TelemetryPipeline | None = None
        self._stream = _Stream()
        self._stop: asyncio.Event | None = None
        self._host: asyncio.Task[None] | None = None
        self._opened: asyncio.Future[None] | None = None

    async def ready(self) -> WorkerInfo:
        """Load the provider, resolve the sandbox, open the pipeline.

        Raises:
            ProviderError, InputError: the spec cannot be loaded or the sandbox asked for is
                not available on this node (the driver reports it and stops).
        """
        settings = self._settings
        self._provider = await anyio.to_thread.run_sync(
            load_provider, self._spec, settings.provider_options
        )
        if settings.sandbox is not None:
            self._sandbox = await anyio.to_thread.run_sync(resolve_sandbox, settings.sandbox)
        if settings.telemetry:
            loop = asyncio.get_running_loop()
            self._stop, self._opened = asyncio.Event(), loop.create_future()
            # The pipeline's task group lives in a task of its own for the worker's life:
            # the `run` calls are other tasks, which a task group may not be exited from.
            self._host = loop.create_task(self._hold_pipeline())
            await self._opened
        kind = None if self._sandbox is None else self._sandbox.kind
        return WorkerInfo(name=worker_name(), sandbox=kind)

    async def _hold_pipeline(self) -> None:
        assert self._stop is not None and self._opened is not None
        settings = self._settings
        pipeline = TelemetryPipeline(
            None,
            suite=self._suite.name,
            provider=settings.provider_name,
            sandbox=None if self._sandbox is None else self._sandbox.kind,
            suite_digest=settings.suite_digest,
            otel=settings.otel,
            metadata=settings.metadata,
            output_cap=settings.output_cap,
        )
        try:
            async with pipeline:
                # No journal file on the worker: the driver journals. The pipeline hands each
                # completed run to `_Stream`, which passes it to the `run` call waiting for it.
                pipeline.journal_to(self._stream)
                self._pipeline = pipeline
                self._opened.set_result(None)
                await self._stop.wait()
        except BaseException as exc:
            if not self._opened.done():
                self._opened.set_exception(exc)
            raise

    async def submit(self, indices: list[int]) -> None:
        """Start the tasks `indices`; returns at once. Never raises."""
        for index in indices:
            task = asyncio.get_running_loop().create_task(self._run_and_keep(index))
            self._started.add(task)
            task.add_done_callback(self._started.discard)

    async def collect(self, wait_s: float = 10.0) -> list[tuple[int, TestRun]]:
        """The runs finished since the last call, `(index, run)`; waits up to `wait_s` for the
        first. Never raises."""
        if self._arrived is None:
            self._arrived = asyncio.Event()
        if not self._finished:
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), wait_s)
        finished, self._finished = self._finished, []
        self._arrived.clear()
        return finished

    async def exchange(self, indices: list[int]) -> list[tuple[int, TestRun]]:
        """`submit(indices)`, then `collect()`: one call each way. Never raises."""
        await self.submit(indices)
        return await self.collect()

    async def _run_and_keep(self, index: int) -> None:
        try:
            run = await self.run(index)
        except Exception as exc:  # a fault of this code, not of the task: the run's error
            message = " ".join(str(exc).split())[:300]
            run = TestRun(
                test_id=self._suite.tasks[index].id,
                outcome="error",
                reason=f"the Ray worker failed: {type(exc).__name__}: {message}",
                error=RunError(type=type(exc).__name__, message=message),
            )
        self._finished.append((index, run))
        if self._arrived is None:
            self._arrived = asyncio.Event()
        self._arrived.set()

    async def run(self, index: int) -> TestRun:
        """Run the suite's task `index`: generate, gate, and return the finished run (with its
        telemetry, once the pipeline has it). Never raises for what the task does: a failed
        generation or gate is the run's outcome, as in a local run."""
        assert self._provider is not None, "ready() first"
        task = self._suite.tasks[index]
        one = Suite(name=self._suite.name, tasks=(task,))
        options: dict[str, Any] = {
            "concurrency": 1,
            "timeout_s": self._settings.timeout_s,
            "gate_limits": self._settings.gate_limits,
            "sandbox": self._sandbox,
        }
        if self._pipeline is None:
            [result] = await run_suite(one, self._provider, **options)
            return _outcome_only(result)
        waiting = self._stream.waiting[task.id] = anyio.Event()
        [result] = await run_suite(one, self._provider, pipeline=self._pipeline, **options)
        with anyio.move_on_after(RUN_WAIT_S):
            await waiting.wait()
        made = self._stream.done.pop(task.id, None)
        self._stream.waiting.pop(task.id, None)
        return made if made is not None else _outcome_only(result)

    async def finish(self) -> Metadata | None:
        """Close the pipeline (every run has been returned) and the provider; the pipeline's
        report metadata (its statistics, for the driver to sum), None without telemetry. Never
        raises for the close of the provider."""
        metadata = None
        if self._host is not None and self._stop is not None and self._pipeline is not None:
            self._stop.set()
            await self._host
            metadata = self._pipeline.report.metadata
        aclose = getattr(self._provider, "aclose", None)
        if aclose is not None and asyncio.iscoroutinefunction(aclose):
            # The runs are in; a provider failing to close changes none of them.
            with contextlib.suppress(Exception):
                await aclose()
        return metadata

    def pid(self) -> int:
        """This worker's process id (for the fault tests). Never raises."""
        return os.getpid()


def _outcome_only(result: RunResult) -> TestRun:
    return TestRun(
        test_id=result.test_id, outcome=result.outcome, error=result.error, reason=result.reason
    )


def _ray_node_ip() -> str | None:
    ray: Any = sys.modules.get("ray")  # imported in a Ray worker; never imported here
    if ray is None or not ray.is_initialized():
        return None
    return str(ray.util.get_node_ip_address())
