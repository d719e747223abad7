"""Per-event publish cost: the pipeline's EventBus against anyio memory object streams.

What should publishing cost the engine? This measures, on the engine's path, delivering one
event that four stages consume, without the stages running (they run later, in batches, off
the engine's path), for:

* the EventBus: one append to one bounded queue, whatever the number of stages, and no
  wake-up (the scheduler routes the queue into the stages' inboxes once per batch; that
  routing is measured too, as it is paid on the loop, off the engine's path);
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


def _event() -> GenerationStarted:
    return GenerationStarted(test_id="t", t_perf=0.0, streaming=True)


async def _bus(n: int) -> tuple[float, float]:
    bus = EventBus(capacity=n + 1, fill_mark=n + 1)
    inboxes = [bus.subscribe(f"s{i}", [GenerationStarted], n + 1) for i in range(STAGES)]
    event = _event()
    publish = bus.publish
    t0 = perf_counter()
    for _ in range(n):
        publish(event)
    t1 = perf_counter()
    bus.route()
    t2 = perf_counter()
    assert all(len(inbox.items) == n for inbox in inboxes)
    return (t1 - t0) / n, (t2 - t1) / n


async def _streams(n: int) -> float:
    pairs = [anyio.create_memory_object_stream[GenerationStarted](n + 1) for _ in range(STAGES)]
    senders = [send for send, _ in pairs]
    event = _event()
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

    def keep(name: str, seconds: float) -> None:
        best[name] = min(best.get(name, float("inf")), seconds)

    for _ in range(5):
        publish, route = await _bus(n)
        keep("EventBus.publish (engine's path)", publish)
        keep("EventBus.route (per batch, off it)", route)
        keep("4 memory object streams", await _streams(n))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    n = 20_000 if args.quick else 200_000
    results = anyio.run(_measure, n)
    print(header(f"deliver one event to {STAGES} stage inboxes (best of 5)"))
    for name, seconds in results.items():
        print(f"{name:36s} {seconds * 1e9:8.0f} ns/event")
    ratio = results["4 memory object streams"] / results["EventBus.publish (engine's path)"]
    print(f"memory object streams cost {ratio:.1f}x the EventBus's publish on the engine's path")
    return 0


if __name__ == "__main__":
    sys.exit(main())
