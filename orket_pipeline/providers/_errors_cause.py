"""The cause of a provider error in a few words, for grouping a run's errors in its summary.

A report keeps an error as its type name and its message only, so `error_cause` reads those
two: the same run's error always gets the same cause, whichever process reads the report.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["error_cause"]

_STATUS: Final = re.compile(r": HTTP (\d{3}) from ")
_STATUS_HINTS: Final = {
    401: "HTTP 401 (missing or wrong API key?)",
    403: "HTTP 403 (API key not allowed?)",
    404: "HTTP 404 (wrong base URL or model?)",
    405: "HTTP 405 (wrong base URL?)",
    429: "HTTP 429 rate limited",
    501: "HTTP 501 (not an OpenAI-compatible server?)",
    503: "HTTP 503 server unavailable",
}
# (a fragment of the message, lower-cased; the cause), first match wins. The words are those of
# `report._causes` (the summary's fallback), so the engine's stop-early set (`CONNECT_CAUSES`:
# "connection refused", "cannot connect", "connect timeout") and the CLI's hints read the same.
_FRAGMENTS: Final = (
    ("connection refused", "connection refused"),
    ("timed out connecting", "connect timeout"),
    ("cannot connect", "cannot connect"),
    ("name or service not known", "cannot connect"),
    ("nodename nor servname", "cannot connect"),
    ("temporary failure in name resolution", "cannot connect"),
    ("peer closed connection", "connection closed mid-reply"),
    ("incomplete chunked read", "connection closed mid-reply"),
    ("incomplete read", "connection closed mid-reply"),
    ("server disconnected without sending a response", "connection closed before a reply"),
    ("connection reset", "connection reset"),
    ("connection broken", "connection broken"),
    ("stream ended before", "stream ended early"),
    ("cap (responselimits", "reply over a size cap"),
    ("malformed reply", "malformed reply"),
    ("error in reply", "error in reply"),
    ("timed out", "timed out"),
)
_TYPES: Final = {
    "TimeoutError": "timed out",
    "ProviderTimeoutError": "timed out",
    "ConnectionRefusedError": "connection refused",
    "ConnectionResetError": "connection reset",
}


def error_cause(error_type: str, message: str) -> str:
    """A short cause for an error, from its type name and message (as a report keeps them).

    Examples: ``"connection refused"``, ``"HTTP 404 (wrong base URL or model?)"``,
    ``"HTTP 501 (not an OpenAI-compatible server?)"``, ``"connection closed mid-reply"``,
    ``"timed out"``, ``"HTTP 429 rate limited"``. An error this function does not recognise is
    its type name. Pure; never raises.
    """
    status = _STATUS.search(message)
    if status is not None:
        code = int(status.group(1))
        return _STATUS_HINTS.get(code, f"HTTP {code}")
    lowered = message.lower()
    for fragment, cause in _FRAGMENTS:
        if fragment in lowered:
            return cause
    return _TYPES.get(error_type) or error_type or "unknown"
