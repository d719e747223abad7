"""A thread that watches the event loop of `run`, so that no provider can make it hang.

An `async` provider that blocks (a `time.sleep`, a blocking socket call) stops the whole event
loop: `--timeout` cannot fire and a signal cannot be handled, since both need the loop. One that
swallows cancellation keeps the run from ever ending. The watchdog runs beside the loop:

- The loop ticks a heartbeat every `_BEAT_S`. When the heartbeat is `BLOCKED_WARN_S` late and a
  run's code holds the loop (found on the main thread's stack), one warning line on stderr
  names its task.
- A SIGINT or SIGTERM arms it (a Python-level handler chained before the event loop's own, so
  it runs even while the loop is blocked in Python code). If the loop stays blocked for
  `BLOCKED_EXIT_S` after the signal, or the run has not ended `GRACE_S` after it, or a second
  signal comes, the watchdog writes the runs that finished (rebuilt from the journal, or the
  outcomes it saw without telemetry), says so on stderr and ends the process with 128 + the
  signal's number.

It cannot help against native code that holds the GIL and never checks for signals.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import anyio

from ..engine._runner import RunResult
from ..engine._suite import Suite
from ..report._io import write_report
from ..report._journal import rebuild_report
from ..report._model import Report, TestRun, current_metadata

__all__ = ["BLOCKED_EXIT_S", "BLOCKED_WARN_S", "GRACE_S", "LoopWatchdog"]

BLOCKED_WARN_S = 2.0
"""How late the loop's heartbeat is before a warning names the task blocking it."""
BLOCKED_EXIT_S = 3.0
"""After a signal: how long the loop may stay blocked before the watchdog ends the process."""
GRACE_S = 10.0
"""After a signal: how long the run may take to end by itself (drain, write) before the
watchdog ends it; a second signal ends it at once."""

_BEAT_S = 0.1
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class LoopWatchdog:
    """Watches one `run`: see the module. Use `beat()` as a task in the loop, `install()`
    once the loop's signal handling is set up, `record` as the engine's result hook, and
    `stop()` when the run has ended. Never raises into the loop.

    Args:
        suite: the suite being run (for the order of the salvaged runs).
        out: the report to write when the watchdog ends the process.
        journal: the run's journal (None without telemetry).
        provider_name: the provider spec, for the salvaged report's metadata.
    """

    def __init__(self, suite: Suite, out: Path, journal: Path | None, provider_name: str) -> None:
        self._suite = suite
        self._out = out
        self._journal = journal
        self._provider_name = provider_name
        self._results: list[RunResult] = []
        self._beat: float | None = None  # none until the loop runs: its start-up is not lag
        self._signal: tuple[int, float] | None = None
        self._extra_signal = False
        self._stopped = threading.Event()
        self._warned_since: float | None = None
        self._thread = threading.Thread(target=self._watch, name="orket-watchdog", daemon=True)

    def start(self) -> None:
        """Start the watching thread. Never blocks or raises."""
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (the run ended by itself). Never blocks or raises."""
        self._stopped.set()

    def record(self, result: RunResult) -> None:
        """Keep a finished run's outcome, for a salvage without telemetry. Never raises."""
        self._results.append(result)

    async def beat(self) -> None:
        """Tick the heartbeat until cancelled. Awaits; never raises but cancellation."""
        while True:
            self._beat = time.monotonic()
            await anyio.sleep(_BEAT_S)

    def install(self) -> None:
        """Chain a handler before the current SIGINT/SIGTERM handlers (the event loop's), so
        that a signal arms the watchdog even while the loop is blocked. Main thread only."""
        for signum in _SIGNALS:
            previous = signal.getsignal(signum)
            signal.signal(signum, self._chained(previous))

    def _chained(self, previous: Any) -> Callable[[int, FrameType | None], None]:
        def handler(signum: int, frame: FrameType | None) -> None:
            if self._signal is None:
                self._signal = (signum, time.monotonic())
            else:
                self._extra_signal = True
            if callable(previous):
                previous(signum, frame)

        return handler

    def _watch(self) -> None:
        while not self._stopped.wait(_BEAT_S):
            now = time.monotonic()
            beat = self._beat
            late = 0.0 if beat is None else now - beat
            if late >= BLOCKED_WARN_S and self._warned_since != beat:
                blocker = _blocker()
                if blocker is not None:  # else our own work or a starved machine: no culprit
                    self._warned_since = beat
                    _say(
                        f"warning: {blocker} has blocked the event loop for {late:.0f} s: "
                        "--timeout and signals wait for it (an async provider must not block)"
                    )
            if self._signal is not None and self._must_end(now, late):
                self._end(self._signal[0], now - self._signal[1])

    def _must_end(self, now: float, late: float) -> bool:
        assert self._signal is not None
        since = now - self._signal[1]
        return self._extra_signal or late >= BLOCKED_EXIT_S or since >= GRACE_S

    def _end(self, signum: int, waited: float) -> None:
        if self._stopped.is_set():
            return
        saved = self._salvage()
        _say(
            f"the run did not stop {waited:.0f} s after the signal; "
            f"{saved} finished runs written to {self._out}"
        )
        _say("terminated" if signum == signal.SIGTERM else "interrupted")
        os._exit(128 + signum)

    def _salvage(self) -> int:
        """Write the finished runs; returns how many. Never raises."""
        try:
            report = self._finished_report()
            write_report(self._out, report)
        except Exception as exc:  # the process is ending: say why, never raise
            _say(f"could not write {self._out}: {exc}")
            return 0
        return len(report.test_runs)

    def _finished_report(self) -> Report:
        if self._journal is not None and self._journal.is_file():
            report, _ = rebuild_report(self._journal)
            return report
        order = {task.id: index for index, task in enumerate(self._suite.tasks)}
        results = sorted(list(self._results), key=lambda r: order.get(r.test_id, 0))
        runs = [
            TestRun(test_id=r.test_id, outcome=r.outcome, error=r.error, reason=r.reason)
            for r in results
        ]
        metadata = current_metadata(suite=self._suite.name, provider=self._provider_name)
        return Report(metadata=metadata, test_runs=runs)


def _blocker() -> str | None:
    """`task 'ID'` for the run whose code is on the main thread's stack, else None."""
    frame = sys._current_frames().get(threading.main_thread().ident or 0)
    while frame is not None:
        if frame.f_code.co_name in ("_attempt", "_run_one"):
            task = frame.f_locals.get("task")
            task_id = getattr(task, "id", None)
            if isinstance(task_id, str):
                return f"task {task_id!r}"
        frame = frame.f_back
    return None


def _say(line: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(f"orket-pipeline: {line}", file=sys.stderr, flush=True)
