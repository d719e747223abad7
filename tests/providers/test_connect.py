"""connect(): the client and one pooled connection before the first generation, or one line
naming the URL when the server cannot be reached; the pool sized by max_connections."""

from __future__ import annotations

import socket
import threading

import anyio
import httpx
import pytest

from orket_pipeline.providers import (
    OllamaProvider,
    OpenAIProvider,
    ProviderConnectionError,
    ProviderOptions,
    RetryPolicy,
    load_provider,
)

from ._transcript_server import Reply, TranscriptServer, sse
from .test_openai import DONE, chunk

pytestmark = pytest.mark.anyio


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def models() -> Reply:
    body = b'{"object": "list", "data": [{"id": "m", "object": "model"}]}'
    return Reply([body], content_type="application/json", chunked=False, keep_alive=True)


class TestConnect:
    @pytest.mark.parametrize(
        "spec", ["openai:m@http://127.0.0.1:{port}/v1", "ollama:m@http://127.0.0.1:{port}"]
    )
    async def test_an_unreachable_server_is_one_line_naming_the_url(self, spec: str) -> None:
        port = closed_port()
        provider = load_provider(spec.format(port=port))
        with pytest.raises(ProviderConnectionError) as info:
            await provider.connect()  # type: ignore[attr-defined]
        message = str(info.value)
        assert f"http://127.0.0.1:{port}/" in message and "cannot reach" in message
        assert "\n" not in message
        await provider.aclose()  # type: ignore[attr-defined]

    async def test_the_probe_asks_the_cheap_endpoint_of_each_protocol(
        self, server: TranscriptServer
    ) -> None:
        server.add(models(), models())
        for provider in (OpenAIProvider("m", server.url + "/v1"), OllamaProvider("m", server.url)):
            await provider.connect()
            await provider.aclose()
        assert [(r.method, r.path) for r in server.requests] == [
            ("GET", "/v1/models"),
            ("GET", "/api/version"),
        ]

    @pytest.mark.parametrize("status", [404, 501, 200])
    async def test_any_http_status_means_reachable(
        self, server: TranscriptServer, status: int
    ) -> None:
        server.add(Reply([b"nope"], status=status, content_type="text/plain", chunked=False))
        provider = OpenAIProvider("m", server.url + "/v1")
        await provider.connect()
        await provider.aclose()

    async def test_a_server_that_accepts_but_never_answers_costs_the_connect_timeout(
        self,
    ) -> None:
        with socket.socket() as silent:  # the kernel completes the handshake; nobody answers
            silent.bind(("127.0.0.1", 0))
            silent.listen(8)
            port = silent.getsockname()[1]
            timeout = httpx.Timeout(600.0, connect=0.2)
            provider = OpenAIProvider("m", f"http://127.0.0.1:{port}/v1", timeout=timeout)
            with anyio.fail_after(60):  # not the 600 s read timeout of a generation
                await provider.connect()
            await provider.aclose()

    async def test_the_first_generation_uses_the_connection_connect_opened(
        self, server: TranscriptServer
    ) -> None:
        server.add(models(), Reply([sse(chunk("a", finish="stop")), DONE]))
        provider = OpenAIProvider("m", server.url + "/v1", retry=RetryPolicy(0))
        await provider.connect()
        items = [item async for item in provider.stream("hi")]
        assert items[0] == "a"
        await provider.aclose()
        probe, generation = server.requests
        assert generation.path == "/v1/chat/completions"
        assert generation.connection == probe.connection == 1
        assert server.connections == 1


class TestPool:
    async def test_max_connections_bounds_the_connections_open_at_once(
        self, server: TranscriptServer
    ) -> None:
        # Kept alive, so that the bound shows as the connections ever opened (counting those
        # open at once on the server's side races its threads against the client's closes).
        server.add(
            *(
                Reply([0.02, sse(chunk("a", finish="stop")), DONE], keep_alive=True)
                for _ in range(6)
            )
        )
        options = ProviderOptions(max_connections=2)
        provider = OpenAIProvider("m", server.url + "/v1", options=options, timeout=5.0)
        done: list[str] = []

        async def one() -> None:
            done.extend([item async for item in provider.stream("hi") if isinstance(item, str)])

        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                for _ in range(6):
                    group.start_soon(one)
        await provider.aclose()
        assert done == ["a"] * 6
        assert server.connections <= 2 and len(server.requests) == 6

    async def test_without_a_bound_every_generation_gets_its_own_connection_at_once(
        self, server: TranscriptServer
    ) -> None:
        # Each reply holds until all six requests arrived: with a bound below six the barrier
        # would break after HOLD_LIMIT_S and the connections be reset.
        everyone = threading.Barrier(6)
        server.add(*(Reply([everyone, sse(chunk("a", finish="stop")), DONE]) for _ in range(6)))
        provider = OpenAIProvider("m", server.url + "/v1", timeout=10.0, retry=RetryPolicy(0))

        async def one() -> None:
            [item async for item in provider.stream("hi")]

        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                for _ in range(6):
                    group.start_soon(one)
        await provider.aclose()
        assert server.max_open == 6


class TestReuse:
    async def test_a_reply_that_ends_right_after_done_leaves_its_connection_for_the_next(
        self, server: TranscriptServer
    ) -> None:
        stream = [sse(chunk("a", finish="stop")), DONE]
        server.add(Reply(stream, keep_alive=True), Reply(stream, keep_alive=True))
        provider = OpenAIProvider("m", server.url + "/v1", retry=RetryPolicy(0))
        for _ in range(2):
            items = [item async for item in provider.stream("hi")]
            assert items[0] == "a"
        await provider.aclose()
        assert [request.connection for request in server.requests] == [1, 1]

    async def test_an_ollama_reply_that_ends_after_its_done_line_does_too(
        self, server: TranscriptServer
    ) -> None:
        done = b'{"response": "a", "done": true}\n'
        server.add(Reply([done], keep_alive=True), Reply([done], keep_alive=True))
        provider = OllamaProvider("m", server.url, retry=RetryPolicy(0))
        for _ in range(2):
            items = [item async for item in provider.stream("hi")]
            assert items[0] == "a"
        await provider.aclose()
        assert [request.connection for request in server.requests] == [1, 1]
