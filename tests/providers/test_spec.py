"""load_provider: every scheme, and one clear line for every spec that cannot be loaded."""

from __future__ import annotations

import itertools
import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from orket_pipeline._exceptions import InputError, ProviderError
from orket_pipeline.providers import (
    OllamaProvider,
    OpenAIProvider,
    ProviderOptions,
    ReplayProvider,
    load_provider,
)

STREAMING = """
class Streaming:
    supports_streaming = True

    async def stream(self, prompt):
        yield prompt.upper()
"""

BLOCKING = """
import time

class Blocking:
    supports_streaming = False

    def generate(self, prompt):  # a plain def: the wrapper runs it in a worker thread
        time.sleep(0.01)
        return "x = 1"

instance = Blocking()

def make():
    return Blocking()
"""

_names = itertools.count()


@pytest.fixture
def isolated_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Undo what loading user modules does to sys.path and sys.modules."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


def write(path: Path, source: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


class TestPythonScheme:
    @pytest.mark.anyio
    async def test_file_path_with_a_class(self, tmp_path: Path) -> None:
        path = write(tmp_path / "prov.py", STREAMING)
        provider = load_provider(f"python:{path}:Streaming")
        assert provider.supports_streaming is True
        assert [text async for text in provider.stream("hi")] == ["HI"]

    @pytest.mark.parametrize("name", ["Blocking", "instance", "make"])
    def test_object_class_or_factory_with_a_plain_def_generate(
        self, tmp_path: Path, name: str
    ) -> None:
        path = write(tmp_path / "blocking.py", BLOCKING)
        provider = load_provider(f"python:{path}:{name}")
        assert type(provider).__name__ == "Blocking"
        assert provider.supports_streaming is False
        assert provider.generate("hi") == "x = 1"

    def test_module_path_on_sys_path(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_imports: None
    ) -> None:
        package = f"orket_test_pkg_{next(_names)}"
        write(tmp_path / package / "__init__.py", "")
        write(tmp_path / package / "providers.py", STREAMING)
        monkeypatch.syspath_prepend(str(tmp_path))
        provider = load_provider(f"python:{package}.providers:Streaming")
        assert type(provider).__name__ == "Streaming"

    def test_module_path_in_the_current_directory(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_imports: None
    ) -> None:
        module = f"orket_test_mod_{next(_names)}"
        write(tmp_path / f"{module}.py", BLOCKING)
        monkeypatch.chdir(tmp_path)
        assert load_provider(f"python:{module}:make").supports_streaming is False

    def test_relative_file_path(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        write(tmp_path / "sub" / "p.py", BLOCKING)
        monkeypatch.chdir(tmp_path)
        assert load_provider("python:sub/p.py:instance").supports_streaming is False


BAD_MODULES = {
    "raises.py": "raise RuntimeError('no GPU here')\n",
    "syntax.py": "def broken(:\n",
    "exits.py": "import sys\nsys.exit(3)\n",
    "things.py": """
        class NoFlag:
            async def generate(self, prompt):
                return ""

        class StringFlag:
            supports_streaming = "yes"

        class NoStream:
            supports_streaming = True

            async def generate(self, prompt):
                return ""

        class NeedsArgs:
            supports_streaming = False

            def __init__(self, url):
                self.url = url

        class Exploding:
            supports_streaming = False

            def __init__(self):
                raise ValueError("bad config")

        async def async_factory():
            return NoFlag()

        def returns_none():
            return None

        number = 42
    """,
}


@pytest.fixture
def bad_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, source in BAD_MODULES.items():
        write(tmp_path / name, source)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("", "unknown scheme"),
        ("gpt-4", "unknown scheme"),
        ("http://127.0.0.1:8000/v1", "unknown scheme"),
        ("replay:", "nothing after 'replay:'"),
        ("python:x.py", "expected python:FILE.py:NAME"),
        ("python:x.py:", "expected python:FILE.py:NAME"),
        ("python:x.py:not-a-name", "expected python:FILE.py:NAME"),
        ("python:x.py:Foo", "no such file: x.py"),
        ("python:raises.py:P", "importing raises.py failed: RuntimeError: no GPU here"),
        ("python:syntax.py:P", r"importing syntax.py failed: SyntaxError: .*line 1"),
        ("python:exits.py:P", "importing exits.py failed: SystemExit: 3"),
        ("python:orket_no_such_module:P", "No module named 'orket_no_such_module'"),
        ("python:things.py:Foo", "things.py has no attribute 'Foo'"),
        ("python:things.py:NoFlag", r"NoFlag is not a provider \(NoFlag has no bool"),
        ("python:things.py:StringFlag", "StringFlag is not a provider"),
        ("python:things.py:NoStream", "declares supports_streaming = True but has no stream"),
        ("python:things.py:NeedsArgs", r"calling NeedsArgs\(\) failed: TypeError"),
        ("python:things.py:Exploding", r"calling Exploding\(\) failed: ValueError: bad config"),
        ("python:things.py:async_factory", "must return a provider, not an awaitable"),
        ("python:things.py:returns_none", r"returns_none is not a provider \(NoneType"),
        ("python:things.py:number", r"number is not a provider \(int"),
        ("openai:m", "expected openai:MODEL@BASE_URL"),
        ("openai:m@127.0.0.1:8000", "expected openai:MODEL@BASE_URL"),
        ("openai:@http://h/v1", "no model name"),
        ("ollama:m@127.0.0.1:11434", "BASE_URL must start with http"),
        ("openai:m\udcff@http://h/v1", "not UTF-8 text"),  # argv byte 0xff
        ("ollama:m@http://h/\udcff", "not UTF-8 text"),
        ("replay:missing.jsonl", "cannot read cassette missing.jsonl"),
    ],
)
def test_bad_spec_raises_one_line_naming_it(
    bad_modules: Path, isolated_imports: None, spec: str, problem: str
) -> None:
    with pytest.raises(ProviderError, match=problem) as info:
        load_provider(spec)
    message = str(info.value)
    assert message.startswith(f"provider {spec!r}: ")
    assert "\n" not in message
    assert isinstance(info.value, InputError)


