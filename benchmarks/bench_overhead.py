"""Instrumentation overhead per generation: bare call, one OpenTelemetry span, the pipeline.

In one process, for a non-streaming provider and a streaming one (8 chunks, no delay), the
loop an engine runs is timed (best of several repetitions) as:

* bare: the provider call alone;
* one OpenTelemetry SDK span around it (TracerProvider + BatchSpanProcessor with a no-op
  exporter), written as an engine would (`with tracer.start_as_current_span(...)`), and as
  `tracer.start_span(...)` / `span.end()` without touching the context; `force_flush()` at the
  end is timed, as the pipeline's close is;
* the whole TelemetryPipeline: enter, every generation and outcome, close (all stages drained,
  report built), with `constraints=None` and with a typical 6-check `Constraints`.

The loop yields to the event loop (`anyio.lowlevel.checkpoint()`) every YIELD_EVERY
generations, as an engine awaiting real providers would, in every variant alike. Every
pipeline run is checked lossless (0 dropped events, every run reported) before its figure
counts. "Added" is the variant minus bare; the target compares the pipeline's added cost with
the span's.

The engine-path part is `generate()` + `record_outcome` inside an open pipeline, in a loop
that never yields (so no stage runs), minus the same loop of bare calls.

Usage: python -m benchmarks.bench_overhead [--quick | --smoke]
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Sequence
from time import perf_counter
from typing import Any

import anyio
import anyio.lowlevel
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from benchmarks._common import header
from benchmarks._fixtures import (
    CODE_OUTPUT,
    ChunkProvider,
    TelemetryPipeline,
    TextProvider,
    bare_generate,
    check_lossless,
    split_chunks,
    typical_constraints,
)
from benchmarks._results import parse_mode, pick, verdict

BENCH = "overhead"
YIELD_EVERY = 100
PROMPT = "Write moving_average(values, window)."
SPAN_RATIO_TARGET = 0.25
ENGINE_PATH_TARGET_US = 1.0

Provider = TextProvider | ChunkProvider
Loop = Callable[[Provider, int], Awaitable[float]]


class _NoopExporter(SpanExporter):
    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def _ids(n: int) -> list[str]:
    return [f"t{i:07d}" for i in range(n)]


async def _bare(provider: Provider, n: int, yield_every: int = YIELD_EVERY) -> float:
    checkpoint = anyio.lowlevel.checkpoint
    t0 = perf_counter()
    for i in range(n):
        await bare_generate(provider, PROMPT)
        if i % yield_every == 0:
            await checkpoint()
    return perf_counter() - t0


def _span_loops(tracer_provider: TracerProvider) -> dict[str, Loop]:
    tracer = tracer_provider.get_tracer("bench")
    flush = tracer_provider.force_flush

    async def current_span(provider: Provider, n: int) -> float:
        start, checkpoint = tracer.start_as_current_span, anyio.lowlevel.checkpoint
        t0 = perf_counter()
        for i in range(n):
            with start("generate"):
                await bare_generate(provider, PROMPT)
            if i % YIELD_EVERY == 0:
                await checkpoint()
        flush()
        return perf_counter() - t0

    async def plain_span(provider: Provider, n: int) -> float:
        start, checkpoint = tracer.start_span, anyio.lowlevel.checkpoint
        t0 = perf_counter()
        for i in range(n):
            span = start("generate")
            await bare_generate(provider, PROMPT)
            span.end()
            if i % YIELD_EVERY == 0:
                await checkpoint()
        flush()
        return perf_counter() - t0

    return {"span (start_as_current_span)": current_span, "span (start_span/end)": plain_span}


def _pipeline_loop(constraints: Any) -> Loop:
    async def loop(provider: Provider, n: int) -> float:
        ids, checkpoint = _ids(n), anyio.lowlevel.checkpoint
        t0 = perf_counter()
        async with TelemetryPipeline(inbox_capacity=2 * n + 16) as pipeline:
            generate, record = pipeline.generate, pipeline.record_outcome
            for i in range(n):
                await generate(ids[i], provider, PROMPT, constraints)
                record(ids[i], "pass")
                if i % YIELD_EVERY == 0:
                    await checkpoint()
        elapsed = perf_counter() - t0
        check_lossless(pipeline, n)
        return elapsed

    return loop


async def _engine_path(provider: Provider, n: int) -> float:
    """Seconds for n generate() + record_outcome calls while no stage runs."""
    ids = _ids(n)
    async with TelemetryPipeline(inbox_capacity=2 * n + 16) as pipeline:
        generate, record = pipeline.generate, pipeline.record_outcome
        t0 = perf_counter()
        for i in range(n):
            await generate(ids[i], provider, PROMPT, None)
            record(ids[i], "pass")
        elapsed = perf_counter() - t0
    check_lossless(pipeline, n)
    return elapsed


async def _best(loops: dict[str, Loop], provider: Provider, n: int, reps: int) -> dict[str, float]:
    """Best microseconds per generation of each loop, repetitions interleaved."""
    best = dict.fromkeys(loops, float("inf"))
    for _ in range(reps):
        for name, loop in loops.items():
            best[name] = min(best[name], await loop(provider, n) / n * 1e6)
    return best


async def _measure(n: int, n_engine: int, reps: int) -> dict[str, dict[str, float]]:
    tracer_provider = TracerProvider()
    processor = BatchSpanProcessor(_NoopExporter(), max_queue_size=1 << 20)
    tracer_provider.add_span_processor(processor)
    loops: dict[str, Loop] = {"bare": _bare}
    loops.update(_span_loops(tracer_provider))
    loops["pipeline, constraints=None"] = _pipeline_loop(None)
    loops["pipeline, 6-check constraints"] = _pipeline_loop(typical_constraints())
    engine: dict[str, Loop] = {
        "bare loop, no yield": lambda p, k: _bare(p, k, yield_every=k + 1),
        "generate + record_outcome, no yield": _engine_path,
    }
    results = {}
    providers = {
        "non-streaming": TextProvider(),
        "streaming, 8 chunks": ChunkProvider(split_chunks(CODE_OUTPUT, 8)),
    }
    for kind, provider in providers.items():
        await _best(loops, provider, max(n // 10, 50), 1)  # warm-up: caches, imports, pools
        results[kind] = await _best(loops, provider, n, reps)
        results[kind].update(await _best(engine, provider, n_engine, reps))
    tracer_provider.shutdown()
    return results


def _print(kind: str, figures: dict[str, float]) -> None:
    bare = figures["bare"]
    print(f"\n{kind}:")
    print(f"  {'variant':38s} {'us/gen':>9s} {'added us':>9s}")
    for name, us in figures.items():
        if "no yield" in name:
            continue
        added = "" if name == "bare" else f"{us - bare:9.2f}"
        print(f"  {name:38s} {us:9.2f} {added:>9s}")
    span = figures["span (start_as_current_span)"] - bare
    for name in ("pipeline, constraints=None", "pipeline, 6-check constraints"):
        ratio = (figures[name] - bare) / span
        print(f"  ratio added({name}) / added(one span): {ratio:.2f}")
        verdict(BENCH, f"{kind}: {name} / one span", ratio, SPAN_RATIO_TARGET, "x")
    engine = figures["generate + record_outcome, no yield"] - figures["bare loop, no yield"]
    print(
        f"  engine path: {figures['generate + record_outcome, no yield']:.2f} us/gen"
        f" - bare {figures['bare loop, no yield']:.2f} us/gen = {engine:.2f} us"
    )
    verdict(BENCH, f"{kind}: engine path", engine, ENGINE_PATH_TARGET_US, "us")


def main(argv: list[str] | None = None) -> int:
    args = parse_mode(argv, __doc__.splitlines()[0])
    n = pick(args.mode, 20_000, 3_000, 400)
    n_engine = pick(args.mode, 50_000, 10_000, 1_000)
    reps = pick(args.mode, 5, 3, 1)
    results = anyio.run(_measure, n, n_engine, reps)
    print(header(f"overhead per generation ({args.mode} mode: best of {reps})"))
    print(
        f"{n:,} generations per loop, yield to the event loop every {YIELD_EVERY};"
        f" engine path: {n_engine:,} generations, never yielding; every pipeline run lossless"
    )
    for kind, figures in results.items():
        _print(kind, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
