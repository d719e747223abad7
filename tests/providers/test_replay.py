"""ReplayProvider: cassettes, recorded timing, recorded errors, bad cassettes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from orket_pipeline._exceptions import ProviderError
from orket_pipeline.providers import (
    ReplayChunk,
    ReplayError,
    ReplayFault,
    ReplayProvider,
    ReplayRecord,
)


def write_cassette(path: Path, *lines: Any) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def record(
    prompt: str, *chunks: tuple[float, str], error: dict[str, Any] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prompt": prompt,
        "chunks": [{"delay_s": d, "text": t} for d, t in chunks],
    }
    if error is not None:
        out["error"] = error
    return out


@pytest.fixture
def cassette(tmp_path: Path) -> Path:
    return write_cassette(
        tmp_path / "demo.jsonl",
        {"cassette": 1, "streaming": True},
        "",
        record("add", (0.05, "def add(a, b):"), (0.15, "\n    return a + b\n")),
        record("empty first", (0.0, ""), (0.0, "x = 1")),
        record(
            "boom",
            (0.0, "def "),
            (0.0, "never"),
            error={"type": "T", "message": "reset", "after_chunks": 1},
        ),
    )


async def collect(provider: ReplayProvider, prompt: str) -> list[tuple[float, str]]:
    start = time.perf_counter()
    return [(time.perf_counter() - start, text) async for text in provider.stream(prompt)]


@pytest.mark.anyio
class TestReplaying:
    async def test_stream_yields_each_chunk_after_its_recorded_delay(self, cassette: Path) -> None:
        provider = ReplayProvider.from_file(cassette)
        (t1, first), (t2, second) = await collect(provider, "add")
        assert (first, second) == ("def add(a, b):", "\n    return a + b\n")
        assert 0.05 <= t1 < 0.12
        assert 0.20 <= t2 < 0.30

    async def test_generate_sleeps_the_total_and_returns_the_joined_text(
        self, cassette: Path
    ) -> None:
        provider = ReplayProvider.from_file(cassette)
        start = time.perf_counter()
        assert await provider.generate("add") == "def add(a, b):\n    return a + b\n"
        assert 0.20 <= time.perf_counter() - start < 0.30

    async def test_empty_chunks_are_yielded_as_recorded(self, cassette: Path) -> None:
        provider = ReplayProvider.from_file(cassette)
        assert [text for _, text in await collect(provider, "empty first")] == ["", "x = 1"]

    async def test_recorded_error_is_raised_after_its_chunks(self, cassette: Path) -> None:
        provider = ReplayProvider.from_file(cassette)
        received = []
        with pytest.raises(ReplayError, match=r"^reset$") as info:
            async for text in provider.stream("boom"):
                received.append(text)
        assert received == ["def "]
        assert info.value.error_type == "T"
        with pytest.raises(ReplayError, match=r"^reset$"):
            await provider.generate("boom")

    async def test_unknown_prompt_raises_naming_it(self, cassette: Path) -> None:
        provider = ReplayProvider.from_file(cassette)
        with pytest.raises(ReplayError, match="no record for the prompt 'Write sub") as info:
            await provider.generate("Write sub(a, b) " + "x" * 500)
        assert info.value.error_type == "missing_record"
        assert len(str(info.value)) < 200
        with pytest.raises(ReplayError, match="no record"):
            await collect(provider, "nope")

    async def test_built_in_memory(self) -> None:
        records = [
            ReplayRecord("p", [ReplayChunk(0.0, "a")], ReplayFault("E", "m", after_chunks=1)),
            ReplayRecord("q", [ReplayChunk(0.0, "b")]),
        ]
        provider = ReplayProvider(records, streaming=False)
        assert provider.supports_streaming is False
        assert await provider.generate("q") == "b"


def test_header_sets_streaming_and_is_optional(tmp_path: Path) -> None:
    off = write_cassette(tmp_path / "off.jsonl", {"cassette": 1, "streaming": False}, record("p"))
    bare = write_cassette(tmp_path / "bare.jsonl", record("p"))
    assert ReplayProvider.from_file(off).supports_streaming is False
    assert ReplayProvider.from_file(bare).supports_streaming is True
    assert ReplayProvider.from_file(bare).name == f"replay:{bare}"


@pytest.mark.parametrize(
    ("lines", "bad_line", "problem"),
    [
        (["{not json"], 1, "malformed|JSON"),
        ([record("a"), '{"prompt": 3}'], 2, r"Expected `str`, got `int` - at `\$.prompt`"),
        ([{"prompt": "a", "chunks": [{"delay_s": -1, "text": "x"}]}], 1, ">= 0"),
        ([{"prompt": "a", "chunks": [{"delay_s": "1", "text": "x"}]}], 1, "Expected `float`"),
        ([{"prompt": "a", "chunks": [{"text": "x"}]}], 1, "missing required field `delay_s`"),
        ([record("a", error={"type": "T", "message": "m", "after_chunks": 2})], 1, "only 0 chunks"),
        ([record("a", error={"type": "T"})], 1, "missing required field `message`"),
        ([record("a"), "", record("a")], 3, "same prompt as line 1"),
        ([{"cassette": 2}], 1, "unsupported cassette version 2"),
        ([{"cassette": 1, "streaming": "yes"}], 1, "Expected `bool`"),
        ([record("a"), {"cassette": 1}], 2, "missing required field `prompt`"),
        (["[1, 2]"], 1, "Expected `object`"),
        (["[" * 100_000], 1, "JSON nested too deeply"),
        ([record("a"), '{"prompt": "b", "x": ' + "[" * 100_000], 2, "JSON nested too deeply"),
    ],
)
def test_bad_cassette_names_file_and_line(
    tmp_path: Path, lines: list[Any], bad_line: int, problem: str
) -> None:
    path = write_cassette(tmp_path / "bad.jsonl", *lines)
    with pytest.raises(ProviderError, match=rf"bad\.jsonl line {bad_line}: .*({problem})"):
        ReplayProvider.from_file(path)


def test_missing_cassette_file(tmp_path: Path) -> None:
    with pytest.raises(ProviderError, match=r"cannot read cassette .*nope\.jsonl"):
        ReplayProvider.from_file(tmp_path / "nope.jsonl")


def test_duplicate_prompts_in_memory_are_rejected() -> None:
    with pytest.raises(ValueError, match="two records for the prompt 'p'"):
        ReplayProvider([ReplayRecord("p"), ReplayRecord("p")])
