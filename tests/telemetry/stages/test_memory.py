"""MemorySampler and its probe: short spikes caught, overlapping windows kept apart."""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

import anyio
import psutil
import pytest

from orket_pipeline.telemetry._bus import EventBus
from orket_pipeline.telemetry._events import GenerationFinished
from orket_pipeline.telemetry._memory_probe import MemoryProbe
from orket_pipeline.telemetry._pipeline import TelemetryPipeline
from orket_pipeline.telemetry.stages import StageErrors
from orket_pipeline.telemetry.stages.memory import MemorySampler
from tests.providers_fakes import Gated, Instant

pytestmark = pytest.mark.anyio

MIB = 1024 * 1024
SPIKE_MIB = 256


class Spiking:
    """Non-streaming provider that touches `spike_mib` MiB for `hold_s`, after `before_s`."""

    supports_streaming = False

    def __init__(
        self,
        spike_mib: int,
        before_s: float,
        hold_s: float,
        after_s: float,
        freed: anyio.Event | None = None,
    ) -> None:
        self.spike_mib = spike_mib
        self.before_s, self.hold_s, self.after_s = before_s, hold_s, after_s
        self.freed = freed

    async def generate(self, prompt: str) -> str:
        await anyio.sleep(self.before_s)
        block = touch(self.spike_mib * MIB)
        await anyio.sleep(self.hold_s)
        block.close()
        if self.freed is not None:
            self.freed.set()
        await anyio.sleep(self.after_s)
        return "x = 1\n"


def touch(size: int) -> mmap.mmap:
    """Map `size` bytes of fresh anonymous memory and touch every page, so resident memory
    grows by `size` whatever the allocator kept from earlier tests (a plain bytearray may
    reuse pages that are already resident, which is no spike at all)."""
    block = mmap.mmap(-1, size)
    for offset in range(0, size, mmap.PAGESIZE):
        block[offset] = 1
    return block


def rss_mib() -> float:
    return psutil.Process().memory_info().rss / MIB


def peak_of(pipeline: TelemetryPipeline, test_id: str) -> float:
    for run in pipeline.report.test_runs:
        if run.test_id == test_id:
            assert run.telemetry is not None
            value = run.telemetry.peak_memory_rss
            assert isinstance(value, float)
            return float(value)
    raise AssertionError(test_id)


async def test_a_spike_of_a_few_milliseconds_is_caught_every_time() -> None:
    baseline = rss_mib()
    async with TelemetryPipeline() as pipeline:
        for index in range(5):
            await pipeline.generate(f"t{index}", Spiking(SPIKE_MIB, 0.0, 0.002, 0.0), "p")
    for index in range(5):
        assert peak_of(pipeline, f"t{index}") >= baseline + SPIKE_MIB * 0.95


async def test_overlapping_windows_each_get_their_own_peak() -> None:
    baseline = rss_mib()
    async with TelemetryPipeline() as pipeline, anyio.create_task_group() as tg:
        # "long" spikes 256 MiB early, then waits; "late" opens once that spike is freed (and
        # sampled past) and spikes 64 MiB while both windows are open.
        freed = anyio.Event()
        tg.start_soon(pipeline.generate, "long", Spiking(SPIKE_MIB, 0.0, 0.005, 0.3, freed), "p")
        await freed.wait()
        await anyio.sleep(0.03)
        tg.start_soon(pipeline.generate, "late", Spiking(64, 0.02, 0.005, 0.02), "p")
    long_peak, late_peak = peak_of(pipeline, "long"), peak_of(pipeline, "late")
    assert long_peak >= baseline + SPIKE_MIB * 0.95
    assert baseline + 60 <= late_peak < baseline + SPIKE_MIB * 0.5
    assert pipeline.report.metadata.pipeline is not None
    expected = "hwm" if sys.platform.startswith("linux") else "poll"
    assert pipeline.report.metadata.pipeline.memory_method == expected


