"""`run --executor ray`: a suite's tasks spread over Ray workers, journaled by the driver.

The driver (this process) starts `workers` actors (`_ray_worker.RayWorker`, one provider
replica each, spread over the cluster's nodes) and hands them task indices in suite order, never
more than `concurrency` in flight in all nor `worker_concurrency` on one worker: each worker
gets the next tasks as its slots free up, so replicas share the load (a faster one takes
more). Each finished run comes back as
soon as its worker has it and is appended to the driver's journal (the same `JournalWriter` a
local run uses) before anything else, so:

- a lost worker (its process or node died) loses no finished run; its tasks in flight run again
  on another worker, at most once more (`attempts` says so); a task lost twice is an `error`;
- a lost driver leaves a journal that `run --resume` continues, with either executor.

The report has the local run's shape, in suite order, with `executor: "ray"`, each run's
`worker` (`NODE/PID`) and the workers' pipeline statistics summed. Ray is imported only here and
in `_ray_cluster`, and only when `--executor ray` is used.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import msgspec

from .._exceptions import InputError
from ..providers import ProviderOptions
from ..report._io import write_report
from ..report._journal import JournalWriter, resume_backup
from ..report._merge import merge_reports
from ..report._model import Metadata, Report, TestRun, current_metadata
from ..telemetry.stages.latency import DEFAULT_OUTPUT_CAP
from ._ray_cluster import import_ray
from ._ray_dispatch import Dispatch, Worker, drive
from ._ray_worker import RayWorker, WorkerSettings
from ._resume import (
    journal_for,
    kept_runs,
    park_kept_runs,
    remove_journal,
    suite_digest,
    suite_entries,
)
from ._runner import RunResult
from ._suite import Suite
from .sandbox import Sandbox, SandboxLimits

__all__ = ["execute_on_ray"]

logger = logging.getLogger("orket_pipeline")

_ACTOR_CALLS = 4  # calls a worker serves at once: ready, submit, collect, finish
_READY_S = 300.0  # for the workers to start (a node pulling the package, bwrap's trial run)


async def execute_on_ray(
    suite: Suite,
    specs: Sequence[str],
    *,
    report_path: str | os.PathLike[str] | None,
    journal_path: str | os.PathLike[str] | None = None,
    telemetry: bool = True,
    provider_name: str | None = None,
    sandbox: Sandbox | str | None = None,
    resume_from: str | os.PathLike[str] | None = None,
    otel: bool = False,
    workers: int | None = None,
    worker_concurrency: int | None = None,
    concurrency: int = 4,
    timeout_s: float | None = 120.0,
    gate_limits: SandboxLimits | None = None,
    on_result: Callable[[RunResult], None] | None = None,
    metadata: Metadata | None = None,
    provider_options: ProviderOptions | None = None,
    output_cap: int | None = DEFAULT_OUTPUT_CAP,
) -> Report:
    """Run `suite` on the Ray this process is connected to (`ray_session`); write the report.

    Args:
        suite: the tasks.
        specs: provider specs, one per replica; worker `i` uses `specs[i % len(specs)]`. Paths
            in them must exist on every node (the same path).
        report_path, journal_path, telemetry, provider_name, resume_from, otel, timeout_s,
            gate_limits, on_result: as for `execute`. `on_result` is called in the driver as
            each run is journaled.
        sandbox: the kind of sandbox (or a resolved one, whose kind is used) each worker
            resolves on its node for the gates; None when the suite has no gates.
        workers: actors to start (default: the cluster's CPUs, at least one per spec).
        worker_concurrency: runs in flight on one worker (default: `concurrency` spread evenly).
        concurrency: runs in flight in all.
        metadata: more report metadata (`model`, `options`...), as `TelemetryPipeline` takes;
            its `memory_pid` is dropped (each worker measures its own process).
        provider_options: what each worker builds its provider with (`load_provider`).
        output_cap: bytes of each answer the report keeps (None: none), as for `execute`.

    Raises:
        InputError: no Ray, too few workers for the specs, a worker could not start (its
            provider or sandbox); nothing has run then. OSError: as `execute`. Cancellation
            propagates after the finished runs are written.
    """
    ray = import_ray()
    kept: dict[str, TestRun] = {}
    if resume_from is not None:
        kept = await anyio.to_thread.run_sync(kept_runs, suite, resume_from)
    kind = sandbox.kind if isinstance(sandbox, Sandbox) else sandbox
    if not any(task.gate is not None for task in suite.tasks):
        kind = None
    cpus = int(ray.cluster_resources().get("CPU", 1))
    count = workers or max(len(specs), cpus)
    _check_sizes(count, specs, concurrency, cpus)
    settings = WorkerSettings(
        telemetry=telemetry,
        timeout_s=timeout_s,
        sandbox=kind,
        gate_limits=gate_limits,
        provider_name=provider_name,
        suite_digest=suite_digest(suite),
        otel=otel,
        metadata=None if metadata is None else msgspec.structs.replace(metadata, memory_pid=None),
        provider_options=provider_options,
        output_cap=output_cap,
    )
    slots = worker_concurrency or math.ceil(concurrency / count)
    pool = await _start_workers(ray, suite, specs, settings, count, slots)
    header = _driver_metadata(settings, suite, _joined(w.info.sandbox for w in pool), concurrency)
    journal = journal_for(report_path, journal_path) if telemetry else None
    writer = await _open_journal(journal, suite, kept, header)
    skip = {task.id for task in suite.tasks if task.id in kept}
    queue = deque(i for i, task in enumerate(suite.tasks) if task.id not in skip)
    state = Dispatch(suite, queue, pool, concurrency)
    shards: list[Metadata] = []
    try:
        await drive(ray, state, writer, on_result)
        shards = await _finish_workers(ray, pool)
    finally:
        with anyio.CancelScope(shield=True):
            for worker in pool:
                ray.kill(worker.actor)
            if writer is not None:
                writer.close()
            header.max_in_flight = state.max_in_flight
            report = _report(suite, kept, state.done, header, shards)
            if report_path is not None:
                report = await anyio.to_thread.run_sync(write_report, report_path, report)
                if journal is not None and journal_path is None:
                    await anyio.to_thread.run_sync(remove_journal, journal)
    if state.queue:
        logger.error(
            "orket-pipeline: every Ray worker was lost; %d tasks did not run "
            "(run --resume continues from the journal)",
            len(state.queue),
        )
    return report


def _check_sizes(count: int, specs: Sequence[str], concurrency: int, cpus: int) -> None:
    if not specs:
        raise InputError("--executor ray: no --provider given")
    if count > cpus:
        raise InputError(
            f"--workers {count}: the Ray cluster has {cpus} CPUs and a worker takes one "
            "(lower --workers, raise --worker-concurrency, or add nodes)"
        )
    if count < len(specs):
        raise InputError(
            f"--workers {count}: fewer workers than the {len(specs)} providers given "
            "(each replica needs a worker)"
        )
    if concurrency < count:
        raise InputError(
            f"--concurrency {concurrency}: fewer runs in flight than the {count} workers "
            "(raise --concurrency, or lower --workers)"
        )


async def _start_workers(
    ray: Any,
    suite: Suite,
    specs: Sequence[str],
    settings: WorkerSettings,
    count: int,
    slots: int,
) -> list[Worker]:
    actor_class = ray.remote(RayWorker).options(
        max_concurrency=_ACTOR_CALLS,
        num_cpus=1,
        max_restarts=0,
        max_task_retries=0,
        scheduling_strategy="SPREAD",
    )
    suite_ref = ray.put(suite)
    actors = [actor_class.remote(suite_ref, specs[i % len(specs)], settings) for i in range(count)]
    refs = [actor.ready.remote() for actor in actors]
    try:
        infos = await anyio.to_thread.run_sync(
            partial(ray.get, refs, timeout=_READY_S), abandon_on_cancel=True
        )
    except BaseException as exc:
        for actor in actors:
            ray.kill(actor)
        if isinstance(exc, Exception):
            message = " ".join(_cause(exc).split())[:300]
            raise InputError(f"--executor ray: a worker could not start: {message}") from None
        raise
    return [Worker(actor, info, slots) for actor, info in zip(actors, infos, strict=True)]


async def _finish_workers(ray: Any, pool: list[Worker]) -> list[Metadata]:
    live = [w for w in pool if w.alive]
    refs = [w.actor.finish.remote() for w in live]
    ready = await anyio.to_thread.run_sync(partial(_settled, ray, refs), abandon_on_cancel=True)
    return [value for value in ready if value is not None]


def _settled(ray: Any, refs: list[Any]) -> list[Any]:
    values = []
    for ref in refs:
        try:
            values.append(ray.get(ref, timeout=_READY_S))
        except Exception:  # a worker lost at the end: its statistics are lost with it
            values.append(None)
    return values


async def _open_journal(
    journal: Path | None, suite: Suite, kept: dict[str, TestRun], metadata: Metadata
) -> JournalWriter | None:
    if journal is None:
        return None
    if kept:  # the new journal truncates the old one: park the kept runs first
        await anyio.to_thread.run_sync(park_kept_runs, journal, suite, kept)
    writer = JournalWriter(journal, metadata)
    await anyio.to_thread.run_sync(writer.open)
    if kept:
        writer.append_many(suite_entries(suite, kept))
        await anyio.to_thread.run_sync(_unlink, resume_backup(journal))
    return writer


def _driver_metadata(
    settings: WorkerSettings, suite: Suite, sandbox: str | None, concurrency: int
) -> Metadata:
    metadata = current_metadata(
        suite=suite.name,
        provider=settings.provider_name,
        sandbox=sandbox,
        suite_digest=settings.suite_digest,
    )
    given = settings.metadata
    if given is not None:
        for name in _GIVEN:
            if getattr(given, name) is not None:
                setattr(metadata, name, getattr(given, name))
    metadata.executor, metadata.concurrency = "ray", concurrency
    return metadata


def _report(
    suite: Suite,
    kept: dict[str, TestRun],
    done: dict[int, TestRun],
    metadata: Metadata,
    shards: list[Metadata],
) -> Report:
    """The runs in suite order; the driver's metadata with what the workers measured: their
    pipeline statistics summed (as `merge` sums shards), where and how they ran."""
    runs = [kept.get(task.id) or done.get(i) for i, task in enumerate(suite.tasks)]
    if shards:
        merged = merge_reports([Report(metadata=m, test_runs=[]) for m in shards]).metadata
        for name in _FROM_WORKERS:
            setattr(metadata, name, getattr(merged, name))
    return Report(metadata=metadata, test_runs=[run for run in runs if run is not None])


# What the driver takes from the caller's metadata, and what from its workers' pipelines.
_GIVEN = ("model", "options", "output_cap", "memory_pid_source")
_FROM_WORKERS = ("python", "platform", "pipeline", "output_cap", "memory_pid_source")


def _joined(values: Any) -> str | None:
    distinct = list(dict.fromkeys(v for v in values if v is not None))
    return ", ".join(distinct) if distinct else None


def _cause(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)  # a RayTaskError wraps what the worker raised
    return str(cause if isinstance(cause, BaseException) else exc)


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
