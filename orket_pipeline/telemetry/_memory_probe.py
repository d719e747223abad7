"""Peak-RSS measurement for overlapping windows: a sampler thread that records segments.

While any window is open the thread takes a sample every `interval` seconds; a sample closes
the segment (previous sample time, this sample time] and records the peak RSS inside it. A
window's peak is the maximum over the segments that overlap it, settled once a sample at or
after the window's end exists. Concurrent windows share the segments, so each gets its own
correct peak without the thread knowing about windows at all.

Two methods:

* ``hwm`` (Linux, when `/proc/PID/clear_refs` is writable): each sample reads the kernel's
  high-water mark `VmHWM` from `/proc/PID/status` and resets it by writing ``5`` to
  `clear_refs`. The kernel tracks the peak between samples, so a spike of any length is
  caught, even while the thread sleeps: segments are contiguous in time. The only blind spot
  is the few microseconds between reading and resetting the mark. Resetting also lowers what
  `getrusage(...).ru_maxrss` reports for the measured process. Only one probe at a time may
  reset a process's mark (an flock per pid); another falls back to ``poll``.
* ``poll`` (elsewhere): each sample is psutil's current RSS. Spikes shorter than the interval
  can be missed; the report's metadata names the method so a reader knows.

The thread sleeps on an event while no window is open (it costs nothing then) and is started
and stopped explicitly, never at import or in a constructor.
"""

from __future__ import annotations

import bisect
import contextlib
import ctypes
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from collections import deque

    from ._events import GenerationFinished

__all__ = ["MemoryProbe"]

_KIB = 1024


