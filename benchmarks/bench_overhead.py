"""Overhead per generation: the pipeline vs one OpenTelemetry span vs a bare call, 4 yield patterns.

In one process, in interleaved rounds (the order of the variants rotates every round), for
each of four providers:

* (a) never yields: `async def generate` returns at once;
* (b) yields once per generation (`await anyio.lowlevel.checkpoint()`), as every real socket
  read does;
* (c) streams CHUNKS chunks, yielding before each;
* (d) a real loopback HTTP server (OpenAI-compatible, server-sent events, CHUNKS content
  deltas; in a subprocess, so its CPU is not ours) driven through the `openai:` provider
  (`orket_pipeline.providers.OpenAIProvider`, one keep-alive connection); its cost per request
  varies far more, so each round measures it HTTP_SUBROUNDS times with fewer requests;

three loops run `n` generations each, as an engine does: one generation, then its outcome,
then one yield to the event loop (`anyio.lowlevel.checkpoint()`), every generation, as the
CLI's engine yields on every run:

* bare: the provider call alone (a streamed reply joined);
* span: the same inside ONE OpenTelemetry SDK span per generation
  (`tracer.start_as_current_span`), TracerProvider + BatchSpanProcessor (default settings but
  a queue that holds a whole loop, so no span is dropped when its export thread falls behind:
  a dropped span costs less) and a no-op exporter that only counts the spans (every span is
  checked exported); `force_flush()` at the end is timed, as the pipeline's close is;
* pipeline: `TelemetryPipeline()` with default settings, entered before the first generation
  and closed (stages drained, report built) after the last, both timed; `generate(...,
  constraints=None)` then `record_outcome`. Every run is checked lossless before it counts;
* pipeline + otel (when the `otel` extra is installed, else left out): the same with
  `TelemetryPipeline(otel=OtelExport(tracer_provider, meter_provider))`, the GenAI exporter
  stage emitting one span and its client metrics per generation into an SDK TracerProvider +
  BatchSpanProcessor + the same no-op counting exporter (its own, every span checked
  exported) and a MeterProvider with an InMemoryMetricReader; "exporter" is pipeline + otel
  minus pipeline, and its ratio to one span's added cost is printed beside.

The figure is CPU time of the whole process per generation (`time.process_time()`: every
thread, so the span exporter's and the pipeline's background threads count), min over rounds;
wall time is printed beside it. "Added" is the variant minus bare. The ratio
added(pipeline) / added(span) is taken from the minima, and its spread from the per-round
ratios (each round measures the three loops back to back).

Engine path: the time spent inside `await generate(...); record_outcome(...)` (stamped around
those calls only, so the stage work done at the yield is not in it) minus the same around the
bare call, with provider (a), where nothing inside the call yields.

Uses only the public API, so it keeps measuring whatever the bus does inside.

Usage: python -m benchmarks.bench_overhead [--quick | --smoke]
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from time import perf_counter
from typing import Any

import anyio
import anyio.lowlevel
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from benchmarks._common import header
from benchmarks._fixtures import CODE_OUTPUT, TelemetryPipeline, check_lossless, split_chunks
from benchmarks._measure import CountingExporter, Figures, Loop, spread, timed
from benchmarks._results import parse_mode, pick, verdict
from benchmarks._sse_server import serve
from orket_pipeline._exceptions import InputError
from orket_pipeline.providers import OpenAIProvider
from orket_pipeline.telemetry import OtelExport
from orket_pipeline.telemetry.stages.otel import require_otel

BENCH = "overhead"
PROMPT = "Write moving_average(values, window)."
CHUNKS = 8
SPAN_RATIO_TARGET = 0.25
ENGINE_PATH_TARGET_US = 1.0
VARIANTS = ("bare", "span", "pipeline")
OTEL = "pipeline + otel"
HTTP_SUBROUNDS = 3


class NeverYields:
    """(a) Returns the reply without awaiting anything."""

    supports_streaming = False

    async def generate(self, prompt: str) -> str:
        return CODE_OUTPUT


class YieldsOnce:
    """(b) Yields to the event loop once, then returns the reply."""

    supports_streaming = False

    async def generate(self, prompt: str) -> str:
        await anyio.lowlevel.checkpoint()
        return CODE_OUTPUT


class YieldsPerChunk:
    """(c) Streams the reply in `count` chunks, yielding to the event loop before each."""

    supports_streaming = True

    def __init__(self, count: int) -> None:
        self.chunks = split_chunks(CODE_OUTPUT, count)

    async def stream(self, prompt: str) -> AsyncIterator[str]:
        for chunk in self.chunks:
            await anyio.lowlevel.checkpoint()
            yield chunk

    async def generate(self, prompt: str) -> str:
        return CODE_OUTPUT


def _caller(provider: Any) -> Callable[[str], Awaitable[str]]:
    """What an engine without telemetry awaits: the call, or the stream joined."""
    if provider.supports_streaming:

        async def joined(prompt: str) -> str:
            # Text, as the engine takes it: `openai:` also yields a `Chunk` of the server's facts.
            return "".join(
                [c if type(c) is str else c.text async for c in provider.stream(prompt) if c]
            )

        return joined
    return provider.generate  # type: ignore[no-any-return]


def _ids(n: int) -> list[str]:
    return [f"t{i:07d}" for i in range(n)]


def otel_installed() -> bool:
    """Whether the `otel` extra (the SDK and its OTLP exporter) is installed. Never raises."""
    try:
        require_otel()
    except InputError:
        return False
    return True


def loops(
    provider: Any, tracer_provider: TracerProvider, otel: OtelExport | None = None
) -> tuple[dict[str, Loop], Callable[[], None]]:
    """The bare, span and pipeline loops for `provider` (see the module docstring), pipeline +
    otel too with `otel`, and the check that every pipeline they ran was lossless (raises
    `AssertionError` otherwise)."""
    call, checkpoint = _caller(provider), anyio.lowlevel.checkpoint
    start_span = tracer_provider.get_tracer("bench").start_as_current_span

    async def bare(n: int) -> float:
        inside = 0.0
        for _ in range(n):
            t0 = perf_counter()
            await call(PROMPT)
            inside += perf_counter() - t0
            await checkpoint()
        return inside

    async def span(n: int) -> float:
        inside = 0.0
        for _ in range(n):
            t0 = perf_counter()
            with start_span("generate"):
                await call(PROMPT)
            inside += perf_counter() - t0
            await checkpoint()
        tracer_provider.force_flush()
        return inside

    async def pipeline(n: int, export: OtelExport | None = None) -> float:
        ids, inside = _ids(n), 0.0
        async with TelemetryPipeline(otel=export or False) as telemetry:
            generate, record = telemetry.generate, telemetry.record_outcome
            for test_id in ids:
                t0 = perf_counter()
                await generate(test_id, provider, PROMPT, None)
                record(test_id, "pass")
                inside += perf_counter() - t0
                await checkpoint()
        closed.append((telemetry, n))  # checked lossless after the timing
        return inside

    closed: list[tuple[Any, int]] = []

    def check() -> None:
        while closed:
            check_lossless(*closed.pop())

    variants: dict[str, Loop] = {"bare": bare, "span": span, "pipeline": pipeline}
    if otel is not None:
        variants[OTEL] = partial(pipeline, export=otel)
    return variants, check


def _otel_export(queue: int) -> tuple[OtelExport, CountingExporter, Callable[[], None]] | None:
    """The exporter stage's providers (see the module docstring), the span counter, and their
    shutdown; None without the `otel` extra."""
    if not otel_installed():
        return None
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    exporter, tracer_provider = CountingExporter(), TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=queue))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])

    def shutdown() -> None:
        tracer_provider.shutdown()
        meter_provider.shutdown()

    return OtelExport(tracer_provider, meter_provider), exporter, shutdown


async def measure(
    providers: dict[str, tuple[Any, int]], rounds: int, warmup: bool = True
) -> dict[str, Figures]:
    """Interleaved rounds over every pattern and variant (warm-up round not counted)."""
    exporter = CountingExporter()
    tracer_provider = TracerProvider()
    most = max(n for _, n in providers.values())
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=2 * most + 2048))
    otel = _otel_export(2 * most + 2048)
    export = None if otel is None else otel[0]
    plans = {name: (*loops(p, tracer_provider, export), n) for name, (p, n) in providers.items()}
    figures = {name: Figures() for name in providers}
    spans = 0
    if warmup:  # caches, imports, the connection pool
        for variants, check, n in plans.values():
            for warm in variants.values():
                await warm(max(n // 5, 10))
            spans += max(n // 5, 10)
            check()
    for r in range(rounds):
        for name, (variants, check, n) in plans.items():
            # The loopback pattern's cost per request varies far more than the others'; it
            # gets more, shorter rounds (each one a round of its own for min and spread).
            for _ in range(HTTP_SUBROUNDS if name.startswith("(d)") else 1):
                order = list(variants)
                turn = r % len(order)
                for variant in order[turn:] + order[:turn]:
                    figures[name].add(variant, await timed(variants[variant], n))
                spans += n
                check()
    tracer_provider.shutdown()
    assert exporter.exported == spans, f"{exporter.exported} of {spans} spans exported"
    if otel is not None:
        otel[2]()
        got = otel[1].exported
        assert got == spans, f"{got} of {spans} exporter-stage spans exported"
    return figures


def report(name: str, figures: Figures) -> dict[str, float]:
    """Print one pattern's table and verdicts; return its headline figures."""
    print(f"\n{name}:")
    print(
        f"  {'variant':15s} {'CPU us/gen':>11s} {'added':>8s}  {'per-round CPU':33s} {'wall us/gen':>11s}"
    )
    bare = figures.best("bare")
    for variant in figures.samples:
        best = figures.best(variant)
        added = "" if variant == "bare" else f"{best - bare:8.2f}"
        print(
            f"  {variant:15s} {best:11.2f} {added:>8s}  {spread(figures.per_round(variant)):33s}"
            f" {figures.best(variant, 'wall_us'):11.2f}"
        )
    span_added = figures.best("span") - bare
    pipe_added = figures.best("pipeline") - bare
    ratio = pipe_added / span_added if span_added > 0 else float("nan")
    per_round = [
        (p - b) / (s - b) if s > b else float("nan")
        for b, s, p in zip(
            figures.per_round("bare"),
            figures.per_round("span"),
            figures.per_round("pipeline"),
            strict=True,
        )
    ]
    print(f"  added(pipeline) / added(one span) = {ratio:.2f}; per round {spread(per_round)}")
    if OTEL in figures.samples:
        _report_exporter(figures, span_added)
    if not (span_added > 0 and pipe_added >= 0):
        # An added cost below zero is noise, not a figure: never let it pass a target.
        print("  NOT RESOLVED: an added cost came out below zero; noise exceeds the signal here")
        ratio = float("nan")
    verdict(BENCH, f"{name}: pipeline added / one span added", ratio, SPAN_RATIO_TARGET, "x")
    return {"bare": bare, "span_added": span_added, "pipeline_added": pipe_added, "ratio": ratio}


