"""`orket-pipeline run --resume`: a run killed mid-suite is continued from its journal.

The crash is real: a provider that SIGKILLs its own process once N runs are journaled. Each
process logs every provider call to its own file, so a test can tell which runs were made again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from orket_pipeline.cli import main
from orket_pipeline.engine import execute, load_suite
from orket_pipeline.engine._resume import suite_digest
from orket_pipeline.report._io import read_report
from orket_pipeline.report._journal import JournalWriter, read_journal, resume_backup
from orket_pipeline.report._model import Metadata, Report, TestRun

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")

PROVIDER = '''
import os
import signal

import anyio


class Killer:
    """Logs each call; the call after $ORKET_KILL_AFTER calls waits until the journal holds
    $ORKET_KILL_WHEN runs, then SIGKILLs this process."""

    supports_streaming = False

    async def generate(self, prompt):
        log = os.environ["ORKET_CALLS"]
        with open(log, "a") as file:
            file.write(prompt + "\\n")
        kill_after = int(os.environ.get("ORKET_KILL_AFTER", "0"))
        if kill_after:
            with open(log) as file:
                calls = len(file.read().splitlines())
            if calls > kill_after:
                journal = os.environ["ORKET_JOURNAL"]
                for _ in range(4000):  # at most 20 s
                    with open(journal, "rb") as file:
                        held = len(file.read().splitlines()) - 1  # the header
                    if held >= int(os.environ["ORKET_KILL_WHEN"]):
                        break
                    await anyio.sleep(0.005)
                os.kill(os.getpid(), signal.SIGKILL)
        return "def answer():\\n    return 42\\n"


class Other(Killer):
    """The same answers under another name: another provider to `--resume`."""
'''

TASKS = 8


def write_suite(path: Path, name: str = "suite", count: int = TASKS) -> list[str]:
    ids = [f"t{i}" for i in range(count)]
    tasks = [{"id": test_id, "prompt": f"prompt {test_id}"} for test_id in ids]
    path.write_text(json.dumps({"name": name, "tasks": tasks}))
    return ids


def run(
    tmp_path: Path,
    calls: str,
    *extra: str,
    kill_after: int = 0,
    kill_when: int = 0,
    provider: str = "Killer",
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.update(
        ORKET_CALLS=str(tmp_path / calls),
        ORKET_KILL_AFTER=str(kill_after),
        ORKET_KILL_WHEN=str(kill_when or kill_after),
        ORKET_JOURNAL=str(tmp_path / "r.json.journal.jsonl"),
    )
    args = ["run", "suite.json", "--provider", f"python:provider.py:{provider}", "--out", "r.json"]
    return subprocess.run(
        [sys.executable, "-m", "orket_pipeline", *args, "--concurrency", "1", "--quiet", *extra],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


def called(tmp_path: Path, calls: str) -> list[str]:
    path = tmp_path / calls
    if not path.exists():
        return []
    return [line.split()[-1] for line in path.read_text().splitlines()]


@pytest.fixture
def crashed(tmp_path: Path) -> list[str]:
    """A run of the suite killed once 3 runs were journaled; returns the suite's ids."""
    (tmp_path / "provider.py").write_text(PROVIDER)
    ids = write_suite(tmp_path / "suite.json")
    result = run(tmp_path, "first.log", kill_after=3)
    assert result.returncode == -signal.SIGKILL, result.stderr
    return ids


def journaled(tmp_path: Path) -> dict[str, TestRun]:
    return {run.test_id: run for _, run in read_journal(tmp_path / "r.json.journal.jsonl").runs}


@pytest.mark.slow
def test_resume_keeps_the_finished_runs_and_runs_only_the_rest(
    tmp_path: Path, crashed: list[str]
) -> None:
    kept = journaled(tmp_path)
    assert 3 <= len(kept) < TASKS
    refused = run(tmp_path, "refused.log")
    assert refused.returncode == 2 and "--resume" in refused.stderr
    assert called(tmp_path, "refused.log") == []

    result = run(tmp_path, "second.log", "--resume")

    assert result.returncode == 0, result.stderr
    report = read_report(tmp_path / "r.json")
    assert [r.test_id for r in report.test_runs] == crashed  # all, once, in suite order
    assert sorted(called(tmp_path, "second.log")) == sorted(set(crashed) - set(kept))
    for run_ in report.test_runs:
        if run_.test_id in kept:
            assert run_ == kept[run_.test_id]  # as journaled, not made again
        assert run_.outcome == "pass" and run_.telemetry is not None
    assert not (tmp_path / "r.json.journal.jsonl").exists()  # removed once the report is in
    assert not resume_backup(tmp_path / "r.json.journal.jsonl").exists()


