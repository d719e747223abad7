"""Errors a provider raises while it generates (run-time failures, not input errors).

```
OrketError
└── ProviderCallError            a generation failed: the run's outcome is "error"
    ├── ProviderResponseError    the server answered with an error: an HTTP status >= 400,
    │                            an error object in the stream, or a reply it cannot parse
    ├── ProviderConnectionError  no connection, or the connection broke mid-reply
    │   └── ProviderTimeoutError connect, read, write or pool timeout
    └── ReplayError              a recorded error replayed, or a prompt with no record
```

A spec that cannot be loaded is a different thing: `ProviderError`, an input error (exit 2).
"""

from __future__ import annotations

from .._exceptions import OrketError

__all__ = [
    "ProviderCallError",
    "ProviderConnectionError",
    "ProviderResponseError",
    "ProviderTimeoutError",
    "ReplayError",
]


class ProviderCallError(OrketError):
    """A provider call failed at run time."""


class ProviderResponseError(ProviderCallError):
    """The server answered with an error, or with a reply that cannot be parsed.

    Attributes:
        status_code: the HTTP status of the response (200 for an error sent mid-stream).
        body_excerpt: the start of the error body or message, on one line.
    """

    def __init__(self, message: str, *, status_code: int, body_excerpt: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body_excerpt = body_excerpt


class ProviderConnectionError(ProviderCallError):
    """The connection could not be made, or broke before the reply was complete."""


class ProviderTimeoutError(ProviderConnectionError):
    """Connecting, sending or waiting for the next bytes took longer than the timeout."""


class ReplayError(ProviderCallError):
    """A replay cassette's recorded error, or a prompt the cassette has no record for.

    Attributes:
        error_type: the `type` recorded in the cassette (for example `"TimeoutError"`), or
            `"missing_record"` when the prompt has no record.
    """

    def __init__(self, message: str, *, error_type: str = "ReplayError") -> None:
        super().__init__(message)
        self.error_type = error_type
