"""The suite model (tasks and gates) and the checks that convert a native task into it.

Native: `{"name": str, "options"?: {...}, "tasks": [{"id", "prompt", "constraints"?, "gate"?}]}`
(`options`: the generation options of every run, see `SuiteOptions`). Everything is checked
at load (`_load`): any problem is one `SuiteError` line naming the file, the task and
the field.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

import msgspec

from .._exceptions import ConstraintError, SuiteError
from ..constraints import Constraints, load_constraints

__all__ = [
    "CliExample",
    "CliExamplesGate",
    "FunctionExample",
    "FunctionExamplesGate",
    "GATE_TYPES",
    "Gate",
    "PythonTestsGate",
    "Suite",
    "SuiteOptions",
    "Task",
    "native_task",
    "check_id",
    "convert_constraints",
    "convert_gate",
    "convert_options",
    "task_where",
]

_Timeout = Annotated[float, msgspec.Meta(gt=0, le=3600)]
_Identifier = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class FunctionExample(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One call of a `function_examples` gate and its expected (JSON) result."""

    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = msgspec.field(default_factory=dict)
    expected: Any


class CliExample(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One command line of a `cli_examples` gate; unset expectations are not checked."""

    args: tuple[str, ...] = ()
    stdin: str | None = None
    expected_stdout: str | None = None
    expected_stderr: str | None = None
    expected_exit_code: int = 0


class _GateBase(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="type"
):
    timeout_s: _Timeout | None = None


class PythonTestsGate(_GateBase, frozen=True, tag="python_tests"):
    """Assert-style tests run after the payload in the same module; pass on a clean finish."""

    code: str


class FunctionExamplesGate(_GateBase, frozen=True, tag="function_examples"):
    """Call `function_name` with each example's arguments; results compared as JSON."""

    function_name: _Identifier
    examples: Annotated[tuple[FunctionExample, ...], msgspec.Meta(min_length=1)]


class CliExamplesGate(_GateBase, frozen=True, tag="cli_examples"):
    """Run the payload as a program once per example; compare exit code and output."""

    examples: Annotated[tuple[CliExample, ...], msgspec.Meta(min_length=1)]


Gate = PythonTestsGate | FunctionExamplesGate | CliExamplesGate
GATE_TYPES: Final = ("python_tests", "function_examples", "cli_examples")


class Task(msgspec.Struct, frozen=True, kw_only=True):
    """One task: the prompt sent verbatim, optional constraints (telemetry) and gate (outcome)."""

    id: str
    prompt: str
    constraints: Constraints | None = None
    gate: Gate | None = None


class SuiteOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Generation options a suite asks of every run (the command line's flags override each).

    They go into every request of an HTTP provider: at most `max_tokens` tokens, `temperature`,
    `seed`, a `system` prompt, `stop` sequences; `stream` false asks for whole replies. Unset
    options are the server's defaults.
    """

    max_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=100)] | None = None
    seed: int | None = None
    system: str | None = None
    stop: tuple[Annotated[str, msgspec.Meta(min_length=1)], ...] | None = None
    stream: bool | None = None


class Suite(msgspec.Struct, frozen=True, kw_only=True):
    """A named, ordered set of tasks with unique ids, and the generation options of its runs."""

    name: str
    tasks: tuple[Task, ...]
    options: SuiteOptions | None = None


def convert_options(obj: Any, name: str) -> SuiteOptions | None:
    """The suite's checked `options`, or None when absent. Raises `SuiteError` naming the file
    and the field (`options.temperature`)."""
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise SuiteError(f"{name}: field `options`: expected an object")
    try:
        options = msgspec.convert(obj, SuiteOptions)
    except msgspec.ValidationError as exc:
        text = str(exc)
        unknown = re.match(r"Object contains unknown field `([^`]*)`", text)
        if unknown is not None:
            known = ", ".join(f.name for f in msgspec.structs.fields(SuiteOptions))
            field = f"options.{unknown[1]}"
            raise SuiteError(f"{name}: field `{field}`: unknown option (known: {known})") from None
        raise SuiteError(f"{name}: {_field_message(text, 'options')}") from None
    if options.system is not None and "\0" in options.system:
        raise SuiteError(f"{name}: field `options.system`: contains a NUL byte")
    return options


def native_task(obj: Any, index: int, name: str) -> Task:
    where = task_where(name, obj, index)
    if not isinstance(obj, dict):
        raise SuiteError(f"{where}: expected an object")
    task_id = check_id(obj.get("id"), where)
    prompt = obj.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise SuiteError(f"{where}: field `prompt`: expected a non-empty string")
    constraints = convert_constraints(obj.get("constraints"), where)
    return Task(
        id=task_id,
        prompt=prompt,
        constraints=constraints,
        gate=convert_gate(obj.get("gate"), where),
    )


def task_where(name: str, obj: Any, index: int) -> str:
    """`FILE: task 'ID'` for messages, or `FILE: task #N` while the id is unknown or bad."""
    task_id = obj.get("id") if isinstance(obj, dict) else None
    if isinstance(task_id, (str, int)) and not isinstance(task_id, bool) and str(task_id):
        return f"{name}: task {str(task_id)!r}"
    return f"{name}: task #{index + 1}"


def check_id(task_id: Any, where: str) -> str:
    """The task id as a string. Raises `SuiteError` unless it is a non-empty string."""
    if not isinstance(task_id, str) or not task_id.strip():
        raise SuiteError(f"{where}: field `id`: expected a non-empty string")
    return task_id


def convert_constraints(obj: Any, where: str) -> Constraints | None:
    """Checked constraints, or None when absent. Raises `SuiteError` naming the field."""
    if obj is None:
        return None
    try:
        return load_constraints(obj, where=f"{where}: field `constraints`")
    except ConstraintError as exc:
        raise SuiteError(str(exc)) from None


def convert_gate(gate: Any, where: str, field: str = "gate") -> Gate | None:
    """The checked gate, or None when there is none. Raises `SuiteError` naming `field`."""
    if gate is None:
        return None
    if not isinstance(gate, dict):
        raise SuiteError(f"{where}: field `{field}`: expected an object")
    kind = gate.get("type")
    if kind not in GATE_TYPES:
        known = ", ".join(GATE_TYPES)
        shown = "missing" if kind is None else f"unknown gate type {kind!r}"
        raise SuiteError(f"{where}: field `{field}.type`: {shown} (expected one of {known})")
    try:
        converted: Gate = msgspec.convert(gate, Gate)
    except msgspec.ValidationError as exc:
        raise SuiteError(f"{where}: {_field_message(str(exc), field)}") from None
    problem = _text_problem(converted)
    if problem is not None:
        path, message = problem
        raise SuiteError(f"{where}: field `{field}{path}`: {message}")
    return converted


_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _text_problem(gate: Gate) -> tuple[str, str] | None:
    # Text that no process could be given: a NUL in an argument or in source code, or a lone
    # surrogate (not encodable as UTF-8) anywhere.
    texts: list[tuple[str, str | None, bool]] = []
    if isinstance(gate, PythonTestsGate):
        texts.append((".code", gate.code, True))
    elif isinstance(gate, CliExamplesGate):
        for i, example in enumerate(gate.examples):
            at = f".examples[{i}]"
            texts += [(f"{at}.args[{j}]", arg, True) for j, arg in enumerate(example.args)]
            texts += [
                (f"{at}.stdin", example.stdin, False),
                (f"{at}.expected_stdout", example.expected_stdout, False),
                (f"{at}.expected_stderr", example.expected_stderr, False),
            ]
    for path, text, no_nul in texts:
        if text is None:
            continue
        if no_nul and "\0" in text:
            return path, "contains a NUL byte, which no program can be given"
        if _SURROGATE.search(text):
            return path, "contains a lone surrogate, which is not valid UTF-8"
    return None


_AT: Final = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)


def _field_message(message: str, prefix: str) -> str:
    match = _AT.match(message)
    assert match is not None  # the pattern matches any text
    path = match["path"] or ""
    return f"field `{prefix}{path}`: {match['msg']}"
