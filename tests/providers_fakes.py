"""Small in-process providers for the pipeline's tests."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence

import anyio


class Instant:
    """Non-streaming, answers at once."""

    supports_streaming = False

    def __init__(self, text: str = "def f():\n    return 1\n") -> None:
        self.text = text

    async def generate(self, prompt: str) -> str:
        return self.text


class Delayed:
    """Non-streaming, answers after `delay_s`; `observed_s` is the delay as it really elapsed."""

    supports_streaming = False

    def __init__(self, delay_s: float, text: str = "x = 1\n") -> None:
        self.delay_s, self.text = delay_s, text
        self.observed_s = 0.0

    async def generate(self, prompt: str) -> str:
        t_enter = time.perf_counter()
        await anyio.sleep(self.delay_s)
        self.observed_s = time.perf_counter() - t_enter
        return self.text


class Blocking:
    """A plain `def` provider that blocks its thread."""

    supports_streaming = False

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    def generate(self, prompt: str) -> str:
        time.sleep(self.delay_s)
        return "y = 2\n"


class Streaming:
    """Streams `chunks`, each after its delay; raises `fail` after `fail_after` chunks.

    `yielded_at` holds, per chunk, the time since the stream started when the provider
    yielded it: the delays as they really elapsed, whatever the machine's load.
    """

    supports_streaming = True

    def __init__(
        self,
        chunks: Sequence[tuple[float, str]],
        fail: BaseException | None = None,
        fail_after: int = 0,
    ) -> None:
        self.chunks, self.fail, self.fail_after = chunks, fail, fail_after
        self.yielded_at: list[float] = []

    async def stream(self, prompt: str) -> AsyncIterator[str]:
        t_enter = time.perf_counter()
        for index, (delay, text) in enumerate(self.chunks):
            if self.fail is not None and index == self.fail_after:
                raise self.fail
            await anyio.sleep(delay)
            self.yielded_at.append(time.perf_counter() - t_enter)
            yield text
        if self.fail is not None and self.fail_after >= len(self.chunks):
            raise self.fail


class Failing:
    """Non-streaming, raises at once."""

    supports_streaming = False

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    async def generate(self, prompt: str) -> str:
        raise self.exc


class Gated:
    """Non-streaming; signals `entered`, then answers only once `release` is set."""

    supports_streaming = False

    def __init__(self) -> None:
        self.entered = anyio.Event()
        self.release = anyio.Event()

    async def generate(self, prompt: str) -> str:
        self.entered.set()
        await self.release.wait()
        return "x = 1\n"