@pytest.mark.slow
def test_the_journal_stays_complete_through_a_second_crash(
    tmp_path: Path, crashed: list[str]
) -> None:
    first = journaled(tmp_path)
    second = run(tmp_path, "second.log", "--resume", kill_after=2, kill_when=len(first) + 2)
    assert second.returncode == -signal.SIGKILL, second.stderr
    after_two = journaled(tmp_path)
    assert set(first) < set(after_two)  # the kept runs and the new ones
    assert all(after_two[test_id] == run_ for test_id, run_ in first.items())

    third = run(tmp_path, "third.log", "--resume")

    assert third.returncode == 0, third.stderr
    report = read_report(tmp_path / "r.json")
    assert [r.test_id for r in report.test_runs] == crashed
    assert sorted(called(tmp_path, "third.log")) == sorted(set(crashed) - set(after_two))


@pytest.mark.slow
def test_resume_without_telemetry_keeps_the_journaled_runs(
    tmp_path: Path, crashed: list[str]
) -> None:
    kept = journaled(tmp_path)

    result = run(tmp_path, "second.log", "--resume", "--no-telemetry")

    assert result.returncode == 0, result.stderr
    report = read_report(tmp_path / "r.json")
    assert [r.test_id for r in report.test_runs] == crashed
    assert sorted(called(tmp_path, "second.log")) == sorted(set(crashed) - set(kept))
    for run_ in report.test_runs:
        assert (run_.telemetry is not None) == (run_.test_id in kept)
    assert not (tmp_path / "r.json.journal.jsonl").exists()


@pytest.mark.slow
def test_resume_refuses_another_provider_unless_forced(tmp_path: Path, crashed: list[str]) -> None:
    before = (tmp_path / "r.json.journal.jsonl").read_bytes()

    refused = run(tmp_path, "refused.log", "--resume", provider="Other")

    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1
    assert "'python:provider.py:Killer', not 'python:provider.py:Other'" in refused.stderr
    assert "--force" in refused.stderr
    assert (tmp_path / "r.json.journal.jsonl").read_bytes() == before
    assert called(tmp_path, "refused.log") == []

    forced = run(tmp_path, "forced.log", "--resume", "--force", provider="Other")

    assert forced.returncode == 0, forced.stderr
    assert [r.test_id for r in read_report(tmp_path / "r.json").test_runs] == crashed


@pytest.mark.slow
def test_resume_refuses_a_changed_suite_with_the_same_name_and_ids_even_forced(
    tmp_path: Path, crashed: list[str]
) -> None:
    journal = tmp_path / "r.json.journal.jsonl"
    before = journal.read_bytes()
    kept = set(journaled(tmp_path))
    written = read_journal(journal).metadata
    assert written is not None
    assert written.suite_digest == suite_digest(load_suite(tmp_path / "suite.json"))
    original = (tmp_path / "suite.json").read_text()
    changed = json.loads(original)
    changed["tasks"][-1]["prompt"] = "another prompt"
    (tmp_path / "suite.json").write_text(json.dumps(changed))
    now = suite_digest(load_suite(tmp_path / "suite.json"))

    for extra in ([], ["--force"]):
        refused = run(tmp_path, "refused.log", "--resume", *extra)

        assert refused.returncode == 2
        assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
        assert "another version of suite 'suite'" in refused.stderr
        assert f"{written.suite_digest[:12]} in the journal, {now[:12]} now" in refused.stderr
        assert journal.read_bytes() == before
        assert called(tmp_path, "refused.log") == []

    (tmp_path / "suite.json").write_text(original)
    resumed = run(tmp_path, "second.log", "--resume")

    assert resumed.returncode == 0, resumed.stderr
    assert [r.test_id for r in read_report(tmp_path / "r.json").test_runs] == crashed
    assert set(called(tmp_path, "second.log")).isdisjoint(kept)


