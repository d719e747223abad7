"""LagMonitor: how late the event loop runs a task that asked to wake up on time."""

from __future__ import annotations

__all__ = ["LagMonitor"]


class LagMonitor:
    """Keeps the largest oversleep seen: the event loop's lag, which anything blocking the loop
    (a stage, the engine, a provider) inflates.

    It has no timer of its own: the pipeline's `Scheduler` reports how late each of its timed
    wake-ups came (`record`). It ticks every few milliseconds while anything is pending, and
    the memory stage keeps it ticking while any generation is in flight, so the lag is measured
    whenever generations run, and an idle pipeline wakes nothing at all.
    """

    def __init__(self) -> None:
        self.max_lag: float | None = None

    def record(self, oversleep: float) -> None:
        """One timed wake-up came `oversleep` seconds late. Never blocks or raises."""
        lag = max(0.0, oversleep)
        if self.max_lag is None or lag > self.max_lag:
            self.max_lag = lag
