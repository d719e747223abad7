"""Nominal vs real concurrency: is `--concurrency N` really N generations at once over HTTP?

A loopback server (`benchmarks._stamping_server`, its own process) answers each chat completion
DELAY after reading it, so a client that keeps N requests in flight finishes a burst of
ROUNDS * N generations in about ROUNDS * DELAY. At N = 1, 4, 16 and 64, N workers (as the
engine's run loop has) each send their next generation through `TelemetryPipeline.generate` and
`OpenAIProvider` when the last one ended, with the HTTP pool sized to N
(`ProviderOptions(max_connections=N)`, as the command line does) and, for comparison, with the
provider's default pool (no bound, 32 kept alive). Figures per row:

* `max_in_flight`: the report's metadata, generations the pipeline saw in flight at once;
* `server`: the most requests the server had in flight at once (arrival to last byte);
* `conns`: TCP connections the server accepted for the burst (after a warm-up burst);
* `wall` and `ideal` (ROUNDS * DELAY: what the server alone needs), and their ratio;
* `cpu/gen ms`: this process's CPU time per generation (pipeline, provider, httpx), the figure
  a loaded machine changes least.

Usage: python -m benchmarks.bench_concurrency [--quick | --smoke]
"""

from __future__ import annotations

import sys
from time import perf_counter, process_time
from typing import Any

import anyio
import httpx

from benchmarks._common import header
from benchmarks._fixtures import TelemetryPipeline
from benchmarks._results import parse_mode, pick, verdict
from benchmarks._stamping_server import serve
from orket_pipeline.providers import OpenAIProvider, ProviderOptions

BENCH = "concurrency"
DELAY = 0.050
LEVELS = (1, 4, 16, 64)
ROUNDS = (8, 4, 2)  # full, quick, smoke: generations per worker


async def _burst(root: str, concurrency: int, rounds: int, sized: bool) -> dict[str, Any]:
    options = ProviderOptions(max_connections=concurrency if sized else None)
    provider = OpenAIProvider("bench", f"{root}/v1", options=options)
    await provider.connect()
    total = concurrency * rounds
    try:
        async with TelemetryPipeline(inbox_capacity=8 * total + 64) as pipeline:

            async def workers(prefix: str) -> None:
                keys = iter(range(total))

                async def worker() -> None:
                    for index in keys:
                        await pipeline.generate(f"{prefix}{index}", provider, "p")
                        pipeline.record_outcome(f"{prefix}{index}", "pass")

                async with anyio.create_task_group() as group:
                    for _ in range(concurrency):
                        group.start_soon(worker)

            await workers("warm-")
            async with httpx.AsyncClient() as control:
                await control.post(f"{root}/reset")
                t0, c0 = perf_counter(), process_time()
                await workers("run-")
                wall, cpu = perf_counter() - t0, process_time() - c0
                stats = (await control.get(f"{root}/stats")).json()
    finally:
        await provider.aclose()
    errors = sum(1 for run in pipeline.report.test_runs if run.outcome != "pass")
    return {
        "max_in_flight": pipeline.report.metadata.max_in_flight,
        "server": stats["max_in_flight"],
        "conns": stats["connections"],
        "wall": wall,
        "cpu_ms": cpu / total * 1e3,
        "ideal": rounds * DELAY,
        "errors": errors,
    }


async def _run(mode: str, root: str) -> None:
    rounds = pick(mode, *ROUNDS)
    print(
        f"{'concurrency':>11s}  {'pool':8s} {'max_in_flight':>13s} {'server':>6s} {'conns':>5s}"
        f" {'wall s':>7s} {'ideal s':>7s} {'ratio':>5s} {'cpu/gen ms':>10s} {'errors':>6s}"
    )
    for concurrency in LEVELS:
        for sized in (True, False):
            row = await _burst(root, concurrency, rounds, sized)
            ratio = row["wall"] / row["ideal"]
            pool = f"{concurrency}" if sized else "default"
            print(
                f"{concurrency:11d}  {pool:8s} {row['max_in_flight']!s:>13s} {row['server']:6d}"
                f" {row['conns']:5d} {row['wall']:7.3f} {row['ideal']:7.3f} {ratio:5.2f}"
                f" {row['cpu_ms']:10.2f}"
                f" {row['errors']:6d}"
            )
            if sized:
                verdict(
                    BENCH,
                    f"real concurrency at the server, nominal {concurrency} (pool sized)",
                    row["server"],
                    concurrency,
                    "requests",
                    at_least=True,
                    digits=0,
                )


def main(argv: list[str] | None = None) -> int:
    args = parse_mode(argv, __doc__.splitlines()[0])
    print(header(f"Nominal vs real concurrency over HTTP ({args.mode} mode)"))
    print(f"loopback server answers each request {DELAY * 1e3:g} ms after reading it")
    with serve(DELAY) as root:
        anyio.run(_run, args.mode, root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
