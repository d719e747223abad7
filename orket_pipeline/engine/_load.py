"""Loading a suite file: native JSON or TOML, or an Orket task bank (a top-level JSON array).

Everything is checked at load: any problem is one `SuiteError` line naming the file, the task
and the field. That includes what a JSON decoder lets through: a key given twice in one object
(the last would win silently, so `"gate": null` after a gate would drop it) and a lone
surrogate escape such as `"\\ud800"` (not text: it cannot be written to a report, a journal or
a gate's files).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from .._exceptions import SuiteError
from .._text import printable as _printable
from ._suite import Suite, Task, convert_options, native_task, task_where
from ._taskbank import bank_tasks

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found]

__all__ = ["load_suite", "parse_suite"]

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


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
    document, suspect = _decode(data, name)
    if suspect:  # only then is the walk worth its cost (a third of the load of a big suite)
        _check_text(document, name)
    options = None
    if isinstance(document, list):
        tasks = bank_tasks(document, name)
        suite_name = _printable(Path(name).stem)
    elif isinstance(document, dict):
        suite_name = document.get("name", _printable(Path(name).stem))
        if not isinstance(suite_name, str):
            raise SuiteError(f"{name}: field `name`: expected a string")
        options = convert_options(document.get("options"), name)
        tasks = _native_tasks(document.get("tasks"), name)
    else:
        raise SuiteError(f"{name}: expected an object with `tasks` or an array of tasks")
    _check_unique(tasks, name)
    return Suite(name=suite_name, tasks=tuple(tasks), options=options)


def _decode(data: bytes, name: str) -> tuple[Any, bool]:
    """The document, and whether it may hold a duplicate key or a lone surrogate (TOML
    refuses both itself; in JSON a surrogate can only come from a `\\udXXX` escape)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SuiteError(f"{name}: not JSON or TOML (not UTF-8 text)") from None
    suffix = Path(name).suffix.lower()
    if suffix != ".toml":
        duplicated: list[_Duplicated] = []

        def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
            obj = _object(pairs)
            if isinstance(obj, _Duplicated):
                duplicated.append(obj)
            return obj

        try:
            document = json.loads(text, object_pairs_hook=pairs_hook)
            return document, bool(duplicated) or _SURROGATE_ESCAPE.search(text) is not None
        except json.JSONDecodeError as exc:
            if suffix == ".json":
                raise SuiteError(f"{name}: not valid JSON: {exc}") from None
        except (ValueError, RecursionError) as exc:
            raise SuiteError(f"{name}: not valid JSON: {type(exc).__name__}") from None
    try:
        return tomllib.loads(text), False
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


class _Duplicated(dict):  # type: ignore[type-arg]
    """A JSON object that gave `duplicate` more than once (the last value is kept)."""

    duplicate: str


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    marked = _Duplicated(obj)
    seen: set[str] = set()
    marked.duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
    return marked


def _check_text(document: Any, name: str) -> None:
    """Refuse a duplicate key or a lone surrogate anywhere, naming the task and the field."""
    tasks = document
    if isinstance(document, dict):
        # The file's own fields (a duplicate `tasks` key among them), then each task's.
        _check_value(name, _without_tasks(document), "")
        tasks = document.get("tasks")
    if isinstance(tasks, list):
        for index, task in enumerate(tasks):
            _check_value(task_where(name, task, index), task, "")


def _without_tasks(document: dict[str, Any]) -> dict[str, Any]:
    rest = {key: None if key == "tasks" else value for key, value in document.items()}
    if isinstance(document, _Duplicated):
        rest = _Duplicated(rest)
        rest.duplicate = document.duplicate
    return rest


def _check_value(where: str, value: Any, path: str) -> None:
    # Iterative: a document nested as deep as the decoder allows must not overflow the stack.
    stack = [(value, path)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, str):
            _check_string(item, where, at)
        elif isinstance(item, list):
            stack.extend((v, f"{at}[{i}]") for i, v in enumerate(item))
        elif isinstance(item, dict):
            if isinstance(item, _Duplicated):
                key = _field(at, item.duplicate)
                raise SuiteError(f"{where}: field `{key}`: key given more than once")
            for key, v in item.items():
                _check_string(key, where, _field(at, key))
                stack.append((v, _field(at, key)))


def _check_string(text: str, where: str, at: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        shown = _printable(text[exc.start : exc.start + 1])
        raise SuiteError(
            f"{where}: field `{at or 'name'}`: a lone surrogate ({shown}) is not text"
        ) from None


def _field(at: str, key: str) -> str:
    return f"{at}.{_printable(key)}" if at else _printable(key)
