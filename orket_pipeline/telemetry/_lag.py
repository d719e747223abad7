"""LagMonitor: how late the event loop runs a task that asked to wake up on time."""

from __future__ import annotations

from time import perf_counter

import anyio

__all__ = ["LagMonitor"]


class LagMonitor:
    """Sleeps `interval` seconds in a loop and keeps the largest oversleep seen: the event
    loop's lag, which anything blocking the loop (a stage, the engine, a provider) inflates.
    Costs one wake-up per interval."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.max_lag: float | None = None
        self._stopped = False

    async def run(self) -> None:
        """Measure until `stop()`; cancellable at every sleep."""
        interval = self.interval
        while not self._stopped:
            t_before = perf_counter()
            await anyio.sleep(interval)
            lag = max(0.0, perf_counter() - t_before - interval)
            if self.max_lag is None or lag > self.max_lag:
                self.max_lag = lag

    def stop(self) -> None:
        """End the loop at its next wake-up. Never blocks or raises."""
        self._stopped = True
