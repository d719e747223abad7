"""The engine loop: outcomes, errors, timeouts, order, concurrency, and telemetry's neutrality."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from orket_pipeline.engine import Suite, Task, parse_suite
from orket_pipeline.engine._runner import RunResult, execute, run_suite
from orket_pipeline.report._model import decode_report
from orket_pipeline.telemetry._pipeline import TelemetryPipeline

pytestmark = pytest.mark.anyio

HANG = object()

ADD_OK = "```python\ndef add(a, b):\n    return a + b\n```\n"
ADD_BAD = "def add(a, b):\n    return a - b\n"


class Scripted:
    """Answers each prompt from `answers`: text, an exception to raise, or HANG (never returns).

    Streams the answer in two chunks when `streaming`; records the order prompts arrive in and
    the largest number of generations in flight at once.
    """

    def __init__(self, answers: dict[str, Any], *, streaming: bool, delay: float = 0.0) -> None:
        self.answers, self.supports_streaming, self.delay = answers, streaming, delay
        self.started: list[str] = []
        self.in_flight = self.max_in_flight = 0
        self.closed = False

    async def _answer(self, prompt: str) -> str:
        self.started.append(prompt)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            answer = self.answers[prompt]
            await anyio.sleep(self.delay)
            if answer is HANG:
                await anyio.sleep_forever()
            if isinstance(answer, BaseException):
                raise answer
            return str(answer)
        finally:
            self.in_flight -= 1

    async def generate(self, prompt: str) -> str:
        return await self._answer(prompt)

    async def stream(self, prompt: str) -> AsyncIterator[str]:
        text = await self._answer(prompt)
        half = len(text) // 2
        yield text[:half]
        yield text[half:]

    async def aclose(self) -> None:
        self.closed = True


def mixed_suite() -> tuple[Suite, dict[str, Any]]:
    gate = {
        "type": "function_examples",
        "function_name": "add",
        "examples": [{"args": [2, 3], "expected": 5}],
    }
    tests = {"type": "python_tests", "code": "assert add(1, 1) == 2"}
    tasks = [
        {"id": "pass-examples", "prompt": "p1", "gate": gate},
        {"id": "fail-examples", "prompt": "p2", "gate": gate},
        {"id": "pass-tests", "prompt": "p3", "gate": tests},
        {"id": "fail-tests", "prompt": "p4", "gate": tests},
        {"id": "gen-error", "prompt": "p5", "gate": gate},
        {"id": "no-gate", "prompt": "p6", "constraints": {"regex_required": ["nothing"]}},
        {"id": "timeout", "prompt": "p7", "gate": gate},
        {"id": "empty-output", "prompt": "p8", "gate": tests},
    ]
    answers = {
        "p1": ADD_OK,
        "p2": ADD_BAD,
        "p3": ADD_OK,
        "p4": ADD_BAD,
        "p5": ConnectionResetError("peer reset"),
        "p6": "hello",
        "p7": HANG,
        "p8": "",
    }
    doc = msgspec.json.encode({"name": "mixed", "tasks": tasks})
    return parse_suite(doc, name="mixed.json"), answers


EXPECTED = [
    ("pass-examples", "pass", None),
    ("fail-examples", "fail", "add(2, 3): expected 5, got -1"),
    ("pass-tests", "pass", None),
    ("fail-tests", "fail", "AssertionError (line 5: assert add(1, 1) == 2)"),
    ("gen-error", "error", "ConnectionResetError: peer reset"),
    ("no-gate", "pass", None),
    ("timeout", "error", "generation timed out after 0.5 s"),
    (
        "empty-output",
        "fail",
        "NameError: name 'add' is not defined (line 3: assert add(1, 1) == 2)",
    ),
]


def triples(runs: Any) -> list[tuple[str, str, str | None]]:
    return [(r.test_id, r.outcome, r.reason) for r in runs]


@pytest.mark.parametrize("streaming", [True, False])
async def test_telemetry_changes_no_outcome(tmp_path: Path, streaming: bool) -> None:
    """Regression: the same suite, with and without the pipeline, gives identical outcomes."""
    suite, answers = mixed_suite()
    with_path, without_path = tmp_path / "with.json", tmp_path / "without.json"
    options: dict[str, Any] = {"concurrency": 3, "timeout_s": 0.5}
    await execute(suite, Scripted(answers, streaming=streaming), report_path=with_path, **options)
    await execute(
        suite,
        Scripted(answers, streaming=streaming),
        report_path=without_path,
        telemetry=False,
        **options,
    )
    with_telemetry = decode_report(with_path.read_bytes())
    without = decode_report(without_path.read_bytes())
    assert triples(with_telemetry.test_runs) == EXPECTED
    assert triples(without.test_runs) == EXPECTED
    assert all(run.telemetry is not None for run in with_telemetry.test_runs)
    assert all(run.telemetry is None for run in without.test_runs)
    errors = {r.test_id: r.error for r in without.test_runs if r.error is not None}
    assert errors["gen-error"] is not None and errors["gen-error"].type == "ConnectionResetError"
    assert errors["timeout"] is not None and errors["timeout"].type == "TimeoutError"


async def test_runs_start_in_suite_order_within_the_concurrency_limit() -> None:
    ids = [f"t{i:02d}" for i in range(12)]
    tasks = tuple(Task(id=i, prompt=i) for i in ids)
    provider = Scripted({i: "x = 1" for i in ids}, streaming=True, delay=0.02)
    finished: list[RunResult] = []
    async with TelemetryPipeline() as pipeline:
        results = await run_suite(
            Suite(name="order", tasks=tasks),
            provider,
            pipeline=pipeline,
            concurrency=3,
            on_result=finished.append,
        )
    assert provider.started == ids
    assert provider.max_in_flight == 3
    assert [r.test_id for r in results] == ids
    assert sorted(r.test_id for r in finished) == ids
    assert [run.test_id for run in pipeline.report.test_runs] == ids


async def test_cancelled_run_without_telemetry_writes_finished_runs(tmp_path: Path) -> None:
    answers = {"a": "x = 1", "b": "x = 2", "c": HANG}
    tasks = tuple(Task(id=p, prompt=p) for p in answers)
    provider = Scripted(answers, streaming=False)
    out = tmp_path / "r.json"
    done = anyio.Event()

    def on_result(result: RunResult) -> None:
        if result.test_id == "b":
            done.set()

    async with anyio.create_task_group() as tg:

        async def run() -> None:
            await execute(
                Suite(name="s", tasks=tasks),
                provider,
                report_path=out,
                telemetry=False,
                concurrency=1,
                timeout_s=None,
                on_result=on_result,
            )

        tg.start_soon(run)
        await done.wait()
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    report = decode_report(out.read_bytes())
    assert [(r.test_id, r.outcome) for r in report.test_runs] == [("a", "pass"), ("b", "pass")]
    assert provider.closed


async def cancel_after_first_run(tmp_path: Path) -> Any:
    answers = {"a": "x = 1", "b": HANG}
    tasks = tuple(Task(id=p, prompt=p) for p in answers)
    out = tmp_path / "r.json"
    with anyio.move_on_after(1):
        await execute(
            Suite(name="s", tasks=tasks),
            Scripted(answers, streaming=True),
            report_path=out,
            concurrency=2,
            timeout_s=None,
        )
    return decode_report(out.read_bytes())


async def test_cancelled_run_with_telemetry_writes_finished_runs(tmp_path: Path) -> None:
    report = await cancel_after_first_run(tmp_path)
    assert (report.test_runs[0].test_id, report.test_runs[0].outcome) == ("a", "pass")


async def test_cancelled_unfinished_run_is_not_reported_as_a_pass(tmp_path: Path) -> None:
    report = await cancel_after_first_run(tmp_path)
    assert [r.test_id for r in report.test_runs if r.outcome == "pass"] == ["a"]
    (cancelled,) = [r for r in report.test_runs if r.test_id == "b"]
    assert cancelled.outcome == "error"
    assert cancelled.telemetry is not None and cancelled.telemetry.total_latency is not None


async def test_provider_returning_a_non_string_is_an_error() -> None:
    class Odd:
        supports_streaming = False

        async def generate(self, prompt: str) -> Any:
            return 42

    suite = Suite(name="s", tasks=(Task(id="t", prompt="p"),))
    (result,) = await run_suite(suite, Odd())  # type: ignore[arg-type]
    assert (result.outcome, result.reason) == (
        "error",
        "ProviderCallError: the provider returned int, not str",
    )


async def test_plain_def_provider_runs_in_a_thread() -> None:
    class Blocking:
        supports_streaming = False

        def generate(self, prompt: str) -> str:
            return "x = 1"

    suite = Suite(name="s", tasks=(Task(id="t", prompt="p"),))
    (result,) = await run_suite(suite, Blocking())  # type: ignore[arg-type]
    assert result.outcome == "pass"


@pytest.mark.parametrize(("option", "value"), [("concurrency", 0), ("timeout_s", 0.0)])
async def test_bad_options_raise(option: str, value: Any) -> None:
    suite = Suite(name="s", tasks=(Task(id="t", prompt="p"),))
    with pytest.raises(ValueError, match=option.split("_")[0]):
        await run_suite(suite, Scripted({}, streaming=False), **{option: value})
