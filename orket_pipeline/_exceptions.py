"""The exception tree of orket-pipeline.

```
OrketError                 base of everything this package raises on purpose
└── InputError             bad input from a user: the CLI prints one line and exits 2
    ├── ReportFormatError  a report or journal that is not JSON or has wrong types
    ├── ConstraintError    an invalid regex or an ill-typed AST rule
    ├── SuiteError         a suite file that cannot be loaded (names file, task, field)
    └── ProviderError      a provider spec that cannot be parsed or loaded
└── ProviderCallError      a provider failed while generating: the run's outcome is `error`
    ├── ProviderResponseError    HTTP status >= 400, an error in the stream, a malformed reply
    ├── ProviderConnectionError  refused, or reset mid-stream
    │   └── ProviderTimeoutError
    └── ReplayError              a recorded fault, or a prompt with no recording
PipelineClosedError        a closed TelemetryPipeline was used again (a programming error)
```

Every `InputError` message is one line that names the file, task or field at fault.
"""

from __future__ import annotations

__all__ = [
    "ConstraintError",
    "InputError",
    "OrketError",
    "PipelineClosedError",
    "ProviderCallError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderResponseError",
    "ProviderTimeoutError",
    "ReplayError",
    "ReportFormatError",
    "SuiteError",
]


class OrketError(Exception):
    """Base class of the errors orket-pipeline raises on purpose."""


class InputError(OrketError):
    """Bad input from a user; the CLI prints the message on one line and exits 2."""


class ReportFormatError(InputError):
    """A report or journal that is not JSON, or that has wrong types."""


class ConstraintError(InputError):
    """Constraints that cannot be used: an invalid regex or an ill-typed AST rule."""


class SuiteError(InputError):
    """A suite file that cannot be loaded."""


class ProviderError(InputError):
    """A provider spec that cannot be parsed, or a provider that cannot be loaded."""


class ProviderCallError(OrketError):
    """A provider call failed at run time.

    Attributes:
        attempts: how many requests the provider made before giving up (retries of
            transient failures included); None when it does not say.
    """

    attempts: int | None = None


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


class PipelineClosedError(OrketError, RuntimeError):
    """A closed `TelemetryPipeline` was entered or used again."""
