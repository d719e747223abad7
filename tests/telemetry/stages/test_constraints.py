"""ConstraintStage: scores match the validator, large outputs go to a worker process."""

from __future__ import annotations

import anyio
import pytest

from orket_pipeline.constraints import AstRule, Constraints, validate_output
from orket_pipeline.telemetry._pipeline import TelemetryPipeline
from orket_pipeline.telemetry.stages import ConstraintStage
from tests.providers_fakes import Instant

pytestmark = pytest.mark.anyio

RULES = Constraints(
    regex_required=(r"return\s+a",),
    regex_forbidden=(r"\bimport\b",),
    ast_rules=(AstRule(required_function_name="add", argument_count=2),),
)


def big_module(functions: int) -> str:
    body = "".join(f"def f{i}(a, b):\n    return a + b + {i}\n\n" for i in range(functions))
    return "```python\ndef add(a, b):\n    return a + b\n\n" + body + "```\n"


@pytest.mark.parametrize(
    "output",
    [
        "```python\ndef add(a, b):\n    return a + b\n```",
        "```python\ndef add(a, b, c):\n    import os\n```",
        "no code at all, just prose",
        "   ",
    ],
)
async def test_stage_scores_what_the_validator_scores(output: str) -> None:
    async with TelemetryPipeline() as pipeline:
        await pipeline.generate("t1", Instant(output), "p", RULES)
    (run,) = pipeline.report.test_runs
    assert run.telemetry is not None
    expected = validate_output(RULES, output)
    assert run.telemetry.adherence_score == (None if expected is None else expected.adherence_score)


async def test_large_output_is_scored_in_a_worker_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    output = big_module(3_000)
    assert len(output) >= ConstraintStage.large_output_chars
    calls: list[object] = []
    original = anyio.run_process

    async def spy(*args: object, **kwargs: object) -> object:
        calls.append(args[0])
        return await original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(anyio, "run_process", spy)
    async with TelemetryPipeline() as pipeline:
        await pipeline.generate("big", Instant(output), "p", RULES)
    (run,) = pipeline.report.test_runs
    assert len(calls) == 1
    expected = validate_output(RULES, output)
    assert expected is not None
    assert run.telemetry is not None
    assert run.telemetry.adherence_score == expected.adherence_score
    assert pipeline.report.metadata.pipeline is not None
    assert pipeline.report.metadata.pipeline.stage_errors == {}


@pytest.mark.anyio
@pytest.mark.parametrize(
    "output",
    [
        "x = 1\n",
        "   \n\t",
        "",
        "  indented()\n",
        "```python\n\n```",
        "```\ncode()\n```",
        "~~~\n~~~",
    ],
)
async def test_without_constraints_a_run_is_scored_exactly_as_the_validator_finds_code(
    output: str,
) -> None:
    async with TelemetryPipeline() as pipeline:
        await pipeline.generate("t", Instant(output), "p")
    (run,) = pipeline.report.test_runs
    assert run.telemetry is not None
    expected = validate_output(None, output)
    assert expected is not None
    assert (run.telemetry.adherence_score is None) == (expected.adherence_score is None)
