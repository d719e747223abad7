"""Where the pipeline's time goes: the evidence behind the missed targets in README.md.

Not a benchmark (no target): a profile of the overhead loop of bench_overhead (non-streaming
provider, yield every 100), in four parts:

1. cost of the pieces on the engine's path (event construction, publish per event type);
2. the validator's cost per output, as the ConstraintStage pays it in its worker thread;
3. ablations: the whole pipeline, then with scoring replaced by a constant, then with that
   constant returned on the loop instead of through `anyio.to_thread` (patches private names
   of this version of the package; a step whose name has moved is skipped);
4. cProfile of the event loop's thread (worker threads are not in it), top functions.

Usage: python -m benchmarks.profile_pipeline [--quick]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import timeit
from decimal import Decimal
from typing import Any

import anyio

from benchmarks._common import header
from benchmarks._fixtures import CODE_OUTPUT, TelemetryPipeline, TextProvider, typical_constraints
from benchmarks.bench_overhead import _pipeline_loop
from orket_pipeline.constraints import extract_payload, validate_output
from orket_pipeline.telemetry._events import GenerationFinished, GenerationStarted, OutcomeRecorded


def _ns(stmt: Any, number: int = 100_000) -> float:
    return min(timeit.repeat(stmt, number=number, repeat=5)) / number * 1e9


def engine_pieces() -> None:
    bus = TelemetryPipeline(inbox_capacity=1 << 30)._bus  # the real routes, nothing started
    routes = {kind.__name__: len(inboxes) for kind, inboxes in bus._routes.items()}
    started = GenerationStarted("t1", 1.0, False)
    finished = GenerationFinished("t1", 1.0, 0.5, False, "out", None, 1, None, None)
    outcome = OutcomeRecorded("t1", "pass", None)
    print(f"\n1. engine path pieces (ns, best of 5); inboxes per event type: {routes}")
    for name, fn in (
        ("GenerationStarted(...)", lambda: GenerationStarted("t", 1.0, False)),
        ("publish(GenerationStarted)", lambda: bus.publish(started)),
        ("publish(GenerationFinished)", lambda: bus.publish(finished)),
        ("publish(OutcomeRecorded)", lambda: bus.publish(outcome)),
    ):
        print(f"  {name:40s} {_ns(fn):6.0f}")


def validator_costs() -> None:
    constraints, payload = typical_constraints(), extract_payload(CODE_OUTPUT) or ""
    print("\n2. scoring one output (us, best of 5), paid in the ConstraintStage's worker thread:")
    for name, fn in (
        ("extract_payload", lambda: extract_payload(CODE_OUTPUT)),
        ("validate_output(None, output)", lambda: validate_output(None, CODE_OUTPUT)),
        ("validate_output(6 checks, output)", lambda: validate_output(constraints, CODE_OUTPUT)),
        (
            f"ast.parse of the {len(payload)}-char payload",
            lambda: compile(payload, "<p>", "exec", 1024),
        ),
    ):
        print(f"  {name:40s} {_ns(fn, 2_000) / 1e3:8.2f}")


def ablations(n: int) -> None:
    import orket_pipeline.telemetry.stages.constraints as stage

    one = Decimal("1.000")

    class _OnLoop:
        @staticmethod
        async def run_sync(fn: Any, *args: Any, **kwargs: Any) -> Any:
            return fn(*args)

    def run(label: str) -> None:
        loop, provider = _pipeline_loop(None), TextProvider()
        anyio.run(loop, provider, max(n // 10, 100))
        best = min(anyio.run(loop, provider, n) for _ in range(3)) / n * 1e6
        print(f"  {label:58s} {best:7.2f} us/gen")

    print(f"\n3. ablations, constraints=None, {n:,} generations (best of 3):")
    run("whole pipeline")
    if not hasattr(stage, "_score_batch"):
        print("  (stages.constraints._score_batch has moved: ablations skipped)")
        return
    saved = stage._score_batch, stage.anyio
    stage._score_batch = lambda jobs: [one] * len(jobs)
    run("scoring replaced by a constant, still via to_thread")
    stage.anyio = type("anyio", (), {"to_thread": _OnLoop})  # type: ignore[assignment]
    run("constant returned on the loop (no worker thread)")
    stage._score_batch, stage.anyio = saved


def loop_profile(n: int, constraints: Any, label: str) -> None:
    loop, provider = _pipeline_loop(constraints), TextProvider()
    anyio.run(loop, provider, max(n // 10, 100))
    profiler = cProfile.Profile()
    profiler.enable()
    anyio.run(loop, provider, n)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(14)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    print(f"\n4. cProfile of the loop's thread, {label}, {n:,} generations (tottime):")
    print("\n".join(f"  {line}" for line in lines[3:]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    n = 3_000 if parser.parse_args(argv).quick else 20_000
    print(header("profile of the pipeline's overhead loop"))
    engine_pieces()
    validator_costs()
    ablations(n)
    loop_profile(n, None, "constraints=None")
    loop_profile(n, typical_constraints(), "6-check constraints")
    return 0


if __name__ == "__main__":
    sys.exit(main())