def test_probe_window_settles_only_after_a_sample_past_its_end() -> None:
    probe = MemoryProbe(interval=0.001)
    probe.start()
    try:
        t_end = probe.last_sample_time + 10.0
        assert probe.peak_between(t_end - 1.0, t_end) is None
        probe.sample_now()
        t_start = probe.last_sample_time
        probe.sample_now()
        peak = probe.peak_between(t_start, probe.last_sample_time)
        assert peak is not None and peak > 0
    finally:
        probe.stop()


def test_peaks_until_settles_the_covered_windows_as_peak_between_does() -> None:
    probe = MemoryProbe(method="poll")  # never started: segments written by hand
    probe._times, probe._peaks = [1.0, 2.0, 3.0, 4.0], [10, 40, 20, 30]
    windows = deque(
        GenerationFinished(test_id=name, t_perf=end, t_started=start, streaming=False, output="")
        for name, start, end in (("a", 0.5, 1.5), ("b", 1.5, 3.5), ("c", 3.9, 4.0), ("d", 3.9, 4.5))
    )
    expected = [(w.test_id, probe.peak_between(w.t_started, w.t_perf)) for w in list(windows)[:3]]
    emitted: list[tuple[str, int | None]] = []
    probe.peaks_until(windows, lambda test_id, peak: emitted.append((test_id, peak)))
    assert emitted == expected == [("a", 40), ("b", 40), ("c", 30)]
    assert [w.test_id for w in windows] == ["d"]  # no sample past its end yet: still pending


def test_probe_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="method"):
        MemoryProbe(method="smaps")
    with pytest.raises(ValueError, match="interval"):
        MemoryProbe(interval=0)


def test_poll_method_measures_another_process() -> None:
    import subprocess

    code = "import sys, time; print('ready', flush=True); time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        probe = MemoryProbe(pid=child.pid, method="poll", interval=0.001)
        probe.start()
        probe.sample_now()
        t = probe.last_sample_time
        probe.sample_now()
        peak = probe.peak_between(t, probe.last_sample_time)
        probe.stop()
        assert peak is not None
        assert peak == pytest.approx(psutil.Process(child.pid).memory_info().rss, rel=0.5)
    finally:
        child.kill()
        child.wait()
        assert child.stdout is not None
        child.stdout.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's mark is Linux's")
async def test_a_spike_while_no_window_is_open_is_not_charged_to_the_next_window() -> None:
    async with TelemetryPipeline() as pipeline:
        await pipeline.generate("before", Instant(), "p")
        # Let the probe go to sleep (no window open), then spike outside any window.
        with anyio.fail_after(10):
            while not pipeline._probe.idle:  # noqa: ASYNC110 - polls a thread's flag
                await anyio.sleep(0.02)
        block = touch(SPIKE_MIB * MIB)
        block.close()
        baseline = rss_mib()
        await pipeline.generate("after", Instant(), "p")
    assert peak_of(pipeline, "after") < baseline + SPIKE_MIB / 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's mark is Linux's")
async def test_a_second_measurer_of_the_same_process_falls_back_to_polling() -> None:
    async with TelemetryPipeline() as first, TelemetryPipeline() as second:
        await first.generate("a", Spiking(SPIKE_MIB, 0.0, 0.002, 0.0), "p")
    methods = [p.report.metadata.pipeline.memory_method for p in (first, second)]  # type: ignore[union-attr]
    assert methods == ["hwm", "poll"]
    # The holder's resets are its own: the spike inside its window is caught.
    assert peak_of(first, "a") >= SPIKE_MIB * 0.95


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's mark is Linux's")
def test_a_stopped_probe_leaves_no_lock_file_and_the_next_one_takes_the_mark() -> None:
    lock = Path(tempfile.gettempdir()) / f"orket-pipeline-hwm-{os.getpid()}.lock"
    first = MemoryProbe()
    first.start()
    assert first.method == "hwm" and lock.exists()
    first.stop()
    assert not lock.exists()
    second = MemoryProbe()
    second.start()
    try:
        assert second.method == "hwm"
    finally:
        second.stop()
    assert not lock.exists()


