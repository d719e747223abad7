"""Calling a provider: the one function both the wrapper and `--no-telemetry` go through.

`call_provider` streams when the provider declares `supports_streaming = True` (closing the
stream at once, as `aclosing` does, when the run fails or is cancelled), awaits an async
`generate` (or an object whose `__call__` is async) and runs a plain-`def` one in a worker
thread. It returns the output as a plain `str` that can be encoded, or raises; the stamps it
takes go into a `Call`.

Nothing a provider does may crash the engine: an output that is not text, text that cannot be
encoded (a lone surrogate), and a `CancelledError` the provider raised of its own with no
cancellation pending are each a `ProviderCallError`, recorded as the run's error. `error_text`
gives an exception's message even when its `__str__` raises or holds a lone surrogate.
"""

from __future__ import annotations

import asyncio
import inspect
import weakref
from collections.abc import Awaitable, Callable
from time import perf_counter
from types import AsyncGeneratorType, FunctionType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import msgspec

from .._exceptions import ProviderCallError
from ..providers import Chunk

if TYPE_CHECKING:
    from ..providers import Provider

__all__ = [
    "Call",
    "call_failed",
    "call_provider",
    "error_text",
    "error_type_name",
    "output_text",
    "plain_async",
    "start_call",
]


# Whether a provider's `generate` (a function or a method's function) is a coroutine function,
# by the function's id, checked against a weak reference (so a reused id cannot mislead and no
# provider is kept alive): inspecting on every call would cost a microsecond on the engine's
# path, and so would hashing its code object.
# A plain tuple (weak reference, is_async): unpacked, it is quicker than a NamedTuple's fields.
_kinds: dict[int, tuple[weakref.ref[FunctionType], bool]] = {}

#: The providers seen with an `async def generate` (a plain function) and no
#: `supports_streaming = True`, by id, each checked against a weak reference (so a reused id
#: cannot mislead and no provider is kept alive): the wrapper awaits their `generate` with no
#: decision to take. A provider's kind is read at its first call in this process: changing its
#: `supports_streaming` or its `generate` afterwards is not seen (both are capabilities, fixed
#: for the object's life). A provider that refuses weak references is decided on every call.
plain_async: dict[int, weakref.ref[Any]] = {}


class Call(msgspec.Struct, gc=False, eq=False):
    """The stamps of one provider call, all `time.perf_counter()` in seconds.

    `t_started` is set by the caller at dispatch; a plain-`def` provider resets it in its
    worker thread (waiting for a free thread is not latency). `t_first_chunk`/`t_last_chunk`
    are None when no non-empty chunk arrived; a non-streaming answer counts as one chunk.
    `t_first_content` is the first chunk of answer text (reasoning is a chunk, not content);
    `chunk_times` the stamp of every non-empty chunk of a stream of two or more; `facts` the
    `Chunk`s that carried token counts, server timings or attempts. `test_id` names the run
    (the wrapper's table of generations in flight is keyed by the call itself, compared by
    identity: one test id may be in flight twice).
    """

    streaming: bool
    t_started: float = 0.0
    test_id: str = ""
    t_done: float = 0.0
    chunk_count: int = 0
    t_first_chunk: float | None = None
    t_last_chunk: float | None = None
    t_first_content: float | None = None
    chunk_times: list[float] | None = None
    facts: list[Chunk] | None = None


def streams(provider: Provider) -> bool:
    """Whether `provider` declares streaming (the flag must be exactly True).

    Raises what reading `supports_streaming` raises, but AttributeError (no flag: not streaming).
    """
    return getattr(provider, "supports_streaming", False) is True


async def call_provider(provider: Provider, prompt: str, call: Call) -> str:
    """Generate through `provider`, stamping `call`. Awaits only the provider.

    The three steps the wrapper takes inline (`start_call`, `output_text`, `call_failed`),
    as one coroutine for callers that want one (`--no-telemetry`).

    Returns:
        The output as a plain `str` (a `str` subclass's text, never the subclass itself).

    Raises:
        Whatever the provider raised, cancellation included; `ProviderCallError` when the
        output is not text or cannot be encoded, or for a `CancelledError` the provider raised
        with no cancellation pending.
    """
    try:
        output = await start_call(provider, prompt, call)
        if not call.t_done:
            call.t_done = perf_counter()
        return output_text(output, call)
    except BaseException as exc:
        raise await call_failed(exc) from None


