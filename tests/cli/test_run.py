"""`orket-pipeline run`: the bundled demo end to end, exit codes, progress, Ctrl-C."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from orket_pipeline.cli import main
from orket_pipeline.report._model import decode_report

DEMO_OUTCOMES = {
    "add": "pass",
    "fizzbuzz_cli": "pass",
    "is_palindrome": "pass",
    "count_vowels": "fail",
    "slugify": "fail",
    "word_count_cli": "fail",
    "fibonacci": "error",
    "to_fahrenheit": "pass",
    "next_prime": "fail",
    "merge_intervals": "pass",
}


def run_cli(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orket_pipeline", "run", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_demo_runs_offline_and_writes_a_full_report(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_cli("--demo", cwd=tmp_path)
    assert time.monotonic() - started < 20
    assert result.returncode == 1, result.stderr  # the demo has failing answers on purpose
    assert "Traceback" not in result.stderr
    report = decode_report((tmp_path / "orket_report.json").read_bytes())
    assert {r.test_id: r.outcome for r in report.test_runs} == DEMO_OUTCOMES
    assert [r.test_id for r in report.test_runs] == list(DEMO_OUTCOMES)
    assert all(r.telemetry is not None for r in report.test_runs)
    adherence = {r.telemetry.adherence_score for r in report.test_runs if r.telemetry}
    assert len(adherence) >= 3  # varied adherence, null for the failed generation
    assert "report written to orket_report.json" in result.stdout
    assert "10/10 runs" in result.stderr  # not a terminal: plain progress lines
    assert not (tmp_path / "orket_report.json.journal.jsonl").exists()


@pytest.mark.slow
def test_demo_without_telemetry_has_the_same_outcomes(tmp_path: Path) -> None:
    result = run_cli("--demo", "--no-telemetry", "--quiet", "--out", "plain.json", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr == ""
    report = decode_report((tmp_path / "plain.json").read_bytes())
    assert {r.test_id: r.outcome for r in report.test_runs} == DEMO_OUTCOMES
    assert all(r.telemetry is None for r in report.test_runs)
    reasons = {r.test_id: r.reason for r in report.test_runs}
    assert reasons["count_vowels"] == 'count_vowels("rhythm"): expected 0, got 1'
    assert reasons["next_prime"] == "timeout after 1 s"


def write_suite(tmp_path: Path, answers: dict[str, Any], *, delays: dict[str, float]) -> None:
    tasks = [
        {
            "id": task_id,
            "prompt": f"prompt {task_id}",
            "gate": {"type": "python_tests", "code": "assert answer() == 42"},
        }
        for task_id in answers
    ]
    (tmp_path / "suite.json").write_text(json.dumps({"name": "s", "tasks": tasks}))
    lines = [json.dumps({"cassette": 1, "streaming": False})]
    for task_id, text in answers.items():
        chunk = {"delay_s": delays.get(task_id, 0.0), "text": text}
        lines.append(json.dumps({"prompt": f"prompt {task_id}", "chunks": [chunk]}))
    (tmp_path / "cassette.jsonl").write_text("\n".join(lines) + "\n")


def test_all_passing_suite_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    answers = {"a": "def answer():\n    return 42\n", "b": "answer = lambda: 42\n"}
    write_suite(tmp_path, answers, delays={})
    out = tmp_path / "r.json"
    args = ["run", str(tmp_path / "suite.json"), "--provider", f"replay:{tmp_path}/cassette.jsonl"]
    assert main([*args, "--out", str(out), "--quiet"]) == 0
    assert [r.outcome for r in decode_report(out.read_bytes()).test_runs] == ["pass", "pass"]
    assert f"report written to {out}" in capsys.readouterr().out


FREEZE_PROBE = """\
import gc
from pathlib import Path


class Probe:
    supports_streaming = False

    async def generate(self, prompt):
        Path(__file__).with_name("frozen.txt").write_text(str(gc.get_freeze_count()))
        return "x = 1\\n"
