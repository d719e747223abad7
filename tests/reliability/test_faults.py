"""Faults through the engine: providers failing at every point, hanging, cancelled; stages
crashing; the journal's disk filling up. Every finished run is still reported, every failure
has a reason, and nothing raises into the engine."""

from __future__ import annotations

import errno
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from io import FileIO
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from orket_pipeline.engine import Suite, Task, parse_suite
from orket_pipeline.engine._runner import execute
from orket_pipeline.report._io import read_report
from orket_pipeline.report._journal import JournalWriter, read_journal
from orket_pipeline.report._model import Metadata, Report, TestRun
from orket_pipeline.telemetry import stages

from ._helpers import cli_env, write_provider, write_suite

pytestmark = pytest.mark.anyio

CODE = "def answer():\n    return 42\n"


def suite_of(*ids: str) -> Suite:
    return Suite(name="faults", tasks=tuple(Task(id=i, prompt=i) for i in ids))


def triples(report: Report) -> list[tuple[str, str, str | None]]:
    return [(r.test_id, r.outcome, r.reason) for r in report.test_runs]


class FailAt:
    """Answers every prompt with CODE in two chunks, except `failing`, which raises at `point`."""

    def __init__(self, point: str) -> None:
        self.point = point
        self.supports_streaming = point != "generate"

    async def generate(self, prompt: str) -> str:
        if prompt == "failing":
            raise RuntimeError("boom")
        return CODE

    def stream(self, prompt: str) -> AsyncIterator[str]:
        if prompt == "failing" and self.point == "stream_creation":
            raise RuntimeError("boom")  # before any iterator exists: the request never went out
        return self._chunks(prompt)

    async def _chunks(self, prompt: str) -> AsyncIterator[str]:
        failing = prompt == "failing"
        if failing and self.point == "before_first_chunk":
            raise RuntimeError("boom")
        yield CODE[:10]
        if failing and self.point == "mid_stream":
            raise RuntimeError("boom")
        yield CODE[10:]
        if failing and self.point == "after_last_chunk":
            raise RuntimeError("boom")


CHUNKS_BEFORE_FAILURE = {
    "generate": 0,
    "stream_creation": 0,
    "before_first_chunk": 0,
    "mid_stream": 1,
    "after_last_chunk": 2,
}


class TestProviderFailures:
    @pytest.mark.parametrize("point", list(CHUNKS_BEFORE_FAILURE))
    @pytest.mark.parametrize("telemetry", [True, False], ids=["telemetry", "no-telemetry"])
    async def test_a_provider_raising_at_any_point_is_that_runs_error_only(
        self, point: str, telemetry: bool
    ) -> None:
        suite = suite_of("before", "failing", "after")
        report = await execute(suite, FailAt(point), report_path=None, telemetry=telemetry)
        assert triples(report) == [
            ("before", "pass", None),
            ("failing", "error", "RuntimeError: boom"),
            ("after", "pass", None),
        ]
        failed = report.test_runs[1]
        assert failed.error is not None and failed.error.type == "RuntimeError"
        if not telemetry:
            return
        telemetry_ = failed.telemetry
        assert telemetry_ is not None
        assert telemetry_.error_type == "RuntimeError"
        assert telemetry_.total_latency is not None and telemetry_.peak_memory_rss is not None
        assert telemetry_.adherence_score is None
        chunks = CHUNKS_BEFORE_FAILURE[point]
        assert telemetry_.chunk_count == chunks
        assert (telemetry_.init_latency is None) == (chunks == 0)

    async def test_a_provider_streaming_non_text_chunks_still_gets_latency_and_an_error(
        self,
    ) -> None:
        class BytesChunks:
            supports_streaming = True

            async def stream(self, prompt: str) -> AsyncIterator[Any]:
                yield b"def answer(): return 42"

        report = await execute(suite_of("t"), BytesChunks(), report_path=None)  # type: ignore[arg-type]
        (run,) = report.test_runs
        assert run.outcome == "error" and run.reason is not None and "TypeError" in run.reason
        assert run.telemetry is not None and run.telemetry.total_latency is not None
        assert run.error is not None and run.error.type == "TypeError"


class HangsMidStream:
    """Prompt `hang` yields one chunk, then never another; records that its stream was closed."""

    supports_streaming = True

    def __init__(self) -> None:
        self.closed_at: float | None = None

    async def stream(self, prompt: str) -> AsyncIterator[str]:
        yield CODE
        if prompt != "hang":
            return
        try:
            await anyio.sleep_forever()
        finally:
            self.closed_at = time.monotonic()


