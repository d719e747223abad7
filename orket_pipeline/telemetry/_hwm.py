"""The kernel's high-water mark of a process's RSS (Linux): read it, reset it, one holder per pid.

`VmHWM` in `/proc/PID/status` is the peak RSS since the mark was last reset (by writing ``5``
to `/proc/PID/clear_refs`); `VmRSS` beside it is the RSS now. Used by `MemoryProbe`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import tempfile
from collections.abc import Callable

__all__ = ["HighWaterMark", "parse_status"]

_KIB = 1024
_STATUS_SIZE = 4096

_Pread = Callable[[int, "ctypes.Array[ctypes.c_char]", int, int], int]
#: libc's pread through `ctypes.PyDLL` (keeps the GIL), built once per process.
_PREAD: _Pread | None = None


class HighWaterMark:
    """The open `status` and `clear_refs` files of one process, and the lock on resetting
    its mark (see `_exclusive_lock`).

    Raises `OSError` (the lock is taken, no such process, no permission, no `pread`) or
    `ValueError` (a `status` without the mark) from the constructor, leaving nothing open.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._pread = _gil_holding_pread()
        self._buffer = ctypes.create_string_buffer(_STATUS_SIZE)
        self._lock_fd = _exclusive_lock(pid)
        self._status_fd = self._clear_fd = -1
        try:
            self._status_fd = os.open(f"/proc/{pid}/status", os.O_RDONLY)
            self._clear_fd = os.open(f"/proc/{pid}/clear_refs", os.O_WRONLY)
            self.read()
            self.reset()
        except BaseException:
            self.close()
            raise

    def read(self) -> tuple[int, int]:
        """`VmHWM` and `VmRSS` in bytes, read without letting go of the GIL (see
        `_gil_holding_pread`). Blocks for microseconds; raises `OSError` if the process is
        gone, `ValueError` if the file has no mark."""
        length = self._pread(self._status_fd, self._buffer, _STATUS_SIZE, 0)
        if length < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))
        return parse_status(self._buffer.raw, length)

    def peek(self) -> tuple[int, int]:
        """`VmHWM` and `VmRSS` in bytes through `os.pread`, which lets go of the GIL around
        the system call (cheaper than `read` where no reset may follow it). Raises as `read`."""
        status = os.pread(self._status_fd, _STATUS_SIZE, 0)
        return parse_status(status, len(status))

    def reset(self) -> None:
        """Reset the mark to the RSS now. Lets go of the GIL: it waits for the process's mmap
        lock, which a large mapping being filled or unmapped holds meanwhile. Raises
        `OSError` if the process is gone."""
        os.write(self._clear_fd, b"5")

    def close(self) -> None:
        """Close the files and give the lock up (removing its file). Idempotent."""
        for fd in (self._status_fd, self._clear_fd):
            if fd >= 0:
                os.close(fd)
        if self._lock_fd >= 0:
            _release_lock(self.pid, self._lock_fd)
        self._status_fd = self._clear_fd = self._lock_fd = -1


def parse_status(status: bytes, length: int) -> tuple[int, int]:
    """`VmHWM` and `VmRSS` in bytes from the first `length` bytes of a `status` file.
    Raises `ValueError` if either is missing."""
    start = status.find(b"VmHWM:", 0, length)
    if start < 0:
        raise ValueError("no VmHWM in the status file")
    fields = status[start : start + 64].split()  # the kernel writes VmRSS right after VmHWM
    if len(fields) > 4 and fields[3] == b"VmRSS:":
        return int(fields[1]) * _KIB, int(fields[4]) * _KIB
    rss = status.find(b"VmRSS:", 0, length)
    if rss < 0:
        raise ValueError("no VmRSS in the status file")
    return int(fields[1]) * _KIB, int(status[rss + 6 : status.index(b"kB", rss)]) * _KIB


def _lock_path(pid: int) -> str:
    return os.path.join(tempfile.gettempdir(), f"orket-pipeline-hwm-{pid}.lock")


def _exclusive_lock(pid: int) -> int:
    """Take the lock on measuring `pid` by its high-water mark; raises `OSError` if taken.

    Every reset clears the mark for every reader: two measurers of one process (two
    pipelines in one engine, or parallel shards measuring one model server) would hide each
    other's spikes. The first takes `hwm`; the others fall back to `poll`, which reads without
    resetting. An flock is released by the kernel when its holder dies, so a crash leaves no
    stale lock; a normal stop removes the file (`_release_lock`).
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


def _release_lock(pid: int, fd: int) -> None:
    # Removed while still held, so whoever opens the path next makes a fresh file and cannot
    # hold a lock on this one that another process would not see.
    with contextlib.suppress(OSError):
        os.unlink(_lock_path(pid))
    os.close(fd)


def _gil_holding_pread() -> _Pread:
    """libc's `pread`, called without letting go of the GIL; raises `OSError` where there is
    none.

    `os.pread` releases the GIL, and before `os.write` resets the mark the thread must take it
    back: while the event loop's thread runs Python code that can take up to the interpreter's
    switch interval (5 ms), and a spike that came and went in that gap was missed (1 in 50
    spikes of 1 ms, measured). Reading through `ctypes.PyDLL` keeps the GIL, so nothing runs
    between the read and the reset: `os.write` gives the GIL up only around its own system
    call. The reset must not keep the GIL too: writing `clear_refs` waits for the process's
    mmap lock, which a large allocation or unmap in another thread holds for as long as it
    takes, and holding the GIL through that froze every Python thread (766 ms measured,
    beside 1 GiB populated mappings). Reading `status` takes no such lock.
    """
    global _PREAD
    if _PREAD is None:
        try:
            pread = ctypes.PyDLL(None, use_errno=True).pread
        except AttributeError as exc:
            raise OSError("no pread in this process's C library") from exc
        pread.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_long]
        pread.restype = ctypes.c_ssize_t
        _PREAD = pread
    return _PREAD
