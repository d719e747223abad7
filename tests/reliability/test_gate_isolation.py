"""Gates and the engine around them: contained failures, kills, interrupts, no sandbox, EMFILE.

tests/engine/test_gates.py checks payloads against `run_gate` alone and
test_hostile_answers.py tries every escape through the CLI; this covers what happens around
the gates: hostile code in one concurrent suite through `execute`, the engine killed
(SIGKILL) or interrupted (SIGTERM, SIGINT) while gates run, no isolation available, and the
engine running out of file descriptors.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import psutil
import pytest

from orket_pipeline.engine import parse_suite
from orket_pipeline.engine._runner import execute
from orket_pipeline.engine.sandbox import _spawn, resolve_sandbox
from orket_pipeline.report._io import read_report

from ._helpers import cli_env, start_cli, wait_for

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="bubblewrap is Linux only"),
]


@pytest.fixture
def anyio_backend() -> str:
    # Gates are subprocess work, the same on both backends; tests/engine covers trio.
    return "asyncio"


class Answers:
    """Streams the answer recorded for each prompt."""

    supports_streaming = True

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers

    async def stream(self, prompt: str) -> AsyncIterator[str]:
        yield self.answers[prompt]


def hostile(outside: Path) -> dict[str, tuple[str, tuple[str, ...]]]:
    """id: (payload, words one of which the failed run's reason must contain)."""
    return {
        "infinite-loop": ("while True:\n    pass\n", ("timeout",)),
        "ten-gigabytes": ("x = bytearray(10 * 1024 ** 3)\n", ("MemoryError",)),
        "fork": ("import os\nos.fork()\n", ("not allowed",)),
        "subprocess": (
            "import subprocess\nsubprocess.run(['sh', '-c', 'true'])\n",
            ("not allowed",),
        ),
        "kill-the-engine": (
            "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
            ("not allowed",),
        ),
        "huge-output": ("while True:\n    print('x' * 65536)\n", ("output over",)),
        # The engine's folders are not even visible inside the sandbox.
        "write-outside": (
            f"open({str(outside)!r}, 'w').write('escaped')\n",
            ("No such file", "outside"),
        ),
    }


@pytest.mark.anyio
async def test_hostile_code_fails_only_its_own_run_with_a_reason(tmp_path: Path) -> None:
    outside = tmp_path / "escaped.txt"
    cases = hostile(outside)
    tasks = [
        {
            "id": test_id,
            "prompt": test_id,
            "gate": {"type": "python_tests", "code": "assert True", "timeout_s": 2},
        }
        for test_id in cases
    ]
    tasks.insert(
        3,
        {
            "id": "honest",
            "prompt": "honest",
            "gate": {"type": "python_tests", "code": "assert answer() == 42"},
        },
    )
    suite = parse_suite(msgspec.json.encode({"tasks": tasks}), name="hostile.json")
    answers = {test_id: payload for test_id, (payload, _) in cases.items()}
    answers["honest"] = "def answer():\n    return 42\n"
    out = tmp_path / "r.json"

    report = await execute(suite, Answers(answers), report_path=out, concurrency=4, timeout_s=30)

    runs = {run.test_id: run for run in report.test_runs}
    assert list(runs) == [task["id"] for task in tasks]  # suite order
    assert runs.pop("honest").outcome == "pass"
    for test_id, run in runs.items():
        words = cases[test_id][1]
        assert run.outcome == "fail", test_id
        assert run.reason is not None and any(w in run.reason for w in words), run.reason
        assert run.telemetry is not None and run.telemetry.total_latency is not None
    assert not outside.exists()
    assert read_report(out).test_runs == report.test_runs  # the engine lived to write it
    assert report.metadata.sandbox == "bwrap"


PROVIDER = """
import json, pathlib
ANSWERS = json.loads(pathlib.Path(__file__).with_name("answers.json").read_text())

class Answers:
    supports_streaming = False

    async def generate(self, prompt):
        return ANSWERS[prompt]
"""


def write_gated_suite(folder: Path, answer: str, tests: str, count: int) -> list[str]:
    ids = [f"g{index}" for index in range(count)]
    tasks = [
        {"id": i, "prompt": i, "gate": {"type": "python_tests", "code": tests, "timeout_s": 60}}
        for i in ids
    ]
    (folder / "suite.json").write_text(json.dumps({"name": "gated", "tasks": tasks}))
    (folder / "answers.json").write_text(json.dumps(dict.fromkeys(ids, answer)))
    (folder / "provider.py").write_text(PROVIDER)
    return ids


def gate_env(tmp_path: Path) -> dict[str, str]:
    env = cli_env()
    env["TMPDIR"] = str(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return env


def gate_processes(pid: int) -> list[psutil.Process]:
    """The engine's gate processes: sandboxed interpreters running the harness."""
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            command = child.cmdline()
            if command[1:5] == ["-I", "-B", "-X", "utf8"] and command[5].endswith("harness.py"):
                found.append(child)
        except psutil.Error:
            continue
    return found


def still_running(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Those of `processes` still running after `timeout` s (a zombie has ended: it is dead
    and waits only for its new parent to reap it). Real time is what is under test: polls."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in processes if _running(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.01)


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def left_dirs(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "tmp").iterdir() if p.name.startswith("orket-gate"))


def finish(process: subprocess.Popen[bytes]) -> int:
    """Wait for the CLI; its exit code (its stderr shown when a check fails)."""
    _, err = process.communicate(timeout=120)
    sys.stderr.write(err.decode("utf-8", "replace"))
    return process.returncode


RUN = ["run", "suite.json", "--provider", "python:provider.py:Answers", "--quiet"]


@pytest.mark.slow
@pytest.mark.parametrize("sandbox", ["bwrap", "process"])
def test_sigkill_of_the_engine_leaves_no_gate_running_and_no_temp_dir(
    tmp_path: Path, sandbox: str
) -> None:
    write_gated_suite(tmp_path, "while True:\n    pass\n", "assert True", 2)
    env = gate_env(tmp_path)
    process = start_cli([*RUN, "--concurrency", "2", "--sandbox", sandbox], tmp_path, env)
    try:
        wait_for(lambda: len(gate_processes(process.pid)) == 2, process, timeout=60)
        gates = gate_processes(process.pid)
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=30)
    finally:
        process.kill()
    # Real time is what is under test: the kernel takes them down as the engine dies.
    assert still_running(gates, timeout=10) == []
    if sandbox == "process":
        # A plain process's temp dir outlives a SIGKILLed engine; the next run removes it.
        write_gated_suite(tmp_path, "x = 1\n", "assert x == 1", 1)
        rerun = [*RUN, "--sandbox", sandbox, "--out", "rerun.json"]
        assert finish(start_cli(rerun, tmp_path, env)) == 0
    assert left_dirs(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"]
)
def test_interrupting_gates_never_reports_an_unfinished_gate_as_a_pass(
    tmp_path: Path, signum: int, code: int
) -> None:
    ids = write_gated_suite(tmp_path, "import time\ntime.sleep(60)\n", "assert False", 4)
    process = start_cli([*RUN, "--concurrency", "4"], tmp_path, gate_env(tmp_path))
    try:
        wait_for(lambda: len(gate_processes(process.pid)) == 4, process, timeout=60)
        gates = gate_processes(process.pid)
        os.kill(process.pid, signum)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == code, err
    runs = read_report(tmp_path / "orket_report.json").test_runs
    assert [run.test_id for run in runs] == ids
    assert {run.outcome for run in runs} == {"error"}
    assert {run.reason for run in runs} == {"interrupted before its gate finished"}
    assert still_running(gates, timeout=10) == []
    assert left_dirs(tmp_path) == []


@pytest.mark.slow
def test_without_isolation_gates_are_refused_unless_sandbox_process(tmp_path: Path) -> None:
    write_gated_suite(tmp_path, "x = 1\n", "assert x == 1", 2)
    env = gate_env(tmp_path)
    env["ORKET_BWRAP"] = ""  # as on a machine with no bubblewrap

    refused = start_cli(RUN, tmp_path, env)
    _, err = refused.communicate(timeout=60)
    assert refused.returncode == 2
    assert err.count(b"\n") == 1 and b"Traceback" not in err
    assert b"no isolated sandbox" in err or b"none is available" in err
    assert b"--sandbox process" in err
    assert not (tmp_path / "orket_report.json").exists()

    assert finish(start_cli([*RUN, "--sandbox", "process"], tmp_path, env)) == 0
    report = read_report(tmp_path / "orket_report.json")
    assert report.metadata.sandbox == "process"
    assert {run.outcome for run in report.test_runs} == {"pass"}
    assert left_dirs(tmp_path) == []


@pytest.mark.slow
def test_a_suite_without_gates_needs_no_sandbox(tmp_path: Path) -> None:
    (tmp_path / "suite.json").write_text(json.dumps({"tasks": [{"id": "a", "prompt": "a"}]}))
    (tmp_path / "answers.json").write_text(json.dumps({"a": "hello"}))
    (tmp_path / "provider.py").write_text(PROVIDER)
    env = gate_env(tmp_path)
    env["ORKET_BWRAP"] = ""
    assert finish(start_cli(RUN, tmp_path, env)) == 0
    assert read_report(tmp_path / "orket_report.json").metadata.sandbox is None


@pytest.mark.anyio
async def test_too_many_open_files_is_an_error_not_the_models_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolve_sandbox("bwrap")  # resolved before the descriptors run out

    def no_descriptors(self: object) -> tuple[int, int]:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(_spawn._Fds, "pipe", no_descriptors)
    tasks = [
        {"id": f"t{i}", "prompt": "p", "gate": {"type": "python_tests", "code": "assert True"}}
        for i in range(3)
    ]
    suite = parse_suite(msgspec.json.encode({"tasks": tasks}), name="emfile.json")
    provider = Answers({"p": "x = 1\n"})
    report = await execute(suite, provider, report_path=tmp_path / "r.json", telemetry=False)
    assert [run.outcome for run in report.test_runs] == ["error"] * 3
    for run in report.test_runs:
        assert run.reason is not None and "Too many open files" in run.reason
        assert run.error is not None and run.error.type == "GateError"


@pytest.mark.slow
def test_the_bundled_demo_runs_without_isolation_its_answers_are_ours(tmp_path: Path) -> None:
    env = gate_env(tmp_path)
    env["ORKET_BWRAP"] = ""
    assert finish(start_cli(["run", "--demo", "--quiet"], tmp_path, env)) == 1  # as it must
    assert read_report(tmp_path / "orket_report.json").metadata.sandbox == "process"
