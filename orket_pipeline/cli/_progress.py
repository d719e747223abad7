"""Progress of `orket-pipeline run` on stderr: a rich bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from ..engine._runner import RunResult

__all__ = ["ProgressReporter"]


class ProgressReporter:
    """Shows runs finishing: a live bar when `stream` is a terminal, else one line per tenth.

    Use it as a context manager around the run; `advance` is the engine's `on_result` hook.
    Nothing is shown with `quiet`.

    Args:
        total: the number of runs expected.
        quiet: show nothing.
        stream: where to write (default: stderr).
    """

    def __init__(self, total: int, *, quiet: bool = False, stream: TextIO | None = None) -> None:
        self._total = total
        self._stream = stream or sys.stderr
        self._quiet = quiet
        self._counts: Counter[str] = Counter()
        self._next_line = 1
        self._bar: Progress | None = None
        self._task_id: TaskID | None = None
        if not quiet and self._stream.isatty():
            self._bar = Progress(
                TextColumn("[bold]running"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=Console(file=self._stream),
            )

    def __enter__(self) -> ProgressReporter:
        if self._bar is not None:
            self._bar.start()
            self._task_id = self._bar.add_task(self._describe(), total=self._total)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

    def advance(self, result: RunResult) -> None:
        """Count one finished run and show it. Writes briefly to the stream; never raises."""
        self._counts[result.outcome] += 1
        done = sum(self._counts.values())
        if self._bar is not None and self._task_id is not None:
            self._bar.update(self._task_id, completed=done, description=self._describe())
        elif not self._quiet and done * 10 >= self._next_line * self._total:
            # One line per tenth of the suite (every run for suites of ten or fewer).
            self._next_line = done * 10 // max(self._total, 1) + 1
            line = f"orket-pipeline: {done}/{self._total} runs, {self._describe()}"
            with contextlib.suppress(OSError, ValueError):
                print(line, file=self._stream, flush=True)

    @property
    def finished(self) -> int:
        """How many runs have finished so far. Never raises."""
        return sum(self._counts.values())

    def _describe(self) -> str:
        c = self._counts
        return f"{c['pass']} passed, {c['fail']} failed, {c['error']} errored"
