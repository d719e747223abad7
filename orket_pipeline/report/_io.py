"""Reading and writing `orket_report.json`: strict about types, atomic on disk.

`read_report` turns every way a file can be wrong (missing, not JSON, wrong types, a telemetry
number that is not finite) into one `ReportFormatError` line that names the file and the field.
`write_report` stamps `report_generated_at` at write time and replaces the target atomically, so
a reader sees the old report or the new one, never a torn one. A writer killed mid-write (SIGKILL)
leaves its temp file behind; on POSIX each writer holds an advisory lock on its temp file, so the
next write of the same target can tell such an orphan from a live writer's file and remove it.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import secrets
import stat
import sys
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from operator import attrgetter
from pathlib import Path
from typing import Final

import msgspec

from .._exceptions import ReportFormatError
from ._model import (
    Metadata,
    Report,
    Telemetry,
    TestRun,
    current_metadata,
    decode_report,
    encode_json,
    fields_of_type,
)

__all__ = [
    "MAX_TELEMETRY_VALUE",
    "check_numbers",
    "describe_decode_error",
    "floats_may_end_objects",
    "outcomes_only_report",
    "read_report",
    "utc_timestamp",
    "write_bytes_atomic",
    "write_report",
]

MAX_TELEMETRY_VALUE: Final = 1e15
"""Telemetry numbers must be finite and below this in magnitude (seconds, MiB and ratios
never come near it); up to it a three-decimal value survives the trip through a float."""

_TELEMETRY_NUMBERS: Final = fields_of_type(Telemetry, float, float | None)
_TELEMETRY: Final = attrgetter("telemetry")
_AT_PATH: Final = re.compile(r"^(?P<message>.*) - at `(?P<path>\$[^`]*)`$", re.DOTALL)
_TEMP_SUFFIX: Final = re.compile(r"\.[0-9a-f]{12}\.tmp")

if sys.platform != "win32":
    import fcntl


def read_report(path: str | os.PathLike[str]) -> Report:
    """Read and validate a report file.

    Unknown fields are ignored at every level; runs with only `test_id` and `outcome` load.

    Args:
        path: the report file.

    Returns:
        The decoded `Report`.

    Raises:
        ReportFormatError: the file is missing or unreadable, is not JSON, has wrong types, or
            holds a telemetry number that is not finite or out of range. The message is one
            line naming the file and, where known, the JSON path of the field.

    Blocks on file I/O; call it from a worker thread in async code.
    """
    name = os.fspath(path)
    data = _read_bytes(name)
    try:
        report = decode_report(data)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ReportFormatError(f"{name}: {describe_decode_error(exc)}") from None
    problem = check_numbers(report.test_runs, prefix="$.test_runs")
    if problem is None:
        problem = _check_metadata(report.metadata, prefix="$.metadata")
    if problem is not None:
        raise ReportFormatError(f"{name}: {problem}")
    return report


def write_report(path: str | os.PathLike[str], report: Report) -> Report:
    """Write `report` atomically with `report_generated_at` set to now (UTC, milliseconds).

    Args:
        path: the target file; its directory must exist.
        report: the report to write; it is not modified.

    Returns:
        The report exactly as written (a copy carrying the new timestamp).

    Raises:
        OSError: the file could not be written; any previous file at `path` is left intact.

    Blocks on file I/O and fsync; call it from a worker thread in async code.
    """
    written = msgspec.structs.replace(report, report_generated_at=utc_timestamp())
    last = floats_may_end_objects(written.test_runs, written.metadata)
    write_bytes_atomic(path, encode_json(written, floats_last=last))
    return written


def floats_may_end_objects(runs: Iterable[TestRun], metadata: Metadata | None = None) -> bool:
    """Whether some JSON object in these runs (and `metadata`) may end with a float, so that
    padding to three decimals must look for floats before a `}` (`three_decimals`).

    Of the report's Structs only `ServerTimings` ends with a float field (a run holds one in
    `telemetry.server`), and `GenerationOptions` (`metadata.options`), which leaves unset
    options out, may end with one that is set; `tests/report/test_io.py` checks that no other
    Struct can. Most runs have neither, and the report's and the journal's padding then skip
    that second look. Never blocks or raises.
    """
    if metadata is not None and metadata.options is not None:
        written = [v for v in msgspec.structs.astuple(metadata.options) if v is not None]
        # Anything but an integer, a string or a list may be written as a float.
        if written and not isinstance(written[-1], (int, str, list)):
            return True
    for telemetry in map(_TELEMETRY, runs):  # a plain loop: a third of `any(genexpr)`'s time
        if telemetry is not None and telemetry.server is not None:
            return True
    return False


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace `path` with `data` atomically: temp file beside it, fsync, rename, fsync the dir.

    The temp file is created with mode 0o666 minus the umask, like a plain `open()` would. A
    `path` that is a device or a pipe (`/dev/stdout`) is written into, never replaced.
    On POSIX, temp files of `path` left by writers that were killed are removed afterwards.

    Raises:
        OSError: the write failed; the temp file is removed and any old file is intact.

    Blocks on file I/O and fsync.
    """
    target = Path(path)
    if _is_special(target):
        # A device or a pipe (`-o /dev/stdout`, `/dev/null`): renaming over it would replace the
        # device itself with a file (as root, for every program on the machine); write into it.
        with open(target, "wb") as special:
            special.write(data)
        return
    fd, tmp = _create_temp(target)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
            if sys.platform != "win32":
                os.replace(tmp, target)  # still locked, so no sweeper takes it for an orphan
        if sys.platform == "win32":
            os.replace(tmp, target)  # Windows cannot rename a file that is open
    except BaseException:
        # Any failure, KeyboardInterrupt included, must not leave a stray temp file behind.
        _unlink_quietly(tmp)
        raise
    _fsync_dir(target.parent)
    _remove_orphaned_temps(target)


