"""Server-sent events, decoded line by line as the bytes arrive (the WHATWG rules)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable
from typing import NamedTuple

__all__ = ["SSEDecoder", "ServerSentEvent", "aiter_sse"]


class ServerSentEvent(NamedTuple):
    """One dispatched event: its type (`"message"` unless an `event:` field said otherwise)
    and its data lines joined by newlines."""

    event: str
    data: str


class SSEDecoder:
    """Turns lines (without their line endings) into events.

    A blank line dispatches the event gathered so far; a line starting with `:` is a comment
    (servers send them as keep-alives); `data:` lines accumulate; `id:` and `retry:` are ignored.
    Never blocks; never raises.
    """

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []

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
            self._data.append(value)
        elif field == "event":
            self._event = value
        return None

    def flush(self) -> ServerSentEvent | None:
        """Dispatch whatever has been gathered (called at a blank line and at end of stream)."""
        event, self._event = self._event or "message", ""
        if not self._data:
            return None
        data, self._data = "\n".join(self._data), []
        return ServerSentEvent(event, data)


async def aiter_sse(lines: AsyncIterable[str]) -> AsyncGenerator[ServerSentEvent, None]:
    """Yield each event as soon as its closing blank line arrives.

    An event left open when the stream ends is dispatched too: some servers close the
    connection right after their last `data:` line.

    Raises:
        Whatever iterating `lines` raises.
    """
    decoder = SSEDecoder()
    async for line in lines:
        event = decoder.decode(line)
        if event is not None:
            yield event
    last = decoder.flush()
    if last is not None:
        yield last
