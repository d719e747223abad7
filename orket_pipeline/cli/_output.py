"""What `run` checks about its report and journal before the first run starts.

A run that cannot keep its results must not start: every check here is made before the suite
runs, and each refusal is one `InputError` line (exit 2).

- `--out` and `--journal` must not be the suite, the cassette or each other, and `--out` must
  be a regular file or not exist (the report is written by renaming a temp file over it, which
  as root would replace `/dev/null` with a file).
- A journal that already holds runs is never truncated: the default journal exists only when a
  run did not finish, and a `--journal PATH` that holds runs is the only record of an earlier
  run until it is moved away. `--resume` is the way through: it keeps those runs (the engine
  carries them into the new journal before anything else is written to it).
- The report's directory must take a new file (an unwritable `--out` would otherwise lose every
  result at the end of a `--no-telemetry` run).
- `OutputLock`: one run at a time per report (and per journal). A second run on the same `--out`
  refuses at start, naming the pid of the run that holds it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from pathlib import Path
from types import TracebackType

from .._exceptions import InputError

__all__ = ["OutputLock", "check_outputs", "default_journal", "same_file"]


def default_journal(out: Path) -> Path:
    """Where `run` journals when no `--journal` is given: beside the report."""
    return out.with_name(out.name + ".journal.jsonl")


def check_outputs(
    out: Path, journal: Path | None, inputs: dict[str, Path], *, resume: bool = False
) -> None:
    """Refuse outputs that would overwrite an input, a device or an unfinished run's journal.

    `journal` is the journal that will be written (None without telemetry); `inputs` names the
    files the run reads (`{"the suite": path}`); with `resume` a journal holding runs is
    expected (they are kept). Blocks on a few `stat` calls and one small file created and
    removed in the report's directory.

    Raises:
        InputError: one line naming the option and the file.
    """
    outputs = {"--out": out} | ({"--journal": journal} if journal is not None else {})
    for option, path in outputs.items():
        for what, source in inputs.items():
            if same_file(path, source):
                raise InputError(f"run: {option} {path} is {what}; it would be overwritten")
    if journal is not None and same_file(out, journal):
        raise InputError(f"run: --out and --journal are the same file {out}")
    if out.exists() and not out.is_file():
        raise InputError(f"run: --out {out} is not a regular file (a device, a pipe?)")
    if journal is not None and not resume:
        _refuse_a_journal_that_holds_runs(journal, out)
    _check_writable(out.parent, "--out", out)
    if journal is not None and journal.parent != out.parent:
        _check_writable(journal.parent, "--journal", journal)


class OutputLock:
    """An advisory lock on `PATH.lock` held for the whole run (POSIX `flock`; released by the
    kernel if the process dies, so a crash leaves no stale lock, only an empty file that the
    next run reuses). The lock file is removed on release.

    Raises `InputError` on entry when another live run holds it, naming its pid. Never blocks.
    """

    def __init__(self, path: Path, option: str) -> None:
        self._target = path
        self._path = path.with_name(path.name + ".lock")
        self._option = option
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        if sys.platform == "win32":  # pragma: no cover - no flock; runs are not serialised
            return self
        import fcntl

        while True:
            try:
                fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise InputError(
                    f"run: cannot write {self._option} {self._target}: {exc.strerror or exc}"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_pid(fd)
                os.close(fd)
                raise InputError(
                    f"run: {self._option} {self._target} is in use by another "
                    f"run (pid {holder}); wait for it or choose another {self._option}"
                ) from None
            if _still_linked(fd, self._path):
                break
            os.close(fd)  # released and removed by its holder meanwhile: lock the new file
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def release(self) -> None:
        """Remove the lock file and unlock. Idempotent; never raises."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            self._path.unlink()  # while still locked: no other run can hold this file
        with contextlib.suppress(OSError):
            os.close(fd)


def _refuse_a_journal_that_holds_runs(journal: Path, out: Path) -> None:
    try:
        size = journal.stat().st_size
    except OSError:
        return  # absent (or unreadable: opening it will say so)
    if journal == default_journal(out):
        # The default journal is removed once the report is written: this one belongs to a
        # run that did not finish, and starting over would truncate the only record of it.
        raise InputError(
            f"run: {journal} is left from a run that did not finish; continue it with --resume, "
            f"or recover its runs with `orket-pipeline rebuild {journal} -o REPORT`, then "
            "delete it (or pass --journal PATH)"
        )
    if size > 0 and journal.is_file():
        raise InputError(
            f"run: --journal {journal} already holds an earlier run's journal; continue it with "
            f"--resume, or recover its runs with `orket-pipeline rebuild {journal} -o REPORT`, "
            "then move it away or delete it"
        )


def _check_writable(directory: Path, option: str, path: Path) -> None:
    # Create and remove a file, as the report's atomic write will: `os.access` is not enough
    # (root on a read-only file system, ACLs).
    probe = directory / f".{path.name}.{os.getpid()}.probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise InputError(f"run: cannot write {option} {path}: {exc.strerror or exc}") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        probe.unlink()


def same_file(a: Path, b: Path) -> bool:
    """Whether `a` and `b` name one file (or, where either is missing, one path)."""
    try:
        return a.samefile(b)
    except OSError:
        return a.resolve() == b.resolve()


def _still_linked(fd: int, path: Path) -> bool:
    try:
        now = path.stat()
    except OSError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino) and stat.S_ISREG(now.st_mode)


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return text if text.isdigit() else "unknown"