class TestHTTPAndReplaySchemes:
    def test_openai_takes_model_url_and_key_from_the_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-local")
        provider = load_provider("openai:org/model@v2:q4@http://127.0.0.1:8000/v1/")
        assert isinstance(provider, OpenAIProvider)
        assert provider.model == "org/model@v2:q4"
        assert provider.url == "http://127.0.0.1:8000/v1/chat/completions"
        assert provider._headers["Authorization"] == "Bearer sk-local"

    @pytest.mark.parametrize("key", ["sk-caf\u00e9", "sk-secret\n", "sk secret"])
    def test_a_key_no_header_can_hold_is_one_line_that_does_not_show_it(
        self, monkeypatch: pytest.MonkeyPatch, key: str
    ) -> None:
        monkeypatch.setenv("OPENAI_API_KEY", key)
        with pytest.raises(ProviderError, match="OPENAI_API_KEY") as info:
            load_provider("openai:m@http://127.0.0.1:8000/v1")
        assert "secret" not in str(info.value) and "caf" not in str(info.value)

    def test_openai_without_a_key(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        provider = load_provider("openai:m@https://example.invalid/v1")
        assert isinstance(provider, OpenAIProvider)
        assert "Authorization" not in provider._headers

    @pytest.mark.parametrize(
        ("spec", "url"),
        [
            ("ollama:qwen2.5-coder:7b", "http://127.0.0.1:11434/api/generate"),
            ("ollama:qwen2.5-coder:7b@http://gpu-box:11434", "http://gpu-box:11434/api/generate"),
        ],
    )
    def test_ollama_with_and_without_a_url(self, spec: str, url: str) -> None:
        provider = load_provider(spec)
        assert isinstance(provider, OllamaProvider)
        assert (provider.model, provider.url) == ("qwen2.5-coder:7b", url)

    def test_replay(self, tmp_path: Path) -> None:
        path = tmp_path / "c.jsonl"
        path.write_text(json.dumps({"cassette": 1, "streaming": False}) + "\n")
        provider = load_provider(f"replay:{path}")
        assert isinstance(provider, ReplayProvider)
        assert provider.supports_streaming is False

    def test_bad_cassette_names_spec_file_and_line(self, tmp_path: Path) -> None:
        path = tmp_path / "c.jsonl"
        path.write_text('{"prompt": "a"}\n{"prompt": 1}\n')
        with pytest.raises(ProviderError, match=r"^provider 'replay:.*c\.jsonl': .* line 2: "):
            load_provider(f"replay:{path}")


class TestOptions:
    @pytest.mark.parametrize(
        ("options", "field"),
        [
            (ProviderOptions(retries=-1), "retries"),
            (ProviderOptions(max_connections=0), "max_connections"),
            (ProviderOptions(max_tokens=0), "max_tokens"),
        ],
    )
    def test_options_out_of_range_are_one_line_naming_the_field(
        self, options: ProviderOptions, field: str
    ) -> None:
        with pytest.raises(ProviderError, match=field) as info:
            load_provider("openai:m@http://127.0.0.1:1/v1", options)
        assert "\n" not in str(info.value)

    def test_the_http_providers_take_every_option(self) -> None:
        options = ProviderOptions(retries=5, max_connections=3, stream=False, seed=1)
        openai = load_provider("openai:m@http://127.0.0.1:1/v1", options)
        ollama = load_provider("ollama:m", options)
        for provider in (openai, ollama):
            assert isinstance(provider, (OpenAIProvider, OllamaProvider))
            assert provider.retry.retries == 5 and provider.max_connections == 3
            assert provider.supports_streaming is False
