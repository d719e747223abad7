"""`run --memory-pid PID|auto`: whose peak memory the run measures, said on its first line.

By default the run measures this process (the engine and the provider's client): a model in a
local server is measured only when asked, because a wrong guess would report another process's
memory as the model's. `--memory-pid PID` names the process; `--memory-pid auto` finds the
process listening on the provider's host:port, which must be this machine's loopback (a remote
server's memory cannot be read from here). Every refusal is one line, exit 2, before any run.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import psutil

from .._exceptions import InputError
from .._text import printable
from ._args import positive_int

__all__ = ["MemoryTarget", "find_listener", "memory_pid_arg", "memory_target"]

AUTO = "auto"
_UNSPECIFIED = ("0.0.0.0", "::")  # a server bound to every address listens on loopback too


class MemoryTarget(NamedTuple):
    """The measured pid (None: this process), how it was chosen, and the line saying so."""

    pid: int | None
    source: str
    line: str


def memory_pid_arg(text: str) -> int | str:
    """`auto`, or the id of a running process. Raises `ArgumentTypeError` otherwise."""
    if text == AUTO:
        return AUTO
    pid = positive_int(text)
    try:
        exists = psutil.pid_exists(pid)
    except OverflowError:  # past a C long (os.kill): no process has such an id
        exists = False
    if not exists:
        raise argparse.ArgumentTypeError(f"no process with id {text} (or give `auto`)")
    return pid


def memory_target(choice: int | str | None, provider: Any, spec: str) -> MemoryTarget:
    """Resolve `--memory-pid` for `provider` (built from `spec`). Blocks on a scan of the
    machine's sockets for `auto`.

    Raises:
        InputError: `auto` with a provider that has no URL, a URL that is not loopback,
            nothing listening there, or sockets this user may not read.
    """
    if choice is None:
        return MemoryTarget(None, "self", f"memory: this process (pid {os.getpid()})")
    if isinstance(choice, int):
        return MemoryTarget(choice, "option", f"memory: pid {choice} (--memory-pid)")
    url = getattr(provider, "url", None)
    if not isinstance(url, str):
        raise InputError(
            f"run: --memory-pid auto needs an HTTP provider (openai: or ollama:); "
            f"{printable(spec)} has no URL: give --memory-pid PID"
        )
    host, port = _host_port(url)
    pid = find_listener(host, port)
    where = f"{host}:{port}"
    line = f"memory: pid {pid} (listening on {where})"
    return MemoryTarget(pid, f"auto: listening on {where}", line)


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise InputError(f"run: --memory-pid auto: bad port in {printable(url)}") from None
    if not _loopback(host):
        raise InputError(
            f"run: --memory-pid auto: {printable(host)} is not this machine's loopback, so its "
            "memory cannot be measured from here; give --memory-pid PID or leave it out"
        )
    return host, port


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def find_listener(host: str, port: int) -> int:
    """The pid of the process listening on loopback `host`:`port`. Blocks on the scan.

    Raises:
        InputError: nothing listens there, the listener's pid cannot be read, or this user
            may not list the machine's sockets.
    """
    try:
        connections = psutil.net_connections(kind="inet")
    except psutil.AccessDenied:
        raise InputError(
            "run: --memory-pid auto: not permitted to list this machine's sockets; "
            "give --memory-pid PID"
        ) from None
    listening = [
        conn
        for conn in connections
        if conn.status == psutil.CONN_LISTEN
        and conn.laddr
        and conn.laddr.port == port
        and (_loopback(conn.laddr.ip) or conn.laddr.ip in _UNSPECIFIED)
    ]
    if not listening:
        raise InputError(
            f"run: --memory-pid auto: nothing listens on {host}:{port} (is the server running?)"
        )
    pids = sorted({conn.pid for conn in listening if conn.pid is not None})
    if not pids:
        raise InputError(
            f"run: --memory-pid auto: a process listens on {host}:{port} but its pid cannot be "
            "read (another user's?); give --memory-pid PID"
        )
    return _parent_most(pids)


def _parent_most(pids: list[int]) -> int:
    # Workers forked by a server share its socket: measure the one that started the others.
    for pid in pids:
        try:
            parent = psutil.Process(pid).ppid()
        except psutil.Error:
            continue
        if parent not in pids:
            return pid
    return pids[0]
