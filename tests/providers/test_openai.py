"""OpenAIProvider against a loopback server replaying chat-completions transcripts."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from orket_pipeline.providers import (
    OpenAIProvider,
    ProviderConnectionError,
    ProviderResponseError,
    ProviderTimeoutError,
    ResponseLimits,
    RetryPolicy,
    TokenUsage,
)

from ._transcript_server import HOLD_LIMIT_S, RESET, Endless, Reply, TranscriptServer, sse

pytestmark = pytest.mark.anyio


def chunk(
    content: str | None = None, *, role: bool = False, finish: str | None = None
) -> dict[str, Any]:
    """A chat.completion.chunk shaped as vLLM and llama.cpp send it."""
    delta: dict[str, Any] = {"role": "assistant"} if role else {}
    if content is not None:
        delta["content"] = content
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


USAGE = {"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}}
DONE = sse("[DONE]")


def transcript(*texts: str, newline: str = "\n") -> list[Any]:
    """Role-only first delta, a keep-alive comment, the texts, a stop, usage, [DONE]."""
    steps: list[Any] = [sse(chunk("", role=True), newline=newline)]
    steps.append(f": keep-alive{newline}{newline}".encode())
    steps += [sse(chunk(text), newline=newline) for text in texts]
    steps += [sse(chunk(finish="stop"), newline=newline), sse(USAGE, newline=newline), DONE]
    return steps


@pytest.fixture
async def provider(server: TranscriptServer) -> AsyncIterator[OpenAIProvider]:
    provider = OpenAIProvider(
        "m", server.url + "/v1", api_key="sk-test", timeout=5.0, retry=RetryPolicy(0)
    )
    yield provider
    await provider.aclose()


async def collect(provider: OpenAIProvider, prompt: str = "hi") -> list[str]:
    """The answer text a stream yields (its `Chunk`s of reasoning and facts left out)."""
    return [text async for text in provider.stream(prompt) if isinstance(text, str)]


class TestStreaming:
    @pytest.mark.parametrize("newline", ["\n", "\r\n"])
    async def test_yields_content_only_and_records_usage(
        self, server: TranscriptServer, provider: OpenAIProvider, newline: str
    ) -> None:
        server.add(Reply(transcript("def ", "add", "(a, b):", newline=newline)))
        assert await collect(provider) == ["def ", "add", "(a, b):"]
        assert provider.last_usage == TokenUsage(7, 3, 10)

    async def test_sends_one_user_message_with_stream_options_and_key(
        self, server: TranscriptServer, provider: OpenAIProvider
    ) -> None:
        server.add(Reply(transcript("x")))
        await collect(provider, "Write add(a, b).\n")
        request = server.requests[0]
        assert (request.method, request.path) == ("POST", "/v1/chat/completions")
        assert request.headers["authorization"] == "Bearer sk-test"
        assert request.body == {
            "model": "m",
            "messages": [{"role": "user", "content": "Write add(a, b).\n"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    async def test_first_chunk_is_yielded_while_the_server_still_holds_the_rest(
        self, server: TranscriptServer, provider: OpenAIProvider
    ) -> None:
        release = threading.Event()
        steps = transcript("first", "second")
        server.add(Reply([*steps[:3], release, *steps[3:]]))
        received = []
        with anyio.fail_after(3):
            async for text in provider.stream("hi"):
                received += [text] if isinstance(text, str) else []
                release.set()  # the server sends the rest only after the first chunk arrived
        assert received == ["first", "second"]

    async def test_first_chunk_arrives_a_real_gap_before_the_end(
        self, server: TranscriptServer, provider: OpenAIProvider
    ) -> None:
        steps = transcript("first", "second")
        server.add(Reply([*steps[:3], 0.3, *steps[3:]]))
        stamps = [time.perf_counter() async for _ in provider.stream("hi")]
        assert stamps[1] - stamps[0] >= 0.25

    async def test_events_split_anywhere_and_multi_line_data_are_reassembled(
        self, server: TranscriptServer, provider: OpenAIProvider
    ) -> None:
        whole = b"".join(transcript("héllo", "wörld"))
        pieces = [whole[i : i + 7] for i in range(0, len(whole), 7)]
        multi_line = b'data: {"choices": [{"index": 0,\ndata:  "delta": {"content": "!"}}]}\n\n'
        server.add(Reply([multi_line, *pieces]))
        assert await collect(provider) == ["!", "héllo", "wörld"]

    async def test_stream_closed_without_done_or_finish_is_an_error(
        self, server: TranscriptServer, provider: OpenAIProvider
    ) -> None:
        server.add(Reply([sse(chunk("", role=True)), sse(chunk("partial"))]))
        received = []
        with pytest.raises(ProviderResponseError, match=r"ended before data: \[DONE\]"):
            async for text in provider.stream("hi"):
                received.append(text)
        assert received == ["partial"]


class TestErrors:
    async def test_error_object_mid_stream_raises_after_the_earlier_chunks(
        self, server: TranscriptServer, provider: OpenAIProvider
    ) -> None:
        error = {"error": {"message": "out of memory", "type": "server_error", "code": 500}}
        server.add(Reply([sse(chunk("", role=True)), sse(chunk("def")), sse(error)]))
        received = []
        with pytest.raises(ProviderResponseError, match="out of memory") as info:
            async for text in provider.stream("hi"):
                received.append(text)
        assert received == ["def"]
        assert info.value.status_code == 200

    async def test_vllm_style_error_object_and_error_event_raise(
        self, server: TranscriptServer, provider: OpenAIProvider
    ) -> None:
        vllm = {"object": "error", "message": "prompt too long", "type": "BadRequestError"}
        server.add(
            Reply([sse(vllm)]), Reply([b'event: error\ndata: {"message": "overloaded"}\n\n'])
        )
        with pytest.raises(ProviderResponseError, match="prompt too long"):
            await collect(provider)
        with pytest.raises(ProviderResponseError, match="overloaded"):
            await collect(provider)

    @pytest.mark.parametrize(
        ("status", "content_type", "body", "expected"),
        [
            (
                400,
                "application/json",
                b'{"error": {"message": "bad max_tokens"}}',
                "bad max_tokens",
            ),
            (401, "application/json", b'{"detail": "invalid api key"}', "invalid api key"),
            (
                404,
                "application/json",
                b'{"object": "error", "message": "no model m"}',
                "no model m",
            ),
            (500, "text/plain", b"Internal Server Error\n\n  trace", "Internal Server Error trace"),
            (503, "text/html", b"<html>" + b"x" * 10_000, "<html>xxx"),
        ],
    )
    async def test_error_status_raises_with_status_and_body_excerpt(
        self,
        server: TranscriptServer,
        provider: OpenAIProvider,
        status: int,
        content_type: str,
        body: bytes,
        expected: str,
    ) -> None:
        server.add(Reply([body], status=status, content_type=content_type, chunked=False))
        with pytest.raises(ProviderResponseError, match=f"HTTP {status}") as info:
            await collect(provider)
        assert info.value.status_code == status
        assert info.value.body_excerpt.startswith(expected)
        assert len(info.value.body_excerpt) <= 200
        assert "\n" not in str(info.value)

    async def test_connection_reset_mid_stream_raises_a_connection_error(
        self, server: TranscriptServer, provider: OpenAIProvider
    ) -> None:
        server.add(Reply([sse(chunk("", role=True)), sse(chunk("def")), 0.05, RESET]))
        received = []
        with pytest.raises(ProviderConnectionError, match="connection broken"):
            async for text in provider.stream("hi"):
                received.append(text)
        assert received == ["def"]

    async def test_refused_connection_raises_a_connection_error(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        provider = OpenAIProvider("m", f"http://127.0.0.1:{port}/v1")
        with pytest.raises(ProviderConnectionError, match="cannot connect"):
            await collect(provider)
        await provider.aclose()

    async def test_silent_server_raises_a_timeout(self, server: TranscriptServer) -> None:
        server.add(Reply([sse(chunk("", role=True)), threading.Event()]))
        provider = OpenAIProvider("m", server.url + "/v1", timeout=0.2)
        with pytest.raises(ProviderTimeoutError, match="timed out"):
            await collect(provider)
        await provider.aclose()

    async def test_an_event_nested_too_deeply_is_a_malformed_reply(
        self, server: TranscriptServer, provider: OpenAIProvider
    ) -> None:
        server.add(Reply([sse('{"x": ' + "[" * 100_000)]))
        with pytest.raises(ProviderResponseError, match=r"malformed reply \(nested too deeply\)"):
            await collect(provider)

    async def test_malformed_event_raises(
        self, server: TranscriptServer, provider: OpenAIProvider
    ) -> None:
        server.add(Reply([b"data: {not json\n\n"]))
        with pytest.raises(ProviderResponseError, match="malformed reply"):
            await collect(provider)


class TestGenerate:
    async def test_returns_the_message_and_records_usage(
        self, server: TranscriptServer, provider: OpenAIProvider
    ) -> None:
        body = {
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "x = 1"}}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6},
        }
        server.add(Reply([sse(body)[6:-2]], content_type="application/json", chunked=False))
        assert (await provider.generate("hi")).text == "x = 1"
        assert server.requests[0].body["stream"] is False
        assert "stream_options" not in server.requests[0].body
        assert provider.total_usage == TokenUsage(2, 4, 6)

    async def test_error_status_raises(
        self, server: TranscriptServer, provider: OpenAIProvider
    ) -> None:
        server.add(Reply([b"busy"], status=429, content_type="text/plain", chunked=False))
        with pytest.raises(ProviderResponseError, match=r"HTTP 429.*busy"):
            await provider.generate("hi")


async def test_aclose_is_idempotent_and_the_provider_can_be_used_again(
    server: TranscriptServer,
) -> None:
    provider = OpenAIProvider("m", server.url + "/v1/", supports_streaming=False)
    assert provider.supports_streaming is False
    assert provider.name == f"openai:m@{server.url}/v1"
    await provider.aclose()
    server.add(Reply(transcript("a")), Reply(transcript("b")))
    assert await collect(provider) == ["a"]
    await provider.aclose()
    await provider.aclose()
    assert await collect(provider) == ["b"]
    await provider.aclose()


def raw_sse(obj: Any) -> bytes:
    """An event with non-ASCII characters written raw, as JSON allows and servers do."""
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n".encode()


class TestLineSplitting:
    async def test_unicode_line_separators_inside_a_delta_stay_in_it(
        self, server: TranscriptServer, provider: OpenAIProvider
    ) -> None:
        texts = ["a\u2028b", "c\u0085d", "e\u2029f\x1cg"]
        steps = [raw_sse(chunk("", role=True)), *(raw_sse(chunk(text)) for text in texts)]
        server.add(Reply([*steps, sse(chunk(finish="stop")), DONE]))
        assert await collect(provider) == texts


class TestCompletion:
    async def test_done_completes_the_stream_without_waiting_for_the_server_to_close(
        self, server: TranscriptServer, provider: OpenAIProvider
    ) -> None:
        # The server holds the reply open after [DONE] (until HOLD_LIMIT_S). Elapsed time is
        # the thing under test: it is what total_latency measures.
        server.add(Reply([*transcript("x"), threading.Event()]))
        start = time.perf_counter()
        assert await collect(provider) == ["x"]
        assert time.perf_counter() - start < HOLD_LIMIT_S / 10

    async def test_the_provider_works_again_after_dropping_a_held_reply(
        self, server: TranscriptServer, provider: OpenAIProvider
    ) -> None:
        server.add(Reply([*transcript("x"), threading.Event()]), Reply(transcript("y")))
        assert await collect(provider) == ["x"]
        assert await collect(provider) == ["y"]


class TestCaps:
    async def test_an_endless_line_is_an_error_naming_the_line_cap(
        self, server: TranscriptServer, provider: OpenAIProvider
    ) -> None:
        endless = Endless(b"x" * 65536)
        server.add(Reply([b"data: ", endless]))
        with pytest.raises(ProviderResponseError, match=r"ResponseLimits\.line_bytes"):
            await collect(provider)
        assert endless.sent < 64 << 20  # stopped early, not at the server's own limit

    async def test_an_event_that_never_ends_is_an_error_naming_the_line_cap(
        self, server: TranscriptServer, provider: OpenAIProvider
    ) -> None:
        server.add(Reply([Endless(b"data: " + b"x" * 1000 + b"\n")]))
        with pytest.raises(ProviderResponseError, match=r"1 MiB cap \(ResponseLimits\.line_bytes"):
            await collect(provider)

    async def test_an_endless_valid_stream_is_an_error_naming_the_response_cap(
        self, server: TranscriptServer
    ) -> None:
        limits = ResponseLimits(response_bytes=1 << 20)
        provider = OpenAIProvider("m", server.url + "/v1", timeout=5.0, limits=limits)
        server.add(Reply([sse(chunk("", role=True)), Endless(sse(chunk("x" * 100)))]))
        received = []
        with pytest.raises(ProviderResponseError, match=r"ResponseLimits\.response_bytes"):
            async for text in provider.stream("hi"):
                received.append(text)
        assert 1000 < len(received) < 10_000
        await provider.aclose()

    async def test_a_gzip_bomb_is_an_error_naming_the_decompressed_cap(
        self, server: TranscriptServer
    ) -> None:
        # 256 MiB of blank lines (valid SSE, so only the size can stop it) in 16 gzip members
        # of 16 KiB each. A small cap keeps the test fast; test_http tries the default one.
        limits = ResponseLimits(decompressed_bytes=1 << 20)
        provider = OpenAIProvider("m", server.url + "/v1", timeout=5.0, limits=limits)
        member = gzip.compress(b"\n" * (16 << 20))
        first = gzip.compress(sse(chunk("", role=True)))
        server.add(Reply([first, *[member] * 16], headers={"Content-Encoding": "gzip"}))
        with pytest.raises(
            ProviderResponseError, match=r"1 MiB cap \(ResponseLimits\.decompressed_bytes\)"
        ):
            await collect(provider)
        await provider.aclose()

    async def test_a_whole_reply_over_the_cap_is_an_error(self, server: TranscriptServer) -> None:
        limits = ResponseLimits(response_bytes=1000)
        provider = OpenAIProvider("m", server.url + "/v1", limits=limits)
        body = b'{"choices": [{"index": 0, "message": {"content": "' + b"x" * 2000 + b'"}}]}'
        server.add(Reply([body], content_type="application/json", chunked=False))
        with pytest.raises(ProviderResponseError, match=r"1000 bytes cap"):
            await provider.generate("hi")
        await provider.aclose()
