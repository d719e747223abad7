"""Ollama's native API: `/api/generate` (default) or `/api/chat`, streamed as NDJSON.

Each line is one JSON object: `{"response": "text", "done": false}` (or, from `/api/chat`,
`{"message": {"content": "text"}, "done": false}`), and a last one with `"done": true` and the
token counts `prompt_eval_count` / `eval_count`. The `"done": true` line completes the
generation at once, without waiting for the server to close the reply. An `{"error": "..."}`
line, mid-stream or as an error status's body, raises. Lines are split on `\n` only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

import httpx
import msgspec

from .._exceptions import ProviderResponseError
from ._http import DEFAULT_TIMEOUT, HTTPProvider, TokenUsage
from ._reading import ResponseLimits, abandon

__all__ = ["DEFAULT_OLLAMA_URL", "OllamaProvider"]

DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434"


class _Message(msgspec.Struct):
    content: str | None = None


class _Line(msgspec.Struct):
    response: str | None = None
    message: _Message | None = None
    done: bool = False
    error: Any = None
    prompt_eval_count: int | None = None
    eval_count: int | None = None

    def text(self) -> str:
        if self.message is not None:
            return self.message.content or ""
        return self.response or ""

    def usage(self) -> TokenUsage | None:
        if self.prompt_eval_count is None and self.eval_count is None:
            return None
        return TokenUsage(self.prompt_eval_count or 0, self.eval_count or 0)


_DECODER = msgspec.json.Decoder(_Line)


class OllamaProvider(HTTPProvider):
    """Generations from an Ollama server's native API.

    Args:
        model: an Ollama model tag, e.g. `qwen2.5-coder:7b`.
        base_url: the server root (default `http://127.0.0.1:11434`).
        endpoint: `"generate"` sends the prompt as is; `"chat"` sends it as one user message.
        supports_streaming: False makes the wrapper call `generate` (init_latency null).
        timeout: seconds, or an `httpx.Timeout` (default: connect 10 s, other phases 300 s).
        options: Ollama `options` (`temperature`, `num_predict`, `seed`, ...).
        limits: caps on each reply (line length, bytes received, bytes after decompression);
            default `ResponseLimits()`: 1 MiB, 128 MiB, 128 MiB. A reply over one is an error
            naming the cap.

    The HTTP client is created on first use; call `aclose()` when done. Safe for concurrent
    generations on one event loop.
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
    ) -> None:
        base_url = base_url.rstrip("/")
        super().__init__(
            f"ollama:{model}@{base_url}",
            supports_streaming=supports_streaming,
            timeout=timeout,
            limits=limits,
        )
        self.model = model
        self.endpoint = endpoint
        self.url = f"{base_url}/api/{endpoint}"
        self._options = dict(options or {})

    async def generate(self, prompt: str) -> str:
        """Return the whole reply to `prompt` (a non-streaming request). Awaits the network.

        Raises:
            ProviderResponseError: an error status or error object, or a malformed reply.
            ProviderConnectionError: the connection failed (`ProviderTimeoutError`: timed out).
        """
        line = await self._post_json(self.url, self._payload(prompt, stream=False), _DECODER)
        if line.error is not None:
            self._raise_error_object(line.error, 200)
        self._record_usage(line.usage())
        return line.text()

    async def stream(self, prompt: str) -> AsyncIterator[str]:
        """Yield the reply to `prompt` line by line as the server sends it (never buffered).

        Raises:
            ProviderResponseError: an error status, an error line, a malformed line, a
                stream that ends before its `"done": true` line, or a reply over one of
                `limits` (the message names the cap).
            ProviderConnectionError: the connection failed or was reset
                (`ProviderTimeoutError`: timed out).
        """
        payload = self._payload(prompt, stream=True)
        async with self._post(self.url, payload) as response:
            status = response.status_code
            lines = self._lines(response)
            try:
                async for raw in lines:
                    if not raw.strip():
                        continue
                    line = self._decode(_DECODER, raw, status)
                    if line.error is not None:
                        self._raise_error_object(line.error, status)
                    text = line.text()
                    if text:
                        yield text
                    if line.done:
                        self._record_usage(line.usage())
                        return  # complete now; `finally` drops the rest without waiting
            finally:
                await abandon(lines)
        raise ProviderResponseError(
            f"{self.name}: stream ended before its done line", status_code=status
        )

    def _payload(self, prompt: str, *, stream: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {"model": self.model, "stream": stream}
        if self.endpoint == "chat":
            payload["messages"] = [{"role": "user", "content": prompt}]
        else:
            payload["prompt"] = prompt
        if self._options:
            payload["options"] = self._options
        return payload
