"""Any OpenAI-compatible chat-completions server: vLLM, llama.cpp server, LM Studio, Ollama's /v1.

`stream()` POSTs `{BASE_URL}/chat/completions` with `"stream": true` and reads the server-sent
events as they arrive: keep-alive comments are skipped, the role-only first delta yields nothing,
each `choices[0].delta.content` is yielded at once (and `delta.reasoning_content` or
`delta.reasoning` as `Chunk(reasoning=...)`), and an error object raises. The server's facts are
kept as they come: `usage` (asked for with `stream_options.include_usage`; it arrives in a last
chunk with `choices: []`, or on any chunk from llama.cpp), with
`completion_tokens_details.reasoning_tokens`, and llama.cpp's `timings` (`prompt_ms`,
`predicted_ms`); they are yielded as one `Chunk` when the reply is complete. `data: [DONE]`
completes the generation: the end of the reply is read for at most `DRAIN_S` (5 ms; servers
send it at once, and a reply read to its end keeps its connection pooled), then dropped
without waiting for the server to close it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import msgspec

from .._exceptions import ProviderResponseError
from ._base import Chunk, ProviderOptions
from ._http import DEFAULT_TIMEOUT, HTTPProvider, TokenUsage
from ._reading import ResponseLimits, abandon, finish
from ._retry import RetryPolicy
from ._sse import EventTooLarge, aiter_sse

__all__ = ["OpenAIProvider"]


class _Delta(msgspec.Struct):
    content: str | None = None
    reasoning_content: str | None = None  # DeepSeek, vLLM, llama.cpp
    reasoning: str | None = None  # OpenRouter, Ollama's /v1, newer vLLM

    def thinking(self) -> str:
        return self.reasoning_content or self.reasoning or ""


class _Choice(msgspec.Struct):
    index: int = 0
    delta: _Delta | None = None
    message: _Delta | None = None
    finish_reason: str | None = None


def _count(value: object) -> int | None:
    """A token count as a server sent it, or None when it is not one (a string, a float, a
    negative number, null): a fact of the wrong type is dropped, never fails the reply."""
    return value if type(value) is int and value >= 0 else None


def _ms(value: object) -> float | None:
    """Milliseconds as llama.cpp sends them, in seconds; None when not a non-negative number."""
    if type(value) in (int, float) and 0 <= value < 1e300:  # type: ignore[operator]
        return value / 1000.0  # type: ignore[operator]
    return None  # not a number, negative, or too large for a float (10**400 // 1000.0 raises)


def _get(obj: object, name: str) -> object:
    return obj.get(name) if isinstance(obj, dict) else None


class _Completion(msgspec.Struct):
    """A streamed chunk, a whole completion, or an error object (vLLM sends `object: "error"`
    with a top-level `message`; others send `{"error": {...}}`)."""

    choices: list[_Choice] | None = None
    usage: Any = None  # telemetry: read field by field, a wrong type dropped (`_count`)
    timings: Any = None
    error: Any = None
    object: str | None = None
    message: Any = None

    def first_choice(self) -> _Choice | None:
        return next((choice for choice in self.choices or () if choice.index == 0), None)


_DECODER = msgspec.json.Decoder(_Completion)


class _Facts:
    """The server's account of one generation, the latest value of each kept."""

    __slots__ = ("timings", "usage")

    def __init__(self) -> None:
        self.usage: object = None
        self.timings: object = None

    def take(self, reply: _Completion) -> None:
        if reply.usage is not None:
            self.usage = reply.usage
        if reply.timings is not None:
            self.timings = reply.timings

    def chunk(self, text: str, attempts: int) -> Chunk:
        usage, timings = self.usage, self.timings
        details = _get(usage, "completion_tokens_details")
        return Chunk(
            text=text,
            prompt_tokens=_count(_get(usage, "prompt_tokens")),
            completion_tokens=_count(_get(usage, "completion_tokens")),
            reasoning_tokens=_count(_get(details, "reasoning_tokens")),
            server_prompt_s=_ms(_get(timings, "prompt_ms")),
            server_generation_s=_ms(_get(timings, "predicted_ms")),
            attempts=attempts,
        )

    def token_usage(self) -> TokenUsage | None:
        if not isinstance(self.usage, dict):
            return None
        prompt = _count(self.usage.get("prompt_tokens")) or 0
        completion = _count(self.usage.get("completion_tokens")) or 0
        return TokenUsage(prompt, completion, _count(self.usage.get("total_tokens")) or 0)


