"""MemorySampler: each generation window's peak RSS, from the probe's segments."""

from __future__ import annotations

from collections import deque

from .._events import Event, GenerationFinished, GenerationStarted
from .._memory_probe import MemoryProbe
from ._base import Stage, StageErrors
from .aggregator import ReportAggregator

__all__ = ["MemorySampler"]


class MemorySampler(Stage):
    """Opens a window at each GenerationStarted and closes it at GenerationFinished, using
    the timestamps the wrapper took, and settles each closed window's peak once the probe has
    sampled past its end. The probe's thread runs while some window is open and for a few
    settle intervals after the last one closes; after that it sleeps until the wrapper wakes it
    at the next dispatch.

    Args:
        errors: the pipeline's stage error counter.
        sink: where settled peaks go.
        probe: the sampler (started and stopped by the pipeline, not here).
    """

    name = "memory"
    event_types = (GenerationStarted, GenerationFinished)
    #: Seconds between wake-ups that settle closed windows. Longer than the probe's sample
    #: interval on purpose: every timer on the loop can delay others (asyncio rounds its
    #: wait up to whole milliseconds), and a window's peak does not depend on when it settles.
    settle_interval = 0.02
    #: Wake-ups with no window open or pending before the probe's thread goes to sleep.
    idle_wakeups_before_sleep = 10

    def __init__(self, errors: StageErrors, sink: ReportAggregator, probe: MemoryProbe) -> None:
        super().__init__(errors)
        self._sink = sink
        self._probe = probe
        self._open: dict[str, float] = {}
        # Closed windows in the order they closed, so by end time: the settled ones are a
        # prefix, and each wake-up looks only at those.
        self._pending: deque[tuple[str, float, float]] = deque()
        self._active = False
        self._idle_wakeups = 0

    def handle(self, event: Event) -> None:
        """Open or close a window. Never blocks."""
        if type(event) is GenerationStarted:
            if not self._active:
                self._active = True
                self._probe.activate()
            self._open[event.test_id] = event.t_perf
        elif type(event) is GenerationFinished:
            # The window is the wrapper's own stamps; a dropped start only loses the wake-up.
            self._open.pop(event.test_id, None)
            self._pending.append((event.test_id, event.t_started, event.t_perf))

    def wait_timeout(self) -> float | None:
        """While the probe is active, wake up every `settle_interval` seconds: to settle
        windows, and to notice when the probe can sleep."""
        return self.settle_interval if self._active else None

    async def after_batch(self) -> None:
        """Deliver every settled window; let the probe sleep once nothing has been open for
        a while (not at once: back-to-back generations would wake it for every run)."""
        if self._pending:
            self._settle()
        if self._open or self._pending:
            self._idle_wakeups = 0
        elif self._active:
            self._idle_wakeups += 1
            if self._idle_wakeups > self.idle_wakeups_before_sleep:
                self._active = False
                self._probe.deactivate()

    async def finish(self) -> None:
        """Sample once more so every closed window settles, then deliver them all."""
        if self._pending:
            self._probe.sample_now()
            self._settle()
        self._open.clear()
        self._active = False
        self._probe.deactivate()

    def _settle(self) -> None:
        probe, pending, deliver = self._probe, self._pending, self._sink.memory_measured
        last_sample = probe.last_sample_time
        while pending and pending[0][2] <= last_sample:
            test_id, t_start, t_end = pending.popleft()
            deliver(test_id, probe.peak_between(t_start, t_end))
        if probe.segment_count < 512:
            return  # pruning is amortised: a few hundred segments cost nothing to keep
        # Keep every segment a window may still need: windows pending or open here, and the
        # ones whose events are still queued (a slice boundary can leave a start unhandled).
        oldest = min((w[1] for w in pending), default=last_sample)
        if self._open:
            # Windows open in publish order and `t_perf` grows with it, so the first open
            # window (dicts keep insertion order) is the oldest open one.
            oldest = min(oldest, next(iter(self._open.values())))
        if self.inbox is not None:
            for event in self.inbox.items:
                if isinstance(event, GenerationStarted):
                    oldest = min(oldest, event.t_perf)
                elif isinstance(event, GenerationFinished):
                    oldest = min(oldest, event.t_started)
        probe.prune(oldest)
