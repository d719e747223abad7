"""OllamaProvider: thinking, token counts and durations of the done line, generation options."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from orket_pipeline import TelemetryPipeline
from orket_pipeline.providers import Chunk, OllamaProvider, ProviderOptions, RetryPolicy

from ._transcript_server import Pausing, Reply, TranscriptServer, ndjson
from .test_ollama import NDJSON

pytestmark = pytest.mark.anyio

DONE = {
    "model": "m",
    "done": True,
    "done_reason": "stop",
    "total_duration": 900_000_000,
    "load_duration": 250_000_000,
    "prompt_eval_count": 26,
    "prompt_eval_duration": 130_000_000,
    "eval_count": 42,
    "eval_duration": 480_500_000,
}
FACTS = Chunk(
    prompt_tokens=26,
    completion_tokens=42,
    server_prompt_s=0.13,
    server_generation_s=0.4805,
    server_load_s=0.25,
    attempts=1,
)


def line(*, chat: bool, text: str = "", thinking: str = "") -> bytes:
    body: dict[str, Any] = {"model": "m", "done": False}
    if chat:
        body["message"] = {"role": "assistant", "content": text, "thinking": thinking}
    else:
        body |= {"response": text, "thinking": thinking}
    return ndjson(body)


def done(*, chat: bool) -> bytes:
    message = {"message": {"role": "assistant", "content": ""}} if chat else {"response": ""}
    return ndjson({**DONE, **message})


@pytest.fixture(params=["generate", "chat"])
async def provider(
    server: TranscriptServer, request: pytest.FixtureRequest
) -> AsyncIterator[OllamaProvider]:
    provider = OllamaProvider(
        "m", server.url, endpoint=request.param, timeout=5.0, retry=RetryPolicy(0)
    )
    yield provider
    await provider.aclose()


class TestStreaming:
    async def test_thinking_then_answer_then_the_done_lines_facts(
        self, server: TranscriptServer, provider: OllamaProvider
    ) -> None:
        chat = provider.endpoint == "chat"
        steps = [line(chat=chat, thinking="hmm"), line(chat=chat, text="x = 1"), done(chat=chat)]
        server.add(Reply(steps, content_type=NDJSON))
        items = [item async for item in provider.stream("hi")]
        assert items == [Chunk(reasoning="hmm"), "x = 1", FACTS]

    async def test_thinking_counts_for_init_latency_not_for_first_content(
        self, server: TranscriptServer, provider: OllamaProvider
    ) -> None:
        chat = provider.endpoint == "chat"
        steps = [line(chat=chat, thinking="hmm"), line(chat=chat, text="x")]
        server.add(Reply([*steps, done(chat=chat)], content_type=NDJSON))
        async with TelemetryPipeline() as pipeline:
            assert await pipeline.generate("t1", Pausing(provider), "hi") == "x"
            pipeline.record_outcome("t1", "pass")
        telemetry = pipeline.report.test_runs[0].telemetry
        assert telemetry is not None
        assert telemetry.init_latency is not None and telemetry.first_content_latency is not None
        assert telemetry.first_content_latency - telemetry.init_latency >= 0.049
        assert (telemetry.prompt_tokens, telemetry.completion_tokens) == (26, 42)
        assert telemetry.server is not None
        assert (telemetry.server.prompt_s, telemetry.server.load_s) == (0.13, 0.25)

    async def test_counts_and_durations_of_the_wrong_type_are_dropped_and_the_answer_kept(
        self, server: TranscriptServer, provider: OllamaProvider
    ) -> None:
        chat = provider.endpoint == "chat"
        wrong = {"prompt_eval_count": "26", "eval_count": 4.5, "load_duration": -1}
        wrong |= {"prompt_eval_duration": "slow", "eval_duration": 10**400}
        message = {"message": {"role": "assistant", "content": ""}} if chat else {"response": ""}
        body = ndjson({**DONE, **message, **wrong})
        server.add(Reply([line(chat=chat, text="x"), body], content_type=NDJSON))
        assert [item async for item in provider.stream("hi")] == ["x", Chunk(attempts=1)]


class TestGenerate:
    async def test_a_whole_reply_comes_back_as_a_chunk_with_its_facts(
        self, server: TranscriptServer, provider: OllamaProvider
    ) -> None:
        body = done(chat=provider.endpoint == "chat").replace(b'"content": ""', b'"content": "y"')
        body = body.replace(b'"response": ""', b'"response": "y"')
        server.add(Reply([body], content_type="application/json", chunked=False))
        assert await provider.generate("hi") == Chunk(
            text="y",
            prompt_tokens=FACTS.prompt_tokens,
            completion_tokens=FACTS.completion_tokens,
            server_prompt_s=FACTS.server_prompt_s,
            server_generation_s=FACTS.server_generation_s,
            server_load_s=FACTS.server_load_s,
            attempts=1,
        )


class TestOptions:
    OPTIONS = ProviderOptions(
        max_tokens=32, temperature=0.2, seed=3, system="Terse.", stop=("\n\n",)
    )

    async def test_generate_endpoint_gets_ollama_options_and_a_system_field(
        self, server: TranscriptServer
    ) -> None:
        provider = OllamaProvider("m", server.url, provider_options=self.OPTIONS)
        server.add(Reply([done(chat=False)], content_type=NDJSON))
        [item async for item in provider.stream("hi")]
        await provider.aclose()
        assert server.requests[0].body == {
            "model": "m",
            "stream": True,
            "prompt": "hi",
            "system": "Terse.",
            "options": {"num_predict": 32, "temperature": 0.2, "seed": 3, "stop": ["\n\n"]},
        }

    async def test_chat_gets_a_system_message_first_and_the_options_mapping_wins(
        self, server: TranscriptServer
    ) -> None:
        provider = OllamaProvider(
            "m",
            server.url,
            endpoint="chat",
            options={"temperature": 0.9, "num_ctx": 4096},
            provider_options=self.OPTIONS,
        )
        server.add(Reply([done(chat=True)], content_type=NDJSON))
        [item async for item in provider.stream("hi")]
        await provider.aclose()
        body = server.requests[0].body
        assert body["messages"] == [
            {"role": "system", "content": "Terse."},
            {"role": "user", "content": "hi"},
        ]
        assert body["options"] == {
            "num_predict": 32,
            "temperature": 0.9,
            "seed": 3,
            "stop": ["\n\n"],
            "num_ctx": 4096,
        }
        assert "system" not in body
