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

The `ProviderCallError` branch lives in `orket_pipeline.providers`.

Every `InputError` message is one line that names the file, task or field at fault.
"""

from __future__ import annotations

__all__ = [
    "ConstraintError",
    "InputError",
    "OrketError",
    "PipelineClosedError",
    "ProviderError",
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


class PipelineClosedError(OrketError, RuntimeError):
    """A closed `TelemetryPipeline` was entered or used again."""
