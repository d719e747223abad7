"""The driver's loop over its Ray workers: hand out tasks, take finished runs, requeue lost ones.

Per worker, one call is outstanding while it has runs in flight: `exchange(indices)` starts
tasks (as many as the worker has free slots, in suite order) and returns every run the worker
finished since the last call, waiting for at least one (`collect()` is the same with nothing to
start, `submit` starts without collecting). So a finished run reaches the driver as soon as it
is finished, a busy worker's runs come back many to a call, and the next tasks ride on the
same call: the driver pays Ray's cost of a call per batch, not per run (see
benchmarks/README.md, "--executor ray").
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
import anyio.to_thread
import msgspec

from ..report._journal import JournalWriter
from ..report._model import RunError, TestRun
from ._ray_worker import WorkerInfo
from ._runner import RunResult
from ._suite import Suite

__all__ = ["Dispatch", "Worker", "drive"]

logger = logging.getLogger("orket_pipeline")

_WAIT_S = 0.5  # longest blocking wait of the collecting thread (a cancelled run ends by then)
_MESSAGE_CHARS = 300


@dataclass(eq=False)
class Worker:
    """One Ray actor as the driver sees it."""

    actor: Any
    info: WorkerInfo
    slots: int
    running: set[int] = field(default_factory=set)  # task indices submitted, not collected
    collecting: Any = None  # the outstanding `collect()` call's ref
    alive: bool = True


@dataclass
class Dispatch:
    """The driver's state: what is left to run, where runs are, what was lost, what is done."""

    suite: Suite
    queue: deque[int]
    workers: list[Worker]
    concurrency: int
    lost: dict[int, list[str]] = field(default_factory=dict)  # index -> workers lost on
    done: dict[int, TestRun] = field(default_factory=dict)
    max_in_flight: int = 0  # the most runs submitted and not yet collected, in all


async def drive(
    ray: Any,
    state: Dispatch,
    writer: JournalWriter | None,
    on_result: Callable[[RunResult], None] | None,
) -> None:
    """Run every queued task; each finished run goes into `writer` (and to `on_result`) as soon
    as it arrives. Returns when every task ran or no worker is left (`state.queue` then holds
    what did not run). Awaits in a thread; cancellation propagates."""
    while True:
        _dispatch(state)
        pending = {w.collecting: w for w in state.workers if w.collecting is not None}
        if not pending:
            return  # every task ran, or no worker is left
        arrived = await anyio.to_thread.run_sync(
            partial(_wait, ray, list(pending)), abandon_on_cancel=True
        )
        finished: list[tuple[int, TestRun]] = []
        for ref, value in arrived:
            finished += _absorb(ray, state, pending[ref], value)
        if not finished:
            continue
        if writer is not None:
            try:
                writer.append_many(finished)
            except OSError as exc:  # kept by the writer for its next batch, as locally
                logger.error("orket-pipeline: journal write failed, runs go on: %s", exc)
        if on_result is not None:
            for _, run in finished:
                on_result(_result(run))


def _dispatch(state: Dispatch) -> None:
    in_flight = sum(len(w.running) for w in state.workers)
    for worker in state.workers:
        if not worker.alive:
            continue
        free = min(worker.slots - len(worker.running), state.concurrency - in_flight)
        batch = [state.queue.popleft() for _ in range(min(free, len(state.queue)))]
        if batch and worker.collecting is None:
            # The usual case: the runs it returned freed its slots; one call both ways.
            worker.collecting = worker.actor.exchange.remote(batch)
        elif batch:  # tasks requeued from a lost worker, for one still busy
            worker.actor.submit.remote(batch)  # a lost worker shows in its `collect`
        if batch:
            worker.running.update(batch)
            in_flight += len(batch)
            state.max_in_flight = max(state.max_in_flight, in_flight)
        if worker.running and worker.collecting is None:
            worker.collecting = worker.actor.collect.remote()


def _wait(ray: Any, refs: list[Any]) -> list[tuple[Any, Any]]:
    """The calls that have returned (none when `_WAIT_S` passed first): `(ref, value or the
    exception the call raised)`. Runs in a thread; blocks."""
    ready, _ = ray.wait(refs, num_returns=1, timeout=_WAIT_S)
    if not ready:
        return []
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
    arrived: list[tuple[Any, Any]] = []
    for ref in ready:
        try:
            arrived.append((ref, ray.get(ref)))
        except Exception as exc:
            arrived.append((ref, exc))
    return arrived


def _absorb(ray: Any, state: Dispatch, worker: Worker, value: Any) -> list[tuple[int, TestRun]]:
    """The runs a `collect` returned, stamped; or, when the worker is lost, its runs requeued."""
    worker.collecting = None
    if isinstance(value, BaseException):
        return _lost(ray, state, worker, value)
    finished = []
    for index, run in value:
        worker.running.discard(index)
        if index in state.done:
            continue  # never twice (a worker reports each index once; this is a guard)
        run = _stamped(run, worker.info.name, 1 + len(state.lost.get(index, ())))
        state.done[index] = run
        finished.append((index, run))
    return finished


def _lost(
    ray: Any, state: Dispatch, worker: Worker, error: BaseException
) -> list[tuple[int, TestRun]]:
    worker.alive = False
    ray.kill(worker.actor)  # an unreachable worker must not finish anything later
    why = " ".join(str(error).split())[:_MESSAGE_CHARS]
    if not isinstance(error, ray.exceptions.RayActorError):
        why = f"the worker failed: {why}"
    logger.warning("orket-pipeline: Ray worker %s was lost: %s", worker.info.name, why)
    finished = []
    for index in sorted(worker.running, reverse=True):
        places = state.lost.setdefault(index, [])
        places.append(worker.info.name)
        if len(places) < 2:
            state.queue.appendleft(index)  # runs again, on another worker, before the rest
            continue
        reason = f"lost with its Ray worker twice ({', '.join(places)})"
        run = TestRun(
            test_id=state.suite.tasks[index].id,
            outcome="error",
            reason=reason,
            error=RunError(type="WorkerLost", message=reason),
        )
        state.done[index] = run = _stamped(run, worker.info.name, len(places))
        finished.append((index, run))
    worker.running.clear()
    return finished


def _stamped(run: TestRun, worker: str, attempts: int) -> TestRun:
    return msgspec.structs.replace(run, worker=worker, attempts=max(attempts, run.attempts or 1))


def _result(run: TestRun) -> RunResult:
    return RunResult(test_id=run.test_id, outcome=run.outcome, reason=run.reason, error=run.error)
