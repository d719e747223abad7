"""MemorySampler: each generation window's peak RSS, from the probe's segments."""

from __future__ import annotations

from collections import deque
from time import perf_counter

from .._events import Event, GenerationFinished, GenerationStarted, MemoryMeasured
from .._memory_probe import MemoryProbe
from ._base import Stage, StageErrors

__all__ = ["MemorySampler"]


class MemorySampler(Stage):
    """Opens a window at each GenerationStarted and closes it at GenerationFinished, using
    the timestamps the wrapper took, and settles each closed window's peak once the probe has
    sampled past its end, emitting one `MemoryMeasured` per window. The probe's thread runs while
    some window is open and for `idle_before_sleep` seconds after the last one closes; after
    that it sleeps until the wrapper wakes it at the next dispatch. While the probe is active
    the stage asks the scheduler for a tick (`wants_tick`), so closed windows settle with no new
    event; it has no timer of its own.

    Args:
        errors: the pipeline's stage error counter.
        probe: the sampler (started and stopped by the pipeline, not here).
    """

    name = "memory"
    event_types = (GenerationStarted, GenerationFinished)
    produces = (MemoryMeasured,)
    #: Seconds with no window open or pending before the probe's thread goes to sleep.
    idle_before_sleep = 0.2

    def __init__(self, errors: StageErrors, probe: MemoryProbe) -> None:
        super().__init__(errors)
        self._probe = probe
        self._open: dict[str, float] = {}
        # Closed windows (each finished generation is its own: `t_started` to `t_perf`) in the
        # order they closed, so by end time: the settled ones are a prefix, and each wake-up
        # looks only at those.
        self._pending: deque[GenerationFinished] = deque()
        self._active = False
        self._idle_since: float | None = None

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
            self._pending.append(event)

    def wants_tick(self) -> bool:
        """While the probe is active: to settle windows, and to notice when it can sleep."""
        return self._active

    async def after_batch(self) -> None:
        """Deliver every settled window; let the probe sleep once nothing has been open for
        a while (not at once: back-to-back generations would wake it for every run)."""
        if self._pending:
            self._settle()
        if self._open or self._pending:
            self._idle_since = None
        elif self._active:
            now = perf_counter()
            if self._idle_since is None:
                self._idle_since = now
            elif now - self._idle_since >= self.idle_before_sleep:
                self._active = False
                self._idle_since = None
                self._probe.deactivate()

    async def finish(self) -> None:
        """Sample once more so every closed window settles, then deliver them all."""
        if self._pending:
            self._probe.sample_now()
            self._settle()
        self._open.clear()
        self._active = False
        self._probe.deactivate()

    def _measured(self, test_id: str, peak: int | None) -> None:
        self.emit(MemoryMeasured(test_id=test_id, peak_rss_bytes=peak))

    def _settle(self) -> None:
        probe, pending = self._probe, self._pending
        probe.peaks_until(pending, self._measured)
        if probe.segment_count < 512:
            return  # pruning is amortised: a few hundred segments cost nothing to keep
        # Keep every segment a window may still need: windows pending or open here, and the
        # ones whose events are still queued (a slice boundary can leave a start unhandled, and
        # the bus routes only at each batch).
        oldest = min((window.t_started for window in pending), default=probe.last_sample_time)
        if self._open:
            # Windows open in publish order and `t_perf` grows with it, so the first open
            # window (dicts keep insertion order) is the oldest open one.
            oldest = min(oldest, next(iter(self._open.values())))
        if self.bus is not None:
            # Events the bus has not routed yet were published after its last routing, so
            # their windows start later than that.
            oldest = min(oldest, self.bus.routed_at)
        if self.inbox is not None:
            for event in self.inbox.items:
                if isinstance(event, GenerationStarted):
                    oldest = min(oldest, event.t_perf)
                elif isinstance(event, GenerationFinished):
                    oldest = min(oldest, event.t_started)
        probe.prune(oldest)
