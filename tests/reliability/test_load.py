"""Load: 10,000 runs at concurrency 200, and 1,000 streamed ones, through the engine and the CLI.

Every run is reported, in suite order, nothing is dropped, and memory stays bounded. Peak RSS is
measured by polling (the pipeline resets the kernel's high-water mark while it measures, so
`ru_maxrss` cannot be trusted here); the bounds are generous, several times what was measured
(see RELIABILITY.md for the figures).
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import anyio.lowlevel
import psutil
import pytest

from orket_pipeline.engine import Suite, Task
from orket_pipeline.engine._runner import execute
from orket_pipeline.report._io import read_report
from orket_pipeline.report._journal import read_journal
from orket_pipeline.report._model import Report

from ._helpers import CLI, cli_env, write_provider, write_suite

pytestmark = pytest.mark.anyio

MIB = 1 << 20
CODE = "def answer():\n    return 42\n"


class PeakRss:
    """Polls a process's RSS every few milliseconds in a thread; `peak` is the largest seen."""

    def __init__(self, pid: int | None = None) -> None:
        self._process = psutil.Process(pid)
        self.baseline = self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(0.005):
            try:
                self.peak = max(self.peak, self._process.memory_info().rss)
            except psutil.Error:
                return  # the process has exited

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Waves:
    """Answers without sleeping, in waves: each generation waits until `concurrency` are in
    flight (or the last has started), so the engine's limit is reached, never exceeded."""

    supports_streaming = False

    def __init__(self, concurrency: int, total: int) -> None:
        self.concurrency, self.total = concurrency, total
        self.started = self.in_flight = self.max_in_flight = 0
        self._waiting: list[anyio.Event] = []

    async def generate(self, prompt: str) -> str:
        self.started += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if self.in_flight >= self.concurrency or self.started == self.total:
            for event in self._waiting:
                event.set()
            self._waiting.clear()
            await anyio.lowlevel.checkpoint()
        else:
            event = anyio.Event()
            self._waiting.append(event)
            await event.wait()
        self.in_flight -= 1
        return CODE


class Chunked:
    """Streams CODE in 20 chunks, yielding to the loop before each."""

    supports_streaming = True

    async def stream(self, prompt: str) -> AsyncIterator[str]:
        for index in range(20):
            await anyio.lowlevel.checkpoint()
            yield CODE if index == 0 else f"# {index}\n"


def big_suite(count: int) -> Suite:
    return Suite(
        name="load", tasks=tuple(Task(id=f"t{i:05d}", prompt=f"p{i}") for i in range(count))
    )


def assert_complete(report: Report, suite: Suite, *, events_per_run: int) -> None:
    assert [r.test_id for r in report.test_runs] == [t.id for t in suite.tasks]
    assert all(r.outcome == "pass" for r in report.test_runs)
    assert all(r.telemetry and r.telemetry.total_latency is not None for r in report.test_runs)
    statistics = report.metadata.pipeline
    assert statistics is not None
    assert statistics.events_dropped == 0 and statistics.late_events == 0
    assert statistics.stage_errors == {} and statistics.journal_errors == 0
    assert statistics.events_published == events_per_run * len(suite.tasks)


@pytest.fixture
def rss() -> Iterator[PeakRss]:
    with PeakRss() as peak:
        yield peak


async def test_ten_thousand_instant_runs_at_concurrency_200_are_all_reported_in_order(
    tmp_path: Path, rss: PeakRss
) -> None:
    suite, provider = big_suite(10_000), Waves(200, 10_000)
    out, journal = tmp_path / "r.json", tmp_path / "j.jsonl"
    started = time.monotonic()
    report = await execute(suite, provider, report_path=out, journal_path=journal, concurrency=200)
    elapsed = time.monotonic() - started
    assert provider.max_in_flight == 200
    assert_complete(report, suite, events_per_run=2)
    assert read_report(out).test_runs == report.test_runs
    assert [run for _, run in read_journal(journal).runs] == report.test_runs
    assert elapsed < 20
    assert (rss.peak - rss.baseline) / MIB < 200  # measured: about 20 MiB


async def test_a_thousand_streamed_runs_at_concurrency_200_are_all_reported_in_order(
    tmp_path: Path, rss: PeakRss
) -> None:
    suite = big_suite(1_000)
    report = await execute(suite, Chunked(), report_path=tmp_path / "r.json", concurrency=200)
    assert_complete(report, suite, events_per_run=2)
    for run in report.test_runs:
        assert run.telemetry is not None
        assert run.telemetry.chunk_count == 20 and run.telemetry.init_latency is not None
    assert (rss.peak - rss.baseline) / MIB < 100  # measured: a few MiB


@pytest.mark.slow
def test_the_cli_runs_ten_thousand_tasks_in_bounded_memory(tmp_path: Path) -> None:
    write_provider(tmp_path)
    ids = write_suite(tmp_path / "suite.json", 10_000)
    args = ["run", "suite.json", "--provider", "python:provider.py:Instant", "--quiet"]
    with (tmp_path / "stdout.txt").open("wb") as stdout:
        process = subprocess.Popen(
            [*CLI, *args, "--concurrency", "200"],
            cwd=tmp_path,
            env=cli_env(),
            stdout=stdout,
            stderr=subprocess.PIPE,
        )
        with PeakRss(process.pid) as peak:
            _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    report = read_report(tmp_path / "orket_report.json")
    assert [r.test_id for r in report.test_runs] == ids
    assert peak.peak / MIB < 500  # the whole process; measured: about 100 MiB
