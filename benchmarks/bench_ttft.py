"""TTFT accuracy: init_latency against an injected first-chunk delay, and against a bare engine.

A streaming provider sleeps DELAY before its first chunk (8 chunks). At concurrency 1, 100 and
1,000, rounds of that many simultaneous generations run two ways, in alternating blocks:

* bare engine: no pipeline; the engine stamps `perf_counter()` at dispatch and at the first
  chunk in its own `async for` loop;
* pipeline: `pipeline.generate`; the figure is the run's unrounded init_latency (the
  LatencyTracker's value before the report rounds it to 1 ms; read by wrapping the
  aggregator's `handle_batch`, where the `LatencyMeasured` part arrives).

Error vs injected = measured - DELAY. It includes the event loop's wake-up delay (which grows with
concurrency, and with the other timers the loop serves), in both methods; the difference
between the methods is what the instrumentation adds, and the target compares it at the median
and the p99. A second, paired figure isolates the stamping itself: measured minus the
provider's own interval from entering `stream()` to yielding the first chunk (the loop's
lateness cancels out). Each pipeline block is checked lossless.

A control at concurrency 1, "bare + timer": the bare engine while an unrelated task sleeps
CONTROL_TIMER in a loop. asyncio rounds its selector timeout up to whole milliseconds from
whenever the loop last woke, so any periodic timer on the loop (the pipeline has its lag
monitor and the memory stage's settle timer) makes sleeps overshoot by up to 1 ms more.

Usage: python -m benchmarks.bench_ttft [--quick | --smoke]
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import AsyncIterator
from time import perf_counter
from typing import Any

import anyio

from benchmarks._common import header
from benchmarks._fixtures import CODE_OUTPUT, TelemetryPipeline, check_lossless, split_chunks
from benchmarks._results import parse_mode, pick, verdict
from orket_pipeline.telemetry._events import LatencyMeasured

BENCH = "ttft"
DELAY = 0.020
CHUNKS = split_chunks(CODE_OUTPUT, 8)
TARGET_MS = 0.1
# generations per concurrency level (full, quick, smoke); concurrency 1 costs DELAY each
SAMPLES = {1: (1_000, 100, 20), 100: (10_000, 1_000, 200), 1_000: (10_000, 2_000, 1_000)}
CONTROL_TIMER = 0.0037
BLOCKS = 2  # rounds alternate between bare and pipeline blocks, this many of each

Errors = dict[str, list[float]]


class StampingProvider:
    """Streams CHUNKS after DELAY; stamps, per prompt, its own entry and first yield."""

    supports_streaming = True

    def __init__(self) -> None:
        self.stamps: dict[str, tuple[float, float]] = {}

    async def stream(self, prompt: str) -> AsyncIterator[str]:
        t_enter = perf_counter()
        await anyio.sleep(DELAY)
        self.stamps[prompt] = (t_enter, perf_counter())
        for chunk in CHUNKS:
            yield chunk


async def _bare_block(provider: StampingProvider, concurrency: int, rounds: int) -> Errors:
    errors: Errors = {"injected": [], "stamp": []}

    async def engine(key: str) -> None:
        t_dispatch, t_first = perf_counter(), None
        parts = []
        async for chunk in provider.stream(key):
            if chunk and t_first is None:
                t_first = perf_counter()
            parts.append(chunk)
        assert t_first is not None
        _collect(errors, provider, key, t_first - t_dispatch)

    for r in range(rounds):
        async with anyio.create_task_group() as tg:
            for i in range(concurrency):
                tg.start_soon(engine, f"r{r}t{i}")
    return errors


async def _pipeline_block(provider: StampingProvider, concurrency: int, rounds: int) -> Errors:
    errors: Errors = {"injected": [], "stamp": []}
    async with TelemetryPipeline(inbox_capacity=4 * concurrency * rounds + 16) as pipeline:
        aggregator: Any = pipeline._aggregator
        handle_batch = aggregator.handle_batch

        def keep(events: list[Any]) -> None:
            for event in events:
                if isinstance(event, LatencyMeasured):
                    _collect(errors, provider, event.test_id, event.init_latency)
            handle_batch(events)

        aggregator.handle_batch = keep

        async def engine(test_id: str) -> None:
            await pipeline.generate(test_id, provider, test_id)
            pipeline.record_outcome(test_id, "pass")

        for r in range(rounds):
            async with anyio.create_task_group() as tg:
                for i in range(concurrency):
                    tg.start_soon(engine, f"r{r}t{i}")
    check_lossless(pipeline, concurrency * rounds)
    assert len(errors["injected"]) == concurrency * rounds
    return errors


async def _timer_block(provider: StampingProvider, concurrency: int, rounds: int) -> Errors:
    async def timer() -> None:
        while True:  # noqa: ASYNC110 - a periodic timer is what this control is
            await anyio.sleep(CONTROL_TIMER)

    async with anyio.create_task_group() as tg:
        tg.start_soon(timer)
        errors = await _bare_block(provider, concurrency, rounds)
        tg.cancel_scope.cancel()
    return errors


def _collect(errors: Errors, provider: StampingProvider, key: str, measured: float) -> None:
    t_enter, t_yield = provider.stamps.pop(key)
    errors["injected"].append(measured - DELAY)
    errors["stamp"].append(measured - (t_yield - t_enter))


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def _blocks(concurrency: int) -> list[tuple[str, Any]]:
    blocks = [("bare engine", _bare_block), ("pipeline", _pipeline_block)]
    return [*blocks, ("bare + timer", _timer_block)] if concurrency == 1 else blocks


async def _measure(mode: str) -> dict[int, dict[str, Errors]]:
    provider = StampingProvider()
    await _bare_block(provider, 10, 1)  # warm-up
    await _pipeline_block(provider, 10, 1)
    results = {}
    for concurrency, counts in SAMPLES.items():
        rounds = max(1, pick(mode, *counts) // concurrency // BLOCKS)
        cell: dict[str, Errors] = {}
        for _ in range(BLOCKS):
            for name, block in _blocks(concurrency):
                errors = await block(provider, concurrency, rounds)
                for kind, values in errors.items():
                    cell.setdefault(name, {}).setdefault(kind, []).extend(values)
        results[concurrency] = cell
    return results


def _print_cell(concurrency: int, cell: dict[str, Errors]) -> None:
    for name, errors in cell.items():
        figures = "".join(
            f" {statistics.median(v) * 1e3:8.3f} {_p99(v) * 1e3:8.3f}" for v in errors.values()
        )
        print(f"{concurrency:11,d}  {name:12s} {len(errors['injected']):6d}{figures}")
    for kind, label in (("injected", "vs injected delay"), ("stamp", "stamping alone")):
        bare, piped = cell["bare engine"][kind], cell["pipeline"][kind]
        for stat, fn in (("median", statistics.median), ("p99", _p99)):
            added = (fn(piped) - fn(bare)) * 1e3
            name = f"added by the pipeline, {label}, concurrency {concurrency:,}, {stat}"
            if kind == "injected":
                verdict(BENCH, name, added, TARGET_MS, "ms", digits=3)
            else:
                print(f"  {name}: {added:.3f} ms")
    if "bare + timer" in cell:
        timer = statistics.median(cell["bare + timer"]["injected"])
        bare = statistics.median(cell["bare engine"]["injected"])
        print(f"  control: a periodic timer alone adds {(timer - bare) * 1e3:.3f} ms (median)")


def main(argv: list[str] | None = None) -> int:
    args = parse_mode(argv, __doc__.splitlines()[0])
    print(header(f"TTFT accuracy ({args.mode} mode)"))
    counts = ", ".join(f"{pick(args.mode, *n):,} at {c:,}" for c, n in SAMPLES.items())
    print(
        f"first chunk after {DELAY * 1e3:g} ms; generations per method: {counts}; errors in ms:"
        " vs injected = measured - delay; stamp = measured - the provider's own"
        " entry-to-first-yield interval"
    )
    results = anyio.run(_measure, args.mode)
    print(
        f"{'concurrency':>11s}  {'method':12s} {'n':>6s} {'inj med':>8s} {'inj p99':>8s}"
        f" {'stamp med':>8s} {'stamp p99':>8s}"
    )
    for concurrency, cell in results.items():
        _print_cell(concurrency, cell)
    return 0


if __name__ == "__main__":
    sys.exit(main())
