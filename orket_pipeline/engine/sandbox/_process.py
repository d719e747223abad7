"""One sandboxed child process for a gate: `python -I`, its own temp dir, limits and caps.

The child is `sys.executable -I -B -X utf8 _harness.py ...` in a new session (its own
process group), with a minimal environment (no API keys), the temp dir as cwd, HOME and TMPDIR.
The harness lowers its address-space, file-size and (when not root) process limits and refuses
process creation and writes outside the temp dir. Here, in the parent, the process group is
killed on timeout, when an output stream exceeds its cap, and always once the child has exited,
so leftover children die with it. Nothing here blocks the event loop.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream, Process

__all__ = ["SandboxLimits", "SandboxResult", "run_sandboxed", "sandbox_dir"]

HARNESS: Final = Path(__file__).with_name("_harness.py")
MARK: Final = b"\x1eorket-gate-verdict:"
_CHUNK: Final = 65536


@dataclass(frozen=True)
class SandboxLimits:
    """Limits for one sandboxed process.

    Attributes:
        timeout_s: wall-clock limit; the process group is killed when it passes.
        memory_bytes: address-space limit (`RLIMIT_AS`).
        output_bytes: cap per output stream; more output kills the process group.
        file_bytes: largest file the process may write (`RLIMIT_FSIZE`).
    """

    timeout_s: float = 10.0
    memory_bytes: int = 1 << 30
    output_bytes: int = 1 << 20
    file_bytes: int = 64 << 20


@dataclass
class SandboxResult:
    """What a sandboxed process did. `exit_code` is negative (-signal) when killed by a signal."""

    exit_code: int | None = None
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    timed_out: bool = False
    output_exceeded: bool = False

    def verdict(self) -> dict[str, Any] | None:
        """The harness's verdict line (`tests` and `functions` modes), or None if it wrote none."""
        at = self.stdout.rfind(MARK)
        if at < 0:
            return None
        line = bytes(self.stdout[at + len(MARK) :]).split(b"\n", 1)[0]
        try:
            verdict = json.loads(line)
        except ValueError:
            return None
        return verdict if isinstance(verdict, dict) else None


@asynccontextmanager
async def sandbox_dir(files: Mapping[str, str]) -> AsyncIterator[Path]:
    """A fresh temp dir holding `files` (name → text), removed on exit; file I/O off the loop.

    Raises:
        OSError: the directory or a file could not be created.
    """
    root = Path(await anyio.to_thread.run_sync(_make_dir, dict(files)))
    try:
        yield root
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(shutil.rmtree, root, True)


def _make_dir(files: dict[str, str]) -> str:
    root = tempfile.mkdtemp(prefix="orket-gate-")
    for name, text in files.items():
        Path(root, name).write_text(text, encoding="utf-8")
    return root


async def run_sandboxed(
    mode: str,
    root: Path,
    args: Sequence[str],
    *,
    stdin: bytes = b"",
    limits: SandboxLimits,
) -> SandboxResult:
    """Run the harness in `mode` with `args` inside `root`; never blocks the event loop.

    Returns:
        The exit code, capped output and whether a limit was hit. Limits hit are results,
        not exceptions.

    Raises:
        OSError: the interpreter could not be started.
    """
    config = {"root": str(root), "memory_bytes": limits.memory_bytes}
    config["file_bytes"] = limits.file_bytes
    command = [sys.executable, "-I", "-B", "-X", "utf8", str(HARNESS), mode, json.dumps(config)]
    env = {"PATH": os.defpath, "HOME": str(root), "TMPDIR": str(root), "LC_ALL": "C.UTF-8"}
    process = await anyio.open_process([*command, *args], cwd=root, env=env, start_new_session=True)
    result = SandboxResult()
    try:
        with anyio.move_on_after(limits.timeout_s) as scope:
            await _supervise(process, stdin, result, limits.output_bytes)
        result.timed_out = scope.cancelled_caught
    finally:
        _kill_group(process.pid)
        with anyio.CancelScope(shield=True):
            await process.aclose()
    if not result.timed_out and not result.output_exceeded:
        result.exit_code = process.returncode
    return result


async def _supervise(process: Process, stdin: bytes, result: SandboxResult, cap: int) -> None:
    assert process.stdin and process.stdout and process.stderr
    async with anyio.create_task_group() as tg:
        tg.start_soon(_feed, process.stdin, stdin)
        tg.start_soon(_drain, process, process.stdout, result.stdout, result, cap)
        tg.start_soon(_drain, process, process.stderr, result.stderr, result, cap)
        await process.wait()
        # Children left behind may hold the pipes open; they go with the group.
        _kill_group(process.pid)


async def _feed(stream: ByteSendStream, data: bytes) -> None:
    with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        if data:
            await stream.send(data)
    with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        await stream.aclose()


async def _drain(
    process: Process,
    stream: ByteReceiveStream,
    sink: bytearray,
    result: SandboxResult,
    cap: int,
) -> None:
    # Reads at most `cap` bytes into memory; past it the group is killed and the rest discarded.
    with suppress(anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
        while True:
            chunk = await stream.receive(_CHUNK)
            room = cap - len(sink)
            if len(chunk) > room:
                sink += chunk[: max(room, 0)]
                if not result.output_exceeded:
                    result.output_exceeded = True
                    _kill_group(process.pid)
            else:
                sink += chunk


def _kill_group(pgid: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
