"""What `run` refuses before the first run starts: outputs that would overwrite an input, a
device or an earlier run's journal, and outputs it could not write at the end."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from orket_pipeline.cli import main
from orket_pipeline.cli._run import _cannot_write
from orket_pipeline.report._journal import JournalWriter
from orket_pipeline.report._model import Metadata, TestRun

# A provider that logs every call, so a test can tell that no run started.
PROVIDER = """
import os

class P:
    supports_streaming = False

    async def generate(self, prompt):
        with open(os.environ["ORKET_CALLS"], "a") as log:
            log.write(prompt + "\\n")
        return "x = 1"
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ORKET_CALLS", str(tmp_path / "calls.log"))
    tasks = [{"id": f"t{i}", "prompt": f"p{i}"} for i in range(3)]
    (tmp_path / "suite.json").write_text(json.dumps({"tasks": tasks}))
    (tmp_path / "p.py").write_text(PROVIDER)
    (tmp_path / "cassette.jsonl").write_text('{"cassette": 1, "streaming": false}\n')
    return tmp_path


def refusal(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["run", "suite.json", "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("orket-pipeline: error: run: "), err
    return err


def no_run_started(workdir: Path) -> bool:
    return not (workdir / "calls.log").exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--provider", "python:p.py:P", "--out", "suite.json"], "--out suite.json is the suite"),
        (["--provider", "python:p.py:P", "--journal", "suite.json"], "is the suite"),
        (["--provider", "python:p.py:P", "--out", "./suite.json"], "is the suite"),
        (["--provider", "replay:cassette.jsonl", "--out", "cassette.jsonl"], "replay cassette"),
        (["--provider", "python:p.py:P", "--out", "r.json", "--journal", "r.json"], "same file"),
    ],
)
def test_an_output_that_is_an_input_is_refused_and_the_input_kept(
    workdir: Path, capsys: pytest.CaptureFixture[str], args: list[str], fragment: str
) -> None:
    suite, cassette = (
        (workdir / "suite.json").read_bytes(),
        (workdir / "cassette.jsonl").read_bytes(),
    )
    assert fragment in refusal(capsys, *args)
    assert (workdir / "suite.json").read_bytes() == suite
    assert (workdir / "cassette.jsonl").read_bytes() == cassette
    assert no_run_started(workdir)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")
def test_out_that_is_not_a_regular_file_is_refused_and_kept(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A FIFO stands for /dev/null here: as root, the report's rename replaced the device with
    # a file, and a test must not do that to the machine if the check ever regresses.
    os.mkfifo(workdir / "pipe")
    err = refusal(capsys, "--provider", "python:p.py:P", "--out", "pipe")
    assert "--out pipe is not a regular file" in err
    assert stat.S_ISFIFO((workdir / "pipe").stat().st_mode)
    assert no_run_started(workdir)


def test_a_journal_given_with_journal_that_holds_runs_is_never_truncated(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = workdir / "kept.jsonl"
    writer = JournalWriter(journal, Metadata())
    writer.open()
    writer.append_many([(i, TestRun(test_id=f"t{i}", outcome="pass")) for i in range(3)])
    writer.close()
    before = journal.read_bytes()
    err = refusal(capsys, "--provider", "python:p.py:P", "--journal", "kept.jsonl")
    assert "--journal kept.jsonl already holds" in err and "rebuild kept.jsonl" in err
    assert journal.read_bytes() == before
    assert no_run_started(workdir)


def test_an_empty_journal_file_may_be_reused(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "j.jsonl").write_bytes(b"")
    assert (
        main(
            ["run", "suite.json", "--quiet", "--provider", "python:p.py:P", "--journal", "j.jsonl"]
        )
        == 0
    )
    assert (workdir / "j.jsonl").read_bytes().count(b"\n") == 4  # header and three runs


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("telemetry", [True, False], ids=["telemetry", "no-telemetry"])
def test_an_unwritable_out_is_refused_before_any_run(
    workdir: Path, capsys: pytest.CaptureFixture[str], telemetry: bool
) -> None:
    # /proc takes no new file, even from root (for whom a read-only mode means nothing).
    args = ["--provider", "python:p.py:P", "--out", "/proc/orket_r.json"]
    err = refusal(capsys, *args, *([] if telemetry else ["--no-telemetry"]))
    assert "cannot write --out /proc/orket_r.json" in err
    assert no_run_started(workdir)


def test_no_lock_or_probe_file_is_left_behind(workdir: Path) -> None:
    before = set(os.listdir(workdir))
    assert main(["run", "suite.json", "--quiet", "--provider", "python:p.py:P"]) == 0
    assert set(os.listdir(workdir)) - before == {"orket_report.json", "calls.log"}


class TestCannotWriteMessage:
    """The message after a failed report write claims no more runs than the journal holds."""

    def _journal(self, path: Path, runs: int) -> Path:
        writer = JournalWriter(path, Metadata())
        writer.open()
        writer.append_many([(i, TestRun(test_id=f"t{i}", outcome="pass")) for i in range(runs)])
        writer.close()
        return path

    def test_it_says_how_many_of_the_finished_runs_are_on_disk(self, tmp_path: Path) -> None:
        journal = self._journal(tmp_path / "j.jsonl", 107)
        error = OSError(28, "No space left on device")
        message = str(_cannot_write("report", tmp_path / "r.json", error, journal, 200))
        assert f"the journal {journal} holds 107 of the 200 finished runs" in message

    def test_an_empty_or_missing_journal_is_not_offered_as_a_copy(self, tmp_path: Path) -> None:
        error = OSError(28, "No space left on device")
        for journal in (self._journal(tmp_path / "j.jsonl", 0), tmp_path / "missing.jsonl"):
            message = str(_cannot_write("report", tmp_path / "r.json", error, journal, 5))
            assert "none of the 5 finished runs reached the journal" in message
            assert "rebuild" not in message
