"""Where the pipeline's time goes: the evidence behind the figures in README.md.

Not a benchmark (no target): a profile in five parts:

1. cost of the pieces on the engine's path (event construction, publish per event type);
2. the validator's cost per output, as the ConstraintStage pays it;
3. yield patterns: the pipeline's added cost per generation against one OpenTelemetry SDK span
   for a provider that never yields, one that yields once per generation
   (`anyio.lowlevel.checkpoint()`, as every socket read does) and a stream of two chunks with a
   yield before each, with the scheduler's batches counted; the engine's loop itself never
   yields, so the provider decides how often the stages could run;
4. where a generation's time goes: the engine's loop alone, then closing (every stage's work,
   done in batches at close when nothing yields), with and without finding the code payload;
5. cProfile of the event loop's thread (worker threads are not in it), top functions;
6. each stage's share: the loop thread's CPU (`time.thread_time()`, which other processes on a
   shared machine do not inflate as they do wall time) per generation in each stage's `handle_batch`
   and `after_batch`, the bus's routing and the report's build, for a plain answer and for a
   stream of 8 chunks.

Usage: python -m benchmarks.profile_pipeline [--quick]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import timeit
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from time import perf_counter, thread_time
from typing import Any

import anyio
import anyio.lowlevel
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from benchmarks._common import header
from benchmarks._fixtures import CODE_OUTPUT, TelemetryPipeline, check_lossless, typical_constraints
from benchmarks.bench_overhead import NeverYields, YieldsOnce, YieldsPerChunk
from orket_pipeline.constraints import extract_payload, validate_output
from orket_pipeline.constraints._payload import has_payload
from orket_pipeline.telemetry import _bus
from orket_pipeline.telemetry import _pipeline as pipeline_module
from orket_pipeline.telemetry._events import GenerationFinished, GenerationStarted, OutcomeRecorded
from orket_pipeline.telemetry.stages import _base


class StreamsTwo:
    supports_streaming = True
    chunks = (CODE_OUTPUT[: len(CODE_OUTPUT) // 2], CODE_OUTPUT[len(CODE_OUTPUT) // 2 :])

    async def stream(self, prompt: str) -> AsyncIterator[str]:
        for chunk in self.chunks:
            await anyio.lowlevel.checkpoint()
            yield chunk


Provider = NeverYields | YieldsOnce | StreamsTwo
PATTERNS: dict[str, Provider] = {
    "never yields": NeverYields(),
    "yields once per generation": YieldsOnce(),
    "2 chunks, a yield before each": StreamsTwo(),
}


class _NoopExporter(SpanExporter):
    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


async def _bare_call(provider: Provider) -> str:
    if isinstance(provider, StreamsTwo):
        # Text, as the engine takes it: `openai:` also yields a `Chunk` of the server's facts.
        return "".join([c if type(c) is str else c.text async for c in provider.stream("p") if c])
    return await provider.generate("p")


async def _bare(provider: Provider, n: int) -> float:
    t0 = perf_counter()
    for _ in range(n):
        await _bare_call(provider)
    return perf_counter() - t0


def _span_loop(tracer_provider: TracerProvider) -> Callable[[Provider, int], Awaitable[float]]:
    start = tracer_provider.get_tracer("profile").start_as_current_span

    async def span(provider: Provider, n: int) -> float:
        t0 = perf_counter()
        for _ in range(n):
            with start("generate"):
                await _bare_call(provider)
        tracer_provider.force_flush()
        return perf_counter() - t0

    return span


_ticks: list[int] = []


async def _pipeline(provider: Provider, n: int, constraints: Any = None) -> float:
    ids = [f"t{i:07d}" for i in range(n)]
    t0 = perf_counter()
    async with TelemetryPipeline(inbox_capacity=4 * n + 16) as pipeline:
        generate, record = pipeline.generate, pipeline.record_outcome
        for test_id in ids:
            await generate(test_id, provider, "p", constraints)
            record(test_id, "pass")
    elapsed = perf_counter() - t0
    check_lossless(pipeline, n)
    _ticks.append(pipeline._scheduler.ticks)
    return elapsed


def _ns(stmt: Any, number: int = 100_000) -> float:
    return min(timeit.repeat(stmt, number=number, repeat=5)) / number * 1e9


def engine_pieces() -> None:
    pipeline = TelemetryPipeline(inbox_capacity=1 << 30)  # the real wiring, nothing started
    bus = pipeline._bus
    routes = {kind.__name__: len(inboxes) for kind, inboxes in bus._routes.items()}
    started = GenerationStarted(test_id="t1", t_perf=1.0, streaming=False)
    finished = GenerationFinished(
        test_id="t1", t_perf=1.0, t_started=0.5, streaming=False, output="out", chunk_count=1
    )
    outcome = OutcomeRecorded(test_id="t1", outcome="pass")
    print(f"\n1. engine path pieces (ns, best of 5); inboxes per event type: {routes}")
    for name, fn in (
        (
            "GenerationStarted(...)",
            lambda: GenerationStarted(test_id="t", t_perf=1.0, streaming=False),
        ),
        ("publish(GenerationStarted)", lambda: bus.publish(started)),
        ("publish(GenerationFinished)", lambda: bus.publish(finished)),
        ("publish(OutcomeRecorded)", lambda: bus.publish(outcome)),
    ):
        print(f"  {name:40s} {_ns(fn):6.0f}")
        _forget_queued(bus)  # what a batch would have routed
    print(f"  {'route() per event, to the stages above':40s} {_route_ns(bus, finished):6.0f}")


def _forget_queued(bus: Any) -> None:
    for queue in bus._queues.values():
        queue.clear()
    bus._queued = 0


def _route_ns(bus: Any, event: Any, n: int = 100_000) -> float:
    best = float("inf")
    for _ in range(5):
        bus._queues[type(event)].extend([event] * n)
        bus._queued += n
        t0 = perf_counter()
        bus.route()
        best = min(best, perf_counter() - t0)
        for inbox in bus._inboxes:
            inbox.items.clear()
    return best / n * 1e9


def validator_costs() -> None:
    constraints, payload = typical_constraints(), extract_payload(CODE_OUTPUT) or ""
    print("\n2. scoring one output (us, best of 5), as the ConstraintStage pays it:")
    for name, fn in (
        ("has_payload (constraints=None: on the loop)", lambda: has_payload(CODE_OUTPUT)),
        ("extract_payload", lambda: extract_payload(CODE_OUTPUT)),
        ("validate_output(None, output)", lambda: validate_output(None, CODE_OUTPUT)),
        ("validate_output(6 checks, output)", lambda: validate_output(constraints, CODE_OUTPUT)),
        (
            f"ast.parse of the {len(payload)}-char payload",
            lambda: compile(payload, "<p>", "exec", 1024),
        ),
    ):
        print(f"  {name:48s} {_ns(fn, 2_000) / 1e3:8.2f}")


async def _yield_patterns(n: int, reps: int) -> None:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(_NoopExporter(), max_queue_size=1 << 20))
    loops = {"bare": _bare, "one span": _span_loop(tracer_provider), "pipeline": _pipeline}
    print(f"\n3. yield patterns, {n:,} generations, best of {reps} interleaved (us/gen):")
    print(f"  {'provider':32s} {'bare':>7s} {'+span':>7s} {'+pipeline':>10s} {'ratio':>6s} batches")
    for label, provider in PATTERNS.items():
        for loop in loops.values():
            await loop(provider, max(n // 10, 100))  # warm-up
        best = dict.fromkeys(loops, float("inf"))
        _ticks.clear()
        for _ in range(reps):
            for name, loop in loops.items():
                best[name] = min(best[name], await loop(provider, n) / n * 1e6)
        span, added = best["one span"] - best["bare"], best["pipeline"] - best["bare"]
        print(
            f"  {label:32s} {best['bare']:7.2f} {span:7.2f} {added:10.2f} {added / span:6.2f}"
            f" {min(_ticks)}"
        )
    tracer_provider.shutdown()


async def _split(n: int, reps: int) -> None:
    import orket_pipeline.telemetry.stages.constraints as stage

    async def once() -> tuple[float, float]:
        ids, provider = [f"t{i:07d}" for i in range(n)], NeverYields()
        pipeline = TelemetryPipeline(inbox_capacity=4 * n + 16)
        async with pipeline:
            t0 = perf_counter()
            for test_id in ids:
                await pipeline.generate(test_id, provider, "p")
                pipeline.record_outcome(test_id, "pass")
            t1 = perf_counter()
        return (t1 - t0) / n * 1e6, (perf_counter() - t1) / n * 1e6

    print(f"\n4. a generation's time, never yielding, {n:,} generations (us/gen, best of {reps}):")
    saved = stage.has_payload
    for label in ("whole pipeline", "code payload not looked for"):
        if label != "whole pipeline":
            stage.has_payload = lambda output: True
        results = [await once() for _ in range(reps)]
        engine, close = min(r[0] for r in results), min(r[1] for r in results)
        print(f"  {label:30s} engine's loop {engine:6.2f}   close (every stage) {close:6.2f}")
    stage.has_payload = saved


def loop_profile(n: int, constraints: Any, label: str) -> None:
    provider = YieldsOnce()
    anyio.run(_pipeline, provider, max(n // 10, 100), constraints)
    profiler = cProfile.Profile()
    profiler.enable()
    anyio.run(_pipeline, provider, n, constraints)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(14)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    print(f"\n5. cProfile of the loop's thread, {label}, {n:,} generations (tottime):")
    print("\n".join(f"  {line}" for line in lines[3:]))


def _timing(owner: Any, name: str, key: Callable[[Any], str], spent: dict[str, float]) -> Any:
    """Patch `owner.name` to add its thread CPU to `spent[key(self)]`; returns the original."""
    original = getattr(owner, name)
    if name == "_after_batch_isolated":

        async def timed_async(self: Any) -> None:
            t0 = thread_time()
            await original(self)
            spent[key(self)] += thread_time() - t0

        setattr(owner, name, timed_async)
    else:

        def timed(self: Any, *args: Any) -> Any:
            t0 = thread_time()
            result = original(self, *args)
            spent[key(self)] += thread_time() - t0
            return result

        setattr(owner, name, timed)
    return original


async def _shares(provider: Any, n: int) -> tuple[float, dict[str, float]]:
    spent: dict[str, float] = defaultdict(float)
    patches = [
        (_base.Stage, "_handle_slice", lambda stage: f"{stage.name}.handle"),
        (_base.Stage, "_after_batch_isolated", lambda stage: f"{stage.name}.after_batch"),
        (_bus.EventBus, "route", lambda bus: "bus.route"),
        (pipeline_module.TelemetryPipeline, "_build_report", lambda pipeline: "report build"),
    ]
    originals = [_timing(owner, name, key, spent) for owner, name, key in patches]
    try:
        ids = [f"t{i:07d}" for i in range(n)]
        async with TelemetryPipeline(inbox_capacity=4 * n + 16) as pipeline:
            t0 = thread_time()
            for test_id in ids:
                await pipeline.generate(test_id, provider, "p")
                pipeline.record_outcome(test_id, "pass")
            engine = thread_time() - t0
    finally:
        for (owner, name, _), original in zip(patches, originals, strict=True):
            setattr(owner, name, original)
    return engine / n * 1e6, {key: value / n * 1e6 for key, value in spent.items()}


def stage_shares(n: int, reps: int) -> None:
    print(f"\n6. loop thread CPU per generation, {n:,} generations, best of {reps} (us):")
    for label, provider in (("plain answer", NeverYields()), ("8 chunks", YieldsPerChunk(8))):
        best: dict[str, float] = {}
        for _ in range(reps):
            engine, spent = anyio.run(_shares, provider, n)
            spent["engine's loop (the provider's own work included)"] = engine
            for key, value in spent.items():
                best[key] = min(best.get(key, value), value)
        stages = sum(value for key, value in best.items() if not key.startswith("engine"))
        print(f"  {label}: stages, routing and report build {stages:.2f} in all")
        for key, value in sorted(best.items(), key=lambda item: -item[1]):
            if value >= 0.05:
                print(f"    {key:52s} {value:6.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    quick = parser.parse_args(argv).quick
    n, reps = (3_000, 3) if quick else (20_000, 5)
    print(header("profile of the pipeline's overhead"))
    engine_pieces()
    validator_costs()
    anyio.run(_yield_patterns, n, reps)
    anyio.run(_split, n, reps)
    loop_profile(n, None, "constraints=None, yields once")
    loop_profile(n, typical_constraints(), "6-check constraints, yields once")
    stage_shares(n, reps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
