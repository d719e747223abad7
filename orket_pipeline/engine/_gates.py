"""Gates: decide a run's pass/fail by running its generated code in a sandbox.

Gate logic knows nothing of telemetry: it gets the code payload and returns a `GateResult`.
Every gate runs the payload in a sandbox (see `sandbox/`): under bubblewrap it is isolated by
the kernel; an infinite loop, a memory bomb, `sys.exit`, a fork or a flood of output fails that
one test, with a short reason, and nothing else. Expected values never enter the sandbox: the
sandbox returns what the code did (return values as JSON, stdout, stderr, exit code) and the
comparison happens here. A `python_tests` gate passes only on the harness's record, holding a
per-run nonce, that the tests returned. A sandbox that did not start (the harness never ran)
is an `error`, never a verdict.
"""

from __future__ import annotations

import json
import signal
from dataclasses import replace
from typing import Any, Final

import anyio.to_thread
import msgspec

from .._exceptions import InputError
from ._suite import CliExample, CliExamplesGate, FunctionExamplesGate, Gate, PythonTestsGate
from .sandbox import Sandbox, SandboxLimits, SandboxResult, resolve_sandbox, run_sandboxed

__all__ = ["GateResult", "json_equal", "run_gate"]

_SHORT: Final = 80
# Returned values nested deeper are a failure, never compared: comparing and printing them
# recurses, and the record they come in is the sandbox's to shape.
MAX_RESULT_DEPTH: Final = 100


class GateResult(msgspec.Struct, frozen=True):
    """A gate's verdict: `passed`, and when it did not pass, a short `reason`.

    `error` is True when the gate could not judge the code at all (no sandbox, too many open
    files): the run's outcome is then `error`, not the model's `fail`.
    """

    passed: bool
    reason: str | None = None
    error: bool = False


PASSED: Final = GateResult(True)
INTERRUPTED: Final = GateResult(False, "interrupted before its gate finished", error=True)


async def run_gate(
    gate: Gate | None,
    payload: str,
    *,
    limits: SandboxLimits | None = None,
    sandbox: Sandbox | None = None,
) -> GateResult:
    """Run `gate` on the code `payload`; no gate passes.

    Awaits the sandbox without blocking the event loop. The gate's own `timeout_s` overrides
    `limits.timeout_s`. `sandbox` defaults to `resolve_sandbox("auto")` (bubblewrap).

    Returns:
        The verdict. Never raises: a sandbox that cannot be had or started, or any exception
        while judging, is a `GateResult` with `error` set. Cancellation propagates, after
        the sandbox is gone.
    """
    if gate is None:
        return PASSED
    limits = limits or SandboxLimits()
    if gate.timeout_s is not None:
        limits = replace(limits, timeout_s=gate.timeout_s)
    try:
        if sandbox is None:
            sandbox = await anyio.to_thread.run_sync(resolve_sandbox, "auto")
        if isinstance(gate, PythonTestsGate):
            verdict = await _python_tests(gate, payload, sandbox, limits)
        elif isinstance(gate, FunctionExamplesGate):
            verdict = await _function_examples(gate, payload, sandbox, limits)
        else:
            verdict = await _cli_examples(gate, payload, sandbox, limits)
    except InputError as exc:
        return GateResult(False, str(exc), error=True)
    except OSError as exc:
        return GateResult(False, f"the gate could not run: {exc}", error=True)
    except Exception as exc:  # a bug judging this run: this run's error, and nothing else's
        text = _printable(_short(f"{type(exc).__name__}: {exc}", 200))
        return GateResult(False, f"the gate failed while judging: {text}", error=True)
    if verdict.reason is None:
        return verdict
    # The reason holds what the code printed or raised: printable text only, valid UTF-8.
    return _with_reason(verdict, _printable(verdict.reason))


async def _python_tests(
    gate: PythonTestsGate, payload: str, sandbox: Sandbox, limits: SandboxLimits
) -> GateResult:
    source = f"{payload}\n\n{gate.code}\n"
    result = await run_sandboxed(sandbox, "tests", {"solution.py": source}, limits=limits)
    unjudged = _unjudged(result, limits)
    if unjudged is not None:
        return unjudged
    record = result.record
    assert record is not None  # _unjudged answered every run without one
    if record.get("status") == "ok":
        return PASSED
    return GateResult(False, _record_reason(record))


async def _function_examples(
    gate: FunctionExamplesGate, payload: str, sandbox: Sandbox, limits: SandboxLimits
) -> GateResult:
    # The calls go in; the expected values stay here.
    calls = [{"args": list(e.args), "kwargs": dict(e.kwargs)} for e in gate.examples]
    result = await run_sandboxed(
        sandbox,
        "functions",
        {"solution.py": payload},
        function=gate.function_name,
        calls=calls,
        limits=limits,
    )
    unjudged = _unjudged(result, limits)
    if unjudged is not None:
        return unjudged
    record = result.record
    assert record is not None  # _unjudged answered every run without one
    if record.get("status") != "ok":
        return GateResult(False, _record_reason(record))
    results = record.get("results")
    if not isinstance(results, list) or len(results) != len(gate.examples):
        return GateResult(False, "the gate harness returned no usable results")
    for example, outcome in zip(gate.examples, results, strict=True):
        call = _call_text(gate.function_name, example.args, example.kwargs)
        if not isinstance(outcome, dict) or not outcome.get("ok"):
            error = outcome.get("error") if isinstance(outcome, dict) else None
            return GateResult(False, f"{call}: {_short(str(error or 'failed'), 240)}")
        if _deeper_than(outcome.get("value"), MAX_RESULT_DEPTH):
            return GateResult(
                False, f"{call}: returned a value nested deeper than {MAX_RESULT_DEPTH}"
            )
        if not json_equal(outcome.get("value"), example.expected):
            expected, got = _json_text(example.expected), _json_text(outcome.get("value"))
            return GateResult(False, f"{call}: expected {expected}, got {got}")
    return PASSED


