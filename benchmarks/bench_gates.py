"""Per-gate cost of isolation: a HumanEval-sized python_tests gate in bubblewrap vs a plain process.

Run: python -m benchmarks.bench_gates [--quick]

Both sandboxes run the same harness on the same answer and tests (HumanEval/0,
`has_close_elements`, with its seven-assert `check`), one gate at a time, through `run_gate`
(everything a run pays for its gate: the worker thread, the pipes, the process, the harness, the
verdict). `process` is the plain `python -I` child the gates used before the sandbox existed;
`bwrap` adds the namespaces, the mounts, the seccomp filter and bwrap's own two processes. Gates
run in pairs (one of each, back to back) and the overhead is the median of the pairs'
differences, so that a busy machine's noise hits both alike. Then both again with two gates at a time (this
machine's cores), as a suite with `--gate-concurrency 2` would run them.
"""

from __future__ import annotations

import argparse
import statistics
import time

import anyio
import msgspec

from benchmarks._common import header
from orket_pipeline.engine import Gate
from orket_pipeline.engine._gates import run_gate
from orket_pipeline.engine.sandbox import Sandbox, resolve_sandbox

ANSWER = """\
from typing import List


def has_close_elements(numbers: List[float], threshold: float) -> bool:
    for idx, elem in enumerate(numbers):
        for idx2, elem2 in enumerate(numbers):
            if idx != idx2:
                distance = abs(elem - elem2)
                if distance < threshold:
                    return True
    return False
"""
TESTS = """\
def check(candidate):
    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True
    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.05) == False
    assert candidate([1.0, 2.0, 5.9, 4.0, 5.0], 0.95) == True
    assert candidate([1.0, 2.0, 5.9, 4.0, 5.0], 0.8) == False
    assert candidate([1.0, 2.0, 3.0, 4.0, 5.0, 2.0], 0.1) == True
    assert candidate([1.1, 2.2, 3.1, 4.1, 5.1], 1.0) == True
    assert candidate([1.1, 2.2, 3.1, 4.1, 5.1], 0.5) == False

check(has_close_elements)
"""
GATE: Gate = msgspec.convert({"type": "python_tests", "code": TESTS}, Gate)
TARGET_MS = 30.0


async def sequential(sandbox: Sandbox, count: int) -> list[float]:
    """Seconds per gate, one at a time."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        result = await run_gate(GATE, ANSWER, sandbox=sandbox)
        times.append(time.perf_counter() - start)
        assert result.passed, result
    return times


async def two_at_a_time(sandbox: Sandbox, count: int) -> float:
    """Seconds per gate (wall time / gates) with two gates in flight."""
    limiter = anyio.Semaphore(2)

    async def one() -> None:
        async with limiter:
            assert (await run_gate(GATE, ANSWER, sandbox=sandbox)).passed

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(one)
    return (time.perf_counter() - start) / count


async def measure(count: int) -> None:
    sandboxes = {kind: resolve_sandbox(kind) for kind in ("process", "bwrap")}
    for sandbox in sandboxes.values():
        await sequential(sandbox, 3)  # warm: page cache, the thread pool
    # Pairs, one gate of each back to back, so that the machine's noise hits both alike; the
    # overhead is the median of the pairs' differences.
    times: dict[str, list[float]] = {kind: [] for kind in sandboxes}
    for _ in range(count):
        for kind, sandbox in sandboxes.items():
            times[kind] += await sequential(sandbox, 1)
    for kind, values in times.items():
        median = statistics.median(values) * 1000
        p90 = statistics.quantiles(values, n=10)[-1] * 1000
        print(f"{kind:<8} one at a time  median {median:6.1f} ms   p90 {p90:6.1f} ms")
    for kind, sandbox in sandboxes.items():
        per_gate = await two_at_a_time(sandbox, count) * 1000
        print(f"{kind:<8} two at a time  {per_gate:6.1f} ms per gate (wall time / gates)")
    pairs = [b - p for b, p in zip(times["bwrap"], times["process"], strict=True)]
    overhead = statistics.median(pairs) * 1000
    low, high = (q * 1000 for q in statistics.quantiles(pairs, n=4)[::2])
    verdict = "met" if overhead <= TARGET_MS else "MISSED"
    print(
        f"bwrap overhead per gate: {overhead:+.1f} ms (median of pairs; quartiles {low:+.1f}, {high:+.1f})"
    )
    print(f"TARGET bwrap overhead per gate: <= {TARGET_MS:g} ms | {overhead:.1f} ms | {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a run of a few seconds")
    count = 20 if parser.parse_args().quick else 200
    print(header("per-gate cost of the sandbox"))
    print(f"gate: HumanEval/0 with its 7 asserts; {count} gates per sandbox and mode")
    anyio.run(measure, count)


if __name__ == "__main__":
    main()
