"""The input readers the existing fuzz tests leave out: replay cassettes and the rules file of
`validate`. Any bytes give a usable object or one clean line of error, never a traceback.

(Suites: tests/test_suite.py; reports: tests/test_report_io.py; journals: tests/test_journal.py.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orket_pipeline._exceptions import ProviderError
from orket_pipeline.cli import main
from orket_pipeline.providers import load_provider

FIXTURE_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text('ab"\\é\x00', max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["prompt", "chunks", "delay_s", "text", "error", "type", "message"])
            | st.sampled_from(["after_chunks", "cassette", "streaming", "x"]),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)
header = st.fixed_dictionaries(
    {"cassette": st.integers(0, 2) | json_values}, optional={"streaming": json_values}
)
chunk = st.fixed_dictionaries(
    {"delay_s": st.floats(-1, 0.001) | json_values, "text": st.text("ab", max_size=2) | json_values}
)
record = st.fixed_dictionaries(
    {"prompt": st.text("pq", max_size=2) | json_values},
    optional={
        "chunks": st.lists(chunk, max_size=2) | json_values,
        "error": st.fixed_dictionaries(
            {"type": st.just("E") | json_values, "message": st.just("m") | json_values},
            optional={"after_chunks": st.integers(-1, 3) | json_values},
        ),
    },
)
valid_record = st.fixed_dictionaries(
    {"prompt": st.text("pq", max_size=3)},
    optional={
        "chunks": st.lists(
            st.fixed_dictionaries({"delay_s": st.just(0.0), "text": st.text("ab", max_size=2)}),
            max_size=2,
        ),
        "error": st.fixed_dictionaries({"type": st.just("E"), "message": st.just("m")}),
    },
)
cassette_lines = st.lists(
    st.one_of(valid_record, valid_record, header, record, json_values)
    .map(json.dumps)
    .map(str.encode),
    max_size=4,
).map(b"\n".join)


@settings(FIXTURE_OK, max_examples=300)
@given(st.binary(max_size=200) | cassette_lines)
def test_any_cassette_gives_a_provider_or_one_line_naming_it(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(data)
    try:
        provider = load_provider(f"replay:{path}")
    except ProviderError as exc:
        assert str(path) in str(exc)
        assert "\n" not in str(exc)
    else:
        assert isinstance(provider.supports_streaming, bool)


rules = st.fixed_dictionaries(
    {},
    optional={
        "regex_required": json_values | st.lists(st.text("a(*)[\\?+{1}", max_size=6), max_size=3),
        "regex_forbidden": json_values,
        "ast_rules": json_values
        | st.lists(
            st.dictionaries(
                st.sampled_from(
                    ["required_function_name", "argument_count", "return_type_annotation"]
                ),
                json_values | st.text("int[]|: ", max_size=6),
                max_size=3,
            ),
            max_size=2,
        ),
    },
)


@FIXTURE_OK
@given(st.binary(max_size=120) | rules.map(json.dumps).map(str.encode))
def test_any_rules_file_gives_a_verdict_or_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes
) -> None:
    code, rules_file = tmp_path / "code.py", tmp_path / "rules.json"
    code.write_text("def add(a: int, b: int) -> int:\n    return a + b\n")
    rules_file.write_bytes(data)
    capsys.readouterr()
    status = main(["validate", str(code), "--constraints", str(rules_file)])
    out, err = capsys.readouterr()
    if status == 2:
        assert err.count("\n") == 1 and str(rules_file) in err, err
    else:
        assert status in (0, 1) and err == "" and "adherence" in out