def _populate_and_unmap(size: int, times: int) -> None:
    # Big mappings filled by the kernel with the GIL released: the mmap lock is held meanwhile.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, *[ctypes.c_int] * 3, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE  # type: ignore[attr-defined]
    for _ in range(times):
        address = libc.mmap(None, size, mmap.PROT_READ | mmap.PROT_WRITE, flags, -1, 0)
        libc.munmap(address, size)


@pytest.mark.skipif(not hasattr(mmap, "MAP_POPULATE"), reason="needs MAP_POPULATE (Linux)")
def test_the_sampler_never_stalls_other_threads_behind_the_mmap_lock() -> None:
    # Resetting the mark waits for the mmap lock; holding the GIL through that froze every
    # Python thread for as long as a large mapping took to fill (766 ms measured).
    probe = MemoryProbe(interval=0.001)
    probe.start()
    probe.activate()
    allocator = threading.Thread(target=_populate_and_unmap, args=(1 << 30, 2))
    try:
        allocator.start()
        worst, last = 0.0, time.perf_counter()
        while allocator.is_alive():
            time.sleep(0.001)
            now = time.perf_counter()
            worst, last = max(worst, now - last), now
    finally:
        allocator.join()
        probe.stop()
    assert worst < 0.15


async def test_a_test_id_in_flight_twice_does_not_cost_another_run_its_peak() -> None:
    # "x" is dispatched, then "y", which spikes; then "x" again while both run (an engine
    # retrying a run whose first attempt has not returned). Past 512 segments the memory stage
    # prunes the probe's segments older than the oldest generation in flight: the second "x"
    # must not pass for the oldest, or "y" loses the segments holding its spike.
    async with TelemetryPipeline(fill_mark=1) as pipeline:
        probe = pipeline._probe
        first, spiking, second = Gated(), Gated(), Gated()
        async with anyio.create_task_group() as tg:
            tg.start_soon(pipeline.generate, "x", first, "p")
            await first.entered.wait()
            tg.start_soon(pipeline.generate, "y", spiking, "p")
            await spiking.entered.wait()
            block = touch(64 * MIB)
            probe.sample_now()  # taken with the spike resident, whatever the method
            spike = probe._peaks[-1]
            block.close()
            for _ in range(2):  # the mark reset at the spike's sample still holds it once
                probe.sample_now()
            tg.start_soon(pipeline.generate, "x", second, "p")
            await second.entered.wait()
            for _ in range(600):  # segments enough to prune
                probe.sample_now()
            await pipeline.generate("short", Instant(), "p")
            probe.sample_now()  # settles "short": the memory stage prunes as it does
            await anyio.wait_all_tasks_blocked()
            for provider in (first, spiking, second):
                provider.release.set()
    assert peak_of(pipeline, "y") >= spike / MIB - 0.001


class ActiveProbe:
    """A probe that is sampling and has sampled nothing past any window yet."""

    idle = False
    segment_count = 0

    def peaks_until(self, windows: object, emit: object) -> None:
        pass  # no sample past the window's end yet: nothing settles

    def deactivate(self) -> None:
        self.idle = True


async def test_the_probe_does_not_sleep_while_a_finished_window_waits_in_the_bus() -> None:
    # Nothing in flight and nothing pending here for `idle_before_sleep`, but a generation
    # finished since the last batch was routed: its window needs a sample past its end. Put to
    # sleep now, the probe would settle it only at the next dispatch (or close), with a segment
    # spanning the whole pause, charging the window whatever the pause held.
    probe = ActiveProbe()
    stage = MemorySampler(StageErrors(), probe)  # type: ignore[arg-type]
    stage.idle_before_sleep = 0.0
    bus = EventBus()
    stage.attach(bus, 100)
    await stage.after_batch()  # idle from now on
    bus.publish(
        GenerationFinished(test_id="t", t_perf=2.0, t_started=1.0, streaming=False, output="")
    )
    await stage.after_batch()
    assert not probe.idle
