"""Instructions per generation, counted by valgrind: the pipeline's cost where time cannot tell.

CPU time on a shared 2-core VM moves by 30 to 50 % from one minute to the next (other sessions'
work), so two checkouts timed minutes apart cannot be compared to a few percent. The number of
machine instructions the interpreter executes does not depend on the load: this counts them
with `valgrind --tool=callgrind` for one loop of `bench_overhead` (the same providers and the
same engine loop: one generation, its outcome, one yield), once with N and once with 6 N
generations, and prints the difference per generation, so start-up and imports cancel out.

* `pipeline`: `TelemetryPipeline(memory_interval=10, schedule_delay=10)` (no memory sample
  and no timed batch while it runs: both depend on wall time, and valgrind runs some 50 times
  slower than the machine, which would count them 50 times too often; batches come at the
  fill mark instead), opened and closed, report built;
* `span`: the same call inside one OpenTelemetry SDK span, as `bench_overhead`'s span loop
  (BatchSpanProcessor, a no-op exporter that counts; its export thread counts too), so
  added(pipeline) / added(span) in instructions is the benchmark's target ratio without the
  load's noise (instructions are not time: a guide, not the figure);
* `bare`: the provider call alone, as `bench_overhead`'s bare loop;
* `engine`: `generate` + `record_outcome` alone, each coroutine driven by hand with no event
  loop and the events published onto a bus that is never routed, its fill mark out of reach
  (its queues keep them, as between two batches: the engine path), and `engine-bare` the bare call
  driven the same way; `engine-minimal` the least an engine path of this design can do (a
  coroutine that stamps dispatch and completion around the provider's coroutine and appends
  the two events, `GenerationFinished` and `OutcomeRecorded`), for scale.

Instructions are not time (a cache miss costs more than an add), so this is for comparing
two versions of the code, not for the figures of the targets. Not run by `python -m
benchmarks` (valgrind is not installed everywhere, and each count takes about a minute).

Usage: python -m benchmarks.instructions [--n 1000] [pipeline|span|bare|engine|engine-bare|engine-minimal] [a|b|c]
(with no variant: all of them, for each pattern; the counted child runs this same file).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
from typing import Any

PATTERNS = {"a": "(a) never yields", "b": "(b) yields once", "c": "(c) 8 chunks, a yield each"}
VARIANTS = ("pipeline", "span", "bare", "engine", "engine-bare", "engine-minimal")


def _provider(pattern: str) -> Any:
    from benchmarks.bench_overhead import CHUNKS, NeverYields, YieldsOnce, YieldsPerChunk

    return {"a": NeverYields, "b": YieldsOnce, "c": lambda: YieldsPerChunk(CHUNKS)}[pattern]()


def _loop(variant: str, pattern: str, n: int) -> None:
    """What the counted child runs."""
    import anyio
    import anyio.lowlevel

    from benchmarks.bench_overhead import PROMPT, _caller
    from orket_pipeline import TelemetryPipeline

    provider, ids = _provider(pattern), [f"t{i:07d}" for i in range(n)]
    if variant.startswith("engine"):
        _engine(variant, provider, ids)
        return

    async def pipeline() -> None:
        async with TelemetryPipeline(memory_interval=10.0, schedule_delay=10.0) as telemetry:
            for test_id in ids:
                await telemetry.generate(test_id, provider, PROMPT, None)
                telemetry.record_outcome(test_id, "pass")
                await anyio.lowlevel.checkpoint()
        assert len(telemetry.report.test_runs) == n

    async def bare() -> None:
        call = _caller(provider)
        for _ in ids:
            await call(PROMPT)
            await anyio.lowlevel.checkpoint()

    async def span() -> None:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from benchmarks._measure import CountingExporter

        exporter, tracer_provider = CountingExporter(), TracerProvider()
        tracer_provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=n + 2048))
        start_span = tracer_provider.get_tracer("bench").start_as_current_span
        call = _caller(provider)
        for _ in ids:
            with start_span("generate"):
                await call(PROMPT)
            await anyio.lowlevel.checkpoint()
        tracer_provider.force_flush()
        assert exporter.exported == n, f"{exporter.exported} of {n} spans exported"
        tracer_provider.shutdown()

    anyio.run({"pipeline": pipeline, "span": span, "bare": bare}[variant])


def _engine(variant: str, provider: Any, ids: list[str]) -> None:
    from benchmarks.bench_overhead import PROMPT
    from orket_pipeline.telemetry._bus import EventBus
    from orket_pipeline.telemetry._wrapper import GenerationWrapper, State

    class _Awake:
        idle = sample_at_dispatch = False

    class _Wrapper(GenerationWrapper):
        def __init__(self) -> None:
            self.events: list[Any] = []
            bus = EventBus(capacity=1 << 24, fill_mark=1 << 24)  # never routed, never full
            bus.on_ring(lambda: None)
            self._state, self._publish = State.OPEN, bus.publish
            self._probe, self._dispatched = _Awake(), {}  # type: ignore[assignment]

    def drive(coroutine: Any) -> None:
        with contextlib.suppress(StopIteration):  # the coroutine returned (never yielded)
            coroutine.send(None)

    wrapper = _Wrapper()
    if variant == "engine-minimal":
        _minimal(provider, ids, wrapper.events.append)
    elif variant == "engine":
        for test_id in ids:
            drive(wrapper.generate(test_id, provider, PROMPT, None))
            wrapper.record_outcome(test_id, "pass")
    else:
        for _ in ids:
            drive(provider.generate(PROMPT))


def _minimal(provider: Any, ids: list[str], publish: Any) -> None:
    from time import perf_counter

    from benchmarks.bench_overhead import PROMPT
    from orket_pipeline.telemetry._events import GenerationFinished, OutcomeRecorded

    async def generate(test_id: str) -> str:
        t_started = perf_counter()
        text: str = await provider.generate(PROMPT)
        publish(
            GenerationFinished(
                test_id=test_id,
                t_perf=perf_counter(),
                t_started=t_started,
                streaming=False,
                output=text,
                chunk_count=1,
            )
        )
        return text

    for test_id in ids:
        with contextlib.suppress(StopIteration):
            generate(test_id).send(None)
        publish(OutcomeRecorded(test_id=test_id, outcome="pass"))


def _count(variant: str, pattern: str, n: int) -> int:
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "benchmarks.instructions",
        "--child",
        "--n",
        str(n),
        variant,
        pattern,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    found = re.search(r"refs:\s*([\d,]+)", done.stderr)
    assert found is not None, done.stderr[-2000:]
    return int(found.group(1).replace(",", ""))


def per_generation(variant: str, pattern: str, n: int) -> int:
    """Instructions per generation: the count for 6 n minus the count for n, over 5 n."""
    return (_count(variant, pattern, 6 * n) - _count(variant, pattern, n)) // (5 * n)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", nargs="?", choices=VARIANTS)
    parser.add_argument("pattern", nargs="?", choices=tuple(PATTERNS), default="a")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _loop(args.variant, args.pattern, args.n)
        return 0
    if shutil.which("valgrind") is None:
        print("skipped: valgrind is not installed")
        return 0
    print(f"instructions per generation (valgrind callgrind; {os.getcwd()})")
    variants = (args.variant,) if args.variant else VARIANTS
    patterns = (args.pattern,) if args.variant else tuple(PATTERNS)
    for pattern in patterns:
        for variant in variants:
            if variant.startswith("engine") and pattern != "a":
                continue  # the engine path is measured with provider (a), as bench_overhead does
            count = per_generation(variant, pattern, args.n)
            print(f"  {PATTERNS[pattern]:28s} {variant:12s} {count:9,d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
