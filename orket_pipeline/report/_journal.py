"""The crash-safe JSONL journal: every finished run is on disk before the report is.

```
{"journal":"orket-pipeline","version":1,"metadata":{...}}     header, written by `open()`
{"order":0,"run":{"test_id":"t001","outcome":"pass",...}}     one line per finished run
```

`order` is the run's registration (suite) index, so the report can restore suite order however
runs finished. Each batch of lines is written with one unbuffered `write`, so a crashed
process loses no finished run; a crash in the middle of a write can only tear the last line,
which `read_journal` skips and reports. A bad line anywhere else is an error.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Sequence
from io import FileIO
from pathlib import Path
from typing import Final

import msgspec

from .._exceptions import ReportFormatError
from ._io import check_numbers, describe_decode_error, floats_may_end_objects
from ._model import Metadata, Report, TestRun, encode_json, encode_json_lines

__all__ = [
    "JOURNAL_NAME",
    "JOURNAL_VERSION",
    "JournalContents",
    "JournalWriter",
    "read_journal",
    "read_resumable",
    "rebuild_report",
    "resume_backup",
]

JOURNAL_NAME: Final = "orket-pipeline"
JOURNAL_VERSION: Final = 1
_HEADER_START: Final = f'{{"journal":"{JOURNAL_NAME}"'.encode()


class _Header(msgspec.Struct, kw_only=True):
    journal: str
    version: int
    metadata: Metadata | None = None


class _Entry(msgspec.Struct, kw_only=True):
    order: int
    run: TestRun


_HEADER_DECODER: Final = msgspec.json.Decoder(_Header)
_ENTRY_DECODER: Final = msgspec.json.Decoder(_Entry)


class JournalContents(msgspec.Struct, kw_only=True):
    """What a journal holds.

    `runs` are `(order, run)` pairs sorted by order; `metadata` is None when the header is
    missing (an empty file) or torn; `torn_line` is the 1-based number of a skipped torn last
    line, if any; `duplicate_orders` lists orders seen more than once (the last line wins).
    """

    metadata: Metadata | None
    runs: list[tuple[int, TestRun]]
    torn_line: int | None = None
    duplicate_orders: list[int] = msgspec.field(default_factory=list)

    @property
    def torn_last_line(self) -> bool:
        """Whether a torn last line was skipped."""
        return self.torn_line is not None


class JournalWriter:
    """Appends finished runs to a journal file.

    Cheap enough for the event loop: one unbuffered `write` per batch, no fsync (a crashed
    process loses nothing the OS has accepted). A write that fails (a full disk) leaves no
    trace: the file is cut back to its last complete line and the batch is written again,
    first, with the next one, so the journal catches up once there is room and never holds a
    torn line before a good one. Not thread-safe; one writer per file.
    """

    def __init__(self, path: str | os.PathLike[str], metadata: Metadata) -> None:
        """Remember where to write; touches no file until `open()`. Never raises."""
        self.path = Path(path)
        self._metadata = metadata
        self._file: FileIO | None = None
        self._size = 0  # bytes of complete lines in the file
        self._pending = b""  # lines whose write failed, written again before the next batch

    def open(self) -> None:
        """Create or truncate the file and write the header.

        Raises:
            OSError: the file could not be created or written; it names the file.

        Blocks briefly on one small write.
        """
        header = _Header(journal=JOURNAL_NAME, version=JOURNAL_VERSION, metadata=self._metadata)
        data = encode_json(header) + b"\n"
        file = FileIO(self.path, "wb")
        try:
            _write_all(file, data)
        except OSError as exc:
            with contextlib.suppress(OSError):
                file.close()
            raise _naming(exc, self.path) from None
        self._file, self._size, self._pending = file, len(data), b""

    def append_many(self, entries: Sequence[tuple[int, TestRun]]) -> None:
        """Append `(order, run)` entries, after any whose write failed, with one write.

        Raises:
            OSError: the write failed (the caller counts it); it names the file. The entries
                are kept and written with the next batch. `ValueError` when not open.

        Blocks briefly on one write of the batch.
        """
        if self._file is None:
            raise ValueError(f"journal {self.path} is not open")
        lines = [_Entry(order=order, run=run) for order, run in entries]
        last = floats_may_end_objects([line.run for line in lines])
        data = self._pending + encode_json_lines(lines, floats_last=last)
        if data:
            self._write(self._file, data)

    def close(self) -> None:
        """Try once more to write entries whose write failed, then close the file.

        Idempotent, and never raises: every failed write was already raised by
        `append_many`.
        """
        file, self._file = self._file, None
        if file is None:
            return
        with contextlib.suppress(OSError):
            if self._pending:
                self._write(file, self._pending)
        with contextlib.suppress(OSError):
            file.close()

    def remove(self) -> None:
        """Close and delete the file; a missing file is fine. Never raises."""
        self.close()
        with contextlib.suppress(OSError):
            self.path.unlink()

    def _write(self, file: FileIO, data: bytes) -> None:
        try:
            _write_all(file, data)
        except OSError as exc:
            self._pending = data
            with contextlib.suppress(OSError):  # drop a partly written batch
                file.truncate(self._size)
                file.seek(self._size)
            raise _naming(exc, self.path) from None
        self._pending = b""
        self._size += len(data)


def _write_all(file: FileIO, data: bytes) -> None:
    # An unbuffered write may be partial (a disk filling up): write the rest, or raise.
    view = memoryview(data)
    while view:
        written = file.write(view)
        if not written:
            raise OSError(errno.EIO, "the write made no progress")
        view = view[written:]


def _naming(exc: OSError, path: Path) -> OSError:
    if exc.filename is None:
        exc.filename = os.fspath(path)
    return exc


def read_journal(path: str | os.PathLike[str]) -> JournalContents:
    """Read a journal, skipping a torn last line.

    Args:
        path: the journal file.

    Returns:
        Its metadata, its runs sorted by order, and whether a torn last line was skipped.

    Raises:
        ReportFormatError: the file is missing or unreadable, is not an orket-pipeline journal,
            or has a bad line before the last one; the message names the file and line number.

    Blocks on file I/O.
    """
    name = os.fspath(path)
    lines = _read_lines(name)
    if not lines:
        return JournalContents(metadata=None, runs=[])
    last = len(lines)
    header = _decode_header(name, lines[0], is_last=last == 1)
    if header is None:
        return JournalContents(metadata=None, runs=[], torn_line=1)
    by_order: dict[int, TestRun] = {}
    duplicates: list[int] = []
    torn_line = None
    for number, line in enumerate(lines[1:], start=2):
        entry = _decode_entry(name, line, number, is_last=number == last)
        if entry is None:
            torn_line = number
            continue
        if entry.order in by_order:
            duplicates.append(entry.order)
        by_order[entry.order] = entry.run
    runs = sorted(by_order.items())
    return JournalContents(
        metadata=header.metadata, runs=runs, torn_line=torn_line, duplicate_orders=duplicates
    )


def resume_backup(path: str | os.PathLike[str]) -> Path:
    """Where `run --resume` keeps the runs it carries over while its new journal is opened.

    The new journal replaces the old one at the same path; until it holds the carried runs
    again, they are in this file, so a crash in between loses none. Never blocks or raises.
    """
    path = Path(path)
    return path.with_name(path.name + ".resumed")


def read_resumable(path: str | os.PathLike[str]) -> JournalContents | None:
    """The finished runs a resumed run keeps: the journal's, and its `resume_backup`'s if one
    was left by a resume that crashed before its journal held them again.

    Returns:
        Metadata (the journal's, else the backup's) and runs by order (the journal's line wins
        over the backup's); None when neither file exists or holds a header.

    Raises:
        ReportFormatError: as `read_journal`, for either file.

    Blocks on file I/O.
    """
    parts = [read_journal(name) for name in (resume_backup(path), Path(path)) if name.exists()]
    parts = [part for part in parts if part.metadata is not None or part.runs]
    if not parts:
        return None
    by_order: dict[int, TestRun] = {}
    for part in parts:
        by_order.update(part.runs)
    metadata = next((p.metadata for p in reversed(parts) if p.metadata is not None), None)
    return JournalContents(
        metadata=metadata, runs=sorted(by_order.items()), torn_line=parts[-1].torn_line
    )


def rebuild_report(path: str | os.PathLike[str]) -> tuple[Report, list[str]]:
    """Rebuild a report from a journal: the finished runs in suite order.

    Returns:
        The report (without `report_generated_at`; `write_report` sets it) and warnings, one
        line each, naming the file: a skipped torn last line, a missing header, duplicates.

    Raises:
        ReportFormatError: as `read_journal`.

    Blocks on file I/O.
    """
    name = os.fspath(path)
    contents = read_journal(name)
    warnings = []
    if contents.torn_line is not None:
        warnings.append(f"{name}: line {contents.torn_line}: skipped a torn last line")
    if contents.metadata is None:
        warnings.append(f"{name}: no journal header; metadata unknown")
    for order in contents.duplicate_orders:
        warnings.append(f"{name}: order {order} appears more than once; kept the last")
    report = Report(
        metadata=contents.metadata or Metadata(),
        test_runs=[run for _, run in contents.runs],
    )
    return report, warnings


def _read_lines(name: str) -> list[bytes]:
    try:
        data = Path(name).read_bytes()
    except FileNotFoundError:
        raise ReportFormatError(f"{name}: no such file") from None
    except OSError as exc:
        raise ReportFormatError(f"{name}: cannot read ({exc.strerror or exc})") from None
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the newline that ends the last complete line
    return lines


def _decode_header(name: str, line: bytes, *, is_last: bool) -> _Header | None:
    try:
        header = _HEADER_DECODER.decode(line)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        if is_last and _is_torn_header(line):
            return None
        raise ReportFormatError(
            f"{name}: line 1: not an {JOURNAL_NAME} journal header ({describe_decode_error(exc)})"
        ) from None
    if header.journal != JOURNAL_NAME:
        raise ReportFormatError(f"{name}: line 1: not an {JOURNAL_NAME} journal header")
    if header.version != JOURNAL_VERSION:
        raise ReportFormatError(
            f"{name}: line 1: journal version {header.version} is not supported "
            f"(this reader knows version {JOURNAL_VERSION})"
        )
    return header


def _is_torn_header(line: bytes) -> bool:
    # A crash while writing the header leaves a prefix of it; anything else is not a journal.
    return len(line) > 0 and (line.startswith(_HEADER_START) or _HEADER_START.startswith(line))


def _decode_entry(name: str, line: bytes, number: int, *, is_last: bool) -> _Entry | None:
    try:
        entry = _ENTRY_DECODER.decode(line)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        if is_last:
            return None
        raise ReportFormatError(f"{name}: line {number}: {describe_decode_error(exc)}") from None
    problem = check_numbers([entry.run], prefix="$.run")
    if problem is not None:
        problem = problem.replace("$.run[0]", "$.run", 1)
        raise ReportFormatError(f"{name}: line {number}: {problem}")
    return entry
