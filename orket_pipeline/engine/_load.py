"""Loading a suite file: native JSON or TOML, or an Orket task bank (a top-level JSON array).

Everything is checked at load: any problem is one `SuiteError` line naming the file, the task
and the field.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from .._exceptions import SuiteError
from ._suite import Suite, Task, native_task
from ._taskbank import bank_tasks

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found]

__all__ = ["load_suite", "parse_suite"]


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
    return [native_task(obj, index, name) for index, obj in enumerate(tasks)]


def _check_unique(tasks: list[Task], name: str) -> None:
    seen: set[str] = set()
    for task in tasks:
        if task.id in seen:
            raise SuiteError(f"{name}: task {task.id!r}: field `id`: duplicate task id")
        seen.add(task.id)
