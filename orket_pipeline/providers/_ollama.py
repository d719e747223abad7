"""Ollama's native API: `/api/generate` (default) or `/api/chat`, streamed as NDJSON.

Each line is one JSON object: `{"response": "text", "done": false}` (or, from `/api/chat`,
`{"message": {"content": "text"}, "done": false}`; a thinking model's `thinking` or
`message.thinking` beside it), and a last one with `"done": true`, the token counts
`prompt_eval_count` / `eval_count` and the server's timings `prompt_eval_duration`,
`eval_duration`, `load_duration` (nanoseconds). The `"done": true` line completes the
generation: the end of the reply is read for at most `DRAIN_S` (5 ms), so its connection stays
pooled, then dropped without waiting for the server to close it. An `{"error": "..."}`
line, mid-stream or as an error status's body, raises. Lines are split on `\n` only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

import httpx
import msgspec

from .._exceptions import ProviderResponseError
from ._base import Chunk, ProviderOptions
from ._http import DEFAULT_TIMEOUT, HTTPProvider, TokenUsage
from ._reading import ResponseLimits, abandon, finish
from ._retry import RetryPolicy

__all__ = ["DEFAULT_OLLAMA_URL", "OllamaProvider"]

DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434"


class _Message(msgspec.Struct):
    content: str | None = None
    thinking: str | None = None


class _Line(msgspec.Struct):
    response: str | None = None
    thinking: str | None = None
    message: _Message | None = None
    done: bool = False
    error: Any = None
    # Telemetry, read leniently: a value of the wrong type is dropped, never fails the reply.
    prompt_eval_count: Any = None
    eval_count: Any = None
    prompt_eval_duration: Any = None  # nanoseconds, as every *_duration
    eval_duration: Any = None
    load_duration: Any = None

    def text(self) -> str:
        if self.message is not None:
            return self.message.content or ""
        return self.response or ""

    def reasoning(self) -> str:
        if self.message is not None:
            return self.message.thinking or ""
        return self.thinking or ""

    def usage(self) -> TokenUsage | None:
        prompt, generated = _count(self.prompt_eval_count), _count(self.eval_count)
        if prompt is None and generated is None:
            return None
        return TokenUsage(prompt or 0, generated or 0)

    def facts(self, text: str, attempts: int) -> Chunk:
        return Chunk(
            text=text,
            prompt_tokens=_count(self.prompt_eval_count),
            completion_tokens=_count(self.eval_count),
            server_prompt_s=_seconds(self.prompt_eval_duration),
            server_generation_s=_seconds(self.eval_duration),
            server_load_s=_seconds(self.load_duration),
            attempts=attempts,
        )


def _count(value: object) -> int | None:
    """A token count, or None when the server sent something else (a string, a float, < 0)."""
    return value if type(value) is int and value >= 0 else None


def _seconds(ns: object) -> float | None:
    """Nanoseconds in seconds; None when not a non-negative number a float can hold."""
    if type(ns) in (int, float) and 0 <= ns < 1e300:  # type: ignore[operator]
        return ns / 1e9  # type: ignore[operator]
    return None


_DECODER = msgspec.json.Decoder(_Line)


class OllamaProvider(HTTPProvider):
    """Generations from an Ollama server's native API.

    Args:
        model: an Ollama model tag, e.g. `qwen2.5-coder:7b`.
        base_url: the server root (default `http://127.0.0.1:11434`).
        endpoint: `"generate"` sends the prompt as is; `"chat"` sends it as one user message.
        supports_streaming: False makes the wrapper call `generate` (init_latency null).
        timeout: seconds, or an `httpx.Timeout` (default: connect 10 s, other phases 300 s).
        options: Ollama `options` (`temperature`, `num_predict`, `seed`, ...), sent verbatim;
            they win over `provider_options`.
        limits: caps on each reply (line length, bytes received, bytes after decompression);
            default `ResponseLimits()`: 1 MiB, 128 MiB, 128 MiB. A reply over one is an error
            naming the cap.
        provider_options: generation options: `max_tokens` (as `num_predict`), `temperature`,
            `seed` and `stop` go into Ollama's `options`, `system` into the request's `system`
            (or a first system message for `/api/chat`); `retries` and `max_connections` size
            the retries and the connection pool.
        retry: the retry policy (default: `RetryPolicy(provider_options.retries)`).

    The HTTP client is created on first use or by `connect()`; call `aclose()` when done.
    Safe for concurrent generations on one event loop.
    """

    def __init__(
        self,
        model: str,
        base_url: str = DEFAULT_OLLAMA_URL,
        *,
        endpoint: Literal["generate", "chat"] = "generate",
        supports_streaming: bool = True,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        options: Mapping[str, Any] | None = None,
        limits: ResponseLimits | None = None,
        provider_options: ProviderOptions | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        base_url = base_url.rstrip("/")
        provider_options = provider_options or ProviderOptions()
        super().__init__(
            f"ollama:{model}@{base_url}",
            supports_streaming=supports_streaming,
            timeout=timeout,
            limits=limits,
            retry=retry or RetryPolicy(provider_options.retries),
            max_connections=provider_options.max_connections,
            probe_url=f"{base_url}/api/version",
        )
        self.model = model
        self.endpoint = endpoint
        self.url = f"{base_url}/api/{endpoint}"
        self.provider_options = provider_options
        self._options = {**_ollama_options(provider_options), **(options or {})}

    async def generate(self, prompt: str) -> Chunk:
        """Return the whole reply to `prompt` (a non-streaming request), with the token counts
        and server timings it carries. Awaits the network.

        Raises:
            ProviderResponseError: an error status or error object, or a malformed reply.
            ProviderConnectionError: the connection failed (`ProviderTimeoutError`: timed out).
        """
        payload = self._payload(prompt, stream=False)
        line, attempts = await self._post_json(self.url, payload, _DECODER)
        if line.error is not None:
            try:
                self._raise_error_object(line.error, 200)
            except ProviderResponseError as exc:
                exc.attempts = attempts
                raise
        self._record_usage(line.usage())
        return line.facts(line.text(), attempts)

    async def stream(self, prompt: str) -> AsyncIterator[str | Chunk]:
        """Yield the reply to `prompt` line by line as the server sends it (never buffered):
        answer text as `str`, thinking as `Chunk(reasoning=...)`, and last one `Chunk` with
        the token counts, server timings and attempts of the `"done": true` line.

        Raises:
            ProviderResponseError: an error status, an error line, a malformed line, a
                stream that ends before its `"done": true` line, or a reply over one of
                `limits` (the message names the cap).
            ProviderConnectionError: the connection failed or was reset
                (`ProviderTimeoutError`: timed out).
        """
        payload = self._payload(prompt, stream=True)
        last: _Line | None = None
        async with self._post(self.url, payload) as (response, attempts):
            status = response.status_code
            lines = self._lines(response)
            try:
                async for raw in lines:
                    if not raw.strip():
                        continue
                    line = self._decode(_DECODER, raw, status)
                    if line.error is not None:
                        self._raise_error_object(line.error, status)
                    if thinking := line.reasoning():
                        yield Chunk(reasoning=thinking)
                    if text := line.text():
                        yield text
                    if line.done:
                        last = line
                        break  # complete now; `finally` waits at most DRAIN_S for the rest
            finally:
                await (abandon(lines) if last is None else finish(lines))
            if last is None:
                raise ProviderResponseError(
                    f"{self.name}: stream ended before its done line", status_code=status
                )
        self._record_usage(last.usage())
        yield last.facts("", attempts)

    def _payload(self, prompt: str, *, stream: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {"model": self.model, "stream": stream}
        system = self.provider_options.system
        if self.endpoint == "chat":
            messages = [{"role": "system", "content": system}] if system else []
            payload["messages"] = [*messages, {"role": "user", "content": prompt}]
        else:
            payload["prompt"] = prompt
            if system:
                payload["system"] = system
        if self._options:
            payload["options"] = self._options
        return payload


def _ollama_options(options: ProviderOptions) -> dict[str, Any]:
    """The generation options as Ollama names them."""
    named = {
        "num_predict": options.max_tokens,
        "temperature": options.temperature,
        "seed": options.seed,
        "stop": list(options.stop) or None,
    }
    return {name: value for name, value in named.items() if value is not None}
