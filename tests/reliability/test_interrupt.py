"""Ctrl-C (SIGINT) half way through a suite: the finished runs are written, exit code 130.

Extends tests/cli/test_run.py's single-run case to a busy suite, with and without telemetry,
checked against what the provider itself logged as finished.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from orket_pipeline.report._io import read_report

from ._helpers import cli_env, read_log, start_cli, wait_for, write_provider, write_suite

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="os.kill(SIGINT) is POSIX"),
]

GRACE_S = 0.5  # a run that finished this long before the signal must be reported as a pass


@pytest.mark.parametrize("telemetry", [True, False], ids=["telemetry", "no-telemetry"])
def test_sigint_mid_suite_reports_every_finished_run_and_exits_130(
    tmp_path: Path, telemetry: bool
) -> None:
    write_provider(tmp_path)
    ids = write_suite(tmp_path / "suite.json", 60)
    log = tmp_path / "completed.log"
    args = ["run", "suite.json", "--provider", "python:provider.py:Slow", "--concurrency", "4"]
    args += ["--quiet"] if telemetry else ["--quiet", "--no-telemetry"]
    process = start_cli(args, tmp_path, cli_env(log))
    try:
        wait_for(lambda: len(read_log(log)) >= 12, process, timeout=30)
        interrupted_at = time.time()
        os.kill(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()

    assert process.returncode == 130, err
    assert err == b"orket-pipeline: interrupted\n"
    completed = read_log(log)
    runs = read_report(tmp_path / "orket_report.json").test_runs
    outcomes = {r.test_id: r.outcome for r in runs}
    assert list(outcomes) == [t for t in ids if t in outcomes], "suite order"
    assert len(completed) < len(ids), "interrupted half way"
    must_have = {t for t, when in completed.items() if when < interrupted_at - GRACE_S}
    assert {t: outcomes.get(t) for t in must_have} == dict.fromkeys(must_have, "pass")
    assert {t for t, o in outcomes.items() if o == "pass"} <= set(completed), "no made-up pass"
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
    # The report was written, so the default journal beside it is gone.
    assert not (tmp_path / "orket_report.json.journal.jsonl").exists()