class TestHangs:
    @pytest.mark.parametrize("telemetry", [True, False], ids=["telemetry", "no-telemetry"])
    async def test_a_stream_hanging_mid_way_times_out_with_a_reason_and_is_closed(
        self, telemetry: bool
    ) -> None:
        provider = HangsMidStream()
        started = time.monotonic()
        report = await execute(
            suite_of("hang", "next"),
            provider,
            report_path=None,
            telemetry=telemetry,
            timeout_s=0.2,
            concurrency=1,
        )
        assert triples(report) == [
            ("hang", "error", "generation timed out after 0.2 s"),
            ("next", "pass", None),
        ]
        # aclosing: the provider's stream (its connection) is closed at the timeout, not later.
        assert provider.closed_at is not None and provider.closed_at - started < 1.0
        if telemetry:
            hung = report.test_runs[0].telemetry
            assert hung is not None and hung.chunk_count == 1 and hung.init_latency is not None
            assert hung.total_latency is not None
            assert Decimal("0.190") <= hung.total_latency < 1  # the deadline, to rounding

    async def test_a_timed_out_runs_error_is_the_same_with_and_without_telemetry(self) -> None:
        errors = []
        for telemetry in (True, False):
            report = await execute(
                suite_of("hang"),
                HangsMidStream(),
                report_path=None,
                telemetry=telemetry,
                timeout_s=0.1,
            )
            errors.append(report.test_runs[0].error)
        assert errors[0] == errors[1]


class BlocksItsThread:
    """A plain-`def` provider that blocks until released (a stuck HTTP client, say)."""

    supports_streaming = False

    def __init__(self) -> None:
        self.release = threading.Event()

    def generate(self, prompt: str) -> str:
        self.release.wait(30)
        return CODE


@pytest.fixture
def blocking() -> Iterator[BlocksItsThread]:
    provider = BlocksItsThread()
    yield provider
    provider.release.set()  # let the abandoned thread finish


class TestBlockingProviders:
    async def test_a_blocked_thread_times_out_without_telemetry(
        self, blocking: BlocksItsThread
    ) -> None:
        started = time.monotonic()
        report = await execute(
            suite_of("t"), blocking, report_path=None, telemetry=False, timeout_s=0.2
        )
        assert triples(report) == [("t", "error", "generation timed out after 0.2 s")]
        assert time.monotonic() - started < 5

    async def test_a_blocked_thread_times_out_with_telemetry(
        self, blocking: BlocksItsThread
    ) -> None:
        release = threading.Timer(1.0, blocking.release.set)  # a broken timeout must not cost 30 s
        release.start()
        try:
            report = await execute(suite_of("t"), blocking, report_path=None, timeout_s=0.2)
        finally:
            release.cancel()
        assert triples(report) == [("t", "error", "generation timed out after 0.2 s")]


class CountsOpenStreams:
    """Prompts `f*` finish at once; the others hang after a first chunk until closed."""

    supports_streaming = True

    def __init__(self, hanging: int) -> None:
        self.all_hanging = anyio.Event()
        self.hanging, self.expected, self.closed = 0, hanging, 0

    async def stream(self, prompt: str) -> AsyncIterator[str]:
        yield CODE
        if prompt.startswith("f"):
            return
        self.hanging += 1
        if self.hanging == self.expected:
            self.all_hanging.set()
        try:
            await anyio.sleep_forever()
        finally:
            self.closed += 1


@pytest.mark.parametrize("telemetry", [True, False], ids=["telemetry", "no-telemetry"])
async def test_cancelling_the_engine_mid_stream_reports_finished_runs_and_closes_streams(
    tmp_path: Path, telemetry: bool
) -> None:
    provider = CountsOpenStreams(hanging=3)
    out = tmp_path / "r.json"
    suite = suite_of("f0", "f1", "f2", "h3", "h4", "h5", "h6")
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            await execute(
                suite, provider, report_path=out, telemetry=telemetry, concurrency=3, timeout_s=None
            )

        tg.start_soon(run)
        await provider.all_hanging.wait()
        tg.cancel_scope.cancel()
    assert provider.closed == 3, "every open stream was closed"
    outcomes = {r.test_id: r.outcome for r in read_report(out).test_runs}
    assert {t: outcomes[t] for t in ("f0", "f1", "f2")} == dict.fromkeys(("f0", "f1", "f2"), "pass")
    assert all(outcomes.get(t) in (None, "error") for t in ("h3", "h4", "h5", "h6"))
    assert list(outcomes) == sorted(outcomes)  # suite order


