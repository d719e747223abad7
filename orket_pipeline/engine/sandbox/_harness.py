"""The program a gate runs in its sandbox process: `python -I -B -X utf8 THIS MODE CONFIG ARGS...`.

Standard library only, and never imported by the package: it runs in a child interpreter. It
lowers its own resource limits, installs an audit hook that refuses to start processes, signal
other processes or write outside the gate's temp dir, then runs the generated code in one of
three modes:

- `tests PATH`: run PATH as `__main__` (payload followed by the gate's assert-style tests).
- `functions PATH NAME`: import PATH as module `solution`, call NAME once per call read as JSON
  from stdin (`[{"args": [...], "kwargs": {...}}, ...]`).
- `cli PATH ARGS...`: run PATH as `__main__` with `sys.argv = [PATH, *ARGS]`; exceptions and
  exit codes behave as under plain `python PATH`.

In `tests` and `functions` mode the verdict is one line, `MARK` + JSON, written last to a
duplicate of the original stdout, so code that exits early (`sys.exit(0)`, `os._exit`) leaves no
verdict and cannot pass. This contains accidents, not a determined attacker (ctypes can undo it).
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

MARK = "\x1eorket-gate-verdict:"

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


def main(argv: list[str]) -> int:
    """Entry point; returns the process exit code."""
    mode, config, rest = argv[1], json.loads(argv[2]), argv[3:]
    calls = json.loads(sys.stdin.read() or "[]") if mode == "functions" else []
    verdict_fd = os.dup(1)
    _limit(config)
    root = os.path.realpath(config["root"])
    sys.addaudithook(_make_hook(root))
    if mode == "cli":
        sys.argv = [rest[0], *rest[1:]]
        runpy.run_path(rest[0], run_name="__main__")
        return 0
    verdict = _run_tests(rest[0]) if mode == "tests" else _call(rest[0], rest[1], calls)
    _emit(verdict_fd, verdict)
    return 0


def _limit(config: dict[str, Any]) -> None:
    for name, value in (
        ("RLIMIT_AS", config["memory_bytes"]),
        ("RLIMIT_FSIZE", config["file_bytes"]),
        ("RLIMIT_CORE", 0),
    ):
        _setrlimit(name, value)
    if os.geteuid() != 0:
        # No new processes or threads at all; root ignores this limit, the audit hook remains.
        _setrlimit("RLIMIT_NPROC", 0)


def _setrlimit(name: str, value: int) -> None:
    limit = getattr(resource, name, None)
    if limit is None:
        return
    try:
        resource.setrlimit(limit, (value, value))
    except (ValueError, OSError):
        _, hard = resource.getrlimit(limit)
        if hard == resource.RLIM_INFINITY or value < hard:
            resource.setrlimit(limit, (value, hard))


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
        return _exit_verdict(exc)
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
        return _exit_verdict(exc)
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
            return _exit_verdict(exc)
    return {"status": "ok", "results": results}


def _one_call(function: Any, call: dict[str, Any], path: str) -> dict[str, Any]:
    try:
        value = function(*call.get("args", []), **call.get("kwargs", {}))
    except Exception as exc:
        return {"ok": False, "error": _describe(exc, path)}
    try:
        return {"ok": True, "value": json.loads(json.dumps(value, allow_nan=False))}
    except (TypeError, ValueError, RecursionError):
        return {"ok": False, "error": f"returned a non-JSON value of type {type(value).__name__}"}


def _exit_verdict(exc: SystemExit) -> dict[str, Any]:
    code = exc.code
    if code is None or isinstance(code, int):
        return {"status": "exit", "code": code or 0}
    return {"status": "exit", "code": 1, "message": str(code)[:200]}


def _describe(exc: BaseException, path: str) -> str:
    message = str(exc).strip().splitlines()
    text = type(exc).__name__ + (f": {message[0][:160]}" if message else "")
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == path]
    if frames and frames[-1].line:
        text += f" (line {frames[-1].lineno}: {frames[-1].line.strip()[:120]})"
    return text


def _emit(fd: int, verdict: dict[str, Any]) -> None:
    with contextlib.suppress(Exception):  # the generated code may have closed stdout
        sys.stdout.flush()
    with os.fdopen(fd, "wb") as out:
        out.write(("\n" + MARK + json.dumps(verdict) + "\n").encode("utf-8"))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
