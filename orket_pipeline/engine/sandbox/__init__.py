"""Running generated code away from the engine: the sandbox, its supervisor and its harness."""

from ._process import (
    SANDBOX_KINDS,
    Sandbox,
    SandboxLimits,
    SandboxResult,
    resolve_sandbox,
    run_sandboxed,
)

__all__ = [
    "SANDBOX_KINDS",
    "Sandbox",
    "SandboxLimits",
    "SandboxResult",
    "resolve_sandbox",
    "run_sandboxed",
]
