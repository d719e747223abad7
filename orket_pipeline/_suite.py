"""Suites: the tasks a run sends to a model, loaded from native JSON/TOML or Orket task banks.

Native: `{"name": str, "tasks": [{"id", "prompt", "constraints"?, "gate"?}]}` in JSON or TOML.
An Orket task bank is a top-level JSON array (see `_taskbank`). Everything is checked at load:
any problem is one `SuiteError` line naming the file, the task and the field.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Final

import msgspec

from ._exceptions import ConstraintError, SuiteError
from .constraints import Constraints, load_constraints

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found]

__all__ = [
    "CliExample",
    "CliExamplesGate",
    "FunctionExample",
    "FunctionExamplesGate",
    "GATE_TYPES",
    "Gate",
    "PythonTestsGate",
    "Suite",
    "Task",
    "load_suite",
    "parse_suite",
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


class Suite(msgspec.Struct, frozen=True, kw_only=True):
    """A named, ordered set of tasks with unique ids."""

    name: str
    tasks: tuple[Task, ...]


def load_suite(path: str | os.PathLike[str]) -> Suite:
    """Read and check a suite file: native JSON or TOML, or an Orket task bank.

    Blocks on file I/O (call it off the event loop for huge suites).

    Raises:
        SuiteError: the file cannot be read or is not a valid suite; one line naming the file,
            the task id and the field.
    """
    name = os.fspath(path)
    try:
        data = Path(name).read_bytes()
    except OSError as exc:
        raise SuiteError(f"{name}: cannot read suite: {exc.strerror or exc}") from None
    return parse_suite(data, name=name)


def parse_suite(data: bytes, *, name: str) -> Suite:
    """Check and convert the bytes of a suite file called `name` (used in messages).

    Raises:
        SuiteError: as `load_suite`.
    """
    document = _decode(data, name)
    if isinstance(document, list):
        from ._taskbank import bank_tasks

        tasks = bank_tasks(document, name)
        suite_name = Path(name).stem
    elif isinstance(document, dict):
        suite_name = document.get("name", Path(name).stem)
        if not isinstance(suite_name, str):
            raise SuiteError(f"{name}: field `name`: expected a string")
        tasks = _native_tasks(document.get("tasks"), name)
    else:
        raise SuiteError(f"{name}: expected an object with `tasks` or an array of tasks")
    _check_unique(tasks, name)
    return Suite(name=suite_name, tasks=tuple(tasks))


def _decode(data: bytes, name: str) -> Any:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SuiteError(f"{name}: not JSON or TOML (not UTF-8 text)") from None
    suffix = Path(name).suffix.lower()
    if suffix != ".toml":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            if suffix == ".json":
                raise SuiteError(f"{name}: not valid JSON: {exc}") from None
        except (ValueError, RecursionError) as exc:
            raise SuiteError(f"{name}: not valid JSON: {type(exc).__name__}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        shown = "not valid TOML" if suffix == ".toml" else "not JSON or TOML"
        raise SuiteError(f"{name}: {shown}: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise SuiteError(f"{name}: not JSON or TOML: {type(exc).__name__}") from None


def _native_tasks(tasks: Any, name: str) -> list[Task]:
    if not isinstance(tasks, list):
        raise SuiteError(f"{name}: field `tasks`: expected an array of tasks")
    if not tasks:
        raise SuiteError(f"{name}: field `tasks`: the suite has no tasks")
    return [_native_task(obj, index, name) for index, obj in enumerate(tasks)]


def _native_task(obj: Any, index: int, name: str) -> Task:
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
        return converted
    except msgspec.ValidationError as exc:
        raise SuiteError(f"{where}: {_field_message(str(exc), field)}") from None


_AT: Final = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)


def _field_message(message: str, prefix: str) -> str:
    match = _AT.match(message)
    assert match is not None  # the pattern matches any text
    path = match["path"] or ""
    return f"field `{prefix}{path}`: {match['msg']}"


def _check_unique(tasks: list[Task], name: str) -> None:
    seen: set[str] = set()
    for task in tasks:
        if task.id in seen:
            raise SuiteError(f"{name}: task {task.id!r}: field `id`: duplicate task id")
        seen.add(task.id)
