"""The program a gate runs in its sandbox: `python -I -B -X utf8 THIS CONFIG_FD RESULT_FD`.

Standard library only, and never imported by the package: it runs in a child interpreter. It
writes `started` to RESULT_FD first (the engine tells a sandbox that never started from code
that failed), reads its config (JSON) from CONFIG_FD and closes it: the mode, the per-run nonce,
the limits, the files to write and, per mode, the calls or nothing more. Then it lowers its own
resource limits, writes the files into its working directory, installs an audit hook (clear
messages for refused process creation, signals and writes outside the working directory; under
bubblewrap the kernel is what enforces them) and runs the generated code:

- `tests`: run `solution.py` (payload followed by the gate's tests) as `__main__`.
- `functions`: import `solution.py` as module `solution`, call the function once per call.
- `cli`: run `main.py` as `__main__` with the given argv; exceptions and exit codes behave as
  under plain `python main.py`. Nothing more is written to RESULT_FD.

In `tests` and `functions` mode, once the code has returned, the harness writes two lines to
RESULT_FD (not stdout) and ends the process at once: the record's data as JSON, then the verdict
line `verdict STATUS NONCE`. The engine takes the status only from a verdict line holding the
nonce, so printing, exiting early or killing the process never passes. While the code runs, and
while anything that could run its objects runs (flushing its streams, encoding the data), the
nonce and RESULT_FD are in no frame it can walk up to; the status is decided before, and the
verdict line is built from plain bytes with functions taken before the code ran. Those stop the
known tricks (frame walks, patched `json`, replaced stream objects), not a search: code that
looks through this interpreter (the garbage collector, the harness's globals, its memory) can
still forge a verdict: the README says so.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import resource
import runpy
import sys
import traceback
from typing import Any

_PROCESS_EVENTS = frozenset(
    {
        "os.exec",
        "os.fork",
        "os.forkpty",
        "os.killpg",
        "os.posix_spawn",
        "os.spawn",
        "os.system",
        "pty.spawn",
        "subprocess.Popen",
    }
)
# Audit events that change the file system, with the positions of their path arguments.
_PATH_EVENTS = {
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.link": (0, 1),
    "os.mkdir": (0,),
    "os.remove": (0,),
    "os.rename": (0, 1),
    "os.rmdir": (0,),
    "os.symlink": (1,),
    "os.truncate": (0,),
    "os.utime": (0,),
    "shutil.rmtree": (0,),
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_ALLOWED_FILES = frozenset({os.devnull})
_PR_SET_PDEATHSIG = 1
STARTED = b"started\n"
VERDICT = b"verdict "
# Taken before the generated code runs, so that replacing them changes nothing: the encoder
# (which may still look up `json.encoder` when called: it only ever sees data, never the
# nonce), the write and the exit.
_ENCODE = json.JSONEncoder().encode
_WRITE = os.write
_EXIT = os._exit
_OS_ERROR = OSError
_HELD: list[tuple[str, int]] = []


def main(argv: list[str]) -> int:
    """Entry point; returns the process exit code."""
    config_fd, result_fd = int(argv[1]), int(argv[2])
    # First of all: the sandbox started. What the code does later can add to the pipe, never
    # take this back; a sandbox that failed to start never writes it.
    os.write(result_fd, STARTED)
    with os.fdopen(config_fd, "rb") as source:
        config = json.loads(source.read())
    nonce = config.pop("nonce")
    if config.get("parent_pid"):
        _die_with_parent(config["parent_pid"])
    _limit(config["limits"])
    root = os.path.realpath(config["root"])
    for name, text in config["files"].items():
        with open(os.path.join(root, name), "w", encoding="utf-8", errors="surrogatepass") as f:
            f.write(text)
    os.chdir(root)
    sys.path[0] = root
    mode = config["mode"]
    path = os.path.join(root, "main.py" if mode == "cli" else "solution.py")
    if mode == "cli":
        os.close(result_fd)
        sys.argv = [path, *config["argv"]]
        sys.addaudithook(_make_hook(root))
        runpy.run_path(path, run_name="__main__")
        return 0
    function, calls = config.get("function", ""), config.get("calls", [])
    # Out of this frame (the code can walk up to it) while the code runs; taken back after.
    _HELD.append((nonce, result_fd))
    del config, nonce, result_fd, argv
    sys.addaudithook(_make_hook(root))
    record = _run_tests(path) if mode == "tests" else _call(path, function, calls)
    _finish(record)
    return 0  # not reached


def _die_with_parent(parent: int) -> None:
    # Process sandbox on Linux: die when the engine's thread that started us does, or now if
    # the engine is already gone (it died before the request was made).
    with contextlib.suppress(Exception):
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def _limit(limits: dict[str, int]) -> None:
    for name, value in limits.items():
        _setrlimit(name, value)


def _setrlimit(name: str, value: int) -> None:
    limit = getattr(resource, name, None)
    if limit is None:
        return
    hard = value + 1 if name == "RLIMIT_CPU" else value  # SIGXCPU first, then SIGKILL
    try:
        resource.setrlimit(limit, (value, hard))
    except (ValueError, OSError):
        _, current = resource.getrlimit(limit)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(limit, (min(value, current) if current >= 0 else value, current))


def _make_hook(root: str) -> Any:
    own_pid = os.getpid()

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event in _PROCESS_EVENTS:
            raise PermissionError(f"gate sandbox: {event} is not allowed")
        if event == "os.kill" and args and args[0] != own_pid:
            raise PermissionError("gate sandbox: signalling other processes is not allowed")
        if event == "open" and _opens_for_writing(args):
            _check_path(root, args[0])
        for index in _PATH_EVENTS.get(event, ()):
            if index < len(args):
                _check_path(root, args[index])

    return hook


def _opens_for_writing(args: tuple[Any, ...]) -> bool:
    mode = args[1] if len(args) > 1 else None
    flags = args[2] if len(args) > 2 else 0
    if isinstance(mode, str) and any(c in mode for c in "wax+"):
        return True
    return isinstance(flags, int) and bool(flags & _WRITE_FLAGS)


def _check_path(root: str, path: Any) -> None:
    if path is None or isinstance(path, int):
        return  # an already open descriptor: opening it was checked
    name = os.fsdecode(os.fspath(path))
    resolved = os.path.realpath(name)
    if resolved in _ALLOWED_FILES or resolved == root or resolved.startswith(root + os.sep):
        return
    raise PermissionError(f"gate sandbox: writing outside the gate's temp dir: {name}")


def _run_tests(path: str) -> dict[str, Any]:
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        return _exit_record(exc)
    except BaseException as exc:  # the generated code's failure is the verdict
        return {"status": "raised", "reason": _describe(exc, path)}
    return {"status": "ok"}


def _call(path: str, name: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
    try:
        spec = importlib.util.spec_from_file_location("solution", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["solution"] = module
        spec.loader.exec_module(module)
    except SystemExit as exc:
        return _exit_record(exc)
    except BaseException as exc:
        return {"status": "raised", "reason": "import failed: " + _describe(exc, path)}
    function = getattr(module, name, None)
    if not callable(function):
        return {"status": "missing", "reason": f"no function {name!r} defined"}
    results = []
    for call in calls:
        try:
            results.append(_one_call(function, call, path))
        except SystemExit as exc:
            return _exit_record(exc)
    return {"status": "ok", "results": results}


def _one_call(function: Any, call: dict[str, Any], path: str) -> dict[str, Any]:
    try:
        value = function(*call["args"], **call["kwargs"])
    except Exception as exc:
        return {"ok": False, "error": _describe(exc, path)}
    try:
        return {"ok": True, "value": json.loads(json.dumps(value, allow_nan=False))}
    except (TypeError, ValueError, RecursionError):
        return {"ok": False, "error": f"returned a non-JSON value of type {type(value).__name__}"}


def _exit_record(exc: SystemExit) -> dict[str, Any]:
    code = exc.code
    if code is None or isinstance(code, int):
        return {"status": "exit", "code": code or 0}
    return {"status": "exit", "code": 1, "message": str(code)[:200]}


def _describe(exc: BaseException, path: str) -> str:
    try:
        message = str(exc).strip().splitlines()
    except Exception:
        message = []
    text = type(exc).__name__ + (f": {message[0][:160]}" if message else "")
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == path]
    if frames and frames[-1].line:
        text += f" (line {frames[-1].lineno}: {frames[-1].line.strip()[:120]})"
    return text


def _finish(record: dict[str, Any]) -> None:
    # The status is read first, so nothing the code does later can change it. Then everything
    # that can run the code's own objects (its stream objects' flush, modules it patched that
    # the encoder looks up, its values) runs, while the nonce and RESULT_FD are out of reach.
    status = record["status"]
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # the generated code may have closed them
            stream.flush()
    try:
        body = _ENCODE(record).encode()  # ASCII, one line
    except Exception:  # a result that cannot be encoded: say so
        status, body = "raised", b'{"status": "raised", "reason": "bad result"}'
    _send(status, body)


def _send(status: str, body: bytes) -> None:
    # From the nonce on, only what was taken before the code ran: no module attribute and no
    # builtin looked up by name (the code may have replaced them), no call into its objects.
    # The verdict line is plain bytes; the body (data only) comes before it.
    nonce, fd = _HELD.pop()
    data = b"\n" + body + b"\n" + VERDICT + status.encode() + b" " + nonce.encode() + b"\n"
    try:
        while data:
            data = data[_WRITE(fd, data) :]
    except _OS_ERROR:
        pass
    _EXIT(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
