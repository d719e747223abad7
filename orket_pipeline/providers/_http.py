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
from typing import Any, Final, NamedTuple, NoReturn, TypeVar

import httpx
import msgspec

from .._exceptions import (
    ProviderCallError,
    ProviderConnectionError,
    ProviderResponseError,
    ProviderTimeoutError,
)
from ._messages import describe, excerpt, message_of
from ._reading import ResponseLimits, abandon, over_cap, read_body, read_lines
from ._retry import RETRIED_STATUSES, RetryPolicy

__all__ = [
    "DEFAULT_TIMEOUT",
    "Exchange",
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
_PROBE_READ: Final = 65536  # the most of a reachability probe's reply read (to pool its connection)

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


class Exchange(NamedTuple):
    """A reply whose status is OK, and how many requests it took (retries included)."""

    response: httpx.Response
    attempts: int


class HTTPProvider:
    """Base of the HTTP providers: owns one `httpx.AsyncClient`, created on first use (or by
    `connect`), with a pool of `max_connections` (None: unbounded, the engine's concurrency
    bounds the requests in flight).

    A request is retried under `retry` (429, 503, a connection refused or dropped before the
    reply's first byte), never once its reply has been handed over: nothing is retried after
    output has been yielded.

    Attributes:
        name: the provider as a spec (shown in report metadata).
        supports_streaming: whether the wrapper should call `stream` (True) or `generate`.
        limits: the caps on each reply.
        retry: when and after how long a transient failure is tried again.
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
        retry: RetryPolicy | None = None,
        max_connections: int | None = None,
        probe_url: str | None = None,
    ) -> None:
        self.name = name
        self.supports_streaming = supports_streaming
        self.limits = limits or ResponseLimits()
        self.retry = retry or RetryPolicy()
        self.max_connections = max_connections
        self._probe_url = probe_url
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

    async def connect(self) -> None:
        """Open the client and one connection to the server, so that the first generation does
        not pay for them; any HTTP status will do (some servers have no such endpoint).
        Awaits the network: each phase of the probe (connecting, sending, each read) waits at
        most the connect timeout; a server that accepts but does not answer in that time counts
        as reachable.

        Raises:
            ProviderConnectionError: the server cannot be reached (refused, unknown host, timed
                out, dropped); the message is one line naming the URL.
        """
        client = self._http()
        if self._probe_url is None:
            return
        # Every phase of the probe gets the connect timeout, not the generation's long read
        # timeout: a server that accepts and never answers costs this, not minutes.
        budget = httpx.Timeout(self._timeout).connect
        try:
            async with client.stream(
                "GET", self._probe_url, timeout=httpx.Timeout(budget)
            ) as response:
                seen = 0
                # Read to the end (when small), so the connection goes back to the pool.
                async for raw in response.aiter_raw():
                    seen += len(raw)
                    if seen > _PROBE_READ:
                        break
        except (httpx.ReadTimeout, httpx.WriteTimeout):
            return  # connected, but the server is slow to answer: reachable all the same
        except httpx.TransportError as exc:
            raise ProviderConnectionError(
                f"{self.name}: cannot reach {self._probe_url}: {describe(exc)}"
            ) from None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            if self.max_connections is None:
                # The engine's --concurrency bounds the requests in flight, so the pool does not.
                limits = httpx.Limits(max_connections=None, max_keepalive_connections=32)
            else:
                # Sized to the concurrency: every connection stays pooled, and no queued request
                # scans more connections than can be in use.
                size = self.max_connections
                limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
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
    async def _post(self, url: str, payload: Mapping[str, Any]) -> AsyncIterator[Exchange]:
        """POST `payload` as JSON and hand over the streaming response once its status is OK,
        retrying transient failures under `self.retry` until then, never after.

        httpx errors raised while the caller reads the body are mapped here too, and every
        `ProviderCallError` leaving here carries `attempts`.

        Raises:
            ProviderResponseError: the status is 400 or more (429 and 503 once retries are
                spent).
            ProviderTimeoutError: a timeout (never retried: the server may be busy generating).
            ProviderConnectionError: any other transport failure.
        """
        attempt = 1
        while True:
            replied, retry_after = False, None
            try:
                async with self._http().stream("POST", url, json=payload) as response:
                    replied, status = True, response.status_code
                    if status in RETRIED_STATUSES and attempt <= self.retry.retries:
                        retry_after = response.headers.get("retry-after", "")
                    elif status >= 400:
                        await self._raise_status(response)
                    else:
                        yield Exchange(response, attempt)
                        return
            except httpx.TimeoutException as exc:
                message = f"{self.name}: {describe(exc)} ({url})"
                raise _counted(ProviderTimeoutError(message), attempt) from exc
            except httpx.TransportError as exc:
                # Retried only when no byte of the reply was read: the server never started.
                if replied or attempt > self.retry.retries:
                    message = f"{self.name}: {describe(exc)} ({url})"
                    raise _counted(ProviderConnectionError(message), attempt) from exc
            except ProviderCallError as exc:
                _counted(exc, attempt)
                raise
            await self.retry.sleep(self.retry.delay_s(attempt, retry_after or None))
            attempt += 1

    async def _post_json(
        self, url: str, payload: Mapping[str, Any], decoder: msgspec.json.Decoder[T]
    ) -> tuple[T, int]:
        """POST `payload` and decode the whole JSON reply (at most the limits) with `decoder`.

        Returns:
            The decoded reply and the number of requests it took.

        Raises:
            ProviderResponseError: an error status, a body `decoder` rejects, or one over a cap.
            ProviderConnectionError: the connection failed (`ProviderTimeoutError`: timed out).
        """
        async with self._post(url, payload) as (response, attempts):
            body = bytearray()
            parts = self._body(response)
            try:
                async for part in parts:
                    body += part
            finally:
                await abandon(parts)
            return self._decode(decoder, bytes(body), response.status_code), attempts

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


def _counted(exc: ProviderCallError, attempts: int) -> ProviderCallError:
    """`exc`, saying how many requests were made (the first count set stays)."""
    if exc.attempts is None:
        exc.attempts = attempts
    return exc
