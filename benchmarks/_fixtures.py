"""What the benchmarks share: providers, a typical model output and constraints, loss checks.

The providers do no I/O and no waiting unless asked to: any time a benchmark measures around
them is the engine's, the instrumentation's or the event loop's, not the provider's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import msgspec

from orket_pipeline import TelemetryPipeline
from orket_pipeline.constraints import Constraints

__all__ = [
    "CODE_OUTPUT",
    "ChunkProvider",
    "TelemetryPipeline",
    "TextProvider",
    "bare_generate",
    "check_lossless",
    "split_chunks",
    "typical_constraints",
]

CODE_OUTPUT = '''\
Here is the function:

```python
def moving_average(values: list[float], window: int) -> list[float]:
    """Average of each `window` consecutive values.

    Args:
        values: the samples, oldest first.
        window: how many samples each average covers.

    Returns:
        One average per full window, in order.
    """
    if window <= 0:
        raise ValueError("window must be positive")
    averages: list[float] = []
    total = 0.0
    for index, value in enumerate(values):
        total += value
        if index >= window:
            total -= values[index - window]
        if index >= window - 1:
            averages.append(total / window)
    return averages
```

It runs in O(n) time.
'''


def typical_constraints() -> Constraints:
    """Six checks, as a task bank typically asks: 2 required regexes, 1 forbidden regex, and an
    AST rule with a function name, an argument count and a return annotation."""
    rules = {
        "regex_required": [r"def\s+moving_average", r"return\s+averages"],
        "regex_forbidden": [r"\beval\("],
        "ast_rules": [
            {
                "required_function_name": "moving_average",
                "argument_count": 2,
                "return_type_annotation": "list[float]",
            }
        ],
    }
    return msgspec.convert(rules, Constraints)


def split_chunks(text: str, count: int) -> tuple[str, ...]:
    """`text` cut into `count` nearly equal, non-empty chunks."""
    size = -(-len(text) // count)
    return tuple(text[i : i + size] for i in range(0, len(text), size))


class TextProvider:
    """Non-streaming: `generate` returns `output` without awaiting anything."""

    supports_streaming = False

    def __init__(self, output: str = CODE_OUTPUT) -> None:
        self.output = output

    async def generate(self, prompt: str) -> str:
        return self.output


class ChunkProvider:
    """Streaming: yields `chunks`, sleeping `first_delay` seconds before the first one."""

    supports_streaming = True

    def __init__(self, chunks: tuple[str, ...], first_delay: float = 0.0) -> None:
        self.chunks = chunks
        self.first_delay = first_delay

    async def stream(self, prompt: str) -> AsyncIterator[str]:
        if self.first_delay:
            await anyio.sleep(self.first_delay)
        for chunk in self.chunks:
            yield chunk

    async def generate(self, prompt: str) -> str:
        return "".join(self.chunks)


async def bare_generate(provider: TextProvider | ChunkProvider, prompt: str) -> str:
    """What an engine does without telemetry: one call, or the stream joined."""
    if provider.supports_streaming:
        assert isinstance(provider, ChunkProvider)
        return "".join([chunk async for chunk in provider.stream(prompt)])
    return await provider.generate(prompt)


def check_lossless(pipeline: TelemetryPipeline, runs: int) -> None:
    """Refuse a figure from a lossy run: no event dropped or late, no stage error, every run
    reported with telemetry. Raises `AssertionError` otherwise."""
    stats = pipeline.statistics()
    assert stats.events_dropped == 0, f"{stats.events_dropped} events dropped"
    late = getattr(stats, "late_events", 0)
    assert late == 0, f"{late} late events"
    assert not stats.stage_errors, f"stage errors: {stats.stage_errors}"
    test_runs = pipeline.report.test_runs
    assert len(test_runs) == runs, f"{len(test_runs)} of {runs} runs reported"
    missing = sum(1 for run in test_runs if run.telemetry is None)
    assert not missing, f"{missing} runs without telemetry"
    incomplete = sum(
        1
        for run in test_runs
        if run.telemetry is not None
        and (run.telemetry.peak_memory_rss is None or run.telemetry.adherence_score is None)
    )
    assert not incomplete, f"{incomplete} runs without a memory peak or an adherence score"
