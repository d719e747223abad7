"""ConstraintStage: scores each finished generation's code payload, off the event loop."""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import anyio
import anyio.to_thread

from ...constraints import ValidationResult, validate_output
from ...constraints._payload import has_payload
from ...report._model import CheckRecord
from .._events import AdherenceScored, Event, GenerationFinished
from ._base import Stage, StageErrors
from ._score_worker import decode_result, encode_job

if TYPE_CHECKING:
    from ...constraints import Constraints

__all__ = ["ConstraintStage"]

_ONE = 1.0
_NO_CHECKS: tuple[CheckRecord, ...] = ()

#: A run's score and its checks; both None when there was no code to score.
Scored = tuple[float | None, tuple[CheckRecord, ...] | None]


class _Job(NamedTuple):
    """One output waiting to be scored."""

    test_id: str
    constraints: Constraints | None
    output: str


class ConstraintStage(Stage):
    """Extracts each output's code payload and runs the ConstraintValidator on it.

    Ordinary outputs are scored in batches in a worker thread. Outputs of at least
    `large_output_chars` with constraints are scored in a short-lived worker process:
    `ast.parse` holds the GIL for its whole run, so parsing a megabyte in a thread would stall
    the event loop for tens of milliseconds. Without constraints there is nothing to parse, only
    code to find: small outputs are checked on the loop, others in the thread. A failed
    generation (no output) has a null score without any work. Emits one `AdherenceScored` per
    finished generation.
    """

    name = "constraints"
    event_types = (GenerationFinished,)
    produces = (AdherenceScored,)
    large_output_chars = 64 * 1024
    #: Outputs up to this size with no constraints are checked for code on the loop.
    inline_output_chars = 4 * 1024
    #: Seconds a worker process may take (each regex has its own 1 s budget inside it).
    worker_timeout = 120.0

    def __init__(self, errors: StageErrors) -> None:
        super().__init__(errors)
        self._small: list[_Job] = []
        self._large: list[_Job] = []

    def handle(self, event: Event) -> None:
        """Queue the output for scoring; a failed generation is scored null at once."""
        self.handle_batch([event])

    def handle_batch(self, events: list[Event]) -> None:
        """`handle` for a slice: what can be scored at once is handed on together."""
        parts: list[Event] = []
        inline = self.inline_output_chars
        for event in events:
            try:
                if type(event) is not GenerationFinished:
                    continue
                output = event.output
                if output is None:
                    parts.append(AdherenceScored(test_id=event.test_id, score=None))
                elif event.constraints is None and len(output) <= inline:
                    # Nothing to validate, only whether there is code: a linear scan of a few
                    # microseconds, cheaper here than the hand-off to a worker thread.
                    if has_payload(output):
                        parts.append(
                            AdherenceScored(test_id=event.test_id, score=_ONE, checks=_NO_CHECKS)
                        )
                    else:
                        parts.append(AdherenceScored(test_id=event.test_id, score=None))
                else:
                    job = _Job(event.test_id, event.constraints, output)
                    # Only validation needs a process; finding the code in a large output (no
                    # constraints) is a linear scan, fine in a thread.
                    large = event.constraints is not None and len(output) >= self.large_output_chars
                    (self._large if large else self._small).append(job)
            except Exception as exc:  # one bad event costs only its own part
                self.errors.record(self.name, exc)
        self.emit_all(parts)

    async def after_batch(self) -> None:
        """Score what the slice queued: small outputs in one thread call, large ones one by
        one in a worker process. Cancellable (at the drain deadline): the thread stops
        between outputs and what it did not score stays queued, to be counted."""
        if self._small:
            jobs, self._small = self._small, []
            stop = threading.Event()
            try:
                scores = await anyio.to_thread.run_sync(
                    _score_batch, jobs, stop, abandon_on_cancel=True
                )
            except BaseException:
                stop.set()
                self._small = jobs + self._small
                raise
            self._deliver(jobs, scores)
        while self._large:
            job = self._large[0]
            score = await self._score_in_process(job)
            self._large.pop(0)
            self._deliver([job], [score])

    async def finish(self) -> None:
        """Whatever is still queued now was cut short by the drain deadline: count it. Its
        runs keep a null adherence (the abandoned count in the metadata says why)."""
        self.abandoned += len(self._small) + len(self._large)
        self._small, self._large = [], []

    def _deliver(self, jobs: Sequence[_Job], scores: Sequence[Scored | Exception]) -> None:
        for job, scored in zip(jobs, scores, strict=True):
            if isinstance(scored, Exception):
                self.errors.record(self.name, scored)
                scored = (None, None)
            self.emit(AdherenceScored(test_id=job.test_id, score=scored[0], checks=scored[1]))

    async def _score_in_process(self, job: _Job) -> Scored | Exception:
        command = [sys.executable, "-m", "orket_pipeline.telemetry.stages._score_worker"]
        try:
            with anyio.fail_after(self.worker_timeout):
                done = await anyio.run_process(
                    command, input=encode_job(job.constraints, job.output)
                )
            return scored(decode_result(done.stdout))
        except Exception as exc:  # a crashed or hung worker, or garbage on its stdout
            return exc


def scored(result: ValidationResult | None) -> Scored:
    """A validation result as the report keeps it: the score and one record per check."""
    if result is None or result.adherence_score is None:
        return None, None
    checks = tuple(
        CheckRecord(check=check.rule, passed=check.passed, detail=check.reason or "")
        for check in result.checks
    )
    return result.adherence_score, checks


def _score(constraints: Constraints | None, output: str) -> Scored:
    return scored(validate_output(constraints, output))


def _score_batch(jobs: Sequence[_Job], stop: threading.Event) -> list[Scored | Exception]:
    scores: list[Scored | Exception] = []
    for job in jobs:
        if stop.is_set():
            break  # the awaiting task is gone; nobody will read what comes next
        try:
            scores.append(_score(job.constraints, job.output))
        except Exception as exc:
            scores.append(exc)
    return scores
