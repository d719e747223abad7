"""MemorySampler: each generation window's peak RSS, from the probe's segments."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from time import perf_counter

from .._events import Event, GenerationFinished, MemoryMeasured
from .._memory_probe import MemoryProbe
from ._base import Stage, StageErrors

__all__ = ["MemorySampler"]


#: What `oldest_open` returns when no generation is in flight.
NONE_OPEN = float("inf")


def _none_open() -> float:
    return NONE_OPEN


class MemorySampler(Stage):
    """Settles each finished generation's window (`t_started` to `t_perf`, the wrapper's own
    stamps) once the probe has sampled past its end, emitting one `MemoryMeasured` per window.

    The wrapper wakes the probe at a dispatch after a pause (`MemoryProbe.wake`); the probe's
    thread samples while generations run and for `idle_before_sleep` seconds after the last
    one finished, then this stage lets it sleep. While the probe is active the stage asks the
    scheduler for a tick (`wants_tick`), so finished windows settle with no new event; it has
    no timer of its own.

    Args:
        errors: the pipeline's stage error counter.
        probe: the sampler (started and stopped by the pipeline, not here).
        oldest_open: the dispatch stamp of the oldest generation still in flight (`inf`
            when none is): segments from then on are kept for it. Never raises.
    """

    name = "memory"
    event_types = (GenerationFinished,)
    produces = (MemoryMeasured,)
    #: Seconds with no window open or pending before the probe's thread goes to sleep.
    idle_before_sleep = 0.2

    def __init__(
        self,
        errors: StageErrors,
        probe: MemoryProbe,
        oldest_open: Callable[[], float] = _none_open,
    ) -> None:
        super().__init__(errors)
        self._probe = probe
        self._oldest_open = oldest_open
        # Finished windows in the order they closed, so by end time: the settled ones are a
        # prefix, and each wake-up looks only at those.
        self._pending: deque[GenerationFinished] = deque()
        self._idle_since: float | None = None

    def handle(self, event: Event) -> None:
        """Queue a finished window. Never blocks."""
        if type(event) is GenerationFinished:
            self._pending.append(event)

    def handle_batch(self, events: list[Event]) -> None:
        """Queue a slice of finished windows (only `GenerationFinished` is routed here)."""
        self._pending.extend(events)  # type: ignore[arg-type]

    def wants_tick(self) -> bool:
        """While the probe is active: to settle windows, and to notice when it can sleep."""
        return not self._probe.idle

    async def after_batch(self) -> None:
        """Deliver every settled window; let the probe sleep once nothing has been in flight
        for a while (not at once: back-to-back generations would wake it for every run)."""
        if self._pending:
            self._settle()
        if self._pending or self._oldest_open() != NONE_OPEN or self._unhandled():
            self._idle_since = None
        elif not self._probe.idle:
            now = perf_counter()
            if self._idle_since is None:
                self._idle_since = now
            elif now - self._idle_since >= self.idle_before_sleep:
                self._idle_since = None
                self._probe.deactivate()

    async def finish(self) -> None:
        """Sample once more so every finished window settles, then deliver them all."""
        if self._pending:
            self._probe.sample_now()
            self._settle()
        self._probe.deactivate()

    def _unhandled(self) -> bool:
        # Whether a finished window is still on its way here (published since the last
        # routing, or in the inbox beyond this slice): it needs a sample past its end.
        inbox = self.inbox
        return bool(
            (self.bus is not None and self.bus.queued_events(GenerationFinished))
            or (inbox is not None and inbox.items)
        )

    def _settle(self) -> None:
        probe, pending = self._probe, self._pending
        measured: list[Event] = []
        probe.peaks_until(
            pending,
            lambda test_id, peak: measured.append(
                MemoryMeasured(test_id=test_id, peak_rss_bytes=peak)
            ),
        )
        self.emit_all(measured)
        if probe.segment_count < 512:
            return  # pruning is amortised: a few hundred segments cost nothing to keep
        # Keep every segment a window may still need: windows pending here, in flight (the
        # wrapper's), and finished ones whose events are not handled yet (queued in the bus,
        # published after its last routing, or in this inbox).
        oldest = min((window.t_started for window in pending), default=probe.last_sample_time)
        oldest = min(oldest, self._oldest_open())
        queued = [] if self.bus is None else self.bus.queued_events(GenerationFinished)
        for event in (*queued, *(() if self.inbox is None else self.inbox.items)):
            if isinstance(event, GenerationFinished):
                oldest = min(oldest, event.t_started)
        probe.prune(oldest)
