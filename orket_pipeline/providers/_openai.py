"""Any OpenAI-compatible chat-completions server: vLLM, llama.cpp server, LM Studio, Ollama's /v1.

`stream()` POSTs `{BASE_URL}/chat/completions` with `"stream": true` and reads the server-sent
events as they arrive: keep-alive comments are skipped, the role-only first delta yields nothing,
each `choices[0].delta.content` is yielded at once, an error object raises, and the usage chunk
(asked for with `stream_options.include_usage`) is recorded. `data: [DONE]` completes the
generation at once: the stream ends there, without waiting for the server to close the reply,
so nothing after it is counted in `total_latency`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import msgspec

from .._exceptions import ProviderResponseError
from ._http import DEFAULT_TIMEOUT, HTTPProvider, TokenUsage
from ._reading import ResponseLimits, abandon
from ._sse import EventTooLarge, aiter_sse

__all__ = ["OpenAIProvider"]


class _Delta(msgspec.Struct):
    content: str | None = None


class _Message(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    index: int = 0
    delta: _Delta | None = None
    message: _Message | None = None
    finish_reason: str | None = None


class _Completion(msgspec.Struct):
    """A streamed chunk, a whole completion, or an error object (vLLM sends `object: "error"`
    with a top-level `message`; others send `{"error": {...}}`)."""

    choices: list[_Choice] = []
    usage: TokenUsage | None = None
    error: Any = None
    object: str | None = None
    message: Any = None

    def first_choice(self) -> _Choice | None:
        return next((choice for choice in self.choices if choice.index == 0), None)


_DECODER = msgspec.json.Decoder(_Completion)


class OpenAIProvider(HTTPProvider):
    """Chat completions from an OpenAI-compatible server, one user message per prompt.

    Args:
        model: the model name the server knows.
        base_url: the API root, e.g. `http://127.0.0.1:8000/v1`.
        api_key: sent as a bearer token when given.
        supports_streaming: False makes the wrapper call `generate` (init_latency null).
        timeout: seconds, or an `httpx.Timeout` (default: connect 10 s, other phases 300 s).
        include_usage: ask for a final usage chunk (`stream_options`); some old servers reject it.
        extra_body: more request fields (`max_tokens`, `temperature`, ...), sent verbatim.
        limits: caps on each reply (line length, bytes received, bytes after decompression);
            default `ResponseLimits()`: 1 MiB, 128 MiB, 128 MiB. A reply over one is an error
            naming the cap.

    The HTTP client is created on first use; call `aclose()` when done. Safe for concurrent
    generations on one event loop.
    """

    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        api_key: str | None = None,
        supports_streaming: bool = True,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        include_usage: bool = True,
        extra_body: Mapping[str, Any] | None = None,
        limits: ResponseLimits | None = None,
    ) -> None:
        base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        super().__init__(
            f"openai:{model}@{base_url}",
            supports_streaming=supports_streaming,
            timeout=timeout,
            headers=headers,
            limits=limits,
        )
        self.model = model
        self.url = f"{base_url}/chat/completions"
        self._include_usage = include_usage
        self._extra_body = dict(extra_body or {})

    async def generate(self, prompt: str) -> str:
        """Return the whole reply to `prompt` (a non-streaming request). Awaits the network.

        Raises:
            ProviderResponseError: an error status or error object, a malformed reply, or one
                over `limits.response_bytes` or `limits.decompressed_bytes`.
            ProviderConnectionError: the connection failed (`ProviderTimeoutError`: timed out).
        """
        reply = await self._post_json(self.url, self._payload(prompt, stream=False), _DECODER)
        self._check(reply, 200)
        self._record_usage(reply.usage)
        choice = reply.first_choice()
        if choice is None or choice.message is None:
            raise ProviderResponseError(f"{self.name}: reply has no message", status_code=200)
        return choice.message.content or ""

    async def stream(self, prompt: str) -> AsyncIterator[str]:
        """Yield the reply to `prompt` chunk by chunk as the server sends it (never buffered).

        Raises:
            ProviderResponseError: an error status, an error object mid-stream, a malformed
                event, a stream that ends before `data: [DONE]` or a finish reason, or a reply
                over one of `limits` (the message names the cap).
            ProviderConnectionError: the connection failed or was reset
                (`ProviderTimeoutError`: timed out).
        """
        finished = False
        payload = self._payload(prompt, stream=True)
        async with self._post(self.url, payload) as response:
            status = response.status_code
            events = aiter_sse(self._lines(response), max_data=self.limits.line_bytes)
            try:
                async for event in events:
                    if event.data.strip() == "[DONE]":
                        return  # complete now; `finally` drops the rest without waiting
                    if event.event == "error":
                        self._raise_error_object(event.data, status)
                    chunk = self._decode(_DECODER, event.data, status)
                    self._check(chunk, status)
                    self._record_usage(chunk.usage)
                    choice = chunk.first_choice()
                    if choice is None:
                        continue
                    finished = finished or choice.finish_reason is not None
                    if choice.delta is not None and choice.delta.content:
                        yield choice.delta.content
            except EventTooLarge:
                self._over("line_bytes", status)
            finally:
                await abandon(events)
        if not finished:
            raise ProviderResponseError(
                f"{self.name}: stream ended before data: [DONE]", status_code=status
            )

    def _payload(self, prompt: str, *, stream: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "stream": stream,
        }
        if stream and self._include_usage:
            payload["stream_options"] = {"include_usage": True}
        payload.update(self._extra_body)
        return payload

    def _check(self, reply: _Completion, status: int) -> None:
        if reply.error is not None:
            self._raise_error_object(reply.error, status)
        if reply.object == "error":
            self._raise_error_object(reply.message, status)