def _is_special(target: Path) -> bool:
    try:
        mode = os.stat(target).st_mode
    except OSError:
        return False  # missing (or unreadable: the temp file's creation will say why)
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def utc_timestamp(now: datetime | None = None) -> str:
    """UTC ISO-8601 with milliseconds and a `Z`, e.g. `2026-11-24T10:15:02.118Z`. Never raises."""
    moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def outcomes_only_report(
    outcomes: Iterable[tuple[str, str]],
    *,
    metadata: Metadata | None = None,
) -> Report:
    """A report of outcomes without telemetry, as `--no-telemetry` runs write.

    Args:
        outcomes: `(test_id, outcome)` pairs in registration order.
        metadata: defaults to `current_metadata()` (no pipeline statistics).

    Never blocks, never raises.
    """
    runs = [TestRun(test_id=test_id, outcome=outcome) for test_id, outcome in outcomes]
    return Report(metadata=metadata or current_metadata(), test_runs=runs)


def describe_decode_error(exc: msgspec.DecodeError | UnicodeDecodeError | RecursionError) -> str:
    """`$.path: problem` for a validation error, `not valid JSON (...)` for a syntax error.

    msgspec raises `UnicodeDecodeError` for invalid UTF-8 inside a string, and
    `RecursionError` for arrays or objects nested deeper than its limit (about a thousand
    levels, even inside fields a reader ignores); both are reported as one line too.
    """
    if isinstance(exc, UnicodeDecodeError):
        return f"not valid JSON (invalid UTF-8 at byte {exc.start} of a string)"
    if isinstance(exc, RecursionError):
        return "not valid JSON (arrays or objects nested too deeply)"
    message = str(exc)
    if not isinstance(exc, msgspec.ValidationError):
        return f"not valid JSON ({message})"
    match = _AT_PATH.match(message)
    if match is None:
        return f"$: {message}"
    return f"{match['path']}: {match['message']}"


def check_numbers(runs: Iterable[TestRun], *, prefix: str) -> str | None:
    """The first telemetry number that is not finite or out of range, as `$.path: problem`.

    Args:
        runs: the runs to check.
        prefix: JSON path of the runs list, e.g. `$.test_runs`.

    Returns:
        A one-line description of the first bad number, or None when every number is usable.
    """
    runs = runs if isinstance(runs, list) else list(runs)
    telemetry = list(map(_TELEMETRY, runs))
    for field in _TELEMETRY_NUMBERS:
        values = [v for v in map(attrgetter(field), filter(None, telemetry)) if v is not None]
        # min and max run in C; only a report that fails them is searched for the culprit.
        if not values or (_number_problem(min(values)) or _number_problem(max(values))) is None:
            continue
        for index, run in enumerate(runs):
            value = None if run.telemetry is None else getattr(run.telemetry, field)
            problem = _number_problem(value)
            if problem is not None:
                return f"{prefix}[{index}].telemetry.{field}: {problem}"
    return None


def _check_metadata(metadata: Metadata, *, prefix: str) -> str | None:
    if metadata.pipeline is None:
        return None
    problem = _number_problem(metadata.pipeline.max_loop_lag)
    return None if problem is None else f"{prefix}.pipeline.max_loop_lag: {problem}"


def _number_problem(value: float | None) -> str | None:
    if value is None or -MAX_TELEMETRY_VALUE < value < MAX_TELEMETRY_VALUE:
        return None
    shown = repr(value) if math.isfinite(value) else str(value)
    return f"Expected a finite number below {MAX_TELEMETRY_VALUE:.0e}, got {shown}"


def _read_bytes(name: str) -> bytes:
    try:
        return Path(name).read_bytes()
    except FileNotFoundError:
        raise ReportFormatError(f"{name}: no such file") from None
    except OSError as exc:
        raise ReportFormatError(f"{name}: cannot read ({exc.strerror or exc})") from None


def _temp_names(target: Path) -> Iterator[Path]:
    for _ in range(100):
        yield target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")


def _create_temp(target: Path) -> tuple[int, Path]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for candidate in _temp_names(target):
        try:
            fd = os.open(candidate, flags, 0o666)
        except FileExistsError:
            continue
        if _lock_new_temp(fd):
            return fd, candidate
        os.close(fd)  # a sweeper took it for an orphan between open and lock: another name
    raise FileExistsError(f"{target}: no free temporary file name beside it")


def _lock_new_temp(fd: int) -> bool:
    """Lock a new temp file for as long as its writer lives; False if a sweeper got it first."""
    if sys.platform == "win32":
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return True  # no locks on this filesystem: sweepers cannot lock it either
    return os.fstat(fd).st_nlink > 0


def _remove_orphaned_temps(target: Path) -> None:
    """Remove temp files of `target` whose writer died: nobody holds their lock. Never raises."""
    if sys.platform == "win32":
        return
    prefix = f".{target.name}"
    try:
        names = [
            name
            for name in os.listdir(target.parent)
            if name.startswith(prefix) and _TEMP_SUFFIX.fullmatch(name, len(prefix))
        ]
    except OSError:
        return
    for name in names:
        try:
            fd = os.open(target.parent / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(target.parent / name)
        except OSError:
            pass  # locked by a live writer, or already gone
        finally:
            os.close(fd)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable. Not possible on Windows (directories cannot be opened)
    # and refused by some filesystems; the data file is already fsynced either way.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
