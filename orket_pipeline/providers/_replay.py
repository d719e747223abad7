"""Replay provider: answers recorded in a JSONL cassette, with their timing, fully offline.

Cassette format (JSON Lines, UTF-8, one JSON object per line; blank lines are ignored):

- An optional first line, the header: `{"cassette": 1, "streaming": true}`. `cassette` is the
  format version (only 1 exists); `streaming` (default true) sets the provider's
  `supports_streaming`, so a cassette can stand for a non-streaming model.
- Every other line is one record::

      {"prompt": str,
       "chunks": [{"delay_s": float, "text": str}, ...],
       "error": {"type": str, "message": str, "after_chunks": int}}   # optional

  `prompt` is matched exactly (no two records may share one). `delay_s` (>= 0) is the wait
  before that chunk, measured from the previous chunk (the first: from the request). `text` may
  be empty: it is yielded as is, like a role-only delta. `error`, when present, is raised as
  `ReplayError(message)` (its `error_type` is `type`) after the first `after_chunks` chunks
  (0 <= after_chunks <= len(chunks), default 0); the chunks after them are never sent.

Unknown fields are ignored. `stream()` sleeps each delay (`anyio.sleep_until` against the
recorded schedule, so delays do not drift) and yields each chunk; `generate()` sleeps the total
and returns the chunks joined. A prompt with no record raises `ReplayError`.

Example::

    {"cassette": 1, "streaming": true}
    {"prompt": "Write add(a, b).", "chunks": [{"delay_s": 0.05, "text": "def add(a, b):"},
     {"delay_s": 0.02, "text": "\\n    return a + b\\n"}]}
    {"prompt": "Write sub(a, b).", "chunks": [{"delay_s": 0.04, "text": "def "}],
     "error": {"type": "ConnectionResetError", "message": "peer reset", "after_chunks": 1}}

(each record on one line in a real cassette).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from os import PathLike
from pathlib import Path
from typing import Annotated, Any

import anyio
import msgspec

from .._exceptions import ProviderError, ReplayError
from ._http import excerpt

__all__ = ["ReplayChunk", "ReplayFault", "ReplayProvider", "ReplayRecord"]

_NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]
_NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]


class ReplayChunk(msgspec.Struct, frozen=True):
    """One recorded chunk: wait `delay_s` seconds, then yield `text`."""

    delay_s: _NonNegativeFloat
    text: str


class ReplayFault(msgspec.Struct, frozen=True):
    """A recorded failure: raise `ReplayError(message)` after `after_chunks` chunks."""

    type: str
    message: str
    after_chunks: _NonNegativeInt = 0


class ReplayRecord(msgspec.Struct, frozen=True):
    """The recorded answer to one prompt."""

    prompt: str
    chunks: list[ReplayChunk] = []
    error: ReplayFault | None = None

    def sent_chunks(self) -> list[ReplayChunk]:
        """The chunks actually delivered: all of them, or those before the error."""
        return self.chunks if self.error is None else self.chunks[: self.error.after_chunks]


class _Header(msgspec.Struct, frozen=True):
    cassette: int
    streaming: bool = True


_RECORD_DECODER = msgspec.json.Decoder(ReplayRecord)


class ReplayProvider:
    """Replays recorded answers with their recorded timing.

    Args:
        records: one record per distinct prompt.
        streaming: the provider's `supports_streaming`.
        name: shown in report metadata.

    Raises:
        ValueError: two records share a prompt, or an `after_chunks` exceeds the chunk count.
    """

    def __init__(
        self, records: Iterable[ReplayRecord], *, streaming: bool = True, name: str = "replay"
    ) -> None:
        self.supports_streaming = streaming
        self.name = name
        self._records: dict[str, ReplayRecord] = {}
        for record in records:
            _check_record(record)
            if record.prompt in self._records:
                raise ValueError(f"two records for the prompt {excerpt(record.prompt, 60)!r}")
            self._records[record.prompt] = record

    def __repr__(self) -> str:
        return f"<ReplayProvider {self.name} ({len(self._records)} records)>"

    @classmethod
    def from_file(cls, path: str | PathLike[str]) -> ReplayProvider:
        """Load a cassette. Blocks while it reads the file (do it before the run starts).

        Raises:
            ProviderError: the file cannot be read, or a line (named by number) is not JSON or
                does not fit the format.
        """
        path = Path(path)
        try:
            lines = path.read_bytes().splitlines()
        except OSError as exc:
            raise ProviderError(f"cannot read cassette {path}: {exc.strerror or exc}") from exc
        streaming, records, header_line = True, [], _first(lines)
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                item = _decode_line(line, first=lineno == header_line)
            except (msgspec.DecodeError, ValueError) as exc:
                raise ProviderError(f"cassette {path} line {lineno}: {exc}") from exc
            except RecursionError:  # msgspec's limit on nesting, even in ignored fields
                raise ProviderError(
                    f"cassette {path} line {lineno}: JSON nested too deeply"
                ) from None
            if isinstance(item, _Header):
                streaming = item.streaming
            else:
                records.append((lineno, item))
        return cls._from_lines(path, records, streaming)

    @classmethod
    def _from_lines(
        cls, path: Path, records: list[tuple[int, ReplayRecord]], streaming: bool
    ) -> ReplayProvider:
        seen: dict[str, int] = {}
        for lineno, record in records:
            if record.prompt in seen:
                raise ProviderError(
                    f"cassette {path} line {lineno}: same prompt as line {seen[record.prompt]}"
                )
            seen[record.prompt] = lineno
        return cls((record for _, record in records), streaming=streaming, name=f"replay:{path}")

    async def generate(self, prompt: str) -> str:
        """Sleep the recorded total delay, then return the recorded chunks joined.

        Raises:
            ReplayError: the record's error (after its chunks' delays), or no record for `prompt`.
        """
        record = self._record(prompt)
        chunks = record.sent_chunks()
        await anyio.sleep(sum(chunk.delay_s for chunk in chunks))
        _raise_fault(record)
        return "".join(chunk.text for chunk in chunks)

    async def stream(self, prompt: str) -> AsyncIterator[str]:
        """Yield each recorded chunk after its recorded delay.

        Raises:
            ReplayError: the record's error (after its `after_chunks` chunks), or no record for
                `prompt` (before anything is yielded).
        """
        record = self._record(prompt)
        due = anyio.current_time()
        for chunk in record.sent_chunks():
            due += chunk.delay_s
            await anyio.sleep_until(due)
            yield chunk.text
        _raise_fault(record)

    def _record(self, prompt: str) -> ReplayRecord:
        try:
            return self._records[prompt]
        except KeyError:
            raise ReplayError(
                f"{self.name}: no record for the prompt {excerpt(prompt, 60)!r}",
                error_type="missing_record",
            ) from None


def _first(lines: list[bytes]) -> int:
    """The number of the first non-blank line (the only place a header may be)."""
    return next((n for n, line in enumerate(lines, start=1) if line.strip()), 0)


def _decode_line(line: bytes, *, first: bool) -> _Header | ReplayRecord:
    if not first:
        record = _RECORD_DECODER.decode(line)
        _check_record(record)
        return record
    obj: Any = msgspec.json.decode(line)
    if isinstance(obj, dict) and "cassette" in obj:
        header = msgspec.convert(obj, _Header)
        if header.cassette != 1:
            raise ValueError(f"unsupported cassette version {header.cassette} (known: 1)")
        return header
    record = msgspec.convert(obj, ReplayRecord)
    _check_record(record)
    return record


def _check_record(record: ReplayRecord) -> None:
    if record.error is not None and record.error.after_chunks > len(record.chunks):
        raise ValueError(
            f"error.after_chunks is {record.error.after_chunks} but there are only "
            f"{len(record.chunks)} chunks"
        )


def _raise_fault(record: ReplayRecord) -> None:
    if record.error is not None:
        raise ReplayError(record.error.message, error_type=record.error.type)