# -- stages crashing -----------------------------------------------------------------------------

GATED = {
    "tasks": [
        {"id": "pass", "prompt": "ok"},
        {"id": "fail", "prompt": "ok", "gate": {"type": "python_tests", "code": "assert 0"}},
        {"id": "error", "prompt": "failing"},
    ]
}
GATED_SUITE = parse_suite(msgspec.json.encode(GATED), name="gated.json")
GATED_OUTCOMES = [
    ("pass", "pass", None),
    ("fail", "fail", "AssertionError (line 5: assert 0)"),
    ("error", "error", "RuntimeError: boom"),
]


def crashing(method: str) -> Any:
    if method in ("handle", "handle_batch"):

        def handle(self: object, event: object) -> None:
            raise RuntimeError("stage bug")

        return handle

    async def other(self: object) -> None:
        raise RuntimeError("stage bug")

    return other


STAGE_FAULTS = [
    ("LatencyTracker", "handle_batch", "latency"),
    ("MemorySampler", "handle_batch", "memory"),
    ("MemorySampler", "after_batch", "memory"),
    ("MemorySampler", "finish", "memory"),
    ("ConstraintStage", "handle_batch", "constraints"),
    ("ConstraintStage", "after_batch", "constraints"),
    ("ConstraintStage", "finish", "constraints"),
    ("ReportAggregator", "after_batch", "aggregator"),
    ("ReportAggregator", "finish", "aggregator"),
]


@pytest.mark.parametrize(
    ("stage", "method", "name"), STAGE_FAULTS, ids=[f"{s}.{m}" for s, m, _ in STAGE_FAULTS]
)
async def test_a_crashing_stage_changes_no_outcome_and_is_counted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stage: str, method: str, name: str
) -> None:
    monkeypatch.setattr(getattr(stages, stage), method, crashing(method))
    out = tmp_path / "r.json"
    report = await execute(GATED_SUITE, FailAt("mid_stream"), report_path=out, concurrency=3)
    assert triples(report) == GATED_OUTCOMES
    assert triples(read_report(out)) == GATED_OUTCOMES
    statistics = report.metadata.pipeline
    assert statistics is not None and statistics.stage_errors.get(name, 0) >= 1
    assert set(statistics.stage_errors) == {name}


async def test_an_aggregator_failing_on_every_event_still_reports_every_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stages.ReportAggregator, "handle_batch", crashing("handle_batch"))
    report = await execute(GATED_SUITE, FailAt("mid_stream"), report_path=None)
    assert [r.test_id for r in report.test_runs] == ["pass", "fail", "error"]


# -- the journal's disk fills up -----------------------------------------------------------------


class FillingDisk:
    """Stands in for the journal's file: while `full`, a write stores half its bytes, then the
    next raises ENOSPC, as a disk filling up mid-write does."""

    def __init__(self, real: FileIO) -> None:
        self.real = real
        self.full = False
        self._partial_done = False

    def write(self, data: Any) -> int:
        if not self.full:
            self._partial_done = False
            return self.real.write(data)
        if not self._partial_done and len(data) > 1:
            self._partial_done = True
            return self.real.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def open_on_filling_disk(writer: JournalWriter) -> FillingDisk:
    writer.open()
    disk = FillingDisk(writer._file)  # type: ignore[arg-type]
    writer._file = disk  # type: ignore[assignment]
    return disk


def run(test_id: str) -> TestRun:
    return TestRun(test_id=test_id, outcome="pass")


