"""One-line messages for what went wrong on the wire: excerpts of bodies, the human message
inside an error object, and a transport error described with the operating system's words."""

from __future__ import annotations

import os
from typing import Any, Final

import httpx
import msgspec

__all__ = ["describe", "excerpt", "message_of"]

_EXCERPT_CHARS: Final = 200


def excerpt(text: str, limit: int = _EXCERPT_CHARS) -> str:
    """`text` on one line, cut to `limit` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def message_of(obj: Any) -> str:
    """The human message inside an error object (`{"error": {"message": ...}}`, `{"error":
    "..."}`, `{"detail": ...}`, `{"message": ...}`), else the object as JSON."""
    if isinstance(obj, dict):
        for key in ("error", "message", "detail"):
            inner = obj.get(key)
            if isinstance(inner, dict):
                return message_of(inner)
            if inner:
                return str(inner)
    if isinstance(obj, str):
        try:
            inner = msgspec.json.decode(obj)
        except (msgspec.DecodeError, RecursionError):
            return obj
        return message_of(inner) if isinstance(inner, dict) else obj
    return msgspec.json.encode(obj).decode()


_KINDS: dict[type[httpx.RequestError], str] = {
    httpx.ConnectTimeout: "timed out connecting",
    httpx.ReadTimeout: "timed out waiting for the server",
    httpx.WriteTimeout: "timed out sending the request",
    httpx.PoolTimeout: "timed out waiting for a free connection",
    httpx.ConnectError: "cannot connect",
    httpx.RemoteProtocolError: "connection broken",
    httpx.ReadError: "connection broken",
}


def describe(exc: httpx.RequestError) -> str:
    """`exc` on one line: what failed, then why. Never raises."""
    kind = _KINDS.get(type(exc), "transport error")
    detail = excerpt(str(exc) or type(exc).__name__)
    reason = _os_reason(exc)
    if reason and reason.lower() not in detail.lower():
        detail = f"{reason.lower()} ({detail})"
    return f"{kind}: {detail}"


def _os_reason(exc: BaseException) -> str | None:
    """The operating system's words for the error under `exc` ("Connection refused"), which
    anyio's "All connection attempts failed" hides in its cause chain. Never raises."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 16:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno is not None and current.errno > 0:
            return os.strerror(current.errno)
        group = getattr(current, "exceptions", None)  # trio's connect: an ExceptionGroup
        if isinstance(group, tuple) and group and isinstance(group[0], BaseException):
            current = group[0]
        else:
            current = current.__cause__ or current.__context__
    return None
