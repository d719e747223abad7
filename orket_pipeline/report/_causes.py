"""Why a run errored, in a few words: the groups of the summary's error line.

`error_cause(type, message)` maps a run's error to a short cause ("connection refused",
"HTTP 404", "timed out") so a summary can say "12 errors: 10 connection refused, 2 HTTP 404"
instead of twelve messages that differ only in a URL or a port. It reads only the text the
report holds (type and message), so it works on any report, old or new. A command may
pass another grouping to `summarize`.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["CONNECT_CAUSES", "error_cause"]

#: Causes that mean no connection could be made at all (nothing was sent): the server is not
#: there. Used to stop a suite early; a connection broken mid-reply is not among them.
CONNECT_CAUSES: Final = frozenset({"connection refused", "cannot connect", "connect timeout"})

# The providers say `SPEC: HTTP 404 from URL: ...`; "HTTP 404" elsewhere in a message is not one.
_HTTP_STATUS: Final = re.compile(r": HTTP (\d{3}) from ")
# What a status usually means when a suite meets it, said beside the number.
_STATUS_HINTS: Final = {
    401: "HTTP 401 (missing or wrong API key?)",
    403: "HTTP 403 (API key not allowed?)",
    404: "HTTP 404 (wrong base URL or model?)",
    405: "HTTP 405 (wrong base URL?)",
    429: "HTTP 429 rate limited",
    501: "HTTP 501 (not an OpenAI-compatible server?)",
    503: "HTTP 503 server unavailable",
}
# The providers' own words before a server's text (an error object, a body that is not JSON):
# they win over `_WORDS`, so a reply saying "connection refused" is not taken for a refusal.
_REPLY: Final = re.compile(r": (malformed reply|error in reply)\b")
# (a fragment of the message, lower-cased; the cause), first match wins: the most specific
# wording first. The words are the providers' (and httpx's) messages.
_WORDS: Final = (
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
    ("timed out", "timed out"),
)
_TYPES: Final = {
    "TimeoutError": "timed out",
    "ProviderTimeoutError": "timed out",
    "ConnectionRefusedError": "connection refused",
    "ConnectionResetError": "connection reset",
    "GateError": "gate could not run",
}


def error_cause(error_type: str, message: str) -> str:
    """A short, stable cause for an error of `error_type` with `message`. Never raises.

    An HTTP status wins (`HTTP 404`), or a reply's error object or malformed body when that
    comes first (the server's text after it is not read), then known wording of transport
    failures, then the error type's own meaning; otherwise the type name itself
    (`ValueError`), or `unknown`.
    """
    status, reply = _HTTP_STATUS.search(message), _REPLY.search(message)
    if reply is not None and (status is None or reply.start() < status.start()):
        return reply[1]  # whatever follows is the server's text
    if status is not None:
        code = int(status[1])
        return _STATUS_HINTS.get(code, f"HTTP {code}")
    lowered = message.lower()
    for words, cause in _WORDS:
        if words in lowered:
            return cause
    return _TYPES.get(error_type) or error_type or "unknown"
