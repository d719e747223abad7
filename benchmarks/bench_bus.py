"""Per-event publish cost: the pipeline's EventBus against anyio memory object streams.

The design question of issue 3: what should each stage's inbox be? This measures the cost on
the engine's path of delivering one event to four stage inboxes, without the consumers
running (they would run later, off the engine's path), for:

* the EventBus (a deque per stage and a wake-up only for a waiting stage), and
* four anyio memory object streams (`send_nowait` on each).

Usage: python -m benchmarks.bench_bus [--quick]
"""

from __future__ import annotations

import argparse
import sys
from time import perf_counter

import anyio

from benchmarks._common import header
from orket_pipeline.telemetry._bus import EventBus
from orket_pipeline.telemetry._events import GenerationStarted

STAGES = 4


async def _bus(n: int) -> float:
    bus = EventBus()
    inboxes = [bus.subscribe(f"s{i}", [GenerationStarted], n + 1) for i in range(STAGES)]
    event = GenerationStarted("t", 0.0, True)
    publish = bus.publish
    t0 = perf_counter()
    for _ in range(n):
        publish(event)
    elapsed = perf_counter() - t0
    assert all(len(inbox.items) == n for inbox in inboxes)
    return elapsed / n


async def _streams(n: int) -> float:
    pairs = [anyio.create_memory_object_stream[GenerationStarted](n + 1) for _ in range(STAGES)]
    senders = [send for send, _ in pairs]
    event = GenerationStarted("t", 0.0, True)
    t0 = perf_counter()
    for _ in range(n):
        for send in senders:
            send.send_nowait(event)
    elapsed = perf_counter() - t0
    for send, receive in pairs:
        send.close()
        receive.close()
    return elapsed / n


async def _measure(n: int) -> dict[str, float]:
    best: dict[str, float] = {}
    for _ in range(5):
        for name, fn in (
            ("EventBus (deque + wake-up)", _bus),
            ("4 memory object streams", _streams),
        ):
            best[name] = min(best.get(name, float("inf")), await fn(n))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    n = 20_000 if args.quick else 200_000
    results = anyio.run(_measure, n)
    print(header("publish one event to 4 stage inboxes (best of 5)"))
    for name, seconds in results.items():
        print(f"{name:32s} {seconds * 1e9:8.0f} ns/event")
    ratio = results["4 memory object streams"] / results["EventBus (deque + wake-up)"]
    print(f"memory object streams cost {ratio:.1f}x the EventBus")
    return 0


if __name__ == "__main__":
    sys.exit(main())
