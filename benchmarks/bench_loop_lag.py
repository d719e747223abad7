"""Event-loop lag while the pipeline's ConstraintStage scores a 1 MB payload.

A ticker task sleeps TICK in a loop and records how late it wakes (oversleep). It runs from
before each pipeline opens until after it closes, while a few generations each return a 1 MB
model output (realistic Python code, one fenced block) scored against the typical 6-check
constraints (the ConstraintStage sends outputs this large out of the event loop's process).
The pipeline's own `max_loop_lag` (its LagMonitor, in the report's metadata) is printed beside.

Two controls without any pipeline, for as long: the same ticker on an idle loop (the machine's
floor: asyncio's selector timeout has 1 ms granularity, so an oversleep below about 1 ms is the
clock, not a block), and on a loop that runs child Python processes parsing the same code
payload (`anyio.run_process`, as a CPU-heavy worker would be run): what out-of-process
scoring costs the loop on this machine, whoever starts it.

Usage: python -m benchmarks.bench_loop_lag [--quick | --smoke]
"""

from __future__ import annotations

import sys
from time import perf_counter

import anyio

from benchmarks._common import header
from benchmarks._fixtures import (
    TelemetryPipeline,
    TextProvider,
    check_lossless,
    typical_constraints,
)
from benchmarks._results import parse_mode, pick, verdict
from orket_pipeline.constraints import extract_payload

BENCH = "loop_lag"
TICK = 0.001
PAYLOAD_BYTES = 1_000_000
TARGET_MS = 2.0

_FUNCTION = '''
def {name}_{i}(records: list[dict[str, float]], key: str = "{name}", limit: int = {i}) -> float:
    """Sum `key` over the first `limit` records that have it, skipping negative values."""
    total = 0.0
    seen = 0
    for record in records:
        value = record.get(key)
        if value is None or value < 0:
            continue
        total += value * {i} / (seen + 1)
        seen += 1
        if seen >= limit:
            break
    return round(total, 3)

'''
_CLASS = '''
class {name}Cache_{i}:
    """A small bounded cache of computed values."""

    def __init__(self, capacity: int = {i}) -> None:
        self.capacity = capacity
        self._items: dict[str, float] = {{}}

    def get(self, key: str, default: float = 0.0) -> float:
        return self._items.get(key, default)

    def put(self, key: str, value: float) -> None:
        if len(self._items) >= self.capacity:
            self._items.pop(next(iter(self._items)))
        self._items[key] = value

'''
_PARSE = "import ast, sys; ast.parse(sys.stdin.read())"
_HEAD = '''Here is the module:

```python
from __future__ import annotations


def moving_average(values: list[float], window: int) -> list[float]:
    """Average of each `window` consecutive values."""
    averages: list[float] = []
    for index in range(window - 1, len(values)):
        averages.append(sum(values[index - window + 1 : index + 1]) / window)
    return averages

'''


def large_output(size: int = PAYLOAD_BYTES) -> str:
    """About `size` characters of model output: one fenced block of varied, valid Python."""
    parts, length, i = [_HEAD], len(_HEAD), 0
    names = ("revenue", "latency", "weight", "score", "volume")
    while length < size:
        name = names[i % len(names)]
        part = (_CLASS if i % 3 == 2 else _FUNCTION).format(
            name=name.title() if i % 3 == 2 else name, i=i
        )
        parts.append(part)
        length += len(part)
        i += 1
    parts.append("```\n")
    return "".join(parts)


class Ticker:
    """Sleeps TICK in a loop until stopped; keeps every oversleep (seconds)."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.stopped = False

    async def run(self) -> None:
        while not self.stopped:
            t0 = perf_counter()
            await anyio.sleep(TICK)
            self.lags.append(max(0.0, perf_counter() - t0 - TICK))


async def _idle(seconds: float) -> list[float]:
    ticker = Ticker()
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker.run)
        await anyio.sleep(seconds)
        ticker.stopped = True
    return ticker.lags


async def _scored(output: str, payloads: int) -> tuple[list[float], float, float]:
    """Ticker lags, the pipeline's max_loop_lag, and the elapsed seconds, for one pipeline."""
    provider, constraints, ticker = TextProvider(output), typical_constraints(), Ticker()
    t0 = perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker.run)
        async with TelemetryPipeline() as pipeline:
            for k in range(payloads):
                await pipeline.generate(f"large{k}", provider, "prompt", constraints)
                pipeline.record_outcome(f"large{k}", "pass")
                await anyio.sleep(0.05)
        ticker.stopped = True
    elapsed = perf_counter() - t0
    check_lossless(pipeline, payloads)
    for run in pipeline.report.test_runs:
        assert run.telemetry is not None and run.telemetry.adherence_score == 1
    stats = pipeline.report.metadata.pipeline
    assert stats is not None and stats.max_loop_lag is not None
    return ticker.lags, float(stats.max_loop_lag), elapsed


async def _child_parse(output: str, seconds: float) -> list[float]:
    ticker, command = Ticker(), [sys.executable, "-c", _PARSE]
    payload = (extract_payload(output) or "").encode()
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker.run)
        t_end = perf_counter() + seconds
        while perf_counter() < t_end:
            await anyio.run_process(command, input=payload)
            await anyio.sleep(0.05)
        ticker.stopped = True
    return ticker.lags


def _summary(lags: list[float]) -> str:
    ordered = sorted(lags)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return f"ticks {len(lags):5d}  p99 {p99 * 1e3:6.3f} ms  max {ordered[-1] * 1e3:6.3f} ms"


def main(argv: list[str] | None = None) -> int:
    args = parse_mode(argv, __doc__.splitlines()[0])
    pipelines, payloads = pick(args.mode, (5, 3), (2, 2), (1, 1))
    output = large_output()
    print(header(f"event-loop lag while scoring 1 MB payloads ({args.mode} mode)"))
    print(
        f"{len(output):,}-character output, 6 checks; ticker sleeps {TICK * 1e3:g} ms;"
        f" {pipelines} pipelines x {payloads} payloads"
    )
    worst = 0.0
    for i in range(pipelines):
        lags, own, elapsed = anyio.run(_scored, output, payloads)
        worst = max(worst, max(lags))
        print(
            f"pipeline {i + 1}: {_summary(lags)}  pipeline max_loop_lag {own * 1e3:.0f} ms"
            f"  ({elapsed:.2f} s)"
        )
        print(f"  control, idle loop         : {_summary(anyio.run(_idle, elapsed))}")
        child = anyio.run(_child_parse, output, elapsed)
        print(f"  control, child parses 1 MB : {_summary(child)}")
    verdict(BENCH, "largest loop lag while scoring 1 MB", worst * 1e3, TARGET_MS, "ms", digits=3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
