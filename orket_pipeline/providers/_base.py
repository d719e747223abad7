"""The provider protocol: what the generation wrapper calls."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Protocol, runtime_checkable

import msgspec

__all__ = ["FACT_FIELDS", "Chunk", "Provider", "ProviderOptions"]


class ProviderOptions(msgspec.Struct, frozen=True, kw_only=True):
    """What the command line (or a suite) asks of a provider built from a spec.

    Generation options go into every request of the HTTP providers (`max_tokens`,
    `temperature`, `seed`, a `system` prompt, `stop` sequences); `stream` False asks for whole
    replies (`init_latency` is then null). `retries` is how often a transient failure before
    any output (429/503, a connection reset) is retried; `max_connections` sizes the HTTP pool
    (the engine's concurrency). A `python:` or `replay:` provider is the user's own and takes
    none of them.
    """

    max_tokens: int | None = None
    temperature: float | None = None
    seed: int | None = None
    system: str | None = None
    stop: tuple[str, ...] = ()
    stream: bool | None = None
    retries: int = 2
    max_connections: int | None = None


class Chunk(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """More than answer text: what a provider may yield from `stream` (or return from
    `generate`) beside plain `str` chunks.

    `text` is answer text (it goes into the output, like a `str` chunk); `reasoning` is a
    reasoning model's thinking (`delta.reasoning_content`, Ollama's `thinking`): it counts as a
    token for `init_latency` and the chunk gaps, but is not part of the output. The other
    fields are the server's account, sent once, usually in the last chunk: token counts, its
    own timings in seconds, and `attempts` (requests the provider made for this generation,
    retries included). A later value replaces an earlier one; None means "not sent".
    """

    text: str = ""
    reasoning: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    server_prompt_s: float | None = None
    server_generation_s: float | None = None
    server_load_s: float | None = None
    attempts: int | None = None

    def has_facts(self) -> bool:
        """Whether it carries anything besides text. Never raises."""
        return any(getattr(self, name) is not None for name in FACT_FIELDS)


#: The fields of a `Chunk` that are the server's facts rather than text, from the Struct itself.
FACT_FIELDS: tuple[str, ...] = tuple(
    field.name for field in msgspec.structs.fields(Chunk) if field.name not in ("text", "reasoning")
)


@runtime_checkable
class Provider(Protocol):
    """A source of model output.

    `supports_streaming` is an explicit capability, never inferred from a response: when True,
    the wrapper iterates `stream(prompt)` and `init_latency` is the time to its first non-empty
    chunk; when False it calls `generate(prompt)` and `init_latency` is null. `generate` may be
    an `async def`, or a plain `def`, which then runs in a worker thread so it cannot block the
    event loop. A provider may also carry a `name` (shown in report metadata) and an async
    `aclose()` (called by the engine when it is done with the provider).

    Besides `str`, `stream` may yield and `generate` may return `Chunk` objects: reasoning text,
    token counts and server timings, which go into the run's telemetry.
    """

    supports_streaming: bool

    def generate(self, prompt: str) -> Awaitable[str | Chunk] | str | Chunk:
        """Return the whole output for `prompt` (used when not streaming)."""
        ...

    def stream(self, prompt: str) -> AsyncIterator[str | Chunk]:
        """Yield the output for `prompt` as text chunks (used when streaming)."""
        ...
