"""Provider specs, as the command line takes them: `SCHEME:VALUE`.

```
python:FILE.py:NAME            a provider written in Python (object, class or factory)
python:package.module:NAME
openai:MODEL@BASE_URL          an OpenAI-compatible server; OPENAI_API_KEY is sent if set
ollama:MODEL[@BASE_URL]        Ollama's native API (default http://127.0.0.1:11434)
replay:FILE.jsonl              a recorded cassette, offline
```

A model name may contain `:` and `@`; the base URL starts at the first `@http://` or `@https://`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from .._exceptions import ProviderError
from ._base import Provider, ProviderOptions
from ._ollama import DEFAULT_OLLAMA_URL, OllamaProvider
from ._openai import OpenAIProvider
from ._python import load_python_provider
from ._replay import ReplayProvider

__all__ = ["load_provider"]

_URL_SPLIT = re.compile(r"@(?=https?://)")


def load_provider(spec: str, options: ProviderOptions | None = None) -> Provider:
    """Build the provider a spec names, with `options` for the HTTP providers.

    Blocks: a `python:` spec imports (and runs) the user's module, a `replay:` spec reads its
    cassette. HTTP providers open no connection until they are first used or `await
    provider.connect()` is called; every field of `options` applies to them (see
    `ProviderOptions`).

    Raises:
        ProviderError: one line naming `spec` and what is wrong with it: unknown scheme,
            missing file, import error, missing attribute, not a provider, bad cassette line,
            text that is not UTF-8 in an HTTP spec, or an option out of range (`retries` < 0,
            `max_connections` or `max_tokens` < 1).
    """
    scheme, sep, value = spec.partition(":")
    loader = _LOADERS.get(scheme)
    if not sep or loader is None:
        known = ", ".join(f"{name}:" for name in _LOADERS)
        raise ProviderError(f"provider {spec!r}: unknown scheme (expected one of {known})")
    if not value:
        raise ProviderError(f"provider {spec!r}: nothing after '{scheme}:'")
    if scheme in ("openai", "ollama") and not _utf8(value):
        # Bytes that are not UTF-8 reach argv as lone surrogates: no URL or request holds them.
        raise ProviderError(f"provider {spec!r}: not UTF-8 text")
    options = options or ProviderOptions()
    _check(spec, options)
    return loader(spec, value, options)


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check(spec: str, options: ProviderOptions) -> None:
    """Refuse options no request could honour, naming the field."""
    if options.retries < 0:
        raise ProviderError(f"provider {spec!r}: retries must be 0 or more, not {options.retries}")
    if options.max_connections is not None and options.max_connections < 1:
        raise ProviderError(
            f"provider {spec!r}: max_connections must be at least 1, not {options.max_connections}"
        )
    if options.max_tokens is not None and options.max_tokens < 1:
        raise ProviderError(
            f"provider {spec!r}: max_tokens must be at least 1, not {options.max_tokens}"
        )


def _split_model_url(spec: str, value: str) -> tuple[str, str | None]:
    model, *url = _URL_SPLIT.split(value, maxsplit=1)
    if not model:
        raise ProviderError(f"provider {spec!r}: no model name")
    return model, (url[0] if url else None)


def _load_openai(spec: str, value: str, options: ProviderOptions) -> Provider:
    model, url = _split_model_url(spec, value)
    if url is None:
        raise ProviderError(
            f"provider {spec!r}: expected openai:MODEL@BASE_URL, "
            "e.g. openai:my-model@http://127.0.0.1:8000/v1"
        )
    key = os.environ.get("OPENAI_API_KEY") or None
    if key is not None and not (key.isascii() and key.isprintable() and " " not in key):
        # A header holds printable ASCII only; the key itself is never shown.
        raise ProviderError(
            f"provider {spec!r}: OPENAI_API_KEY holds a space, a control or a non-ASCII "
            "character (a stray newline?)"
        )
    return OpenAIProvider(
        model,
        url,
        api_key=key,
        supports_streaming=options.stream is not False,
        options=options,
    )


def _load_ollama(spec: str, value: str, options: ProviderOptions) -> Provider:
    model, url = _split_model_url(spec, value)
    if url is None and "@" in model:  # Ollama model names have no '@': a URL without a scheme
        raise ProviderError(f"provider {spec!r}: BASE_URL must start with http:// or https://")
    return OllamaProvider(
        model,
        url or DEFAULT_OLLAMA_URL,
        supports_streaming=options.stream is not False,
        provider_options=options,
    )


def _load_replay(spec: str, value: str, options: ProviderOptions) -> Provider:
    try:
        return ReplayProvider.from_file(value)
    except ProviderError as exc:
        raise ProviderError(f"provider {spec!r}: {exc}") from exc


def _load_python(spec: str, value: str, options: ProviderOptions) -> Provider:
    return load_python_provider(spec, value)


_LOADERS: dict[str, Callable[[str, str, ProviderOptions], Provider]] = {
    "python": _load_python,
    "openai": _load_openai,
    "ollama": _load_ollama,
    "replay": _load_replay,
}
