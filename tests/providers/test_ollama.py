"""OllamaProvider against a loopback server replaying Ollama's native NDJSON transcripts."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from orket_pipeline.providers import (
    OllamaProvider,
    ProviderConnectionError,
    ProviderResponseError,
    ResponseLimits,
    RetryPolicy,
    TokenUsage,
)

from ._transcript_server import (
    HOLD_LIMIT_S,
    RESET,
    Endless,
    Reply,
    TranscriptServer,
    ndjson,
)

pytestmark = pytest.mark.anyio

NDJSON = "application/x-ndjson"


def line(text: str, *, chat: bool = False) -> bytes:
    body: dict[str, Any] = {"model": "m", "created_at": "2026-11-24T10:15:02Z", "done": False}
    if chat:
        body["message"] = {"role": "assistant", "content": text}
    else:
        body["response"] = text
    return ndjson(body)


DONE = ndjson(
    {
        "model": "m",
        "response": "",
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 11,
        "eval_count": 5,
        "total_duration": 123456,
    }
)


@pytest.fixture
async def provider(server: TranscriptServer) -> AsyncIterator[OllamaProvider]:
    provider = OllamaProvider("qwen2.5-coder:7b", server.url, timeout=5.0, retry=RetryPolicy(0))
    yield provider
    await provider.aclose()


async def collect(provider: OllamaProvider, prompt: str = "hi") -> list[str]:
    """The answer text a stream yields (its `Chunk`s of reasoning and facts left out)."""
    return [text async for text in provider.stream(prompt) if isinstance(text, str)]


class TestStreaming:
    async def test_yields_each_response_and_records_token_counts(
        self, server: TranscriptServer, provider: OllamaProvider
    ) -> None:
        server.add(Reply([line("def "), line(""), line("add"), DONE], content_type=NDJSON))
        assert await collect(provider, "Write add.") == ["def ", "add"]
        assert provider.last_usage == TokenUsage(11, 5, 16)
        request = server.requests[0]
        assert (request.method, request.path) == ("POST", "/api/generate")
        assert request.body == {"model": "qwen2.5-coder:7b", "prompt": "Write add.", "stream": True}

    async def test_first_chunk_is_yielded_while_the_server_still_holds_the_rest(
        self, server: TranscriptServer, provider: OllamaProvider
    ) -> None:
        release = threading.Event()
        server.add(Reply([line("first"), release, line("second"), DONE], content_type=NDJSON))
        received = []
        with anyio.fail_after(3):
            async for text in provider.stream("hi"):
                received += [text] if isinstance(text, str) else []
                release.set()
        assert received == ["first", "second"]

    async def test_lines_split_across_chunks_are_reassembled(
        self, server: TranscriptServer, provider: OllamaProvider
    ) -> None:
        whole = line("héllo") + line("wörld") + DONE
        server.add(Reply([whole[i : i + 5] for i in range(0, len(whole), 5)], content_type=NDJSON))
        assert await collect(provider) == ["héllo", "wörld"]

    async def test_chat_endpoint_sends_a_user_message_and_reads_message_content(
        self, server: TranscriptServer
    ) -> None:
        provider = OllamaProvider("m", server.url, endpoint="chat", options={"seed": 1})
        server.add(Reply([line("x", chat=True), line(" = 1", chat=True), DONE]))
        assert await collect(provider) == ["x", " = 1"]
        await provider.aclose()
        assert server.requests[0].path == "/api/chat"
        assert server.requests[0].body == {
            "model": "m",
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
            "options": {"seed": 1},
        }


class TestErrors:
    async def test_error_line_mid_stream_raises_after_the_earlier_chunks(
        self, server: TranscriptServer, provider: OllamaProvider
    ) -> None:
        error = ndjson({"error": "llama runner process has terminated"})
        server.add(Reply([line("def"), error], content_type=NDJSON))
        received = []
        with pytest.raises(ProviderResponseError, match="runner process has terminated"):
            async for text in provider.stream("hi"):
                received.append(text)
        assert received == ["def"]

    async def test_missing_model_404_raises_with_status_and_message(
        self, server: TranscriptServer, provider: OllamaProvider
    ) -> None:
        body = b'{"error":"model \\"qwen2.5-coder:7b\\" not found, try pulling it first"}'
        server.add(Reply([body], status=404, content_type="application/json", chunked=False))
        with pytest.raises(ProviderResponseError, match=r"HTTP 404.*try pulling it first") as info:
            await collect(provider)
        assert info.value.status_code == 404

    async def test_connection_reset_mid_stream_raises_a_connection_error(
        self, server: TranscriptServer, provider: OllamaProvider
    ) -> None:
        server.add(Reply([line("def"), 0.05, RESET], content_type=NDJSON))
        with pytest.raises(ProviderConnectionError, match="connection broken"):
            await collect(provider)

    async def test_stream_closed_before_done_is_an_error(
        self, server: TranscriptServer, provider: OllamaProvider
    ) -> None:
        server.add(Reply([line("def")], content_type=NDJSON))
        with pytest.raises(ProviderResponseError, match="ended before its done line"):
            await collect(provider)


class TestGenerate:
    async def test_returns_the_whole_response_and_records_usage(
        self, server: TranscriptServer, provider: OllamaProvider
    ) -> None:
        body = ndjson({"response": "x = 1", "done": True, "prompt_eval_count": 2, "eval_count": 3})
        server.add(Reply([body], content_type="application/json", chunked=False))
        assert (await provider.generate("hi")).text == "x = 1"
        assert server.requests[0].body["stream"] is False
        assert provider.total_usage == TokenUsage(2, 3, 5)

    async def test_error_body_raises(
        self, server: TranscriptServer, provider: OllamaProvider
    ) -> None:
        body = b'{"error": "unexpected EOF"}'
        server.add(Reply([body], status=500, content_type="application/json", chunked=False))
        with pytest.raises(ProviderResponseError, match=r"HTTP 500.*unexpected EOF"):
            await provider.generate("hi")


def test_default_url_and_name() -> None:
    provider = OllamaProvider("llama3.2")
    assert provider.url == "http://127.0.0.1:11434/api/generate"
    assert provider.name == "ollama:llama3.2@http://127.0.0.1:11434"
    assert provider.supports_streaming is True


class TestHostileReplies:
    async def test_unicode_line_separators_inside_a_response_stay_in_it(
        self, server: TranscriptServer, provider: OllamaProvider
    ) -> None:
        texts = ["a\u2028b", "c\u0085d", "e\u2029f\x1cg"]
        raw = [
            (json.dumps({"response": text, "done": False}, ensure_ascii=False) + "\n").encode()
            for text in texts
        ]
        server.add(Reply([*raw, DONE], content_type=NDJSON))
        assert await collect(provider) == texts

    async def test_the_done_line_completes_without_waiting_for_the_server_to_close(
        self, server: TranscriptServer, provider: OllamaProvider
    ) -> None:
        # Elapsed time is the thing under test: it is what total_latency measures.
        server.add(Reply([line("x"), DONE, threading.Event()], content_type=NDJSON))
        start = time.perf_counter()
        assert await collect(provider) == ["x"]
        assert time.perf_counter() - start < HOLD_LIMIT_S / 10

    async def test_an_endless_line_is_an_error_naming_the_line_cap(
        self, server: TranscriptServer, provider: OllamaProvider
    ) -> None:
        server.add(Reply([b'{"response": "', Endless(b"x" * 65536)], content_type=NDJSON))
        with pytest.raises(ProviderResponseError, match=r"1 MiB cap \(ResponseLimits\.line_bytes"):
            await collect(provider)

    async def test_an_endless_valid_stream_is_an_error_naming_the_response_cap(
        self, server: TranscriptServer
    ) -> None:
        limits = ResponseLimits(response_bytes=1 << 20)
        provider = OllamaProvider("m", server.url, timeout=5.0, limits=limits)
        server.add(Reply([Endless(line("x" * 100))], content_type=NDJSON))
        with pytest.raises(ProviderResponseError, match=r"ResponseLimits\.response_bytes"):
            await collect(provider)
        await provider.aclose()
