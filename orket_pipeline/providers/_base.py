"""The provider protocol: what the generation wrapper calls."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Protocol, runtime_checkable

__all__ = ["Provider"]


@runtime_checkable
class Provider(Protocol):
    """A source of model output.

    `supports_streaming` is an explicit capability, never inferred from a response: when True,
    the wrapper iterates `stream(prompt)` and `init_latency` is the time to its first non-empty
    chunk; when False it calls `generate(prompt)` and `init_latency` is null. `generate` may be
    an `async def`, or a plain `def`, which then runs in a worker thread so it cannot block the
    event loop. A provider may also carry a `name` (shown in report metadata) and an async
    `aclose()` (called by the engine when it is done with the provider).
    """

    supports_streaming: bool

    def generate(self, prompt: str) -> Awaitable[str] | str:
        """Return the whole output for `prompt` (used when not streaming)."""
        ...

    def stream(self, prompt: str) -> AsyncIterator[str]:
        """Yield the output for `prompt` as text chunks (used when streaming)."""
        ...
