"""CPU per request added by OpenLLMetry and by this pipeline, on the same `openai` client.

OpenLLMetry is what users pick instead: `traceloop-sdk`'s `Traceloop.init()` instruments the
`openai` client with OpenLLMetry's `opentelemetry-instrumentation-openai` (a span per request,
the prompt and the streamed reply recorded on it, token usage counted). traceloop-sdk itself
does not install from this project's registry (its dependency set is unresolvable there:
`opentelemetry-instrumentation-logging` exists only at 0.59b0, which pins
`opentelemetry-instrumentation==0.59b0` against the newer instrumentations it also requires),
so this benchmark installs that instrumentation directly, as `Traceloop.init()` would, with a
TracerProvider + BatchSpanProcessor (default settings but a queue that holds a whole loop, so
no span is dropped) and a no-op exporter that only counts spans; no metrics (a MeterProvider
would add more).

In one process, against the loopback SSE server of `bench_overhead` (a subprocess, so its CPU
is not ours; CHUNKS content deltas per reply, usage chunk asked for), the same number of
streamed chat completions per loop through one `openai.AsyncOpenAI` client, one yield to the
event loop per request, in interleaved rounds (the order rotates):

* bare: the client's own `chat.completions.create(stream=True)`, uninstrumented;
* openllmetry: the same call, instrumented (every request's span is checked exported);
* pipeline: the uninstrumented call wrapped as a streaming provider and run through
  `TelemetryPipeline.generate` + `record_outcome` (checked lossless), the pipeline opened
  and closed inside the timing.

The instrumentation is installed once; "bare" and "pipeline" call the method it wrapped
(`__wrapped__`), since `uninstrument()` does not unwrap on this `openai` version. The figure is
CPU time of the whole process per request (min over rounds; wall beside it) minus bare.

Usage: python -m benchmarks.bench_openllmetry [--quick | --smoke]
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import AsyncIterator, Callable
from time import perf_counter
from typing import Any

import anyio
import anyio.lowlevel

from benchmarks._common import header
from benchmarks._fixtures import TelemetryPipeline, check_lossless
from benchmarks._measure import CountingExporter, Figures, Loop, spread, timed
from benchmarks._results import parse_mode, pick
from benchmarks._sse_server import serve

BENCH = "openllmetry"
CHUNKS = 8
PROMPT = "Write moving_average(values, window)."
VARIANTS = ("bare", "openllmetry", "pipeline")
INSTALL = "pip install -e .[bench]  (openai, opentelemetry-instrumentation-openai)"


def _available() -> bool:
    try:
        import openai  # noqa: F401
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor  # noqa: F401
    except ImportError:
        return False
    return True


class ClientProvider:
    """A streaming provider over an `openai` client's chat completions (as a `python:` provider
    would be written), calling `create` (the instrumented or the original method)."""

    supports_streaming = True

    def __init__(self, client: Any, create: Callable[..., Any]) -> None:
        self.client, self.create = client, create

    async def stream(self, prompt: str) -> AsyncIterator[str]:
        reply = await self.create(
            self.client.chat.completions,
            model="bench",
            messages=[{"role": "user", "content": prompt}],
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in reply:
            if chunk.choices and chunk.choices[0].delta.content:
                yield chunk.choices[0].delta.content


def _loops(
    original: ClientProvider, instrumented: ClientProvider, closed: list[tuple[Any, int]]
) -> dict[str, Loop]:
    checkpoint = anyio.lowlevel.checkpoint

    def joined(provider: ClientProvider) -> Loop:
        async def loop(n: int) -> float:
            for _ in range(n):
                "".join([chunk async for chunk in provider.stream(PROMPT)])
                await checkpoint()
            return 0.0

        return loop

    async def pipeline(n: int) -> float:
        async with TelemetryPipeline() as telemetry:
            for i in range(n):
                await telemetry.generate(f"t{i:07d}", original, PROMPT, None)
                telemetry.record_outcome(f"t{i:07d}", "pass")
                await checkpoint()
        closed.append((telemetry, n))  # checked lossless after the timing
        return 0.0

    return {"bare": joined(original), "openllmetry": joined(instrumented), "pipeline": pipeline}


async def _measure(base_url: str, n: int, rounds: int, warmup: bool) -> Figures:
    import openai
    from openai.resources.chat.completions import AsyncCompletions
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporter = CountingExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=2 * n + 2048))
    plain_create = AsyncCompletions.create
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        OpenAIInstrumentor().instrument(tracer_provider=tracer_provider)
    wrapped_create = AsyncCompletions.create
    assert getattr(wrapped_create, "__wrapped__", None) is not None, "not instrumented"
    client = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0)
    closed: list[tuple[Any, int]] = []
    original = ClientProvider(client, plain_create)
    loops = _loops(original, ClientProvider(client, wrapped_create), closed)
    figures = Figures()
    try:
        if warmup:
            for variant in VARIANTS:
                await loops[variant](max(n // 5, 10))
        for r in range(rounds):
            for variant in VARIANTS[r % 3 :] + VARIANTS[: r % 3]:
                tracer_provider.force_flush()
                before = exporter.exported
                figures.add(variant, await timed(loops[variant], n))
                tracer_provider.force_flush()
                made = exporter.exported - before
                expected = n if variant == "openllmetry" else 0
                assert made == expected, f"{variant}: {made} spans exported, expected {expected}"
                while closed:
                    check_lossless(*closed.pop())
    finally:
        await client.close()
        tracer_provider.shutdown()
    return figures


def main(argv: list[str] | None = None) -> int:
    args = parse_mode(argv, __doc__.splitlines()[0])
    if not _available():
        print(f"## OpenLLMetry comparison: skipped, needs the bench extra: {INSTALL}")
        return 0
    n = pick(args.mode, 300, 60, 20)
    rounds = pick(args.mode, 9, 3, 1)
    started = perf_counter()
    with serve(CHUNKS) as base_url, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        figures = anyio.run(_measure, base_url, n, rounds, args.mode != "smoke")
    print(header(f"OpenLLMetry vs the pipeline ({args.mode} mode: min of {rounds} rounds)"))
    print(
        f"{n:,} streamed requests per loop ({CHUNKS} content chunks, loopback SSE server in a"
        f" subprocess), one openai.AsyncOpenAI client, CPU time of the whole process;"
        f" {perf_counter() - started:.1f} s"
    )
    bare = figures.best("bare")
    print(
        f"  {'variant':12s} {'CPU us/req':>11s} {'added':>8s}  {'per-round CPU':35s} {'wall us/req':>11s}"
    )
    for variant in VARIANTS:
        best = figures.best(variant)
        added = "" if variant == "bare" else f"{best - bare:8.1f}"
        print(
            f"  {variant:12s} {best:11.1f} {added:>8s}  {spread(figures.per_round(variant)):35s}"
            f" {figures.best(variant, 'wall_us'):11.1f}"
        )
    llm, pipe = figures.best("openllmetry") - bare, figures.best("pipeline") - bare
    ratio = f"{llm / pipe:.1f}x the pipeline's" if pipe > 0 else "(pipeline's not resolved)"
    print(f"  OpenLLMetry adds {llm:.1f} us CPU per request, {ratio}; pipeline adds {pipe:.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
