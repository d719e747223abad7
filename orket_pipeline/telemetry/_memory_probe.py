"""Peak-RSS measurement for overlapping windows: samples that close time segments.

Each sample closes the segment (previous sample time, this sample time] and records the peak
RSS inside it. A window's peak is the maximum over the segments that overlap it, settled once
a sample at or after the window's end exists. Concurrent windows share the segments, so each
gets its own correct peak without the sampler knowing about windows at all. Two consecutive
segments with the same peak are kept as one (no window can tell them apart).

Two methods:

* ``hwm`` (Linux, when `/proc/PID/clear_refs` is writable): each sample reads the kernel's
  high-water mark `VmHWM` from `/proc/PID/status` and, when it is above the current `VmRSS`
  (a peak came and went), resets it by writing ``5`` to `clear_refs`. The kernel tracks the
  peak between samples, so a spike of any length is caught, even while no one samples:
  segments are contiguous in time. The only blind spot is the gap between reading and
  resetting, taken only when there is something to reset. Resetting also lowers what
  `getrusage(...).ru_maxrss` reports for the measured process. Only one probe at a time may
  reset a process's mark (an flock per pid); another falls back to ``poll``.
* ``poll`` (elsewhere): each sample is psutil's current RSS, taken by the thread every
  `interval`. Spikes shorter than the interval can be missed; the report's metadata names the
  method so a reader knows.

When samples are taken (``hwm``). Sample times only matter next to window boundaries, which
are stamped on the event loop, so the loop takes samples itself where it can, costing no
thread wake-up: at a dispatch that calls `wake`, and when it settles windows (`peaks_until`,
`peak_between`: once a window has ended and the newest sample is at least `interval` old; if
the mark needs a reset then, the thread is asked to take that sample, so the loop never waits
for the mmap lock there). While a window is open the thread takes a sample whenever the newest
one is `interval` old. When its sample shows memory where it was (the same peak, nothing to
reset) it looks only every 2, then 4 intervals; while the loop settles windows with samples of
its own, every 2, 4, 8, then 16; and each time it sets `sample_at_dispatch` (a dispatcher that
reads it calls `wake`). A sample of its own that shows memory moving brings the wait back to
one interval. So a window's
peak covers the window and at most one segment either side: up to about `interval` (or the
loop's tick, if longer) while memory moves; up to 4 x `interval` before a window dispatched in
a flat stretch with no sample at its dispatch, and up to 16 x `interval` just after the loop
stopped settling windows. Delays in taking the GIL come on top.

One thread per process serves every started probe (starting or stopping a probe creates and
joins no thread). It sleeps with no timeout while no probe is active (it costs nothing then);
it is created by the first `start`, never at import or in a constructor, and lives on as a
daemon thread.
"""

from __future__ import annotations

import _thread
import bisect
import contextlib
import errno
import os
import sys
import threading
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING

import psutil

from ._hwm import HighWaterMark

if TYPE_CHECKING:
    from collections import deque

    from ._events import GenerationFinished

__all__ = ["MemoryProbe"]

#: The thread's longest wait, in intervals, while memory is flat (the bound on how early a
#: window's first segment may start) and while the loop settles windows with its own samples.
_MAX_BACKOFF_FLAT = 4
_MAX_BACKOFF_SETTLING = 16


