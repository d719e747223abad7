"""What the HTTP providers share: one lazy httpx client, error mapping, token usage."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, NoReturn, TypeVar, cast

import anyio
import httpx
import msgspec

from .._exceptions import ProviderConnectionError, ProviderResponseError, ProviderTimeoutError

__all__ = [
    "DEFAULT_TIMEOUT",
    "HTTPProvider",
    "TokenUsage",
    "aiter_lines",
    "drain",
    "excerpt",
    "message_of",
]

#: A model may think for minutes before its first token, so the read timeout (the longest wait
#: for the next bytes) is generous; a server that is not there should fail fast.
DEFAULT_TIMEOUT = httpx.Timeout(300.0, connect=10.0)

_ERROR_BODY_LIMIT = 4096
_ERROR_BODY_DRAIN = 65536
_DRAIN_S = 1.0
_EXCERPT_CHARS = 200

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


def aiter_lines(response: httpx.Response) -> AsyncGenerator[str, None]:
    """`response.aiter_lines()`, typed as the async generator it is, so it can be `aclosing`-ed."""
    return cast("AsyncGenerator[str, None]", response.aiter_lines())


async def drain(rest: AsyncIterator[object]) -> None:
    """Read what is left of a finished reply (normally just the end of the body), for at most
    a second. Exhausting httpx's own iterators lets the connection be reused and keeps trio from
    warning about unfinished async generators (encode/httpx#3686). Never raises on timeout."""
    with anyio.move_on_after(_DRAIN_S):
        async for _ in rest:
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
        except msgspec.DecodeError:
            return obj
        return message_of(inner) if isinstance(inner, dict) else obj
    return msgspec.json.encode(obj).decode()


class HTTPProvider:
    """Base of the HTTP providers: owns one `httpx.AsyncClient`, created on first use.

    Attributes:
        name: the provider as a spec (shown in report metadata).
        supports_streaming: whether the wrapper should call `stream` (True) or `generate`.
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
    ) -> None:
        self.name = name
        self.supports_streaming = supports_streaming
        self.last_usage: TokenUsage | None = None
        self.total_usage = TokenUsage()
        self._timeout = timeout
        self._headers = dict(headers or {})
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
        except httpx.DecodingError as exc:
            raise ProviderResponseError(
                f"{self.name}: undecodable body ({exc})", status_code=200
            ) from exc

    async def _post_json(
        self, url: str, payload: Mapping[str, Any], decoder: msgspec.json.Decoder[T]
    ) -> T:
        """POST `payload` and decode the whole JSON reply with `decoder`.

        Raises:
            ProviderResponseError: an error status, or a body `decoder` rejects.
            ProviderConnectionError: the connection failed (`ProviderTimeoutError`: timed out).
        """
        async with self._post(url, payload) as response:
            body = await response.aread()
            return self._decode(decoder, body, response.status_code)

    def _decode(self, decoder: msgspec.json.Decoder[T], data: bytes | str, status: int) -> T:
        try:
            return decoder.decode(data)
        except msgspec.DecodeError as exc:
            text = data if isinstance(data, str) else data.decode("utf-8", "replace")
            raise ProviderResponseError(
                f"{self.name}: malformed reply ({exc}): {excerpt(text)}",
                status_code=status,
                body_excerpt=excerpt(text),
            ) from exc

    def _raise_error_object(self, error: Any, status: int) -> NoReturn:
        """Raise for an error object that arrived inside a 2xx reply."""
        text = excerpt(message_of(error))
        raise ProviderResponseError(
            f"{self.name}: error in reply: {text}", status_code=status, body_excerpt=text
        )

    async def _raise_status(self, response: httpx.Response) -> NoReturn:
        body, size = bytearray(), 0
        async for part in response.aiter_bytes():
            body += part[: _ERROR_BODY_LIMIT - len(body)]
            size += len(part)
            if size >= _ERROR_BODY_DRAIN:  # read to the end if small, to reuse the connection
                break
        raw = bytes(body)
        try:
            text = message_of(msgspec.json.decode(raw))
        except msgspec.DecodeError:
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
