"""Resuming a run that did not finish: which runs its journal keeps, and the journal carried on.

A journal's `order` is the run's index in its suite, so the runs kept and the runs made by the
resumed run are journaled, and reported, in one suite order. The journal must belong to the
suite being run: its header names the suite and its digest (`suite_digest`: the tasks' ids,
prompts, constraints and gates, in order), and every run it holds must be one of the suite's
tasks. A journal written before digests existed is checked by the name and ids alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import msgspec

from .._exceptions import InputError
from ..report._io import write_report
from ..report._journal import JournalWriter, read_resumable, resume_backup
from ..report._model import Metadata, Report, TestRun
from ..telemetry._pipeline import TelemetryPipeline
from ._suite import Suite

__all__ = [
    "journal_for",
    "kept_runs",
    "merge_in_suite_order",
    "park_kept_runs",
    "remove_journal",
    "resume_with_telemetry",
    "suite_digest",
]


def suite_digest(suite: Suite) -> str:
    """A stable hash of what `suite` asks: its tasks' ids, prompts, constraints and gates, in
    order (sha256 over their JSON, keys sorted), as 64 hex digits. Never raises."""
    encoded = msgspec.json.encode(suite.tasks, order="sorted")
    return hashlib.sha256(encoded).hexdigest()


def kept_runs(
    suite: Suite, journal: str | os.PathLike[str], *, provider: str | None = None
) -> dict[str, TestRun]:
    """The finished runs `journal` holds for `suite`, by test id.

    Args:
        suite: the suite being run.
        journal: the journal of the run to continue.
        provider: when given, the journal's header must name this provider (or none).

    Raises:
        InputError: one line: there is no journal (or it holds nothing), it is not a readable
            journal, its header names another suite or another suite digest (or another
            `provider`), or it holds a run that is not one of the suite's tasks.

    Blocks on reading the journal.
    """
    contents = read_resumable(journal)
    if contents is None:
        raise InputError(f"--resume: no journal at {journal} to resume from")
    named = None if contents.metadata is None else contents.metadata.suite
    if named is not None and named != suite.name:
        raise InputError(
            f"--resume: the journal {journal} belongs to suite {named!r}, not {suite.name!r}"
        )
    _check_digest(journal, suite, contents.metadata)
    made_by = None if contents.metadata is None else contents.metadata.provider
    if provider is not None and made_by is not None and made_by != provider:
        raise InputError(
            f"--resume: the journal {journal} was written with provider {made_by!r}, "
            f"not {provider!r} (--force to resume anyway)"
        )
    ids = {task.id for task in suite.tasks}
    for _, run in contents.runs:
        if run.test_id not in ids:
            raise InputError(
                f"--resume: the journal {journal} holds task {run.test_id!r}, which suite "
                f"{suite.name!r} does not have; it belongs to another suite"
            )
    return {run.test_id: run for _, run in contents.runs}


def _check_digest(journal: str | os.PathLike[str], suite: Suite, metadata: Metadata | None) -> None:
    # A journal without a digest (written before digests existed) is left to the name and ids.
    recorded = None if metadata is None else metadata.suite_digest
    if recorded is None:
        return
    current = suite_digest(suite)
    if recorded != current:
        raise InputError(
            f"--resume: the journal {journal} belongs to another version of suite "
            f"{suite.name!r} (suite digest {recorded[:12]} in the journal, {current[:12]} now: "
            "its tasks' prompts, constraints or gates changed)"
        )


def suite_entries(suite: Suite, runs: dict[str, TestRun]) -> list[tuple[int, TestRun]]:
    """`runs` as journal entries: `(index in the suite, run)`, in suite order. Never raises."""
    return [(i, runs[task.id]) for i, task in enumerate(suite.tasks) if task.id in runs]


def park_kept_runs(journal: Path, suite: Suite, runs: dict[str, TestRun]) -> None:
    """Write the kept runs to `resume_backup(journal)` (atomically) before the new journal
    truncates `journal`; the caller removes the backup once the new journal holds them.

    Raises:
        OSError: the backup could not be written (nothing was changed). Blocks on file I/O.
    """
    backup = resume_backup(journal)
    temporary = backup.with_name(backup.name + ".tmp")
    writer = JournalWriter(temporary, Metadata(suite=suite.name, suite_digest=suite_digest(suite)))
    try:
        writer.open()
        writer.append_many(suite_entries(suite, runs))
    finally:
        writer.close()
    os.replace(temporary, backup)


def remove_journal(journal: Path) -> None:
    """Delete a journal and its resume backup; missing files are fine. Never raises."""
    for path in (journal, resume_backup(journal)):
        with contextlib.suppress(OSError):
            path.unlink()


def merge_in_suite_order(suite: Suite, kept: dict[str, TestRun], new: Report) -> Report:
    """The kept runs and `new`'s runs in one report, in suite order; `new`'s metadata.

    A kept run wins over a new one with its id (there is none: kept tasks are not run).
    Never raises.
    """
    made = {run.test_id: run for run in new.test_runs}
    runs = [kept.get(task.id) or made.get(task.id) for task in suite.tasks]
    return Report(
        schema_version=new.schema_version,
        metadata=new.metadata,
        test_runs=[run for run in runs if run is not None],
    )


async def resume_with_telemetry(
    suite: Suite,
    run: Callable[..., Awaitable[Any]],
    *,
    report_path: str | os.PathLike[str] | None,
    journal_path: str | os.PathLike[str] | None,
    kept: dict[str, TestRun],
    settings: dict[str, Any],
) -> Report:
    """Run the tasks not in `kept` (`await run(pipeline=...)`) through a `TelemetryPipeline`
    (`settings` are its keyword arguments) whose journal starts with the kept runs, then write
    the kept and new runs in one report, even when cancelled.

    Raises:
        OSError: the journal (or its backup) could not be written before any run started, or
            the report could not be written. Cancellation propagates after the write.
    """
    journal = journal_for(report_path, journal_path)
    parked = journal is not None and bool(kept)
    if journal is not None and parked:
        # The new journal truncates the old one: park the kept runs first.
        await anyio.to_thread.run_sync(park_kept_runs, journal, suite, kept)
    pipeline = TelemetryPipeline(None, journal_path=journal, **settings)
    report: Report | None = None
    try:
        async with pipeline:
            if journal is not None and parked and _journal_kept(pipeline, suite, kept):
                await anyio.to_thread.run_sync(_unlink, resume_backup(journal))
            await run(pipeline=pipeline)
    finally:
        with anyio.CancelScope(shield=True):
            report = await _write_merged(suite, kept, pipeline, report_path)
            if report is not None and journal is not None and journal_path is None:
                await anyio.to_thread.run_sync(remove_journal, journal)
    assert report is not None  # the pipeline closed, so it has its report
    return report


def journal_for(
    report_path: str | os.PathLike[str] | None, journal_path: str | os.PathLike[str] | None
) -> Path | None:
    """Where a pipeline journals: `journal_path`, else beside the report. Never raises."""
    if journal_path is not None:
        return Path(journal_path)
    if report_path is None:
        return None
    path = Path(report_path)
    return path.with_name(path.name + ".journal.jsonl")


def _journal_kept(pipeline: TelemetryPipeline, suite: Suite, kept: dict[str, TestRun]) -> bool:
    # The kept runs go first into the pipeline's own journal writer (nothing has finished yet),
    # with their suite index as order, as the new runs get theirs from `register`.
    writer = pipeline._journal
    if writer is None:
        return False
    try:
        writer.append_many(suite_entries(suite, kept))
    except OSError:
        return False  # the writer keeps them for its next batch; keep the backup meanwhile
    return True


async def _write_merged(
    suite: Suite,
    kept: dict[str, TestRun],
    pipeline: TelemetryPipeline,
    report_path: str | os.PathLike[str] | None,
) -> Report | None:
    try:
        new = pipeline.report
    except RuntimeError:
        return None  # it never opened (the journal could not be written): nothing ran
    report = merge_in_suite_order(suite, kept, new)
    if report_path is not None:
        report = await anyio.to_thread.run_sync(write_report, report_path, report)
    return report


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