def _report_exporter(figures: Figures, span_added: float) -> None:
    """Print what the OTel exporter stage adds per generation, beside one span."""
    added = figures.best(OTEL) - figures.best("pipeline")
    wall = figures.best(OTEL, "wall_us") - figures.best("pipeline", "wall_us")
    per_round = [
        o - p for p, o in zip(figures.per_round("pipeline"), figures.per_round(OTEL), strict=True)
    ]
    ratio = added / span_added if span_added > 0 else float("nan")
    print(
        f"  otel exporter: pipeline + otel - pipeline = {added:.2f} us/gen CPU (per round "
        f"{spread(per_round)}), {wall:.2f} us wall; / added(one span) = {ratio:.2f}"
    )


async def _run(mode: str) -> tuple[dict[str, Figures], int, int, int]:
    n = pick(mode, 4_000, 1_000, 200)
    n_http = pick(mode, 100, 40, 20)
    rounds = pick(mode, 9, 3, 1)
    with serve(CHUNKS) as base_url:
        http = OpenAIProvider("bench", base_url)
        try:
            providers = {
                "(a) never yields": (NeverYields(), n),
                "(b) yields once per generation": (YieldsOnce(), n),
                f"(c) streams {CHUNKS} chunks, a yield before each": (YieldsPerChunk(CHUNKS), n),
                f"(d) loopback HTTP SSE via openai: ({CHUNKS} chunks)": (http, n_http),
            }
            figures = await measure(providers, rounds, warmup=mode != "smoke")
        finally:
            await http.aclose()
    return figures, rounds, n, n_http


def main(argv: list[str] | None = None) -> int:
    args = parse_mode(argv, __doc__.splitlines()[0])
    figures, rounds, n, n_http = anyio.run(_run, args.mode)
    print(header(f"overhead per generation ({args.mode} mode: min of {rounds} interleaved rounds)"))
    print(
        f"{n:,} generations per loop ({n_http:,} for (d), {HTTP_SUBROUNDS} times a round), one yield"
        " to the event loop per generation in every loop; CPU time of the whole process;"
        " one span = start_as_current_span, BatchSpanProcessor, no-op exporter"
    )
    for name, pattern in figures.items():
        report(name, pattern)
    engine = figures["(a) never yields"]
    path = engine.best("pipeline", "call_us") - engine.best("bare", "call_us")
    print(
        f"\nengine path ((a), inside generate + record_outcome): "
        f"{engine.best('pipeline', 'call_us'):.2f} - bare {engine.best('bare', 'call_us'):.2f}"
        f" = {path:.2f} us"
    )
    verdict(BENCH, "engine path, provider (a)", path, ENGINE_PATH_TARGET_US, "us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
