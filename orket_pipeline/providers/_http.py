"""What the HTTP providers share: one lazy httpx client, bounded bodies and lines, error mapping.

Every byte of a reply goes through `HTTPProvider._body`, which undoes the Content-Encoding
itself (gzip and deflate, in bounded steps, never more than 64 KiB of output per step) and
counts what it reads against `ResponseLimits`, so a hostile or broken server can make the
process hold at most a line's worth of text (streams) or one capped body (whole replies). Lines
are split on `\\n` only, with a trailing `\\r` dropped, never on the other separators
`str.splitlines` knows (U+2028, U+0085...), which JSON allows raw inside strings.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final, NoReturn, TypeVar

import anyio
import httpx
import msgspec

from .._exceptions import ProviderConnectionError, ProviderResponseError, ProviderTimeoutError

__all__ = [
    "DEFAULT_TIMEOUT",
    "HTTPProvider",
    "ResponseLimits",
    "TokenUsage",
    "abandon",
    "excerpt",
    "message_of",
]

#: A model may think for minutes before its first token, so the read timeout (the longest wait
#: for the next bytes) is generous; a server that is not there should fail fast.
DEFAULT_TIMEOUT = httpx.Timeout(300.0, connect=10.0)

_ERROR_BODY_LIMIT: Final = 4096
_ERROR_BODY_READ: Final = 65536
_EXCERPT_CHARS: Final = 200
_STEP: Final = 65536  # the most decompressed bytes produced at once
_MIB: Final = 1 << 20
_DECODERS: Final = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": 0}

T = TypeVar("T")


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


class TokenUsage(msgspec.Struct, frozen=True):
    """Token counts for one generation (or a sum of them), as the server reported them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.total_tokens + other.total_tokens,
        )


