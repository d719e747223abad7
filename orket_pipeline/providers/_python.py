"""The `python:` loader: a provider written in Python, named by file or module.

`python:path/to/file.py:NAME` runs that file as a fresh module; `python:package.module:NAME`
imports the module (the current directory is searched last, so a project's own package works
without installing it). NAME may be a provider object, a class (called with no arguments) or a
zero-argument factory function. The result must have a bool `supports_streaming` and, to match
it, a callable `stream` (True) or `generate` (False).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, cast

from .._exceptions import ProviderError
from ._base import Provider

__all__ = ["load_python_provider"]


def load_python_provider(spec: str, target: str) -> Provider:
    """Load the provider named by `target` (`FILE.py:NAME` or `package.module:NAME`).

    Blocks while it imports (and so runs) the user's module. `spec` is the whole spec, used in
    error messages.

    Raises:
        ProviderError: one line naming `spec`: the target is malformed, the file is missing,
            the import raised, NAME is missing, calling it raised, or the result is no provider.
    """
    location, _, name = target.rpartition(":")
    if not location or not name.isidentifier():
        raise ProviderError(
            f"provider {spec!r}: expected python:FILE.py:NAME or python:package.module:NAME"
        )
    module = _import(spec, location)
    try:
        obj = getattr(module, name)
    except AttributeError:
        raise ProviderError(f"provider {spec!r}: {location} has no attribute {name!r}") from None
    provider = _instantiate(spec, name, obj)
    _check_provider(spec, name, provider)
    return cast(Provider, provider)


def _is_file(location: str) -> bool:
    return location.endswith(".py") or os.sep in location or "/" in location


def _import(spec: str, location: str) -> ModuleType:
    try:
        if _is_file(location):
            return _import_file(spec, Path(location))
        if os.getcwd() not in sys.path:
            sys.path.append(os.getcwd())
        return importlib.import_module(location)
    except ProviderError:
        raise
    except (Exception, SystemExit) as exc:  # the user's module may raise anything at import
        raise ProviderError(
            f"provider {spec!r}: importing {location} failed: {_brief(exc)}"
        ) from exc


def _import_file(spec: str, path: Path) -> ModuleType:
    if not path.is_file():
        raise ProviderError(f"provider {spec!r}: no such file: {path}")
    resolved = path.resolve()
    digest = hashlib.sha1(str(resolved).encode(), usedforsecurity=False).hexdigest()[:12]
    module_name = f"_orket_provider_{resolved.stem}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    module_spec = importlib.util.spec_from_file_location(module_name, resolved)
    if module_spec is None or module_spec.loader is None:
        raise ProviderError(f"provider {spec!r}: cannot import {path}")
    module = importlib.util.module_from_spec(module_spec)
    # Registered before it runs, as a normal import is, so dataclasses and pickling can find it.
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _instantiate(spec: str, name: str, obj: Any) -> Any:
    """A class or a factory is called with no arguments; a provider object is used as is."""
    if not inspect.isclass(obj) and (hasattr(obj, "supports_streaming") or not callable(obj)):
        return obj
    try:
        result = obj()
    except Exception as exc:  # the user's constructor or factory may raise anything
        raise ProviderError(f"provider {spec!r}: calling {name}() failed: {_brief(exc)}") from exc
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()
        raise ProviderError(f"provider {spec!r}: {name} must return a provider, not an awaitable")
    return result


def _check_provider(spec: str, name: str, provider: Any) -> None:
    kind = type(provider).__name__
    streaming = getattr(provider, "supports_streaming", None)
    if not isinstance(streaming, bool):
        raise ProviderError(
            f"provider {spec!r}: {name} is not a provider ({kind} has no bool supports_streaming)"
        )
    method = "stream" if streaming else "generate"
    if not callable(getattr(provider, method, None)):
        raise ProviderError(
            f"provider {spec!r}: {name} is not a provider ({kind} declares "
            f"supports_streaming = {streaming} but has no {method}() method)"
        )


def _brief(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} ({exc.filename}, line {exc.lineno})"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
