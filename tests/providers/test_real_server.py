"""Opt-in: the `openai:` provider end to end against a real llama.cpp server.

Skipped unless `ORKET_REAL_OPENAI_URL` names the server's API root, e.g. after
`../shared/real-model/setup.sh` (see README, "Against a real local model"):

    export ORKET_REAL_OPENAI_URL=http://127.0.0.1:8090/v1
    python -m pytest tests/providers/test_real_server.py

`ORKET_REAL_MODEL` names the model (default `smollm2`; llama-cpp-python accepts any name).
"""

from __future__ import annotations

import os
import socket

import pytest

from orket_pipeline import TelemetryPipeline
from orket_pipeline.providers import (
    Chunk,
    OpenAIProvider,
    ProviderConnectionError,
    ProviderOptions,
    load_provider,
)

URL = os.environ.get("ORKET_REAL_OPENAI_URL", "")
MODEL = os.environ.get("ORKET_REAL_MODEL", "smollm2")
PROMPT = "Write a Python function add(a, b) that returns a + b. Reply with code only."
OPTIONS = ProviderOptions(max_tokens=48, temperature=0.0, seed=7, retries=0)

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not URL, reason="set ORKET_REAL_OPENAI_URL to a real server's API root"),
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_every_field_reaches_the_report_through_the_pipeline() -> None:
    provider = load_provider(f"openai:{MODEL}@{URL}", OPTIONS)
    assert isinstance(provider, OpenAIProvider)
    await provider.connect()
    async with TelemetryPipeline() as pipeline:
        text = await pipeline.generate("t1", provider, PROMPT)
        pipeline.record_outcome("t1", "pass")
    await provider.aclose()
    (run,) = pipeline.report.test_runs
    telemetry = run.telemetry
    assert text and run.output == text
    assert telemetry is not None and telemetry.error_type is None
    assert telemetry.init_latency is not None and telemetry.first_content_latency is not None
    assert 0 < telemetry.init_latency <= telemetry.first_content_latency
    assert telemetry.first_content_latency <= telemetry.total_latency
    # llama-cpp-python's server (0.3.36) sends no usage in a stream, stream_options or not:
    # the token fields are then null, as the contract says; llama.cpp's own server sends it.
    if telemetry.completion_tokens is not None:
        assert telemetry.prompt_tokens is not None and telemetry.prompt_tokens > 0
        assert 0 < telemetry.completion_tokens <= 48
        if telemetry.completion_tokens > 1:
            assert telemetry.time_per_output_token is not None
    else:
        assert telemetry.prompt_tokens is None and telemetry.time_per_output_token is None
    assert telemetry.chunk_count is not None and 1 < telemetry.chunk_count <= 48
    assert telemetry.inter_chunk_p50 is not None and telemetry.inter_chunk_max is not None
    assert run.attempts == 1


async def test_the_same_seed_and_temperature_zero_give_the_same_answer() -> None:
    provider = OpenAIProvider(MODEL, URL, options=OPTIONS)
    answers = []
    for _ in range(2):
        answers.append("".join([i async for i in provider.stream(PROMPT) if isinstance(i, str)]))
    await provider.aclose()
    assert answers[0] and answers[0] == answers[1]


async def test_a_whole_reply_carries_its_token_counts() -> None:
    provider = OpenAIProvider(MODEL, URL, options=OPTIONS, supports_streaming=False)
    reply = await provider.generate(PROMPT)
    await provider.aclose()
    assert isinstance(reply, Chunk) and reply.text
    assert reply.prompt_tokens is not None and reply.prompt_tokens > 0
    assert reply.completion_tokens is not None and 0 < reply.completion_tokens <= 48
    assert reply.attempts == 1


async def test_a_server_that_is_not_there_is_one_line_naming_it() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = OpenAIProvider(MODEL, f"http://127.0.0.1:{port}/v1")
    with pytest.raises(ProviderConnectionError, match=f"127.0.0.1:{port}"):
        await provider.connect()
    await provider.aclose()
