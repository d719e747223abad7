"""ConstraintStage: scores each finished generation's code payload, off the event loop."""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from decimal import Decimal
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from .._events import Event, GenerationFinished
from ._base import Stage, StageErrors
from .aggregator import ReportAggregator

if TYPE_CHECKING:
    from ..constraints import Constraints

__all__ = ["ConstraintStage"]

_Job = tuple[str, "Constraints | None", str]


class ConstraintStage(Stage):
    """Extracts each output's code payload and runs the ConstraintValidator on it.

    Ordinary outputs are scored in batches in a worker thread. Outputs of at least
    `large_output_chars` go to a worker process: `ast.parse` holds the GIL for its whole run,
    so parsing a megabyte in a thread would stall the event loop for tens of milliseconds.
    A failed generation (no output) has a null score without any work.
    """

    name = "constraints"
    event_types = (GenerationFinished,)
    large_output_chars = 64 * 1024

    def __init__(self, errors: StageErrors, sink: ReportAggregator) -> None:
        super().__init__(errors)
        self._sink = sink
        self._small: list[_Job] = []
        self._large: list[_Job] = []
        self._pool: ProcessPoolExecutor | None = None

    def handle(self, event: Event) -> None:
        """Queue the output for scoring; a failed generation is scored null at once."""
        if type(event) is not GenerationFinished:
            return
        output = event.output
        if output is None:
            self._sink.adherence_scored(event.test_id, None)
            return
        job = (event.test_id, event.constraints, output)
        (self._large if len(output) >= self.large_output_chars else self._small).append(job)

    async def after_batch(self) -> None:
        """Score what the slice queued: small outputs in one thread call, large ones one by
        one in the worker process."""
        if self._small:
            jobs, self._small = self._small, []
            scores = await anyio.to_thread.run_sync(_score_batch, jobs)
            self._deliver(jobs, scores)
        while self._large:
            job = self._large.pop(0)
            score = await anyio.to_thread.run_sync(self._score_in_process, job)
            self._deliver([job], [score])

    async def finish(self) -> None:
        """Shut the worker process down, if one was started."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await anyio.to_thread.run_sync(pool.shutdown)

    def _deliver(self, jobs: Sequence[_Job], scores: Sequence[Decimal | Exception | None]) -> None:
        for job, score in zip(jobs, scores, strict=True):
            if isinstance(score, Exception):
                self.errors.record(self.name, score)
                score = None
            self._sink.adherence_scored(job[0], score)

    def _score_in_process(self, job: _Job) -> Decimal | Exception | None:
        # Runs in a worker thread: waiting on the process's future must not block the loop.
        if self._pool is None:
            # "spawn", not "fork": forking a process that runs threads (this one does) can
            # copy a held lock into the child.
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=context)
        try:
            return self._pool.submit(_score, job[1], job[2]).result()
        except Exception as exc:  # a crashed worker (BrokenProcessPool) included
            self._pool.shutdown(wait=False)
            self._pool = None
            return exc


def _score(constraints: Constraints | None, output: str) -> Decimal | None:
    from ..constraints import validate_output  # imported where it runs: a worker thread or process

    result = validate_output(constraints, output)
    return None if result is None else result.adherence_score


def _score_batch(jobs: Sequence[_Job]) -> list[Decimal | Exception | None]:
    scores: list[Decimal | Exception | None] = []
    for _, constraints, output in jobs:
        try:
            scores.append(_score(constraints, output))
        except Exception as exc:
            scores.append(exc)
    return scores
