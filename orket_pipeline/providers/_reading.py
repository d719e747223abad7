"""Reading a reply's body: bounded, decompressed in steps, split into lines on `\\n` only.

Every byte of a reply goes through `read_body`, which undoes the Content-Encoding itself (gzip
and deflate, never more than 64 KiB of output per step) and counts what it reads against
`ResponseLimits`, so a hostile or broken server can make the process hold at most a line's
worth of text (streams) or one capped body (whole replies). `read_lines` splits on `\\n` only,
with a trailing `\\r` dropped, never on the other separators `str.splitlines` knows (U+2028,
U+0085...), which JSON allows raw inside strings. `abandon` drops a reply without waiting.
"""

from __future__ import annotations

import contextlib
import re
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Final, NoReturn

import anyio
import httpx
import msgspec

from .._exceptions import ProviderResponseError

__all__ = ["DRAIN_S", "ResponseLimits", "abandon", "finish", "over_cap", "read_body", "read_lines"]

#: How long a reply complete in its own terms (`[DONE]`, Ollama's done line) may take to end on
#: the wire: servers end it right after, and a reply read to its end lets its connection go
#: back to the pool (not one new connection per generation). A server that holds the reply
#: open costs a generation at most this much.
DRAIN_S: Final = 0.005
_STEP: Final = 65536  # the most decompressed bytes produced at once
_MIB: Final = 1 << 20
_DECODERS: Final = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": 0}
_WHAT: Final = {"line_bytes": "a line", "response_bytes": "the reply"}
# Three or more line ends in a row mean no more than two do, for SSE (a blank line dispatches,
# a second dispatches nothing) and NDJSON (blank lines are skipped): a flood of them (a bomb of
# newlines) is collapsed in C instead of being split into millions of empty lines.
_BLANK_RUN: Final = re.compile(rb"(?:\r?\n){3,}")


class ResponseLimits(msgspec.Struct, frozen=True, kw_only=True):
    """Caps on one reply; a reply that passes one fails its generation naming the cap.

    Attributes:
        line_bytes: the longest line of an SSE or NDJSON stream, and the most data one
            server-sent event may gather (default 1 MiB; one chunk of text is far smaller).
        response_bytes: the most bytes read from the wire for one reply (default 128 MiB;
            a 100,000-token stream with one event per token is about 30 MiB).
        decompressed_bytes: the most bytes a compressed reply may expand to (default 128 MiB),
            so a gzip bomb stops there.
    """

    line_bytes: int = _MIB
    response_bytes: int = 128 * _MIB
    decompressed_bytes: int = 128 * _MIB

    def __post_init__(self) -> None:
        for name in ("line_bytes", "response_bytes", "decompressed_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"ResponseLimits.{name} must be at least 1 byte")


async def abandon(rest: AsyncIterator[object]) -> None:
    """Stop reading a reply now, without waiting for the server to end it.

    The next read is cancelled at once, so the cancellation runs up through every async
    generator between here and the socket (httpx's and ours): each one finishes, none is
    left for the garbage collector (trio warns about those, encode/httpx#3686), and no time
    is spent waiting, so a generation completes at its last message, not at the
    connection's close. The connection is closed rather than reused. Never raises.
    """
    with anyio.CancelScope() as scope, contextlib.suppress(Exception):
        scope.cancel()
        async for _ in rest:  # the reply is being dropped: its errors do not matter
            pass


async def finish(rest: AsyncIterator[object], budget_s: float = DRAIN_S) -> None:
    """Read what is left of a reply for at most `budget_s`, so that a reply which ends right
    after its last message leaves its connection reusable; abandon it when it does not end in
    time. What is read is dropped, errors included. Never raises."""
    with anyio.move_on_after(budget_s), contextlib.suppress(Exception):
        async for _ in rest:  # the generation is complete: the rest does not matter
            pass
    await abandon(rest)


def over_cap(name: str, limits: ResponseLimits, cap: str, status: int) -> NoReturn:
    """Raise the error of a reply that passed `limits`' field `cap`, naming the cap."""
    value: int = getattr(limits, cap)
    shown = f"{value // _MIB} MiB" if value % _MIB == 0 else f"{value} bytes"
    raise ProviderResponseError(
        f"{name}: {_WHAT.get(cap, 'the body')} passed the {shown} cap (ResponseLimits.{cap})",
        status_code=status,
    )


async def read_body(
    response: httpx.Response, limits: ResponseLimits | None, name: str
) -> AsyncGenerator[bytes, None]:
    """The body's bytes with its Content-Encoding undone, in pieces of at most 64 KiB.

    Args:
        response: a streaming response.
        limits: the caps (None: none, for a short look at an error body).
        name: the provider, for messages.

    Raises:
        ProviderResponseError: an unsupported or corrupt encoding, or a body over
            `limits.response_bytes` or `limits.decompressed_bytes`.
    """
    status = response.status_code
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "", *_DECODERS):
        raise ProviderResponseError(
            f"{name}: unsupported Content-Encoding {encoding!r}", status_code=status
        )
    inflate = _Inflater(_DECODERS[encoding]) if encoding in _DECODERS else None
    received = produced = 0
    raws = response.aiter_raw()
    try:
        async for raw in raws:
            received += len(raw)
            if limits is not None and received > limits.response_bytes:
                over_cap(name, limits, "response_bytes", status)
            try:
                for part in [raw] if inflate is None else inflate.feed(raw):
                    produced += len(part)
                    if limits is not None and produced > limits.decompressed_bytes:
                        over_cap(name, limits, "decompressed_bytes", status)
                    yield part
            except zlib.error as exc:
                raise ProviderResponseError(
                    f"{name}: undecodable {encoding} body ({exc})", status_code=status
                ) from None
    finally:
        await abandon(raws)