def write_journal(path: Path, suite: str | None, ids: list[str]) -> None:
    writer = JournalWriter(path, Metadata(suite=suite))
    writer.open()
    writer.append_many([(i, TestRun(test_id=t, outcome="pass")) for i, t in enumerate(ids)])
    writer.close()


@pytest.mark.parametrize(
    ("suite_name", "ids", "message"),
    [
        (None, None, "no journal at"),
        ("other", ["t0"], "belongs to suite 'other', not 'suite'"),
        (None, ["t0", "x9"], "holds task 'x9', which suite 'suite' does not have"),
    ],
)
def test_resume_refuses_a_missing_or_foreign_journal(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    suite_name: str | None,
    ids: list[str] | None,
    message: str,
) -> None:
    write_suite(tmp_path / "suite.json")
    journal = tmp_path / "r.json.journal.jsonl"
    if ids is not None:
        write_journal(journal, suite_name, ids)
    before = journal.read_bytes() if ids is not None else None
    args = ["run", str(tmp_path / "suite.json"), "--provider", "replay:none.jsonl"]

    code = main([*args, "--out", str(tmp_path / "r.json"), "--resume", "--quiet"])

    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert (journal.read_bytes() if ids is not None else None) == before
    assert not (tmp_path / "r.json").exists()


class Counting:
    """Counts its calls by prompt."""

    supports_streaming = False

    def __init__(self) -> None:
        self.prompts: list[str] = []

    async def generate(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return "x = 1\n"


@pytest.mark.anyio
@pytest.mark.parametrize("telemetry", [True, False])
async def test_execute_resume_from_merges_kept_and_new_runs_in_suite_order(
    tmp_path: Path, telemetry: bool
) -> None:
    ids = write_suite(tmp_path / "suite.json", count=5)
    suite = load_suite(tmp_path / "suite.json")
    journal = tmp_path / "old.jsonl"
    writer = JournalWriter(journal, Metadata(suite="suite"))
    writer.open()
    kept = {1: TestRun(test_id="t1", outcome="fail"), 3: TestRun(test_id="t3", outcome="pass")}
    writer.append_many(list(kept.items()))
    writer.close()
    provider = Counting()

    report: Report = await execute(
        suite,
        provider,
        report_path=tmp_path / "r.json",
        telemetry=telemetry,
        resume_from=journal,
        concurrency=2,
    )

    assert sorted(provider.prompts) == ["prompt t0", "prompt t2", "prompt t4"]
    assert [r.test_id for r in report.test_runs] == ids
    assert report.test_runs[1] == kept[1] and report.test_runs[3] == kept[3]
    assert read_report(tmp_path / "r.json").test_runs == report.test_runs
    assert journal.exists()  # not the report's own journal: left as it was


@pytest.mark.anyio
async def test_runs_parked_by_a_resume_that_crashed_early_are_still_kept(tmp_path: Path) -> None:
    # A resume parks the kept runs in JOURNAL.resumed before its new journal truncates the old
    # one, and removes the backup once the new journal holds them: a crash in between leaves
    # a journal with a header (and maybe new runs) beside the backup.
    ids = write_suite(tmp_path / "suite.json", count=4)
    suite = load_suite(tmp_path / "suite.json")
    journal = tmp_path / "r.json.journal.jsonl"
    write_journal(resume_backup(journal), "suite", ["t0", "t1"])
    writer = JournalWriter(journal, Metadata(suite="suite"))
    writer.open()
    writer.append_many([(2, TestRun(test_id="t2", outcome="fail"))])
    writer.close()
    provider = Counting()

    report = await execute(
        suite, provider, report_path=tmp_path / "r.json", resume_from=journal, concurrency=1
    )

    assert provider.prompts == ["prompt t3"]
    assert [(r.test_id, r.outcome) for r in report.test_runs] == [
        ("t0", "pass"),
        ("t1", "pass"),
        ("t2", "fail"),
        ("t3", "pass"),
    ]
    assert ids == [r.test_id for r in read_report(tmp_path / "r.json").test_runs]
    assert not journal.exists() and not resume_backup(journal).exists()