class MemoryProbe:
    """Samples one process's peak RSS into time segments (see the module docstring).

    Args:
        pid: the process to measure; this process by default.
        method: ``"auto"`` (``hwm`` where permitted, else ``poll``), ``"hwm"`` or ``"poll"``.
        interval: seconds between samples while active.
    """

    def __init__(self, pid: int | None = None, method: str = "auto", interval: float = 0.005):
        if method not in ("auto", "hwm", "poll"):
            raise ValueError(f"memory method must be auto, hwm or poll, not {method!r}")
        if not 0 < interval < float("inf"):  # NaN too; inf overflowed the thread's wait
            raise ValueError(
                f"memory sample interval must be positive and finite, not {interval!r}"
            )
        self.pid = os.getpid() if pid is None else pid
        self.interval = interval
        self._requested = method
        self.method = "poll" if method == "poll" else "hwm"
        self._lock = threading.Lock()
        self._times: list[float] = []
        self._peaks: list[int] = []
        self._active = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._status_fd = -1
        self._clear_fd = -1
        self._lock_fd = -1
        #: True while no window is open and the thread sleeps (the wrapper reads it).
        self.idle = True
        self._process: psutil.Process | None = None
        self._read_then_reset = _gil_holding_read_then_reset() or _read_then_reset_with_os

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Open the proc files (or psutil handle), take a first sample, start the idle thread.

        Blocks for a few microseconds. Raises `psutil.Error` or `OSError` if the process
        cannot be measured at all (no such pid).
        """
        if self._requested != "poll" and not self._open_hwm():
            if self._requested == "hwm":
                raise OSError(f"kernel high-water mark of pid {self.pid} is not available")
            self.method = "poll"
        if self.method == "poll":
            self._process = psutil.Process(self.pid)
        self.sample_now()
        self._thread = threading.Thread(target=self._run, name="orket-memory-sampler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread (waits up to `timeout`), close the proc files and remove the lock
        file. Idempotent."""
        self._stopping.set()
        self._active.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                return  # still sampling: closing its descriptors could let it write to others
        for fd in (self._status_fd, self._clear_fd):
            if fd >= 0:
                os.close(fd)
        if self._lock_fd >= 0:
            _release_hwm_lock(self.pid, self._lock_fd)
        self._status_fd = self._clear_fd = self._lock_fd = -1

    def activate(self) -> None:
        """Start sampling every `interval` (a window is open). Never blocks or raises."""
        self.idle = False
        self._active.set()

    def deactivate(self) -> None:
        """Let the thread sleep (no window is open). Never blocks or raises."""
        self.idle = True
        self._active.clear()

    def wake(self) -> None:
        """Sample now, then activate: called at dispatch when the probe is idle.

        While the thread sleeps the kernel's mark keeps counting, so without this the first
        sample after a pause would cover the whole pause, and a spike during it (when no
        window was open) would be charged to the next window. Sampling here closes that
        segment before the window starts. Back-to-back generations never pay for it (the
        probe is active then). Blocks for a few microseconds; never raises.
        """
        with contextlib.suppress(OSError, psutil.Error):
            self.sample_now()  # if the process is gone, windows settle with what was sampled
        self.activate()

    # -- sampling ------------------------------------------------------------------------------

    def sample_now(self) -> None:
        """Take one sample now, closing the current segment. Blocks for microseconds.

        Raises `OSError`/`psutil.Error` if the measured process went away.
        """
        with self._lock:
            if self.method == "hwm":
                peak = self._read_and_reset_hwm()
            else:
                assert self._process is not None
                peak = self._process.memory_info().rss
            # Taken after the reset, so the segment's end is never earlier than what it covers.
            self._times.append(perf_counter())
            self._peaks.append(peak)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._active.wait()
            if self._stopping.is_set():
                break
            try:
                self.sample_now()
            except (OSError, psutil.Error):
                # The measured process is gone; windows settle with what was sampled.
                break
            self._stopping.wait(self.interval)

    def _open_hwm(self) -> bool:
        if not sys.platform.startswith("linux"):
            return False
        try:
            self._lock_fd = _exclusive_hwm_lock(self.pid)
            self._status_fd = os.open(f"/proc/{self.pid}/status", os.O_RDONLY)
            self._clear_fd = os.open(f"/proc/{self.pid}/clear_refs", os.O_WRONLY)
            self._read_and_reset_hwm()
        except (OSError, ValueError):
            self.stop()
            self._stopping.clear()
            self._active.clear()
            return False
        return True

    def _read_and_reset_hwm(self) -> int:
        status = self._read_then_reset(self._status_fd, self._clear_fd)
        start = status.index(b"VmHWM:") + 6
        peak_kib = int(status[start : status.index(b"kB", start)])
        return peak_kib * _KIB

    # -- queries -------------------------------------------------------------------------------

    @property
    def last_sample_time(self) -> float:
        """`perf_counter()` time of the newest sample (-inf before the first)."""
        with self._lock:
            return self._times[-1] if self._times else float("-inf")

    @property
    def segment_count(self) -> int:
        """How many segments are kept."""
        return len(self._times)

    def peak_between(self, t_start: float, t_end: float) -> int | None:
        """Peak RSS in bytes over the segments overlapping [t_start, t_end].

        Returns None while the window is not settled (no sample at or after `t_end` yet).
        Never blocks beyond the lock; never raises.
        """
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
        `emit(test_id, peak)` (`peak_between` for many windows, under one lock). Never blocks
        beyond the lock; raises only what `emit` raises."""
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


def _lock_path(pid: int) -> str:
    return os.path.join(tempfile.gettempdir(), f"orket-pipeline-hwm-{pid}.lock")


def _exclusive_hwm_lock(pid: int) -> int:
    """Take the lock on measuring `pid` by its high-water mark; raises `OSError` if taken.

    Every reset clears the mark for every reader: two measurers of one process (two
    pipelines in one engine, or parallel shards measuring one model server) would hide each
    other's spikes. The first takes `hwm`; the others fall back to `poll`, which reads without
    resetting. An flock is released by the kernel when its holder dies, so a crash leaves no
    stale lock; a normal stop removes the file (`_release_hwm_lock`).
    """
    import fcntl  # Linux only, like the mark itself

    path = _lock_path(pid)
    for _ in range(8):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise
        # The previous holder removes the file before it lets go: if it did so after this
        # open, this lock is on a file nobody else can find, so take the one at the path.
        try:
            held, current = os.fstat(fd), os.stat(path)
        except FileNotFoundError:
            os.close(fd)
            continue
        if (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino):
            return fd
        os.close(fd)
    raise OSError(f"the lock on measuring pid {pid} keeps changing hands")


def _release_hwm_lock(pid: int, fd: int) -> None:
    # Removed while still held, so whoever opens the path next makes a fresh file and cannot
    # hold a lock on this one that another process would not see.
    with contextlib.suppress(OSError):
        os.unlink(_lock_path(pid))
    os.close(fd)


def _read_then_reset_with_os(status_fd: int, clear_fd: int) -> bytes:
    status = os.pread(status_fd, 4096, 0)
    os.write(clear_fd, b"5")
    return status


def _gil_holding_read_then_reset() -> Callable[[int, int], bytes] | None:
    """Read `status` through a libc call that keeps the GIL, then reset with `os.write`.

    `os.pread` releases the GIL, and before `os.write` this thread must take it back: while the
    event loop's thread runs Python code that can take up to the interpreter's switch interval
    (5 ms), and a spike that came and went in that gap was missed (1 in 50 spikes of 1 ms,
    measured). Reading through `ctypes.PyDLL` keeps the GIL, so nothing runs between the read
    and the reset: `os.write` gives the GIL up only around its own system call. The reset must
    not keep the GIL too: writing `clear_refs` waits for the process's mmap lock, which a large
    allocation or unmap in another thread holds for as long as it takes, and holding the GIL
    through that froze every Python thread (766 ms measured, beside 1 GiB populated mappings).
    Reading `status` takes no such lock. Each probe gets its own function and buffer.
    """
    try:
        pread = ctypes.PyDLL(None, use_errno=True).pread
    except (OSError, AttributeError):
        return None
    pread.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_long]
    pread.restype = ctypes.c_ssize_t
    buffer = ctypes.create_string_buffer(4096)

    def read_then_reset(status_fd: int, clear_fd: int) -> bytes:
        length = pread(status_fd, buffer, 4096, 0)
        if length < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))
        os.write(clear_fd, b"5")
        return buffer.raw[:length]

    return read_then_reset