class TestJournalDiskFull:
    def test_a_failed_write_leaves_no_torn_line_and_the_journal_catches_up(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "j.jsonl"
        writer = JournalWriter(path, Metadata())
        disk = open_on_filling_disk(writer)
        writer.append_many([(0, run("a"))])
        good = path.read_bytes()
        disk.full = True
        with pytest.raises(OSError, match="No space left") as caught:
            writer.append_many([(1, run("b"))])
        assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(path)
        assert path.read_bytes() == good, "the half-written batch was cut off"
        disk.full = False
        writer.append_many([(2, run("c"))])
        writer.close()
        contents = read_journal(path)
        assert [r.test_id for _, r in contents.runs] == ["a", "b", "c"]
        assert contents.torn_line is None

    def test_close_never_raises_while_the_disk_is_full(self, tmp_path: Path) -> None:
        path = tmp_path / "j.jsonl"
        writer = JournalWriter(path, Metadata())
        disk = open_on_filling_disk(writer)
        writer.append_many([(0, run("a"))])
        disk.full = True
        with pytest.raises(OSError):
            writer.append_many([(1, run("b"))])
        writer.close()  # retries "b", fails again, and says nothing: append_many already did
        writer.close()
        assert [r.test_id for _, r in read_journal(path).runs] == ["a"]

    async def test_the_run_goes_on_and_the_report_counts_the_failures(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        real_open = JournalWriter.open

        def open_then_fill(self: JournalWriter) -> None:
            real_open(self)
            disk = FillingDisk(self._file)  # type: ignore[arg-type]
            disk.full = True
            self._file = disk  # type: ignore[assignment]

        monkeypatch.setattr(JournalWriter, "open", open_then_fill)
        ids = [f"t{i:02d}" for i in range(20)]
        journal = tmp_path / "kept.jsonl"
        report = await execute(
            suite_of(*ids),
            FailAt("none"),
            report_path=tmp_path / "r.json",
            journal_path=journal,
            concurrency=4,
        )
        assert [(r.test_id, r.outcome) for r in report.test_runs] == [(t, "pass") for t in ids]
        assert read_report(tmp_path / "r.json").test_runs == report.test_runs
        statistics = report.metadata.pipeline
        assert statistics is not None and statistics.journal_errors >= 1
        contents = read_journal(journal)  # only the header: no torn line, still readable
        assert contents.runs == [] and contents.torn_line is None


# In the CLI process: every journal write after the header fails as on a full disk.
JOURNAL_DISK_FULL = """
import errno, sys
from orket_pipeline.report import _journal
def full(file, data):
    raise OSError(errno.ENOSPC, "No space left on device")
real_open = _journal.JournalWriter.open
def open_then_fill(self):
    real_open(self)
    _journal._write_all = full
_journal.JournalWriter.open = open_then_fill
from orket_pipeline.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_full_journal_disk_is_one_line_on_stderr_and_in_the_report(tmp_path: Path) -> None:
    write_provider(tmp_path)
    ids = write_suite(tmp_path / "suite.json", 30)
    args = ["run", "suite.json", "--provider", "python:provider.py:Slow", "--concurrency", "8"]
    result = subprocess.run(
        [sys.executable, "-c", JOURNAL_DISK_FULL, *args, "--quiet"],
        cwd=tmp_path,
        env=cli_env(tmp_path / "completed.log"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    journal = tmp_path / "orket_report.json.journal.jsonl"
    assert result.stderr == (
        "orket-pipeline: journal write failed, runs go on: "
        f"[Errno 28] No space left on device: '{journal.name}'\n"
    )
    report = read_report(tmp_path / "orket_report.json")
    assert [r.test_id for r in report.test_runs] == ids
    assert report.metadata.pipeline is not None and report.metadata.pipeline.journal_errors >= 1


# In the CLI process: the report cannot be written (the disk filled up by the end of the run).
REPORT_DISK_FULL = """
import errno, sys
from orket_pipeline.report import _io as _report_io
def full(path, data):
    raise OSError(errno.ENOSPC, "No space left on device")
_report_io.write_bytes_atomic = full
from orket_pipeline.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "telemetry",
    [pytest.param(True, id="telemetry"), pytest.param(False, id="no-telemetry")],
    ids=["telemetry", "no-telemetry"],
)
def test_a_report_that_cannot_be_written_is_one_line_naming_it_and_the_journal(
    tmp_path: Path, telemetry: bool
) -> None:
    write_provider(tmp_path)
    ids = write_suite(tmp_path / "suite.json", 5)
    args = ["run", "suite.json", "--provider", "python:provider.py:Slow", "--quiet"]
    result = subprocess.run(
        [sys.executable, "-c", REPORT_DISK_FULL, *args, *([] if telemetry else ["--no-telemetry"])],
        cwd=tmp_path,
        env=cli_env(tmp_path / "completed.log"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    message = "orket-pipeline: error: run: cannot write the report orket_report.json: "
    message += "No space left on device"
    journal = "orket_report.json.journal.jsonl"
    if telemetry:  # the journal holds every run: say how to get the report back
        message += f"; the journal {journal} holds 5 of the 5 finished runs "
        message += f"(orket-pipeline rebuild {journal} -o orket_report.json)"
        assert [r.test_id for _, r in read_journal(tmp_path / journal).runs] == ids
    assert result.stderr == message + "\n"
    assert not (tmp_path / "orket_report.json").exists()
