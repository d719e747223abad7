"""SIGKILL of `orket-pipeline run`: no finished run lost, the report never torn.

Real processes, real signals: what the journal and report hold after a kill is the thing under
test, so these tests poll files and compare wall-clock times across processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orket_pipeline.report._io import read_report, write_report
from orket_pipeline.report._model import Report, TestRun

from ._helpers import (
    CLI,
    cli_env,
    journal_ids,
    read_log,
    start_cli,
    wait_for,
    write_provider,
    write_suite,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX"),
]

# A finished run reaches the journal within a few event-loop turns of its generation ending;
# a run that completed this long before the kill must be in the journal.
GRACE_S = 0.5


def previous_report(path: Path) -> bytes:
    write_report(path, Report(test_runs=[TestRun(test_id="old", outcome="pass")]))
    return path.read_bytes()


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_sigkill_mid_suite_loses_no_finished_run_and_rebuild_makes_a_valid_report(
    tmp_path: Path,
) -> None:
    write_provider(tmp_path)
    ids = write_suite(tmp_path / "suite.json", 60)
    log = tmp_path / "completed.log"
    report = tmp_path / "orket_report.json"
    journal = tmp_path / "orket_report.json.journal.jsonl"  # the default: beside the report
    old = previous_report(report)
    args = ["run", "suite.json", "--provider", "python:provider.py:Slow", "--concurrency", "4"]
    process = start_cli([*args, "--quiet"], tmp_path, cli_env(log))
    try:
        wait_for(lambda: len(journal_ids(journal)) >= 12, process, timeout=30)
        killed_at = time.time()
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == -signal.SIGKILL

    completed = read_log(log)
    journaled = journal_ids(journal)
    assert 12 <= len(journaled) < len(ids), "killed half way, not before or after"
    assert len(set(journaled)) == len(journaled)
    assert set(journaled) <= set(completed), "only finished runs are journaled"
    must_have = {t for t, when in completed.items() if when < killed_at - GRACE_S}
    assert must_have <= set(journaled), f"finished but lost: {sorted(must_have - set(journaled))}"
    # The report is written only at the end: the previous one is untouched, nothing beside it.
    assert report.read_bytes() == old
    assert leftovers(tmp_path) == []

    rebuilt = tmp_path / "rebuilt.json"
    result = subprocess.run(
        [*CLI, "rebuild", str(journal), "-o", str(rebuilt)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    runs = read_report(rebuilt).test_runs
    assert [r.test_id for r in runs] == [t for t in ids if t in set(journaled)]  # suite order
    for run in runs:
        assert run.outcome == "pass"
        assert run.telemetry is not None and run.telemetry.total_latency is not None
        assert run.telemetry.init_latency is not None


# Runs inside the CLI process: fsync of the report's temp file (the only fsync before the
# rename) signals the test and stalls, so the SIGKILL lands in the middle of the atomic write.
STALL_REPORT_WRITE = """
import os, sys, time
marker = os.environ["ORKET_TEST_MARKER"]
real_fsync = os.fsync
def stalled_fsync(fd):
    real_fsync(fd)
    open(marker, "w").close()
    time.sleep(60)
os.fsync = stalled_fsync
from orket_pipeline.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigkill_during_the_report_write_leaves_the_old_report_whole(tmp_path: Path) -> None:
    write_provider(tmp_path)
    ids = write_suite(tmp_path / "suite.json", 6)
    report = tmp_path / "orket_report.json"
    journal = tmp_path / "orket_report.json.journal.jsonl"
    marker = tmp_path / "writing"
    old = previous_report(report)
    env = {**cli_env(tmp_path / "completed.log"), "ORKET_TEST_MARKER": str(marker)}
    args = ["run", "suite.json", "--provider", "python:provider.py:Slow", "--quiet"]
    process = subprocess.Popen(
        [sys.executable, "-c", STALL_REPORT_WRITE, *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(marker.exists, process, timeout=30)
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=10)
    finally:
        process.kill()

    assert report.read_bytes() == old, "the old report stays whole"
    assert read_report(report).test_runs[0].test_id == "old"
    # SIGKILL leaves the fully written temp file (no process can clean up after SIGKILL)...
    (orphan,) = leftovers(tmp_path)
    assert orphan.startswith(".orket_report.json.")
    # ...and the journal, which holds every run, so nothing is lost.
    assert sorted(journal_ids(journal)) == ids

    # A new run refuses to start over that journal (it would truncate the only record)...
    process = start_cli(args, tmp_path, cli_env(tmp_path / "completed.log"))
    _, err = process.communicate(timeout=30)
    assert process.returncode == 2 and b"rebuild" in err
    assert sorted(journal_ids(journal)) == ids
    # ...so recover as it says. The next write of the same report removes the orphan: its
    # writer's lock died with it.
    rebuild = [sys.executable, "-m", "orket_pipeline", "rebuild", str(journal), "-o", str(report)]
    assert subprocess.run(rebuild, capture_output=True, timeout=30).returncode == 0
    assert [r.test_id for r in read_report(report).test_runs] == ids
    assert leftovers(tmp_path) == []
