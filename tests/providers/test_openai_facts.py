"""OpenAIProvider: reasoning deltas, usage wherever it comes, llama.cpp timings, generation
options in the request, and the facts reaching a run's telemetry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from orket_pipeline import TelemetryPipeline
from orket_pipeline.providers import Chunk, OpenAIProvider, ProviderOptions, RetryPolicy

from ._transcript_server import Pausing, Reply, TranscriptServer, sse
from .test_openai import DONE, chunk

pytestmark = pytest.mark.anyio

LLAMA_TIMINGS = {"prompt_n": 12, "prompt_ms": 25.5, "predicted_n": 3, "predicted_ms": 61.25}


def reasoning(text: str, *, field: str = "reasoning_content") -> dict[str, Any]:
    delta = {"content": None, field: text}
    return {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}


@pytest.fixture
async def provider(server: TranscriptServer) -> AsyncIterator[OpenAIProvider]:
    provider = OpenAIProvider("m", server.url + "/v1", timeout=5.0, retry=RetryPolicy(0))
    yield provider
    await provider.aclose()


async def everything(provider: OpenAIProvider) -> list[str | Chunk]:
    return [item async for item in provider.stream("hi")]


class TestUsage:
    async def test_a_last_usage_chunk_with_no_choices_becomes_one_facts_chunk_at_the_end(
        self, server: TranscriptServer, provider: OpenAIProvider
    ) -> None:
        usage = {
            "prompt_tokens": 7,
            "completion_tokens": 30,
            "total_tokens": 37,
            "completion_tokens_details": {"reasoning_tokens": 20},
        }
        steps = [sse(chunk("a")), sse(chunk(finish="stop"))]
        server.add(Reply([*steps, sse({"id": "c", "choices": [], "usage": usage}), DONE]))
        *texts, facts = await everything(provider)
        assert texts == ["a"]
        assert facts == Chunk(
            prompt_tokens=7, completion_tokens=30, reasoning_tokens=20, attempts=1
        )

    async def test_usage_on_a_middle_chunk_and_timings_on_the_last_as_llama_cpp_sends_them(
        self, server: TranscriptServer, provider: OpenAIProvider
    ) -> None:
        early = {**chunk("a"), "usage": {"prompt_tokens": 12, "completion_tokens": 1}}
        late = {**chunk(finish="stop"), "usage": {"prompt_tokens": 12, "completion_tokens": 3}}
        late["timings"] = LLAMA_TIMINGS
        server.add(Reply([sse(early), sse(chunk("b")), sse(late), DONE]))
        *texts, facts = await everything(provider)
        assert texts == ["a", "b"]
        assert isinstance(facts, Chunk)
        assert (facts.prompt_tokens, facts.completion_tokens) == (12, 3)  # the later one
        assert (facts.server_prompt_s, facts.server_generation_s) == (0.0255, 0.06125)
        assert facts.server_load_s is None and facts.reasoning_tokens is None

    async def test_a_stream_without_usage_still_reports_its_attempts(
        self, server: TranscriptServer, provider: OpenAIProvider
    ) -> None:
        server.add(Reply([sse(chunk("a", finish="stop")), DONE]))
        assert await everything(provider) == ["a", Chunk(attempts=1)]

    @pytest.mark.parametrize(
        ("usage", "timings"),
        [
            ({"prompt_tokens": "12", "completion_tokens": 3.0}, {"prompt_ms": "fast"}),
            ({"prompt_tokens": -1, "completion_tokens": None}, {"prompt_ms": -5}),
            ({"completion_tokens_details": 5}, {"predicted_ms": 10**400}),
            ([1, 2], "llama"),
        ],
    )
    async def test_facts_of_the_wrong_type_are_dropped_and_the_answer_kept(
        self, server: TranscriptServer, provider: OpenAIProvider, usage: Any, timings: Any
    ) -> None:
        last = {**chunk("a", finish="stop"), "usage": usage, "timings": timings}
        server.add(Reply([sse(last), DONE]))
        assert await everything(provider) == ["a", Chunk(attempts=1)]
        assert provider.last_usage is None or provider.last_usage.prompt_tokens == 0


class TestReasoning:
    @pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
    async def test_reasoning_deltas_come_as_reasoning_chunks_before_the_answer(
        self, server: TranscriptServer, provider: OpenAIProvider, field: str
    ) -> None:
        steps = [sse(chunk("", role=True)), sse(reasoning("hmm", field=field))]
        server.add(Reply([*steps, sse(chunk("x")), sse(chunk(finish="stop")), DONE]))
        items = await everything(provider)
        assert items[:2] == [Chunk(reasoning="hmm"), "x"]

    async def test_init_latency_counts_thinking_and_first_content_latency_the_answer(
        self, server: TranscriptServer, provider: OpenAIProvider
    ) -> None:
        usage = {"prompt_tokens": 5, "completion_tokens": 4}
        steps = [sse(reasoning("let me")), sse(reasoning(" think")), sse(chunk("x = 1"))]
        tail = [sse({**chunk(finish="stop"), "usage": usage, "timings": LLAMA_TIMINGS}), DONE]
        server.add(Reply([*steps, *tail]))
        async with TelemetryPipeline() as pipeline:
            assert await pipeline.generate("t1", Pausing(provider), "hi") == "x = 1"
            pipeline.record_outcome("t1", "pass")
        (run,) = pipeline.report.test_runs
        telemetry = run.telemetry
        assert telemetry is not None
        assert telemetry.init_latency is not None and telemetry.first_content_latency is not None
        assert telemetry.first_content_latency - telemetry.init_latency >= 0.049
        assert (telemetry.prompt_tokens, telemetry.completion_tokens) == (5, 4)
        assert telemetry.server is not None
        assert (telemetry.server.prompt_s, telemetry.server.generation_s) == (0.026, 0.061)
        assert telemetry.time_per_output_token is not None
        assert run.attempts == 1


class TestOptions:
    async def test_generation_options_and_a_system_message_go_into_the_request(
        self, server: TranscriptServer
    ) -> None:
        options = ProviderOptions(
            max_tokens=64, temperature=0.0, seed=7, system="Be terse.", stop=("```\n", "END")
        )
        provider = OpenAIProvider("m", server.url + "/v1", options=options, timeout=5.0)
        server.add(Reply([sse(chunk("a", finish="stop")), DONE]))
        await everything(provider)
        await provider.aclose()
        assert server.requests[0].body == {
            "model": "m",
            "messages": [
                {"role": "system", "content": "Be terse."},
                {"role": "user", "content": "hi"},
            ],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": 64,
            "temperature": 0.0,
            "seed": 7,
            "stop": ["```\n", "END"],
        }

    async def test_unset_options_are_not_sent_and_extra_body_wins(
        self, server: TranscriptServer
    ) -> None:
        options = ProviderOptions(temperature=0.5)
        provider = OpenAIProvider(
            "m", server.url + "/v1", options=options, extra_body={"temperature": 1.0}
        )
        server.add(Reply([sse(chunk("a", finish="stop")), DONE]))
        await everything(provider)
        await provider.aclose()
        body = server.requests[0].body
        assert body["temperature"] == 1.0
        assert not {"max_tokens", "seed", "stop"} & set(body)
        assert body["messages"] == [{"role": "user", "content": "hi"}]


class TestGenerate:
    async def test_a_whole_reply_comes_back_as_a_chunk_with_its_facts(
        self, server: TranscriptServer, provider: OpenAIProvider
    ) -> None:
        body = {
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "x = 1"}}],
            "usage": {
                "prompt_tokens": 2,
                "completion_tokens": 4,
                "completion_tokens_details": {"reasoning_tokens": 1},
            },
            "timings": LLAMA_TIMINGS,
        }
        server.add(Reply([sse(body)[6:-2]], content_type="application/json", chunked=False))
        assert await provider.generate("hi") == Chunk(
            text="x = 1",
            prompt_tokens=2,
            completion_tokens=4,
            reasoning_tokens=1,
            server_prompt_s=0.0255,
            server_generation_s=0.06125,
            attempts=1,
        )
        assert server.requests[0].body["stream"] is False
