"""The pytest plugin's work: the `orket` fixture's pipeline, each test's outcome, the report.

pytest loads `_orket_pipeline_pytest` (a top-level module, entry point `pytest11`) in every
session; it holds only the option, the hooks and the fixtures, and imports this module the first
time a test asks for `orket` or `--orket-report` is given. So a session that uses neither does
not even import orket-pipeline.

- One `TelemetryPipeline` per session (per `anyio_backend`, when that fixture is parametrized),
  opened by a session-scoped async fixture. It owns a task group, so it must live in one event
  loop for the whole session: anyio's pytest plugin keeps one runner (one loop) for as long as a
  session-scoped async fixture holds it, which needs a session-scoped `anyio_backend` fixture.
- The test id of a run is the test's node id (`tests/test_x.py::test_add[asyncio]`); a second
  `generate` in the same test gets `#2` appended, and so on.
- The outcome of each run is the test's own result, recorded when the `orket` fixture is torn
  down (in the event loop, after the call phase): passed → `pass`; failed on an assertion (or
  `pytest.fail`) → `fail`; failed on any other exception → `error`; xfailed → `fail`; skipped
  → `error` with the skip's reason (the report knows no "skip"). The reason is the first line
  of the failure.
- With pytest-xdist each worker sends its report to the controller (`workeroutput`), which
  merges them (`merge_reports`, runs sorted by test id so the report does not depend on which
  worker ran what) with its own and writes `--orket-report PATH`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._exceptions import InputError
from ..constraints import Constraints
from ..constraints._load import load_constraints
from ..report._io import write_report
from ..report._merge import merge_reports
from ..report._model import Report, current_metadata, decode_report, encode_json
from ..telemetry._pipeline import TelemetryPipeline

if TYPE_CHECKING:
    from ..providers import Provider

__all__ = [
    "CallResult",
    "InputError",
    "Orket",
    "decode_shard",
    "encode_shard",
    "open_pipeline",
    "outcome_of",
    "session_report",
    "write_session_report",
]

SUITE_NAME = "pytest"
"""The suite named in the report's metadata."""
_REASON_CHARS = 300


@dataclass(frozen=True)
class CallResult:
    """What the call phase of a test said: pytest's outcome (`passed`, `failed`, `skipped`),
    the exception's type name (None when none), its first line, and whether it was an xfail."""

    outcome: str
    exception: str | None = None
    message: str = ""
    xfail: bool = False


class Orket:
    """What the `orket` fixture gives a test: `generate` through the session's pipeline."""

    def __init__(self, pipeline: TelemetryPipeline, node_id: str) -> None:
        """Bind to the session's pipeline and to this test's node id. Never raises."""
        self.pipeline = pipeline
        self.node_id = node_id
        self.test_ids: list[str] = []

    async def generate(
        self,
        provider: Provider,
        prompt: str,
        *,
        constraints: Constraints | Mapping[str, Any] | None = None,
    ) -> str:
        """Generate through `provider`, recording the run's telemetry under the test's id.

        Args:
            provider: any orket-pipeline provider (an object with `generate` or `stream`).
            prompt: sent verbatim.
            constraints: a `Constraints`, or a dict of its fields (as in a suite file),
                scored for adherence.

        Returns:
            The generated text. Awaits the provider only.

        Raises:
            ConstraintError: `constraints` is not a valid constraints dict (the message names
                the test and the field). Whatever the provider raises.
        """
        number = len(self.test_ids) + 1
        test_id = self.node_id if number == 1 else f"{self.node_id}#{number}"
        if constraints is not None and not isinstance(constraints, Constraints):
            constraints = load_constraints(dict(constraints), where=test_id)
        self.test_ids.append(test_id)
        return await self.pipeline.generate(test_id, provider, prompt, constraints)

    def record(self, call: CallResult | None) -> None:
        """Record the test's result as the outcome of each of its runs. Never blocks."""
        outcome, reason = outcome_of(call)
        for test_id in self.test_ids:
            self.pipeline.record_outcome(test_id, outcome, reason)


def outcome_of(call: CallResult | None) -> tuple[str, str | None]:
    """A run's outcome and reason from its test's call phase (None: it never ran, e.g. a
    fixture after `orket` failed). Never raises."""
    if call is None:
        return "error", "the test's call phase did not run"
    reason = call.message.strip().splitlines()[0][:_REASON_CHARS] if call.message.strip() else None
    if call.outcome == "passed":
        return "pass", None
    if call.xfail:
        return "fail", f"xfail: {reason}" if reason else "xfail"
    if call.outcome == "skipped":
        return "error", f"skipped: {reason}" if reason else "skipped"
    if call.exception in ("AssertionError", "Failed"):
        return "fail", reason
    kind = call.exception or "error"
    return "error", f"{kind}: {reason}" if reason else kind


@asynccontextmanager
async def open_pipeline(reports: list[Report]) -> AsyncIterator[TelemetryPipeline]:
    """The session's pipeline; its report is appended to `reports` once it has closed.

    Raises whatever opening the pipeline raises. Awaits the pipeline's drain at exit.
    """
    pipeline = TelemetryPipeline(None, suite=SUITE_NAME)
    async with pipeline:
        yield pipeline
    reports.append(pipeline.report)


def encode_shard(reports: list[Report]) -> str:
    """This worker's runs as one report, JSON text for xdist's `workeroutput`. Never raises
    (beyond a `merge_reports` refusal of a test id seen twice)."""
    return encode_json(_merged(reports)).decode()


def decode_shard(text: str) -> Report:
    """A worker's report from `encode_shard`. Raises `ReportFormatError` when it is not one."""
    return decode_report(text.encode())


def session_report(local: list[Report], shards: list[Report]) -> Report:
    """The session's report: this process's runs, then (sorted by test id) the workers'.

    Raises:
        InputError: a test id found twice (`merge_reports`). Never blocks.
    """
    report = _merged(local)
    if shards:
        merged = merge_reports([report, *shards])
        merged.test_runs.sort(key=lambda run: run.test_id)
        return merged
    return report


def write_session_report(path: str | os.PathLike[str], report: Report) -> Report:
    """Write the report atomically. Raises `OSError` naming the file. Blocks on the write."""
    return write_report(Path(path), report)


def _merged(reports: list[Report]) -> Report:
    if not reports:
        return Report(metadata=current_metadata(suite=SUITE_NAME), test_runs=[])
    if len(reports) == 1:
        return reports[0]
    return merge_reports(reports)