class MemoryProbe:
    """Samples one process's peak RSS into time segments (see the module docstring).

    Args:
        pid: the process to measure; this process by default.
        method: ``"auto"`` (``hwm`` where permitted, else ``poll``), ``"hwm"`` or ``"poll"``.
        interval: seconds between samples while active (see the module docstring).
    """

    def __init__(self, pid: int | None = None, method: str = "auto", interval: float = 0.005):
        if method not in ("auto", "hwm", "poll"):
            raise ValueError(f"memory method must be auto, hwm or poll, not {method!r}")
        if interval <= 0:
            raise ValueError("memory sample interval must be positive")
        self.pid = os.getpid() if pid is None else pid
        self.interval = interval
        self._requested = method
        self.method = "poll" if method == "poll" else "hwm"
        self._lock = threading.Lock()  # the segments
        self._sampling = threading.Lock()  # one read (and reset) at a time
        self._times: list[float] = []
        self._peaks: list[int] = []
        self._last = float("-inf")  # newest sample time
        self._count = 0  # samples taken
        self._settling = 0  # samples taken by the loop to settle windows
        self._mark: HighWaterMark | None = None
        self._process: psutil.Process | None = None
        self._running = False  # started and not stopped: the thread may sample
        self._active = False  # a window is open: keep a sample at most `interval` old
        self._wanted = False  # the loop asks the thread for a sample (a reset was due)
        self._backoff = 1  # the thread's wait, in intervals
        self._seen = 0  # `_settling` when the thread last looked
        #: True while the probe sleeps (`deactivate`d, or never activated).
        self.idle = True
        #: True when the next dispatch should sample first (`wake`): the probe sleeps, or
        #: its thread looks less often than every `interval`. Cleared by `activate`.
        self.sample_at_dispatch = True

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Open the proc files (or psutil handle), take a first sample, hand the probe to the
        process's sampler thread (starting it if none runs).

        Blocks for a few microseconds (the first `start` of a process also starts the
        thread). Raises `psutil.Error` or `OSError` if the process cannot be measured at all
        (no such pid).
        """
        if self._requested != "poll":
            try:
                if not sys.platform.startswith("linux"):
                    raise OSError(errno.ENOSYS, "no kernel high-water mark here")
                self._mark = HighWaterMark(self.pid)
            except (OSError, ValueError) as exc:
                if self._requested == "hwm":
                    message = f"kernel high-water mark of pid {self.pid} is not available"
                    raise OSError(message) from exc
                self.method = "poll"
        if self.method == "poll":
            self._process = psutil.Process(self.pid)
        self.sample_now()
        self._running = True
        _sampler().add(self)

    def stop(self, timeout: float = 2.0) -> None:
        """Take the probe from the thread, close the proc files and remove the lock file.
        Waits (up to `timeout`) only for a sample in progress; if that is still waiting for
        the mmap lock then, the thread closes the files after it. Idempotent."""
        self._running = False
        _sampler().remove(self)
        if not self._sampling.acquire(True, timeout):
            return  # the thread closes the files once its sample is done
        try:
            self._close()
        finally:
            self._sampling.release()

    def activate(self) -> None:
        """Keep a sample at most `interval` old (a window is open). Never blocks or raises."""
        self.idle = self.sample_at_dispatch = False
        if not self._active:
            self._active = True
            _sampler().ring()

    def deactivate(self) -> None:
        """Let the thread sleep (no window is open). Never blocks or raises."""
        self.idle = self.sample_at_dispatch = True
        self._active = False

    def wake(self) -> None:
        """Sample now, then activate: called at dispatch when `sample_at_dispatch` (or
        `idle`).

        While the thread sleeps (or checks only every few intervals) the kernel's mark keeps
        counting, so without this the first sample after a pause would cover the whole pause,
        and a spike during it (when no window was open) would be charged to the next window.
        Sampling here closes that segment before the window starts. Back-to-back generations
        pay for it at most once per few intervals. Blocks for a few microseconds (longer if
        a reset waits for the process's mmap lock); never raises.
        """
        with contextlib.suppress(OSError, ValueError, psutil.Error):
            self.sample_now()  # if the process is gone, windows settle with what was sampled
        self.activate()

    # -- sampling ------------------------------------------------------------------------------

    def sample_now(self) -> None:
        """Take one sample now, closing the current segment. Blocks for microseconds (longer
        if a reset waits for the process's mmap lock).

        Raises `OSError`/`psutil.Error` if the measured process went away or the probe is
        stopped.
        """
        with self._sampling:
            self._sample(reset=True)

    def _sample(self, reset: bool) -> bool:
        """One sample, `_sampling` held. With `reset` False, a mark that needs resetting is
        left alone and nothing is recorded. Returns whether memory stayed where the previous
        segment ended (the same peak, nothing to reset)."""
        if self.method == "hwm":
            mark = self._mark
            if mark is None:
                raise OSError(errno.EBADF, "the memory probe is stopped")
            peak, rss = mark.read() if reset else mark.peek()
            if peak > rss:
                if not reset:
                    return False
                mark.reset()
        else:
            assert self._process is not None
            peak = rss = self._process.memory_info().rss
        now = perf_counter()  # after the reset: a segment never ends before what it covers
        with self._lock:
            peaks = self._peaks
            same = bool(peaks) and peaks[-1] == peak
            if same:
                self._times[-1] = now  # one segment, longer: no window can tell them apart
            else:
                self._times.append(now)
                peaks.append(peak)
            self._last = now
            self._count += 1
        return same and rss >= peak

    def _sample_for_settling(self, t_end: float) -> None:
        """On the loop, settling a window that ended at `t_end`: sample if the newest sample
        is before it and at least `interval` old. Never waits for the thread's sample, never
        resets the mark here (that may wait for the mmap lock): if a reset is due, the thread
        is asked to take the sample."""
        last = self._last
        if last >= t_end or self.method != "hwm" or not self._running:
            return
        now = perf_counter()
        if now < t_end or now - last < self.interval:
            return
        if not self._sampling.acquire(blocking=False):
            return  # the thread is sampling right now
        try:
            self._sample(reset=False)
        except (OSError, ValueError):
            return  # the process is gone: the thread notices
        finally:
            self._sampling.release()
        if self._last < t_end:
            self._wanted = True
            _sampler().ring()
        else:
            self._settling += 1

    def _tend(self) -> float | None:
        """The thread's turn (see the module docstring): sample if due. Returns the seconds
        until the probe needs the thread again, None while it does not (inactive, stopped or
        its process gone)."""
        if not self._running:
            return None
        hwm = self.method == "hwm"
        if self._wanted:
            self._wanted = False
        elif not self._active:
            self._backoff, self._seen = 1, self._settling
            return None
        else:
            if self._settling != self._seen:  # the loop settles windows itself: look less often
                self._seen = self._settling
                self._backoff = min(self._backoff * 2, _MAX_BACKOFF_SETTLING)
                self.sample_at_dispatch = True
            wait = self._last + self.interval * self._backoff - perf_counter()
            if wait > 0:
                return wait
        with self._sampling:
            try:
                flat, gone = not self._stopped() and self._sample(reset=True), False
            except (OSError, ValueError, psutil.Error):
                flat, gone = False, True  # windows settle with what was sampled
            if self._stopped():
                self._close()  # stop() gave up waiting for this sample to finish
            if gone or self._stopped():
                self._running = False
                return None
        self._seen = self._settling
        if flat and hwm:
            self._backoff = min(self._backoff * 2, _MAX_BACKOFF_FLAT)
            self.sample_at_dispatch = True
        else:
            self._backoff = 1  # memory moves and the loop took no sample: look every interval
        return self.interval * self._backoff

    def _stopped(self) -> bool:
        return not self._running  # read afresh: stop() may have run meanwhile

    def _close(self) -> None:
        mark, self._mark = self._mark, None
        if mark is not None:
            mark.close()

    # -- queries -------------------------------------------------------------------------------

    @property
    def last_sample_time(self) -> float:
        """`perf_counter()` time of the newest sample (-inf before the first)."""
        return self._last

    @property
    def segment_count(self) -> int:
        """How many segments are kept."""
        return len(self._times)

    def peak_between(self, t_start: float, t_end: float) -> int | None:
        """Peak RSS in bytes over the segments overlapping [t_start, t_end].

        Returns None while the window is not settled (no sample at or after `t_end` yet).
        May take a sample first (see the module docstring). Never blocks beyond the lock;
        never raises.
        """
        self._sample_for_settling(t_end)
        with self._lock:
            times = self._times
            if not times or times[-1] < t_end:
                return None
            first = bisect.bisect_left(times, t_start)
            last = bisect.bisect_left(times, t_end, first)
            return max(self._peaks[first : last + 1])

    def peaks_until(
        self, windows: deque[GenerationFinished], emit: Callable[[str, int | None], None]
    ) -> None:
        """Settle the windows at the head of `windows` (each a finished generation, from its
        `t_started` to its `t_perf`, in order of end time) that a sample covers: pop each and
        `emit(test_id, peak)` (`peak_between` for many windows, under one lock). May take a
        sample first (see the module docstring). Never blocks beyond the lock; raises only
        what `emit` raises."""
        if windows:
            self._sample_for_settling(windows[0].t_perf)
        settled: list[tuple[str, int]] = []
        with self._lock:
            times, peaks = self._times, self._peaks
            if not times:
                return
            last_sample = times[-1]
            bisect_left = bisect.bisect_left
            while windows and windows[0].t_perf <= last_sample:
                window = windows.popleft()
                first = bisect_left(times, window.t_started)
                last = bisect_left(times, window.t_perf, first)
                settled.append((window.test_id, max(peaks[first : last + 1])))
        for test_id, peak in settled:
            emit(test_id, peak)

    def prune(self, before: float) -> None:
        """Forget segments that end before `before` (no open window can overlap them)."""
        with self._lock:
            # Keep the segment that ends at or after `before`: it may cover that instant.
            cut = bisect.bisect_left(self._times, before)
            if cut > 0:
                del self._times[:cut]
                del self._peaks[:cut]


class _Sampler:
    """The one sampler thread of a process, shared by every started probe. Sleeps with no
    timeout while no probe is active; otherwise until the earliest probe needs it, or until
    rung (a probe activated, or the loop asked for a sample)."""

    def __init__(self) -> None:
        self._probes: list[MemoryProbe] = []
        self._lock = threading.Lock()
        self._alarm = _thread.allocate_lock()  # held; released to ring
        self._alarm.acquire()
        self._thread: threading.Thread | None = None

    def add(self, probe: MemoryProbe) -> None:
        """Serve `probe` from now on, starting the thread if none runs. Blocks only to
        start the thread."""
        with self._lock:
            self._probes.append(probe)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="orket-memory-sampler", daemon=True
                )
                self._thread.start()
        # Not rung: a probe needs the thread only once activated (`activate` rings).

    def remove(self, probe: MemoryProbe) -> None:
        """Serve `probe` no more (a sample in progress finishes). Never raises."""
        with self._lock, contextlib.suppress(ValueError):
            self._probes.remove(probe)

    def ring(self) -> None:
        """Wake the thread to look at its probes again. Never blocks or raises."""
        with contextlib.suppress(RuntimeError):  # already rung
            self._alarm.release()

    def _run(self) -> None:
        alarm = self._alarm
        while True:
            with self._lock:
                probes = tuple(self._probes)
            wait = -1.0  # no timeout
            for probe in probes:
                due = probe._tend()
                if due is not None and (wait < 0 or due < wait):
                    wait = due
            alarm.acquire(True, wait)


_SAMPLER: _Sampler | None = None


def _sampler() -> _Sampler:
    global _SAMPLER
    if _SAMPLER is None:
        _SAMPLER = _Sampler()
    return _SAMPLER


def _forget_sampler() -> None:
    # A forked child has no sampler thread, and its locks may be held by the parent's.
    global _SAMPLER
    _SAMPLER = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_sampler)
