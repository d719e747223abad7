"""Hostile generated code through the engine, end to end: each is contained by its gate's
sandbox and is one failed run with a reason; the runs beside it, and the engine, are untouched.

tests/test_gates.py checks each payload against `run_gate` alone; this runs them as one suite
through `execute`, concurrently, with telemetry and the report.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from orket_pipeline.engine import parse_suite
from orket_pipeline.engine._runner import execute
from orket_pipeline.report._io import read_report

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(os.name != "posix", reason="the sandbox's limits are POSIX"),
]


@pytest.fixture
def anyio_backend() -> str:
    # Gates are subprocess work, the same on both backends; tests/test_engine.py covers trio.
    return "asyncio"


class Answers:
    """Streams the answer recorded for each prompt."""

    supports_streaming = True

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers

    async def stream(self, prompt: str) -> AsyncIterator[str]:
        yield self.answers[prompt]


def hostile(outside: Path) -> dict[str, tuple[str, str]]:
    """id: (payload, a word the failed run's reason must contain)."""
    return {
        "infinite-loop": ("while True:\n    pass\n", "timeout"),
        "ten-gigabytes": ("x = bytearray(10 * 1024 ** 3)\n", "MemoryError"),
        "fork": ("import os\nos.fork()\n", "not allowed"),
        "subprocess": ("import subprocess\nsubprocess.run(['sh', '-c', 'true'])\n", "not allowed"),
        "kill-the-engine": (
            "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
            "not allowed",
        ),
        "huge-output": ("while True:\n    print('x' * 65536)\n", "output over"),
        "write-outside": (f"open({str(outside)!r}, 'w').write('escaped')\n", "outside"),
    }


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
        word = cases[test_id][1]
        assert run.outcome == "fail", test_id
        assert run.reason is not None and word in run.reason, (test_id, run.reason)
        assert run.telemetry is not None and run.telemetry.total_latency is not None
    assert not outside.exists()
    assert read_report(out).test_runs == report.test_runs  # the engine lived to write it
