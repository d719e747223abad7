"""Start one sandboxed process and watch it to the end, in the calling (worker) thread.

`supervise` blocks: the engine runs it in a worker thread of its own for the gate's whole life,
so `bwrap --die-with-parent` (whose parent is that thread) lives exactly as long as the gate
and dies with the engine. It feeds stdin, the harness's config pipe and the seccomp filter;
reads stdout, stderr and the harness's result pipe, each capped; and kills the process (its
whole process group) on timeout, on an output cap, when `cancel_fd` becomes readable, and
always before reaping it, so nothing it started outlives it.
"""

from __future__ import annotations

import contextlib
import os
import select
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = ["Raw", "supervise"]

_CHUNK: Final = 65536
_EXIT_POLL_S: Final = 0.005


@dataclass
class Raw:
    """What the process did. `exit_code` is as a shell shows it (128 + N: killed by signal N)."""

    exit_code: int | None = None
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    record: bytearray = field(default_factory=bytearray)
    timed_out: bool = False
    output_exceeded: bool = False
    cancelled: bool = False

    @property
    def stopped(self) -> bool:
        """True when the process was killed by a limit or by cancellation."""
        return self.timed_out or self.output_exceeded or self.cancelled


ArgvMaker = Callable[[int, int, "int | None"], list[str]]


class _Fds:
    """The pipe ends this supervision owns; each is closed exactly once (never a reused number)."""

    def __init__(self) -> None:
        self.open: set[int] = set()

    def pipe(self) -> tuple[int, int]:
        read, write = os.pipe()
        self.open.update((read, write))
        return read, write

    def close(self, fd: int) -> None:
        if fd in self.open:
            self.open.discard(fd)
            with contextlib.suppress(OSError):
                os.close(fd)

    def close_all(self) -> None:
        for fd in list(self.open):
            self.close(fd)


def supervise(
    make_argv: ArgvMaker,
    *,
    config: bytes,
    stdin: bytes,
    seccomp: bytes | None,
    cwd: str | None,
    env: Mapping[str, str],
    timeout_s: float,
    cap: int,
    cancel_fd: int,
    user: int | None = None,
) -> Raw:
    """Run the command `make_argv(config_fd, result_fd, seccomp_fd)` to its end; blocks.

    `user`, when given, is the uid (and gid) the command runs as, with no supplementary groups
    (an engine running as root starts bwrap as an unprivileged user).

    Returns:
        The result; limits hit and cancellation are results, not exceptions.

    Raises:
        OSError: a pipe or the process could not be created (too many open files, say).
    """
    fds = _Fds()
    raw = Raw()
    try:
        ends = [fds.pipe() for _ in range(6 if seccomp is not None else 5)]
        (in_r, in_w), (out_r, out_w), (err_r, err_w), (cfg_r, cfg_w), (res_r, res_w) = ends[:5]
        sec_r, sec_w = ends[5] if seccomp is not None else (None, None)
        inherited = [fd for fd in (cfg_r, res_w, sec_r) if fd is not None]
        process = subprocess.Popen(
            make_argv(cfg_r, res_w, sec_r),
            stdin=in_r,
            stdout=out_w,
            stderr=err_w,
            pass_fds=inherited,
            cwd=cwd if user is None else (cwd or "/"),
            env=dict(env),
            start_new_session=True,
            user=user,
            group=user,
            extra_groups=None if user is None else [],
        )
        try:
            for fd in (in_r, out_w, err_w, *inherited):  # the child's ends: the child's alone
                fds.close(fd)
            writes = {in_w: stdin, cfg_w: config}
            if sec_w is not None and seccomp is not None:
                writes[sec_w] = seccomp
            reads = {out_r: raw.stdout, err_r: raw.stderr, res_r: raw.record}
            deadline = time.monotonic() + timeout_s
            _pump(fds, writes, reads, cancel_fd, deadline, cap, raw)
            if not raw.stopped:
                _wait_exit(process, cancel_fd, deadline, raw)
        finally:
            _kill(process)  # not reaped yet: its pid and group id cannot have been reused
            code = process.wait()
        if not raw.stopped:
            raw.exit_code = 128 - code if code < 0 else code
        return raw
    finally:
        fds.close_all()


def _pump(
    fds: _Fds,
    writes: dict[int, bytes],
    reads: dict[int, bytearray],
    cancel_fd: int,
    deadline: float,
    cap: int,
    raw: Raw,
) -> None:
    # Until every output stream is at its end, or a limit or cancellation stops it.
    with selectors.DefaultSelector() as selector:
        selector.register(cancel_fd, selectors.EVENT_READ)
        for fd in reads:
            selector.register(fd, selectors.EVENT_READ)
        for fd, data in list(writes.items()):
            if data:
                os.set_blocking(fd, False)
                selector.register(fd, selectors.EVENT_WRITE)
            else:
                fds.close(fd)
                del writes[fd]
        open_reads = set(reads)
        while open_reads:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raw.timed_out = True
                return
            for key, _ in selector.select(remaining):
                fd = int(key.fd)
                if fd == cancel_fd:
                    raw.cancelled = True
                    return
                if fd in writes:
                    if not _write_some(fds, fd, writes):
                        selector.unregister(fd)
                    continue
                chunk = os.read(fd, _CHUNK)
                if not chunk:
                    selector.unregister(fd)
                    open_reads.discard(fd)
                    continue
                sink = reads[fd]
                if len(sink) + len(chunk) > cap:
                    sink += chunk[: cap - len(sink)]
                    raw.output_exceeded = True
                    return
                sink += chunk


def _write_some(fds: _Fds, fd: int, writes: dict[int, bytes]) -> bool:
    # True while more is left to write; the end is closed when done or when the reader left.
    data = writes[fd]
    try:
        sent = os.write(fd, data[:_CHUNK])
    except BlockingIOError:
        return True
    except OSError:  # EPIPE: the child closed its end
        sent = len(data)
    writes[fd] = data[sent:]
    if writes[fd]:
        return True
    fds.close(fd)
    del writes[fd]
    return False


def _wait_exit(process: subprocess.Popen[bytes], cancel_fd: int, deadline: float, raw: Raw) -> None:
    # The streams are at their end; the process may still run (it closed them itself). Check
    # without reaping, so the process group id stays reserved for the kill that follows.
    while True:
        if _exited(process):
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raw.timed_out = True
            return
        ready, _, _ = select.select([cancel_fd], [], [], min(remaining, _EXIT_POLL_S))
        if ready:
            raw.cancelled = True
            return


def _exited(process: subprocess.Popen[bytes]) -> bool:
    waitid = getattr(os, "waitid", None)
    if waitid is None:  # macOS: reaping is the only way to ask
        return process.poll() is not None
    try:
        return waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        process.kill()
