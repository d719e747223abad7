"""call_provider: one way to call a provider, for the wrapper and `--no-telemetry` alike, that no
provider can crash."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from time import perf_counter

import anyio
import pytest

from orket_pipeline._exceptions import ProviderCallError
from orket_pipeline.engine import Suite, Task
from orket_pipeline.engine._runner import execute, generate_directly
from orket_pipeline.providers import Chunk
from orket_pipeline.report._io import read_report
from orket_pipeline.telemetry._call import Call, call_provider, error_text
from tests.providers_fakes import Blocking, Failing, Streaming

pytestmark = pytest.mark.anyio


class AsyncCallable:
    """`generate` is an object with an async __call__ (unhashable, not a function)."""

    __hash__ = None  # type: ignore[assignment]

    async def __call__(self, prompt: str) -> str:
        return f"answer to {prompt}"


class CallableProvider:
    supports_streaming = False

    def __init__(self) -> None:
        self.generate = AsyncCallable()


class Endless:
    """Streams one chunk, then hangs; records whether its stream was closed."""

    supports_streaming = True

    def __init__(self) -> None:
        self.closed = anyio.Event()

    async def stream(self, prompt: str) -> AsyncIterator[str]:
        try:
            yield "x"
            await anyio.sleep_forever()
        finally:
            self.closed.set()


class Returning:
    supports_streaming = False

    def __init__(self, output: object) -> None:
        self.output = output

    async def generate(self, prompt: str) -> object:
        return self.output


class ChunksOf:
    supports_streaming = True

    def __init__(self, *chunks: object) -> None:
        self.chunks = chunks

    async def stream(self, prompt: str) -> AsyncIterator[object]:
        for chunk in self.chunks:
            yield chunk


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


class Lengthless(str):
    def __len__(self) -> int:
        raise RuntimeError("no length")


def spurious_cancellation() -> BaseException:
    # trio's Cancelled has no public constructor: a provider can only raise asyncio's.
    return asyncio.CancelledError()


class TestCalling:
    async def test_an_async_callable_object_is_awaited_by_both_paths(self) -> None:
        provider = CallableProvider()
        assert await call_provider(provider, "p", Call(False)) == "answer to p"  # type: ignore[arg-type]
        assert await generate_directly(provider, "p") == "answer to p"  # type: ignore[arg-type]

    async def test_a_plain_def_is_stamped_in_its_thread(self) -> None:
        call = Call(False, t_started=0.0)
        assert await call_provider(Blocking(0.01), "p", call) == "y = 2\n"
        assert call.t_started > 0.0 and call.t_done - call.t_started >= 0.01

    async def test_streaming_counts_non_empty_chunks_and_stamps_them(self) -> None:
        call = Call(True, t_started=0.0)
        text = await call_provider(Streaming([(0, ""), (0, "a"), (0, "b")]), "p", call)
        assert text == "ab" and call.chunk_count == 2
        assert call.t_first_chunk is not None and call.t_last_chunk is not None
        assert call.t_first_chunk <= call.t_last_chunk <= call.t_done

    async def test_without_telemetry_a_cancelled_stream_is_closed_at_once(self) -> None:
        provider = Endless()
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(generate_directly, provider, "p")
                await anyio.wait_all_tasks_blocked()
                scope.cancel()
        # aclosing: closed when the run was cancelled, not whenever it is garbage-collected.
        assert provider.closed.is_set()

    async def test_a_stream_that_is_not_a_generator_is_closed_after_its_last_chunk(self) -> None:
        class Iterator:
            def __init__(self) -> None:
                self.chunks, self.closed = ["a", "b"], False

            def __aiter__(self) -> Iterator:
                return self

            async def __anext__(self) -> str:
                if not self.chunks:
                    raise StopAsyncIteration
                return self.chunks.pop(0)

            async def aclose(self) -> None:
                self.closed = True

        stream = Iterator()

        class Provider:
            supports_streaming = True

            def stream(self, prompt: str) -> Iterator:
                return stream

        assert await call_provider(Provider(), "p", Call(True)) == "ab"  # type: ignore[arg-type]
        assert stream.closed


class TestHostileProviders:
    async def test_a_str_subclass_whose_len_raises_comes_back_as_its_plain_text(self) -> None:
        text = await call_provider(Returning(Lengthless("x = 1")), "p", Call(False))  # type: ignore[arg-type]
        assert type(text) is str and text == "x = 1"

    @pytest.mark.parametrize(
        ("provider", "message"),
        [
            (Returning(42), "the provider returned int, not str"),
            (Returning("ok \ud800"), "not valid Unicode (a lone surrogate at 3)"),
            (ChunksOf("ok ", "\ud800"), "not valid Unicode (a lone surrogate at 3)"),
        ],
        ids=["not text", "lone surrogate", "lone surrogate in a chunk"],
    )
    async def test_an_output_that_is_not_encodable_text_is_a_provider_error(
        self, provider: object, message: str
    ) -> None:
        with pytest.raises(
            ProviderCallError, match=message.replace("(", r"\(").replace(")", r"\)")
        ):
            await call_provider(provider, "p", Call(provider.supports_streaming))  # type: ignore[arg-type]

    async def test_a_cancelled_error_raised_with_nothing_cancelled_is_a_provider_error(
        self, anyio_backend: str
    ) -> None:
        if anyio_backend == "asyncio" and sys.version_info < (3, 11):
            pytest.skip("Python 3.10 cannot tell it from a real cancellation (no cancelling())")
        with pytest.raises(ProviderCallError, match="CancelledError of its own"):
            await call_provider(Failing(spurious_cancellation()), "p", Call(False))  # type: ignore[arg-type]

    async def test_a_real_cancellation_is_never_turned_into_an_error(self) -> None:
        provider = Endless()
        with anyio.move_on_after(0) as scope:
            await call_provider(provider, "p", Call(True))  # type: ignore[arg-type]
        assert scope.cancelled_caught

    def test_error_text_survives_a_raising_str_and_escapes_lone_surrogates(self) -> None:
        assert error_text(Unprintable()) == "<unprintable Unprintable>"
        assert error_text(ValueError("bad \ud800 byte")) == "bad \\ud800 byte"
        assert error_text(ValueError("x" * 600)) == "x" * 500


HOSTILE = (
    (Failing(Unprintable()), "Unprintable: <unprintable Unprintable>"),
    (Failing(RuntimeError("bad \ud800")), "RuntimeError: bad \\ud800"),
    (Returning("ok \ud800"), "ProviderCallError: the provider's output is not valid Unicode"),
    (ChunksOf(Lengthless("x")), "RuntimeError: no length"),
    (Failing(spurious_cancellation()), "ProviderCallError: the provider raised CancelledError"),
)


class TestThroughTheEngine:
    """None of these may crash the run or lose the report: each is an `error` with a reason."""

    @pytest.mark.parametrize("telemetry", [True, False], ids=["telemetry", "no-telemetry"])
    @pytest.mark.parametrize(
        ("provider", "reason"),
        HOSTILE,
        ids=["unprintable", "surrogate message", "surrogate output", "lengthless chunk", "cancel"],
    )
    async def test_a_hostile_provider_is_an_error_with_a_reason_and_the_report_is_kept(
        self, tmp_path: Path, anyio_backend: str, provider: object, reason: str, telemetry: bool
    ) -> None:
        if "cancel" in reason.lower() and anyio_backend == "asyncio" and sys.version_info < (3, 11):
            pytest.skip("Python 3.10 cannot tell it from a real cancellation (no cancelling())")
        suite = Suite(name="s", tasks=(Task(id="bad", prompt="p"), Task(id="good", prompt="p")))
        out = tmp_path / "r.json"

        class OneBad:
            supports_streaming = getattr(provider, "supports_streaming", False)

            async def generate(self, prompt: str) -> object:
                self.calls = getattr(self, "calls", 0) + 1
                if self.calls == 1:
                    return await provider.generate(prompt)  # type: ignore[attr-defined]
                return "x = 1\n"

            async def stream(self, prompt: str) -> AsyncIterator[object]:
                self.calls = getattr(self, "calls", 0) + 1
                if self.calls == 1:
                    async with aclosing(provider.stream(prompt)) as inner:  # type: ignore[attr-defined]
                        async for chunk in inner:
                            yield chunk
                else:
                    yield "x = 1\n"

        report = await execute(
            suite,
            OneBad(),
            report_path=out,
            telemetry=telemetry,
            concurrency=1,  # type: ignore[arg-type]
        )
        written = read_report(out)
        for runs in (report.test_runs, written.test_runs):
            bad, good = runs
            assert (bad.test_id, bad.outcome, good.outcome) == ("bad", "error", "pass")
            assert bad.reason is not None and bad.reason.startswith(reason)
            assert bad.error is not None and bad.reason.startswith(bad.error.type)
            if telemetry:
                assert bad.telemetry is not None
                assert bad.telemetry.error_type == bad.error.type


class TestChunks:
    async def test_a_generate_returning_a_chunk_gives_its_text_and_keeps_its_facts(self) -> None:
        call = Call(False, perf_counter())
        text = await call_provider(Returning(Chunk(text="ok", completion_tokens=2)), "p", call)
        assert text == "ok"
        assert call.facts == [Chunk(text="ok", completion_tokens=2)]

    async def test_reasoning_is_a_chunk_but_not_output_and_not_content(self) -> None:
        call = Call(True, perf_counter())
        provider = ChunksOf(Chunk(reasoning="hm"), "", "a", Chunk(text="b"), Chunk(attempts=1))
        assert await call_provider(provider, "p", call) == "ab"
        assert call.chunk_count == 3 and call.chunk_times is not None
        assert call.t_first_chunk is not None and call.t_first_content is not None
        assert call.t_first_chunk < call.t_first_content
        assert call.facts == [Chunk(attempts=1)]

    async def test_a_stream_of_one_chunk_keeps_no_chunk_times(self) -> None:
        call = Call(True, perf_counter())
        assert await call_provider(ChunksOf("abc"), "p", call) == "abc"
        assert call.chunk_times is None and call.t_first_content == call.t_first_chunk
