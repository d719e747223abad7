"""What the HTTP providers share: one lazy httpx client, bounded bodies and lines, error mapping.

Every byte of a reply goes through `HTTPProvider._body`, which undoes the Content-Encoding
itself (gzip and deflate, in bounded steps, never more than 64 KiB of output per step) and
counts what it reads against `ResponseLimits`, so a hostile or broken server can make the
process hold at most a line's worth of text (streams) or one capped body (whole replies). Lines
are split on `\\n` only, with a trailing `\\r` dropped, never on the other separators
`str.splitlines` knows (U+2028, U+0085...), which JSON allows raw inside strings.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final, NoReturn, TypeVar

import httpx
import msgspec

from .._exceptions import ProviderConnectionError, ProviderResponseError, ProviderTimeoutError
from ._reading import ResponseLimits, abandon, over_cap, read_body, read_lines

__all__ = [
    "DEFAULT_TIMEOUT",
    "HTTPProvider",
    "TokenUsage",
    "excerpt",
    "message_of",
]

#: A model may think for minutes before its first token, so the read timeout (the longest wait
#: for the next bytes) is generous; a server that is not there should fail fast.
DEFAULT_TIMEOUT = httpx.Timeout(300.0, connect=10.0)

_ERROR_BODY_LIMIT: Final = 4096
_ERROR_BODY_READ: Final = 65536
_EXCERPT_CHARS: Final = 200

T = TypeVar("T")


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

    def _body(
        self, response: httpx.Response, *, limited: bool = True
    ) -> AsyncGenerator[bytes, None]:
        """`read_body` of `response` under this provider's limits (none when not `limited`)."""
        return read_body(response, self.limits if limited else None, self.name)

    def _lines(self, response: httpx.Response) -> AsyncGenerator[str, None]:
        """`read_lines` of `response` under this provider's limits."""
        return read_lines(response, self.limits, self.name)

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

    def _over(self, cap: str, status: int) -> NoReturn:
        """Raise the error of a reply that passed the cap `limits.<cap>`."""
        over_cap(self.name, self.limits, cap, status)

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
