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
# (a fragment of the message, lower-cased; the cause), first match wins.
_FRAGMENTS: Final = (
    ("connection refused", "connection refused"),
    ("name or service not known", "host not found"),
    ("nodename nor servname", "host not found"),
    ("temporary failure in name resolution", "host not found"),
    ("timed out", "timeout"),
    ("peer closed connection", "peer closed connection mid-stream"),
    ("incomplete chunked read", "peer closed connection mid-stream"),
    ("connection reset", "connection reset"),
    ("server disconnected without sending a response", "server closed the connection unanswered"),
    ("stream ended before", "stream ended early"),
    ("cap (responselimits", "reply over a size cap"),
    ("malformed reply", "malformed reply"),
    ("error in reply", "error sent by the server"),
    ("cannot connect", "cannot connect"),
    ("connection broken", "connection broken"),
)


def error_cause(error_type: str, message: str) -> str:
    """A short cause for an error, from its type name and message (as a report keeps them).

    Examples: ``"connection refused"``, ``"HTTP 404 (wrong base URL or model?)"``,
    ``"HTTP 501 (not an OpenAI-compatible server?)"``, ``"peer closed connection mid-stream"``,
    ``"timeout"``, ``"HTTP 429 rate limited"``. An error this function does not recognise is
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
    if "Timeout" in error_type:
        return "timeout"
    return error_type or "error"