"""


@pytest.mark.parametrize("telemetry", [True, False])
def test_the_heap_is_frozen_while_the_suite_runs_and_given_back_after(
    tmp_path: Path, telemetry: bool
) -> None:
    (tmp_path / "suite.json").write_text('{"name": "s", "tasks": [{"id": "a", "prompt": "p"}]}')
    (tmp_path / "probe.py").write_text(FREEZE_PROBE)
    args = ["run", str(tmp_path / "suite.json"), "--provider", f"python:{tmp_path}/probe.py:Probe"]
    args += ["--out", str(tmp_path / "r.json"), "--quiet"]
    assert gc.get_freeze_count() == 0
    assert main(args if telemetry else [*args, "--no-telemetry"]) == 0
    assert int((tmp_path / "frozen.txt").read_text()) > 0  # the collector skipped them
    assert gc.get_freeze_count() == 0


def test_memory_pid_measures_that_process_not_ours(tmp_path: Path) -> None:
    write_suite(tmp_path, {"a": "def answer():\n    return 42\n"}, delays={})
    code = "import sys, time; print('ready', flush=True); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        out = tmp_path / "r.json"
        suite, cassette = str(tmp_path / "suite.json"), f"replay:{tmp_path}/cassette.jsonl"
        args = [suite, "--provider", cassette, "--out", str(out), "--quiet"]
        assert main(["run", *args, "--memory-pid", str(child.pid)]) == 0
        child_mib = psutil.Process(child.pid).memory_info().rss / 2**20
    finally:
        child.kill()
        child.wait()
        assert child.stdout is not None
        child.stdout.close()
    (run,) = decode_report(out.read_bytes()).test_runs
    assert run.telemetry is not None and run.telemetry.peak_memory_rss is not None
    peak = float(run.telemetry.peak_memory_rss)
    ours = psutil.Process().memory_info().rss / 2**20
    assert peak < ours / 2 and abs(peak - child_mib) < child_mib  # the child's, not ours


def test_a_journal_left_by_an_unfinished_run_is_not_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_suite(tmp_path, {"a": "x = 1\n"}, delays={})
    out = tmp_path / "r.json"
    left = tmp_path / "r.json.journal.jsonl"
    left.write_text('{"journal": "orket-pipeline", "version": 1}\n')
    args = ["run", str(tmp_path / "suite.json"), "--provider", f"replay:{tmp_path}/cassette.jsonl"]
    assert main([*args, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rebuild" in err and str(left) in err
    assert left.read_text() == '{"journal": "orket-pipeline", "version": 1}\n'
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.json", "--provider", "replay:x.jsonl"], "missing.json"),
        (["bad.json", "--provider", "replay:x.jsonl"], "duplicate"),
        (["good.json", "--provider", "nosuch:thing"], "unknown scheme"),
        (["good.json", "--provider", "replay:missing.jsonl"], "missing.jsonl"),
        (["good.json", "--provider", "python:no_such_module_xyz:P"], "no_such_module_xyz"),
        (["good.json", "--provider", "replay:x", "--concurrency", "0"], "--concurrency"),
        (["good.json", "--provider", "replay:x", "--concurrency", "many"], "--concurrency"),
        (["good.json", "--provider", "replay:x", "--timeout", "-1"], "--timeout"),
        (["good.json", "--provider", "replay:x", "--memory-pid", "0"], "--memory-pid"),
        (["good.json", "--provider", "replay:x", "--memory-pid", "x"], "--memory-pid"),
        (["good.json", "--provider", "replay:x", "--memory-pid", "4294967296"], "--memory-pid"),
        (["good.json", "--provider", "replay:x", "--out", "no/such/dir/r.json"], "--out"),
        (["--provider", "replay:x.jsonl"], "SUITE is required"),
        (["good.json"], "--provider is required"),
    ],
)
def test_bad_input_is_one_line_and_exit_two(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    task = {"id": "t", "prompt": "p"}
    (tmp_path / "good.json").write_text(json.dumps({"tasks": [task]}))
    (tmp_path / "bad.json").write_text(json.dumps({"tasks": [task, task]}))
    assert main(["run", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "orket_report.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_a_signal_writes_finished_runs_and_exits_128_plus_its_number(
    tmp_path: Path, signum: signal.Signals, code: int
) -> None:
    answers = {"fast": "def answer():\n    return 42\n", "slow": "answer = lambda: 42\n"}
    write_suite(tmp_path, answers, delays={"slow": 60.0})
    journal = tmp_path / "journal.jsonl"
    command = [sys.executable, "-m", "orket_pipeline", "run", "suite.json"]
    command += ["--provider", "replay:cassette.jsonl", "--journal", str(journal), "--quiet"]
    process = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 20
        # Real time is the thing under test here: wait for the fast run to reach the journal.
        while b'"fast"' not in (journal.read_bytes() if journal.exists() else b""):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
        os.kill(process.pid, signum)
        _, err = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == code, err
    assert b"Traceback" not in err
    report = decode_report((tmp_path / "orket_report.json").read_bytes())
    assert ("fast", "pass") in [(r.test_id, r.outcome) for r in report.test_runs]