async def read_lines(
    response: httpx.Response, limits: ResponseLimits, name: str
) -> AsyncGenerator[str, None]:
    """The body's lines, split on `\\n` only, without line endings, as they arrive.

    Raises:
        ProviderResponseError: a line over `limits.line_bytes`, as `read_body` does otherwise.
    """
    cap, status = limits.line_bytes, response.status_code
    pending = bytearray()
    parts = read_body(response, limits, name)
    try:
        async for part in parts:
            pending += part
            if b"\n" in part:
                *lines, rest = _BLANK_RUN.sub(b"\n\n", pending).split(b"\n")
                pending = bytearray(rest)
                for line in lines:
                    if len(line) > cap:
                        over_cap(name, limits, "line_bytes", status)
                    yield _text(line)
            if len(pending) > cap:
                over_cap(name, limits, "line_bytes", status)
    finally:
        await abandon(parts)
    if pending:
        yield _text(pending)


class _Inflater:
    """Undoes gzip or deflate in steps of at most `_STEP` output bytes (a bomb's 1000:1
    expansion cannot arrive all at once). Concatenated gzip members are all read."""

    def __init__(self, wbits: int) -> None:
        self._wbits = wbits
        self._raw_deflate = False
        self._inflate = zlib.decompressobj(wbits or zlib.MAX_WBITS)

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Decompress `data`, a piece at a time. Raises `zlib.error` on corrupt data."""
        started = False
        while True:
            try:
                out = self._inflate.decompress(data, _STEP)
            except zlib.error:
                if self._wbits or self._raw_deflate or started:
                    raise
                # "deflate" is sent with the zlib wrapper or, by some servers, without it.
                self._raw_deflate = True
                self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
                continue
            if out:
                started = True
                yield out
            data = self._inflate.unconsumed_tail
            if self._inflate.eof and self._inflate.unused_data:
                data = self._inflate.unused_data
                self._inflate = zlib.decompressobj(self._wbits or zlib.MAX_WBITS)
            elif not data and len(out) < _STEP:
                return


def _text(line: bytes | bytearray) -> str:
    if line.endswith(b"\r"):
        line = line[:-1]
    return line.decode("utf-8", "replace")