def start_call(provider: Provider, prompt: str, call: Call) -> Awaitable[object]:
    """The awaitable of one provider call: the provider's own coroutine for an async
    `generate` (nothing in between: its caller stamps `call.t_done` when it returns), the
    stream read into `call` for a streaming provider, or a worker thread running a plain
    `def` (stamped in the thread).

    Raises what the provider's `generate` raises before returning an awaitable (call it
    inside the `try` that handles the provider's failures).
    """
    if call.streaming:
        return _stream(provider, prompt, call)
    generate = provider.generate
    function = getattr(generate, "__func__", generate)
    kind = _kinds.get(id(function))
    if kind is not None and kind[0]() is function:
        is_async = kind[1]
    else:
        is_async = _remember_kind(generate, function)
    call.chunk_count = 1  # a plain answer is one chunk (read only when it succeeds)
    if is_async:
        if type(function) is FunctionType:
            _remember_plain(provider)
        return generate(prompt)  # type: ignore[return-value]  # checked just above
    # abandon_on_cancel: a timeout or Ctrl-C must not wait for a stuck thread.
    return anyio.to_thread.run_sync(_timed, generate, prompt, call, abandon_on_cancel=True)


def output_text(output: object, call: Call) -> str:
    """What a provider call returned, as the text the engine gets: a plain `str`, from a
    `Chunk` its text (its facts kept in `call`). Raises `ProviderCallError` when it is not
    text or cannot be encoded."""
    if type(output) is str and output.isascii():
        return output  # the common case, checked inline
    if isinstance(output, Chunk):
        if output.has_facts():
            call.facts = [output]
        output = output.text
    return _text(output)


async def call_failed(exc: BaseException) -> BaseException:
    """The exception a failed provider call raises to the engine: `exc` itself, or a
    `ProviderCallError` (caused by it) for a `CancelledError` the provider raised with
    nothing cancelled. Never raises (but cancellation, at a checkpoint under trio)."""
    if await _spurious_cancellation(exc):
        error = ProviderCallError(
            "the provider raised CancelledError of its own (nothing was cancelled)"
        )
        error.__cause__ = exc
        return error
    return exc


async def _stream(provider: Provider, prompt: str, call: Call) -> str:
    parts: list[str] = []
    times: list[float] = []
    stamp, keep = times.append, parts.append
    first_text: float | None = None  # the first plain-text chunk's stamp
    stream = provider.stream(prompt)
    try:
        async for chunk in stream:
            if type(chunk) is str:
                if chunk:
                    # Stamped as the chunk reaches the engine's task, before anything else.
                    now = perf_counter()
                    stamp(now)
                    keep(chunk)
                    if first_text is None:
                        first_text = now
            elif isinstance(chunk, Chunk):
                _take(chunk, call, times, parts)
            elif chunk:
                stamp(perf_counter())
                keep(chunk)  # not text: "".join raises TypeError below, a failure
        call.t_done = perf_counter()
    except BaseException:
        # As `contextlib.aclosing` does: a failed, cancelled or timed-out run closes the
        # provider's stream (and its connection) at once, not whenever it is garbage-collected.
        await _aclose(stream)
        raise
    finally:
        call.chunk_count = len(times)
        if times:
            call.t_first_chunk, call.t_last_chunk = times[0], times[-1]
            if len(times) > 1:
                call.chunk_times = times
        if first_text is not None and (
            call.t_first_content is None or first_text < call.t_first_content
        ):
            call.t_first_content = first_text  # answer text came as plain str first
    if type(stream) is not AsyncGeneratorType:
        await _aclose(stream)  # an exhausted generator is closed already: skip the await
    return "".join(parts)  # a chunk that is not text raises TypeError here: a failure


