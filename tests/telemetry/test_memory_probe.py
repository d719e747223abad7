"""MemoryProbe on its own: what a sample records, who takes it, and one thread for all probes."""

from __future__ import annotations

import mmap
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

import psutil
import pytest

from orket_pipeline.telemetry._events import GenerationFinished
from orket_pipeline.telemetry._hwm import parse_status
from orket_pipeline.telemetry._memory_probe import MemoryProbe

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the kernel's mark is Linux's"
)
MIB = 1024 * 1024


def window(name: str, start: float, end: float) -> GenerationFinished:
    return GenerationFinished(test_id=name, t_perf=end, t_started=start, streaming=False, output="")


def settle(probe: MemoryProbe, windows: deque[GenerationFinished]) -> list[tuple[str, int | None]]:
    """Call `peaks_until` as the memory stage does at each tick, until every window settled."""
    emitted: list[tuple[str, int | None]] = []
    deadline = time.monotonic() + 10
    while windows and time.monotonic() < deadline:
        probe.peaks_until(windows, lambda test_id, peak: emitted.append((test_id, peak)))
        time.sleep(0.005)
    return emitted


def sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "orket-memory-sampler"]


class TestParseStatus:
    def test_the_mark_and_the_rss_in_bytes(self) -> None:
        status = b"Name:\tpy\nVmPeak:\t 9 kB\nVmHWM:\t  1748 kB\nVmRSS:\t  1700 kB\nX:\t1\n"
        assert parse_status(status, len(status)) == (1748 * 1024, 1700 * 1024)

    def test_the_rss_found_elsewhere_and_only_within_the_length_read(self) -> None:
        status = b"VmRSS:\t 20 kB\nVmHWM:\t 30 kB\nVmLck:\t 0 kB\n"
        assert parse_status(status, len(status)) == (30 * 1024, 20 * 1024)
        with pytest.raises(ValueError, match="VmHWM"):
            parse_status(status, 10)


def test_equal_samples_make_one_longer_segment() -> None:
    # A process whose memory does not move (once `sleep` is loaded): no window can tell two
    # samples of the same peak apart, so they are kept as one segment that ends later.
    with subprocess.Popen(["sleep", "60"]) as child:
        try:
            time.sleep(0.2)
            probe = MemoryProbe(pid=child.pid, method="poll", interval=60.0)
            probe.start()
            try:
                count, first = probe.segment_count, probe.last_sample_time
                probe.sample_now()
                probe.sample_now()
                assert probe.segment_count == count
                assert probe.last_sample_time > first
                rss = psutil.Process(child.pid).memory_info().rss
                assert probe.peak_between(first, probe.last_sample_time) == rss
            finally:
                probe.stop()
        finally:
            child.kill()


@linux_only
def test_a_finished_window_settles_at_the_loops_tick_while_the_thread_sleeps() -> None:
    # Not activated: the thread takes no sample. Settling samples on the caller's side once
    # `interval` has passed since the newest sample (or asks the thread, if a reset is due).
    probe = MemoryProbe(interval=0.01)
    probe.start()
    try:
        start = probe.last_sample_time
        end = time.perf_counter()
        windows = deque([window("a", start, end)])
        assert settle(probe, windows) == [("a", probe.peak_between(start, end))]
        assert probe.last_sample_time >= end
    finally:
        probe.stop()


@linux_only
def test_a_spike_that_needs_a_reset_at_settling_is_caught_by_the_threads_sample() -> None:
    probe = MemoryProbe(interval=0.01)
    probe.start()
    try:
        probe.sample_now()
        start = probe.last_sample_time
        rss_before = psutil.Process().memory_info().rss
        block = mmap.mmap(-1, 64 * MIB)
        for offset in range(0, 64 * MIB, mmap.PAGESIZE):
            block[offset] = 1
        block.close()  # the mark is now above the RSS: only a sample that resets may record
        end = time.perf_counter()
        emitted = settle(probe, deque([window("spike", start, end)]))
        assert len(emitted) == 1 and emitted[0][1] is not None
        assert emitted[0][1] >= rss_before + 60 * MIB
    finally:
        probe.stop()


@linux_only
def test_while_memory_is_flat_the_next_dispatch_is_asked_to_sample() -> None:
    probe = MemoryProbe(interval=0.002)
    probe.start()
    try:
        probe.activate()
        assert not probe.sample_at_dispatch
        deadline = time.monotonic() + 10
        while not probe.sample_at_dispatch and time.monotonic() < deadline:
            time.sleep(0.002)  # the test's own memory stays put meanwhile
        assert probe.sample_at_dispatch
        assert not probe.idle  # still active: the memory stage keeps settling windows
        before = probe.last_sample_time
        probe.wake()  # what a dispatch does when asked to
        assert probe.last_sample_time > before and not probe.sample_at_dispatch
        probe.deactivate()
        assert probe.idle and probe.sample_at_dispatch
    finally:
        probe.stop()


@linux_only
def test_probes_share_one_thread_and_a_stopped_probe_is_closed() -> None:
    lock = Path(tempfile.gettempdir()) / f"orket-pipeline-hwm-{os.getpid()}.lock"
    for _ in range(3):
        probe = MemoryProbe(interval=60.0)  # the thread's next look is a minute away
        probe.start()
        probe.activate()
        probe.stop()
        assert not lock.exists()
    assert len(sampler_threads()) == 1
    with pytest.raises(OSError):
        probe.sample_now()  # its files are closed
    probe.wake()  # never raises, even stopped