def excerpt(text: str, limit: int = _EXCERPT_CHARS) -> str:
    """`text` on one line, cut to `limit` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


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


def message_of(obj: Any) -> str:
    """The human message inside an error object (`{"error": {"message": ...}}`, `{"error":
    "..."}`, `{"detail": ...}`, `{"message": ...}`), else the object as JSON."""
    if isinstance(obj, dict):
        for key in ("error", "message", "detail"):
            inner = obj.get(key)
            if isinstance(inner, dict):
                return message_of(inner)
            if inner:
                return str(inner)
    if isinstance(obj, str):
        try:
            inner = msgspec.json.decode(obj)
        except (msgspec.DecodeError, RecursionError):
            return obj
        return message_of(inner) if isinstance(inner, dict) else obj
    return msgspec.json.encode(obj).decode()


class HTTPProvider:
    """Base of the HTTP providers: owns one `httpx.AsyncClient`, created on first use.

    Attributes:
        name: the provider as a spec (shown in report metadata).
        supports_streaming: whether the wrapper should call `stream` (True) or `generate`.
        limits: the caps on each reply.
        last_usage: token usage of the most recent generation that reported it. With concurrent
            generations it belongs to whichever finished last.
        total_usage: token usage summed over every generation that reported it.
    """

    def __init__(
        self,
        name: str,
        *,
        supports_streaming: bool,
        timeout: httpx.Timeout | float,
        headers: Mapping[str, str] | None = None,
        limits: ResponseLimits | None = None,
    ) -> None:
        self.name = name
        self.supports_streaming = supports_streaming
        self.limits = limits or ResponseLimits()
        self.last_usage: TokenUsage | None = None
        self.total_usage = TokenUsage()
        self._timeout = timeout
        # Only the encodings `_body` can undo in bounded steps.
        self._headers = {"Accept-Encoding": "gzip, deflate", **(headers or {})}
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    async def aclose(self) -> None:
        """Close the HTTP client and its connections. Idempotent; a later call opens a new
        client. Never raises."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # The engine's --concurrency bounds the requests in flight, so the pool does not.
            limits = httpx.Limits(max_connections=None, max_keepalive_connections=32)
            self._client = httpx.AsyncClient(
                timeout=self._timeout, headers=self._headers, limits=limits
            )
        return self._client

    def _record_usage(self, usage: TokenUsage | None) -> None:
        if usage is None:
            return
        if not usage.total_tokens:
            total = usage.prompt_tokens + usage.completion_tokens
            usage = TokenUsage(usage.prompt_tokens, usage.completion_tokens, total)
        self.last_usage = usage
        self.total_usage = self.total_usage + usage

    @asynccontextmanager
    async def _post(self, url: str, payload: Mapping[str, Any]) -> AsyncIterator[httpx.Response]:
        """POST `payload` as JSON and hand over the streaming response once its status is OK.

        httpx errors raised while the caller reads the body are mapped here too.

        Raises:
            ProviderResponseError: the status is 400 or more.
            ProviderTimeoutError: a timeout.
            ProviderConnectionError: any other transport failure.
        """
        try:
            async with self._http().stream("POST", url, json=payload) as response:
                if response.status_code >= 400:
                    await self._raise_status(response)
                yield response
        except httpx.TimeoutException as exc:
            raise ProviderTimeoutError(f"{self.name}: {_describe(exc)} ({url})") from exc
        except httpx.TransportError as exc:
            raise ProviderConnectionError(f"{self.name}: {_describe(exc)} ({url})") from exc

    async def _post_json(
        self, url: str, payload: Mapping[str, Any], decoder: msgspec.json.Decoder[T]
    ) -> T:
        """POST `payload` and decode the whole JSON reply (at most the limits) with `decoder`.

        Raises:
            ProviderResponseError: an error status, a body `decoder` rejects, or one over a cap.
            ProviderConnectionError: the connection failed (`ProviderTimeoutError`: timed out).
        """
        async with self._post(url, payload) as response:
            body = bytearray()
            parts = self._body(response)
            try:
                async for part in parts:
                    body += part
            finally:
                await abandon(parts)
            return self._decode(decoder, bytes(body), response.status_code)

    async def _body(
        self, response: httpx.Response, *, limited: bool = True
    ) -> AsyncGenerator[bytes, None]:
        """The body's bytes with its Content-Encoding undone, in pieces of at most 64 KiB.

        Raises:
            ProviderResponseError: an unsupported or corrupt encoding, or (when `limited`) a
                body over `limits.response_bytes` or `limits.decompressed_bytes`.
        """
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", "", *_DECODERS):
            self._fail(f"unsupported Content-Encoding {encoding!r}", response.status_code)
        inflate = _Inflater(_DECODERS[encoding]) if encoding in _DECODERS else None
        received = produced = 0
        raws = response.aiter_raw()
        try:
            async for raw in raws:
                received += len(raw)
                if limited and received > self.limits.response_bytes:
                    self._over("response_bytes", self.limits.response_bytes, response.status_code)
                try:
                    for part in [raw] if inflate is None else inflate.feed(raw):
                        produced += len(part)
                        if limited and produced > self.limits.decompressed_bytes:
                            cap = self.limits.decompressed_bytes
                            self._over("decompressed_bytes", cap, response.status_code)
                        yield part
                except zlib.error as exc:
                    self._fail(f"undecodable {encoding} body ({exc})", response.status_code)
        finally:
            await abandon(raws)

    async def _lines(self, response: httpx.Response) -> AsyncGenerator[str, None]:
        """The body's lines, split on `\\n` only, without line endings, as they arrive.

        Raises:
            ProviderResponseError: a line over `limits.line_bytes`, as `_body` does otherwise.
        """
        cap, status = self.limits.line_bytes, response.status_code
        pending = bytearray()
        parts = self._body(response)
        try:
            async for part in parts:
                pending += part
                if b"\n" in part:
                    *lines, rest = pending.split(b"\n")
                    pending = rest
                    for line in lines:
                        if len(line) > cap:
                            self._over("line_bytes", cap, status)
                        yield _text(line)
                if len(pending) > cap:
                    self._over("line_bytes", cap, status)
        finally:
            await abandon(parts)
        if pending:
            yield _text(pending)

    def _decode(self, decoder: msgspec.json.Decoder[T], data: bytes | str, status: int) -> T:
        try:
            return decoder.decode(data)
        except (msgspec.DecodeError, RecursionError) as exc:
            text = data if isinstance(data, str) else data.decode("utf-8", "replace")
            problem = "nested too deeply" if isinstance(exc, RecursionError) else exc
            raise ProviderResponseError(
                f"{self.name}: malformed reply ({problem}): {excerpt(text)}",
                status_code=status,
                body_excerpt=excerpt(text),
            ) from None

    def _fail(self, problem: str, status: int) -> NoReturn:
        raise ProviderResponseError(f"{self.name}: {problem}", status_code=status)

    def _over(self, cap: str, value: int, status: int) -> NoReturn:
        shown = f"{value // _MIB} MiB" if value % _MIB == 0 else f"{value} bytes"
        what = {"line_bytes": "a line", "response_bytes": "the reply"}.get(cap, "the body")
        self._fail(f"{what} passed the {shown} cap (ResponseLimits.{cap})", status)

    def _raise_error_object(self, error: Any, status: int) -> NoReturn:
        """Raise for an error object that arrived inside a 2xx reply."""
        text = excerpt(message_of(error))
        raise ProviderResponseError(
            f"{self.name}: error in reply: {text}", status_code=status, body_excerpt=text
        )

    async def _raise_status(self, response: httpx.Response) -> NoReturn:
        body, seen = bytearray(), 0
        parts = self._body(response, limited=False)
        try:
            async for part in parts:
                body += part[: _ERROR_BODY_LIMIT - len(body)]
                seen += len(part)
                if max(seen, response.num_bytes_downloaded) >= _ERROR_BODY_READ:
                    break  # read to the end if small, to reuse the connection
        except ProviderResponseError:
            pass  # an undecodable error body: report the status alone
        finally:
            await abandon(parts)
        raw = bytes(body)
        try:
            text = message_of(msgspec.json.decode(raw))
        except (msgspec.DecodeError, RecursionError):
            text = raw.decode("utf-8", "replace")
        text = excerpt(text) or response.reason_phrase
        raise ProviderResponseError(
            f"{self.name}: HTTP {response.status_code} from {response.request.url}: {text}",
            status_code=response.status_code,
            body_excerpt=text,
        )


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


_KINDS: dict[type[httpx.RequestError], str] = {
    httpx.ConnectTimeout: "timed out connecting",
    httpx.ReadTimeout: "timed out waiting for the server",
    httpx.WriteTimeout: "timed out sending the request",
    httpx.PoolTimeout: "timed out waiting for a free connection",
    httpx.ConnectError: "cannot connect",
    httpx.RemoteProtocolError: "connection broken",
    httpx.ReadError: "connection broken",
}


def _describe(exc: httpx.RequestError) -> str:
    kind = _KINDS.get(type(exc), "transport error")
    detail = str(exc) or type(exc).__name__
    return f"{kind}: {excerpt(detail)}"
