"""Server-sent events, decoded line by line as the bytes arrive (the WHATWG rules).

Lines come from `HTTPProvider._lines`, split on `\\n` only (a trailing `\\r` dropped): the
other separators `str.splitlines` and httpx's `aiter_lines()` know (U+2028, U+0085...) may
appear raw inside the JSON an event carries.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import NamedTuple

from ._reading import abandon

__all__ = ["EventTooLarge", "SSEDecoder", "ServerSentEvent", "aiter_sse"]


class ServerSentEvent(NamedTuple):
    """One dispatched event: its type (`"message"` unless an `event:` field said otherwise)
    and its data lines joined by newlines."""

    event: str
    data: str


class EventTooLarge(ValueError):
    """An event gathered more data than the decoder's `max_data` allows."""


class SSEDecoder:
    """Turns lines (without their line endings) into events.

    A blank line dispatches the event gathered so far; a line starting with `:` is a comment
    (servers send them as keep-alives); `data:` lines accumulate; `id:` and `retry:` are ignored.

    Args:
        max_data: the most characters of data one event may gather (None: no cap), so a server
            that never sends the blank line cannot grow the decoder without bound.

    Never blocks. Raises only `EventTooLarge`, from `decode`, when an event passes `max_data`.
    """

    def __init__(self, max_data: int | None = None) -> None:
        self._event = ""
        self._data: list[str] = []
        self._size = 0
        self._max_data = max_data

    def decode(self, line: str) -> ServerSentEvent | None:
        """Feed one line; returns the event it completes, if any."""
        if not line:
            return self.flush()
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._size += len(value) + 1
            if self._max_data is not None and self._size > self._max_data:
                raise EventTooLarge(f"an event passed {self._max_data} characters of data")
            self._data.append(value)
        elif field == "event":
            self._event = value
        return None

    def flush(self) -> ServerSentEvent | None:
        """Dispatch whatever has been gathered (called at a blank line and at end of stream)."""
        event, self._event = self._event or "message", ""
        if not self._data:
            return None
        data, self._data, self._size = "\n".join(self._data), [], 0
        return ServerSentEvent(event, data)


async def aiter_sse(
    lines: AsyncIterator[str], *, max_data: int | None = None
) -> AsyncGenerator[ServerSentEvent, None]:
    """Yield each event as soon as its closing blank line arrives.

    An event left open when the stream ends is dispatched too: some servers close the
    connection right after their last `data:` line. However this generator ends (an error,
    `aclose`), `lines` is abandoned (`abandon`), not left half-read.

    Raises:
        EventTooLarge: an event passed `max_data` characters.
        Whatever iterating `lines` raises.
    """
    decoder = SSEDecoder(max_data)
    try:
        async for line in lines:
            event = decoder.decode(line)
            if event is not None:
                yield event
    finally:
        await abandon(lines)
    last = decoder.flush()
    if last is not None:
        yield last
