"""error_cause: the cause of a provider error from the type and message a report keeps, checked
on the messages the providers really raise."""

from __future__ import annotations

import socket
import threading

import pytest

from orket_pipeline.providers import OpenAIProvider, ProviderCallError, RetryPolicy
from orket_pipeline.report._causes import error_cause

from ._transcript_server import RESET, Reply, TranscriptServer, sse
from .test_openai import chunk

pytestmark = pytest.mark.anyio


async def cause_of(url: str) -> str:
    provider = OpenAIProvider("m", url, timeout=2.0, retry=RetryPolicy(0))
    with pytest.raises(ProviderCallError) as info:
        [item async for item in provider.stream("hi")]
    await provider.aclose()
    return error_cause(type(info.value).__name__, str(info.value))


async def test_a_refused_connection() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert await cause_of(f"http://127.0.0.1:{port}/v1") == "connection refused"


@pytest.mark.parametrize(
    ("status", "cause"),
    [
        (404, "HTTP 404 (wrong base URL or model?)"),
        (501, "HTTP 501 (not an OpenAI-compatible server?)"),
        (429, "HTTP 429 rate limited"),
        (500, "HTTP 500"),
    ],
)
async def test_error_statuses(server: TranscriptServer, status: int, cause: str) -> None:
    server.add(
        Reply([b"<html>Not here</html>"], status=status, content_type="text/html", chunked=False)
    )
    assert await cause_of(server.url + "/v1") == cause


async def test_a_server_killed_mid_stream(server: TranscriptServer) -> None:
    server.add(Reply([sse(chunk("def")), 0.05, RESET]))
    assert await cause_of(server.url + "/v1") in {
        "connection closed mid-reply",
        "connection reset",
    }


async def test_a_stream_that_ends_without_done(server: TranscriptServer) -> None:
    server.add(Reply([sse(chunk("def"))], chunked=False))
    assert await cause_of(server.url + "/v1") == "stream ended early"


async def test_a_timeout(server: TranscriptServer) -> None:
    server.add(Reply([sse(chunk("", role=True)), threading.Event()]))
    provider = OpenAIProvider("m", server.url + "/v1", timeout=0.2, retry=RetryPolicy(0))
    with pytest.raises(ProviderCallError) as info:
        [item async for item in provider.stream("hi")]
    await provider.aclose()
    assert error_cause(type(info.value).__name__, str(info.value)) == "timed out"


@pytest.mark.parametrize(
    ("error_type", "message", "cause"),
    [
        (
            "ProviderConnectionError",
            "openai:m@http://x/v1: connection broken: peer closed connection without sending "
            "complete message body (incomplete chunked read) (http://x/v1/chat/completions)",
            "connection closed mid-reply",
        ),
        (
            "ProviderConnectionError",
            "o: cannot connect: [Errno -2] Name or service not known",
            "cannot connect",
        ),
        ("ProviderTimeoutError", "anything", "timed out"),
        # The server's own words after ours do not pass for a transport failure.
        (
            "ProviderResponseError",
            "o: error in reply: upstream connection refused",
            "error in reply",
        ),
        (
            "ProviderResponseError",
            "o: malformed reply (x): <h1>Connection reset</h1>",
            "malformed reply",
        ),
        ("ProviderResponseError", "o: error in reply: request timed out", "error in reply"),
        ("ProviderResponseError", "o: error in reply: x: HTTP 404 from y", "error in reply"),
        ("ProviderResponseError", "o: HTTP 500 from u: z: error in reply", "HTTP 500"),
        ("ProviderTimeoutError", "o: timed out connecting: x", "connect timeout"),
        ("ValueError", "the model said HTTP 404 from somewhere", "ValueError"),
        ("RuntimeError", "boom", "RuntimeError"),
        ("", "", "unknown"),
    ],
)
def test_messages_alone(error_type: str, message: str, cause: str) -> None:
    assert error_cause(error_type, message) == cause
