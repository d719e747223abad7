"""Retries: 429 and 503 (with Retry-After), connections refused or reset before the reply's
first byte; never another 4xx, never once output has streamed; attempts always recorded."""

from __future__ import annotations

import random
import socket
from datetime import datetime, timezone

import pytest

from orket_pipeline import TelemetryPipeline
from orket_pipeline.providers import (
    Chunk,
    OllamaProvider,
    OpenAIProvider,
    ProviderConnectionError,
    ProviderResponseError,
    RetryPolicy,
)
from orket_pipeline.providers._retry import retry_after_s

from ._transcript_server import RESET, Reply, TranscriptServer, ndjson, sse
from .test_openai import DONE, chunk

pytestmark = pytest.mark.anyio

OK = Reply([sse(chunk("ok", finish="stop")), DONE])


class Naps:
    """A sleep that records how long it was asked to wait, and returns at once."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)


def openai(server: TranscriptServer, naps: Naps, retries: int = 2) -> OpenAIProvider:
    policy = RetryPolicy(retries, sleep=naps, random=random.Random(0).random)
    return OpenAIProvider("m", server.url + "/v1", timeout=5.0, retry=policy)


def busy(status: int, **headers: str) -> Reply:
    return Reply([b'{"error": "busy"}'], status=status, chunked=False, headers=headers)


async def items(provider: OpenAIProvider | OllamaProvider) -> list[str | Chunk]:
    try:
        return [item async for item in provider.stream("hi")]
    finally:
        await provider.aclose()


class TestTransientFailures:
    async def test_429_with_retry_after_waits_as_asked_then_succeeds_in_two_attempts(
        self, server: TranscriptServer
    ) -> None:
        naps = Naps()
        server.add(busy(429, **{"Retry-After": "3"}), OK)
        assert await items(openai(server, naps)) == ["ok", Chunk(attempts=2)]
        assert naps.slept == [3.0]
        assert len(server.requests) == 2

    async def test_503_three_times_is_an_error_that_says_three_attempts(
        self, server: TranscriptServer
    ) -> None:
        naps = Naps()
        server.add(busy(503), busy(503), busy(503), OK)
        with pytest.raises(ProviderResponseError, match="HTTP 503") as info:
            await items(openai(server, naps))
        assert info.value.attempts == 3
        assert len(server.requests) == 3  # the fourth reply was never asked for
        first, second = naps.slept  # backoff with jitter: doubling, each within 0.5-1.5x
        assert 0.05 <= first <= 0.15 and 0.1 <= second <= 0.3

    async def test_a_reset_before_the_first_byte_is_retried(self, server: TranscriptServer) -> None:
        naps = Naps()
        server.add(Reply(reset_before_head=True), OK)
        assert await items(openai(server, naps)) == ["ok", Chunk(attempts=2)]
        assert len(naps.slept) == 1

    async def test_a_refused_connection_is_retried_then_reported_with_its_attempts(
        self,
    ) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        naps = Naps()
        policy = RetryPolicy(1, sleep=naps)
        provider = OpenAIProvider("m", f"http://127.0.0.1:{port}/v1", retry=policy)
        with pytest.raises(ProviderConnectionError, match="cannot connect") as info:
            await items(provider)
        assert info.value.attempts == 2 and len(naps.slept) == 1

    async def test_the_ollama_provider_retries_too(self, server: TranscriptServer) -> None:
        naps = Naps()
        done = ndjson({"response": "y", "done": True, "eval_count": 1})
        server.add(busy(503, **{"Retry-After": "1"}), Reply([done]))
        policy = RetryPolicy(2, sleep=naps)
        provider = OllamaProvider("m", server.url, retry=policy)
        *texts, facts = await items(provider)
        assert texts == ["y"] and isinstance(facts, Chunk) and facts.attempts == 2


class TestNoRetry:
    @pytest.mark.parametrize("status", [400, 401, 404, 422, 500, 501])
    async def test_other_error_statuses_fail_at_once(
        self, server: TranscriptServer, status: int
    ) -> None:
        naps = Naps()
        server.add(busy(status), OK)
        with pytest.raises(ProviderResponseError, match=f"HTTP {status}") as info:
            await items(openai(server, naps))
        assert (info.value.attempts, naps.slept, len(server.requests)) == (1, [], 1)

    async def test_a_reset_after_output_streamed_is_not_retried(
        self, server: TranscriptServer
    ) -> None:
        naps = Naps()
        server.add(Reply([sse(chunk("def")), 0.05, RESET]), OK)
        received: list[str | Chunk] = []
        with pytest.raises(ProviderConnectionError, match="connection broken") as info:
            async for item in openai(server, naps).stream("hi"):
                received.append(item)
        assert received == ["def"]
        assert (info.value.attempts, naps.slept, len(server.requests)) == (1, [], 1)

    async def test_retries_zero_makes_one_attempt(self, server: TranscriptServer) -> None:
        naps = Naps()
        server.add(busy(429), OK)
        with pytest.raises(ProviderResponseError, match="HTTP 429") as info:
            await items(openai(server, naps, retries=0))
        assert (info.value.attempts, naps.slept) == (1, [])

    async def test_a_failed_runs_attempts_reach_the_report(self, server: TranscriptServer) -> None:
        server.add(busy(503), busy(503))
        provider = openai(server, Naps(), retries=1)
        async with TelemetryPipeline() as pipeline:
            with pytest.raises(ProviderResponseError):
                await pipeline.generate("t1", provider, "hi")
            pipeline.record_outcome("t1", "error")
        await provider.aclose()
        assert pipeline.report.test_runs[0].attempts == 2


class TestPolicy:
    def test_retry_after_reads_seconds_and_http_dates(self) -> None:
        now = datetime(2026, 12, 3, 15, 0, 0, tzinfo=timezone.utc)
        assert retry_after_s("2", now) == 2.0
        assert retry_after_s("Thu, 03 Dec 2026 15:00:05 GMT", now) == 5.0
        assert retry_after_s("Thu, 03 Dec 2026 14:00:00 GMT", now) == 0.0  # in the past
        for junk in (None, "", "soon", "-1", "1.5e9x", "Thu, 99 Foo 2026"):
            assert retry_after_s(junk, now) is None

    def test_the_server_wait_is_capped_and_the_backoff_doubles_up_to_its_max(self) -> None:
        policy = RetryPolicy(5, base_s=0.1, max_s=0.5, retry_after_cap_s=30.0, random=lambda: 0.5)
        assert policy.delay_s(1, "3600") == 30.0
        assert [policy.delay_s(n) for n in (1, 2, 3, 4)] == [0.1, 0.2, 0.4, 0.5]

    def test_a_thousandth_retry_waits_the_max_instead_of_overflowing(self) -> None:
        policy = RetryPolicy(5000, base_s=0.1, max_s=2.0, random=lambda: 0.5)
        assert [policy.delay_s(n) for n in (1025, 5000)] == [2.0, 2.0]

    def test_jitter_comes_from_the_given_source(self) -> None:
        first = RetryPolicy(random=random.Random(7).random)
        second = RetryPolicy(random=random.Random(7).random)
        assert [first.delay_s(1) for _ in range(5)] == [second.delay_s(1) for _ in range(5)]

    def test_negative_retries_are_refused(self) -> None:
        with pytest.raises(ValueError, match="retries"):
            RetryPolicy(-1)
