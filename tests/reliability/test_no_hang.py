"""Nothing hangs: a provider stuck in its thread, blocking the event loop or swallowing
cancellation cannot keep `orket-pipeline run` from ending, and the finished runs are written.

Real elapsed time is the thing under test, so each process gets a generous wall-clock bound
(`communicate(timeout=...)`): a regression hangs until the bound and fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from orket_pipeline.report._model import decode_report

from ._helpers import CLI, cli_env, start_cli, wait_for

PROVIDERS = '''
import os
import threading
import time
from pathlib import Path

import anyio


def _first_run_journaled():
    journal = os.environ.get("ORKET_JOURNAL")
    return journal is None or b'"t0"' in Path(journal).read_bytes()


async def _started(prompt):
    while not _first_run_journaled():
        await anyio.sleep(0.01)
    with open(os.environ["ORKET_STARTED"], "a") as log:
        log.write(prompt + "\\n")


class StuckThread:
    """Plain def; the second prompt never returns."""

    supports_streaming = False

    def generate(self, prompt):
        if prompt == "p1":
            threading.Event().wait()
        return "x = 1"


class BlocksTheLoop:
    """async def that calls time.sleep: the whole event loop stops."""

    supports_streaming = False

    async def generate(self, prompt):
        if prompt == "p1":
            await _started(prompt)
            time.sleep(3600)
        return "x = 1"


class SwallowsCancellation:
    """Catches every cancellation and goes on waiting."""

    supports_streaming = False

    async def generate(self, prompt):
        if prompt == "p1":
            await _started(prompt)
            while True:
                try:
                    await anyio.sleep(3600)
                except BaseException:
                    pass
        return "x = 1"
'''


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "providers.py").write_text(PROVIDERS)
    tasks = [{"id": f"t{i}", "prompt": f"p{i}"} for i in range(3)]
    (tmp_path / "suite.json").write_text(json.dumps({"tasks": tasks}))
    return tmp_path


def report_runs(path: Path) -> list[tuple[str, str]]:
    return [(r.test_id, r.outcome) for r in decode_report(path.read_bytes()).test_runs]


def test_a_provider_thread_that_never_returns_does_not_keep_the_process_alive(
    workdir: Path,
) -> None:
    args = ["run", "suite.json", "--provider", "python:providers.py:StuckThread"]
    result = subprocess.run(
        [*CLI, *args, "--timeout", "1", "--quiet"],
        cwd=workdir,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,  # before the fix: forever (the interpreter joins the stuck thread)
    )
    assert result.returncode == 1, result.stderr
    assert report_runs(workdir / "orket_report.json") == [
        ("t0", "pass"),
        ("t1", "error"),
        ("t2", "pass"),
    ]
    assert "report written to orket_report.json" in result.stdout


@pytest.mark.parametrize(
    ("provider", "signum", "code"),
    [
        ("BlocksTheLoop", signal.SIGTERM, 143),
        ("BlocksTheLoop", signal.SIGINT, 130),
        ("SwallowsCancellation", signal.SIGTERM, 143),
    ],
)
@pytest.mark.parametrize("telemetry", [True, False], ids=["telemetry", "no-telemetry"])
def test_a_signal_ends_the_run_even_when_the_loop_cannot_honour_it(
    workdir: Path, provider: str, signum: signal.Signals, code: int, telemetry: bool
) -> None:
    env = cli_env()
    env["ORKET_STARTED"] = str(workdir / "started.log")
    args = ["run", "suite.json", "--provider", f"python:providers.py:{provider}"]
    args += ["--concurrency", "1", "--quiet"]
    if telemetry:
        env["ORKET_JOURNAL"] = str(workdir / "journal.jsonl")
        args += ["--journal", "journal.jsonl"]
    else:
        args.append("--no-telemetry")
    process = start_cli(args, workdir, env)
    try:
        wait_for(lambda: (workdir / "started.log").exists(), process, timeout=30)
        os.kill(process.pid, signum)
        _, err = process.communicate(timeout=60)  # before the fix: forever
    finally:
        process.kill()
    stderr = err.decode()
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    assert report_runs(workdir / "orket_report.json") == [("t0", "pass")]
    assert "finished runs written to orket_report.json" in stderr
    if provider == "BlocksTheLoop":  # the loop-lag watchdog names the culprit
        assert "warning: task 't1' has blocked the event loop" in stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_loop_blocked_without_a_signal_is_reported_once_naming_the_task(workdir: Path) -> None:
    source = (workdir / "providers.py").read_text()
    source += """

class BlocksBriefly:
    supports_streaming = False

    async def generate(self, prompt):
        if prompt == "p1":
            time.sleep(2.5)
        return "x = 1"
"""
    (workdir / "providers.py").write_text(source)
    args = ["run", "suite.json", "--provider", "python:providers.py:BlocksBriefly", "--quiet"]
    result = subprocess.run(
        [*CLI, *args], cwd=workdir, env=cli_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "blocked the event loop" in line]
    assert len(warnings) == 1 and "task 't1'" in warnings[0], result.stderr