def _take(chunk: Chunk, call: Call, times: list[float], parts: list[str]) -> None:
    """A `Chunk` in a stream: reasoning or text is a token (stamped), facts are kept."""
    if chunk.text or chunk.reasoning:
        times.append(perf_counter())
        if chunk.text:
            parts.append(chunk.text)
            if call.t_first_content is None:
                call.t_first_content = times[-1]
    if chunk.has_facts():
        if call.facts is None:
            call.facts = []
        call.facts.append(chunk)


async def _aclose(stream: object) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


def _remember_kind(generate: Any, function: Any) -> bool:
    call = type(generate).__call__  # for an object with an async __call__
    is_async = inspect.iscoroutinefunction(generate) or inspect.iscoroutinefunction(call)
    if type(function) is FunctionType:
        # Only plain functions are remembered: whether another callable (a partial, an
        # object) is async can depend on more than its identity's type.
        if len(_kinds) > 4096:
            _kinds.clear()  # functions made at run time: keep the cache bounded
        _kinds[id(function)] = (weakref.ref(function), is_async)
    return is_async


def _remember_plain(provider: object) -> None:
    try:
        ref = weakref.ref(provider)
    except TypeError:
        return  # no weak references (`__slots__`): decided on every call
    if len(plain_async) > 4096:
        plain_async.clear()  # providers made at run time: keep the cache bounded
    plain_async[id(provider)] = ref


def _timed(generate: Callable[[str], Any], prompt: str, call: Call) -> Any:
    # Runs in the worker thread: the stamps bracket the call itself.
    call.t_started = perf_counter()
    try:
        return generate(prompt)
    finally:
        call.t_done = perf_counter()


def _text(output: object) -> str:
    if type(output) is not str:
        if not isinstance(output, str):
            kind = error_type_name(output)
            raise ProviderCallError(f"the provider returned {kind}, not str")
        # A str subclass is text too; its plain str is what the engine and the stages get
        # (its own methods, `__len__` included, may do anything).
        output = str.__str__(output)
    if not output.isascii():
        try:
            output.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ProviderCallError(
                f"the provider's output is not valid Unicode (a lone surrogate at {exc.start})"
            ) from None
    return output


async def _spurious_cancellation(exc: BaseException) -> bool:
    """Whether `exc` is a CancelledError the provider raised with nothing cancelled."""
    cancelled = anyio.get_cancelled_exc_class()
    if not isinstance(exc, asyncio.CancelledError | cancelled):
        return False
    if not isinstance(exc, cancelled):
        return True  # asyncio's CancelledError raised under trio cancels nothing
    if isinstance(exc, asyncio.CancelledError):
        task = asyncio.current_task()
        cancelling = getattr(task, "cancelling", None)
        # Python 3.10 cannot tell (no `Task.cancelling`): never swallow a real cancellation.
        return cancelling is not None and cancelling() == 0
    # trio's cancellation is level-triggered: a real one is still pending at a checkpoint.
    try:
        await anyio.lowlevel.checkpoint_if_cancelled()
    except cancelled:
        return False
    return True


def error_type_name(value: object) -> str:
    """The name of `value`'s type, safe to encode. Never raises."""
    return _encodable(type(value).__name__)


def error_text(exc: BaseException, limit: int = 500) -> str:
    """`exc`'s message, at most `limit` characters, safe to encode. Never raises.

    A cancellation reads ``"cancelled"`` (not the backend's internal text); a message whose
    `__str__` raises reads ``"<unprintable TYPE>"``; a lone surrogate is backslash-escaped.
    """
    if _is_cancellation(exc):
        return "cancelled"
    try:
        text = str.__str__(str(exc))[:limit]
    except Exception:
        return f"<unprintable {error_type_name(exc)}>"
    return _encodable(text)


def _is_cancellation(exc: BaseException) -> bool:
    if isinstance(exc, asyncio.CancelledError):
        return True
    try:
        return isinstance(exc, anyio.get_cancelled_exc_class())
    except Exception:  # no event loop running: nothing to be cancelled by
        return False


def _encodable(text: str) -> str:
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