async def _cli_examples(
    gate: CliExamplesGate, payload: str, sandbox: Sandbox, limits: SandboxLimits
) -> GateResult:
    # Each example in a fresh sandbox; its expected output and exit code stay here.
    for number, example in enumerate(gate.examples, 1):
        result = await run_sandboxed(
            sandbox,
            "cli",
            {"main.py": payload},
            argv=list(example.args),
            stdin=(example.stdin or "").encode("utf-8", "surrogatepass"),
            limits=limits,
        )
        if result.cancelled:
            return INTERRUPTED
        if not result.started:
            return _not_started(result)
        problem = _cli_problem(example, result, limits)
        if problem is not None:
            args = _short(" ".join(example.args)) if example.args else "no arguments"
            return GateResult(False, f"example {number} ({args}): {problem}")
    return PASSED


def _unjudged(result: SandboxResult, limits: SandboxLimits) -> GateResult | None:
    """The result of a run whose harness left no record (interrupted, never started, killed or
    out of limits), or None when there is a record to judge. Never blocks or raises."""
    if result.cancelled:
        return INTERRUPTED
    if not result.started:
        return _not_started(result)
    if result.record is None:
        return GateResult(False, _process_reason(result, limits))
    return None


def _not_started(result: SandboxResult) -> GateResult:
    # bwrap (or the interpreter) failed before the harness ran: no verdict on the code.
    last = _last_line(result.stderr) or (
        "timed out" if result.timed_out else f"exit code {result.exit_code}"
    )
    return GateResult(False, f"the sandbox did not start: {last}", error=True)


def _cli_problem(example: CliExample, result: SandboxResult, limits: SandboxLimits) -> str | None:
    if result.timed_out or result.output_exceeded or result.exit_code is None:
        return _process_reason(result, limits)
    if result.exit_code != example.expected_exit_code:
        code = result.exit_code
        got = str(code) + (f" ({_signal_name(code)})" if _signal_name(code) else "")
        last = _last_line(result.stderr)
        detail = f" ({last})" if last and code != 0 else ""
        return f"expected exit code {example.expected_exit_code}, got {got}{detail}"
    for name, expected, actual in (
        ("stdout", example.expected_stdout, result.stdout),
        ("stderr", example.expected_stderr, result.stderr),
    ):
        text = actual.decode("utf-8", "replace")
        if expected is not None and text != expected:
            return f"expected {name} {_short(repr(expected))}, got {_short(repr(text))}"
    return None


def _process_reason(result: SandboxResult, limits: SandboxLimits) -> str:
    if result.timed_out:
        return f"timeout after {limits.timeout_s:g} s"
    if result.output_exceeded:
        return f"output over the {_size(limits.output_bytes)} limit"
    code = result.exit_code
    name = _signal_name(code)
    if name == "SIGXCPU":
        return "CPU time limit exceeded (SIGXCPU)"
    if name:
        return f"killed by {name}"
    last = _last_line(result.stderr)
    if code == 0:
        return "exited before the tests finished (exit code 0)"
    return f"exit code {code}" + (f": {last}" if last else "")


def _signal_name(code: int | None) -> str | None:
    # Exit codes as a shell shows them: 128 + N is "killed by signal N".
    if code is None or not 128 < code < 128 + 65:
        return None
    try:
        return signal.Signals(code - 128).name
    except ValueError:
        return None


def _record_reason(record: dict[str, Any]) -> str:
    if record.get("status") == "exit":
        code = record.get("code", 1)
        message = record.get("message")
        if code == 0:
            return "sys.exit(0) before the tests finished"
        return f"exit code {code}" + (f": {_short(str(message))}" if message else "")
    return _short(str(record.get("reason") or "failed"), 240)


def _with_reason(verdict: GateResult, reason: str) -> GateResult:
    """`verdict` with another reason. Never blocks or raises."""
    return GateResult(verdict.passed, reason, verdict.error)


def _printable(text: str) -> str:
    # Control characters and lone surrogates become their escapes (`\x1b`, `\ud800`).
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def json_equal(left: Any, right: Any) -> bool:
    """Equality of two decoded JSON values: `true` is not `1`, but `2` equals `2.0`.

    Never blocks or raises (beyond RecursionError on absurdly deep values).
    """
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, (int, float)) and isinstance(right, (int, float)):
        return left == right
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(json_equal, left, right))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    return type(left) is type(right) and bool(left == right)


def _deeper_than(value: Any, limit: int) -> bool:
    # Iterative, so that no depth the sandbox sends can exhaust this interpreter's stack.
    level: list[Any] = [value]
    for _ in range(limit):
        level = [
            child
            for item in level
            if isinstance(item, (list, dict))
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if not level:
            return False
    return any(isinstance(item, (list, dict)) for item in level)


def _call_text(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    parts = [_json_text(a) for a in args] + [f"{k}={_json_text(v)}" for k, v in kwargs.items()]
    return _short(f"{name}({', '.join(parts)})")


def _json_text(value: Any) -> str:
    return _short(json.dumps(value, ensure_ascii=False))


def _short(text: str, limit: int = _SHORT) -> str:
    text = " ".join(text.splitlines())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _last_line(data: bytes) -> str:
    lines = [line for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
    return _short(lines[-1].strip()) if lines else ""


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n} bytes"