class OpenAIProvider(HTTPProvider):
    """Chat completions from an OpenAI-compatible server, one user message per prompt (after
    a system message when `options.system` is set).

    Args:
        model: the model name the server knows.
        base_url: the API root, e.g. `http://127.0.0.1:8000/v1`.
        api_key: sent as a bearer token when given.
        supports_streaming: False makes the wrapper call `generate` (init_latency null).
        timeout: seconds, or an `httpx.Timeout` (default: connect 10 s, other phases 300 s).
        include_usage: ask for a final usage chunk (`stream_options`); some old servers reject it.
        extra_body: more request fields, sent verbatim (they win over `options`).
        limits: caps on each reply (line length, bytes received, bytes after decompression);
            default `ResponseLimits()`: 1 MiB, 128 MiB, 128 MiB. A reply over one is an error
            naming the cap.
        options: generation options (`max_tokens`, `temperature`, `seed`, `stop`, `system`)
            put into every request; `retries` and `max_connections` size the retries and the
            connection pool.
        retry: the retry policy (default: `RetryPolicy(options.retries)`).

    The HTTP client is created on first use or by `connect()`; call `aclose()` when done.
    Safe for concurrent generations on one event loop.
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
        options: ProviderOptions | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        options = options or ProviderOptions()
        super().__init__(
            f"openai:{model}@{base_url}",
            supports_streaming=supports_streaming,
            timeout=timeout,
            headers=headers,
            limits=limits,
            retry=retry or RetryPolicy(options.retries),
            max_connections=options.max_connections,
            probe_url=f"{base_url}/models",
        )
        self.model = model
        self.url = f"{base_url}/chat/completions"
        self.options = options
        self._include_usage = include_usage
        self._extra_body = dict(extra_body or {})

    async def generate(self, prompt: str) -> Chunk:
        """Return the whole reply to `prompt` (a non-streaming request), with the token counts
        and server timings the reply carries. Awaits the network.

        Raises:
            ProviderResponseError: an error status or error object, a malformed reply, or one
                over `limits.response_bytes` or `limits.decompressed_bytes`.
            ProviderConnectionError: the connection failed (`ProviderTimeoutError`: timed out).
        """
        payload = self._payload(prompt, stream=False)
        reply, attempts = await self._post_json(self.url, payload, _DECODER)
        try:
            self._check(reply, 200)
            choice = reply.first_choice()
            if choice is None or choice.message is None:
                raise ProviderResponseError(f"{self.name}: reply has no message", status_code=200)
        except ProviderResponseError as exc:
            exc.attempts = attempts
            raise
        facts = _Facts()
        facts.take(reply)
        self._record_usage(facts.token_usage())
        return facts.chunk(choice.message.content or "", attempts)

    async def stream(self, prompt: str) -> AsyncIterator[str | Chunk]:
        """Yield the reply to `prompt` as the server sends it (never buffered): answer text as
        `str`, reasoning as `Chunk(reasoning=...)`, and last, once the reply is complete, one
        `Chunk` with the token counts, server timings and attempts.

        Raises:
            ProviderResponseError: an error status, an error object mid-stream, a malformed
                event, a stream that ends before `data: [DONE]` or a finish reason, or a reply
                over one of `limits` (the message names the cap).
            ProviderConnectionError: the connection failed or was reset
                (`ProviderTimeoutError`: timed out).
        """
        finished, facts = False, _Facts()
        payload = self._payload(prompt, stream=True)
        async with self._post(self.url, payload) as (response, attempts):
            status = response.status_code
            events = aiter_sse(self._lines(response), max_data=self.limits.line_bytes)
            try:
                async for event in events:
                    if event.data.strip() == "[DONE]":
                        finished = True
                        break  # complete now; `finally` waits at most DRAIN_S for the rest
                    if event.event == "error":
                        self._raise_error_object(event.data, status)
                    chunk = self._decode(_DECODER, event.data, status)
                    self._check(chunk, status)
                    facts.take(chunk)  # usage may come on any chunk (llama.cpp)
                    choice = chunk.first_choice()
                    if choice is None:
                        continue
                    finished = finished or choice.finish_reason is not None
                    if choice.delta is None:
                        continue
                    if thinking := choice.delta.thinking():
                        yield Chunk(reasoning=thinking)
                    if choice.delta.content:
                        yield choice.delta.content
            except EventTooLarge:
                self._over("line_bytes", status)
            finally:
                # Complete: read the end of the reply briefly (the connection stays pooled);
                # otherwise drop it at once.
                await (finish(events) if finished else abandon(events))
            if not finished:
                raise ProviderResponseError(
                    f"{self.name}: stream ended before data: [DONE]", status_code=status
                )
        self._record_usage(facts.token_usage())
        yield facts.chunk("", attempts)

    def _payload(self, prompt: str, *, stream: bool) -> dict[str, Any]:
        options = self.options
        messages = [{"role": "system", "content": options.system}] if options.system else []
        messages.append({"role": "user", "content": prompt})
        payload: dict[str, Any] = {"model": self.model, "messages": messages, "stream": stream}
        if stream and self._include_usage:
            payload["stream_options"] = {"include_usage": True}
        for name in ("max_tokens", "temperature", "seed"):
            value = getattr(options, name)
            if value is not None:
                payload[name] = value
        if options.stop:
            payload["stop"] = list(options.stop)
        payload.update(self._extra_body)
        return payload

    def _check(self, reply: _Completion, status: int) -> None:
        if reply.error is not None:
            self._raise_error_object(reply.error, status)
        if reply.object == "error":
            self._raise_error_object(reply.message, status)
