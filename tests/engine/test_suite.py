"""Suite loading: native JSON and TOML, Orket task banks, and one clear error per bad suite."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orket_pipeline._exceptions import InputError, SuiteError
from orket_pipeline.cli._run import demo_paths
from orket_pipeline.engine import (
    CliExamplesGate,
    FunctionExamplesGate,
    PythonTestsGate,
    load_suite,
    parse_suite,
)
from orket_pipeline.engine._suite import SuiteOptions
from orket_pipeline.engine._taskbank import signature_rule

GOOD_TASKS: list[dict[str, Any]] = [
    {"id": "t1", "prompt": "Write add.", "gate": {"type": "python_tests", "code": "assert 1"}},
    {
        "id": "t2",
        "prompt": "Write sq.",
        "constraints": {"regex_required": ["def sq"]},
        "gate": {
            "type": "function_examples",
            "function_name": "sq",
            "examples": [{"args": [3], "expected": 9}],
            "timeout_s": 2,
        },
    },
    {
        "id": "t3",
        "prompt": "Write a CLI.",
        "gate": {"type": "cli_examples", "examples": [{"args": ["x"], "expected_stdout": "x\n"}]},
    },
    {"id": "t4", "prompt": "Say hi."},
]


def write(tmp_path: Path, name: str, content: Any) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


class TestNativeSuites:
    def test_json_suite_loads_every_gate_type_in_order(self, tmp_path: Path) -> None:
        suite = load_suite(write(tmp_path, "s.json", {"name": "mine", "tasks": GOOD_TASKS}))
        assert suite.name == "mine"
        assert [t.id for t in suite.tasks] == ["t1", "t2", "t3", "t4"]
        gates = [type(t.gate) for t in suite.tasks]
        assert gates == [PythonTestsGate, FunctionExamplesGate, CliExamplesGate, type(None)]
        assert suite.tasks[1].constraints is not None
        gate = suite.tasks[1].gate
        assert isinstance(gate, FunctionExamplesGate) and gate.timeout_s == 2
        assert gate.examples[0].args == (3,)

    def test_toml_suite_loads(self, tmp_path: Path) -> None:
        toml = """
name = "toml suite"
[[tasks]]
id = "a"
prompt = "Write add."
[tasks.gate]
type = "python_tests"
code = "assert add(1, 2) == 3"
[[tasks]]
id = "b"
prompt = "Say hi."
"""
        suite = load_suite(write(tmp_path, "s.toml", toml))
        assert suite.name == "toml suite"
        assert [t.id for t in suite.tasks] == ["a", "b"]
        assert isinstance(suite.tasks[0].gate, PythonTestsGate)

    def test_name_defaults_to_the_file_stem(self, tmp_path: Path) -> None:
        suite = load_suite(write(tmp_path, "nightly.json", {"tasks": GOOD_TASKS[:1]}))
        assert suite.name == "nightly"

    def test_bundled_demo_suite_loads_with_every_gate_type(self) -> None:
        suite = load_suite(demo_paths()[0])
        kinds = {type(t.gate).__name__ for t in suite.tasks}
        assert {"PythonTestsGate", "FunctionExamplesGate", "CliExamplesGate"} <= kinds
        assert len(suite.tasks) >= 8


def bad(tmp_path: Path, content: Any, name: str = "bad.json") -> str:
    path = write(tmp_path, name, content)
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    message = str(info.value)
    assert "\n" not in message
    assert isinstance(info.value, InputError)
    assert message.startswith(str(path))
    return message


def suite_with(task: dict[str, Any]) -> dict[str, Any]:
    return {"name": "s", "tasks": [task]}


class TestBadSuites:
    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(SuiteError, match="cannot read suite"):
            load_suite(tmp_path / "nope.json")

    @pytest.mark.parametrize("name", ["bad.json", "bad.toml", "bad.suite"])
    def test_not_json_or_toml(self, tmp_path: Path, name: str) -> None:
        assert "not" in bad(tmp_path, "{this is = [not valid", name)

    def test_not_utf8(self, tmp_path: Path) -> None:
        path = tmp_path / "bin.json"
        path.write_bytes(b"\xff\xfe\x00garbage")
        with pytest.raises(SuiteError, match="not UTF-8"):
            load_suite(path)

    def test_top_level_of_wrong_type(self, tmp_path: Path) -> None:
        assert "expected an object" in bad(tmp_path, "42")

    def test_tasks_not_a_list(self, tmp_path: Path) -> None:
        assert "field `tasks`" in bad(tmp_path, {"name": "s", "tasks": {"id": "x"}})

    def test_no_tasks(self, tmp_path: Path) -> None:
        assert "no tasks" in bad(tmp_path, {"name": "s", "tasks": []})

    def test_missing_id_names_the_task_position(self, tmp_path: Path) -> None:
        message = bad(tmp_path, suite_with({"prompt": "p"}))
        assert "task #1" in message and "field `id`" in message

    def test_id_of_wrong_type(self, tmp_path: Path) -> None:
        assert "field `id`" in bad(tmp_path, suite_with({"id": ["x"], "prompt": "p"}))

    def test_missing_prompt_names_task_and_field(self, tmp_path: Path) -> None:
        message = bad(tmp_path, suite_with({"id": "t9"}))
        assert "task 't9'" in message and "field `prompt`" in message

    def test_duplicate_ids(self, tmp_path: Path) -> None:
        tasks = [{"id": "same", "prompt": "a"}, {"id": "same", "prompt": "b"}]
        message = bad(tmp_path, {"name": "s", "tasks": tasks})
        assert "task 'same'" in message and "duplicate" in message

    def test_unknown_gate_type(self, tmp_path: Path) -> None:
        message = bad(tmp_path, suite_with({"id": "t", "prompt": "p", "gate": {"type": "vibes"}}))
        assert "field `gate.type`" in message and "'vibes'" in message

    def test_gate_field_of_wrong_type_names_the_path(self, tmp_path: Path) -> None:
        gate = {"type": "function_examples", "function_name": "f", "examples": [{"args": 3}]}
        message = bad(tmp_path, suite_with({"id": "t", "prompt": "p", "gate": gate}))
        assert "task 't'" in message and "gate.examples[0]" in message

    def test_gate_missing_field(self, tmp_path: Path) -> None:
        gate = {"type": "python_tests"}
        message = bad(tmp_path, suite_with({"id": "t", "prompt": "p", "gate": gate}))
        assert "`code`" in message

    def test_gate_unknown_field_is_refused(self, tmp_path: Path) -> None:
        gate = {"type": "cli_examples", "examples": [{"args": [], "expected_stdot": "x"}]}
        message = bad(tmp_path, suite_with({"id": "t", "prompt": "p", "gate": gate}))
        assert "expected_stdot" in message

    def test_bad_timeout(self, tmp_path: Path) -> None:
        gate = {"type": "python_tests", "code": "", "timeout_s": -1}
        message = bad(tmp_path, suite_with({"id": "t", "prompt": "p", "gate": gate}))
        assert "gate.timeout_s" in message

    def test_nul_in_cli_args_is_refused_naming_task_and_field(self, tmp_path: Path) -> None:
        gate = {"type": "cli_examples", "examples": [{"args": ["ok", "a\0b"]}]}
        message = bad(tmp_path, suite_with({"id": "nul", "prompt": "p", "gate": gate}))
        assert "task 'nul'" in message and "field `gate.examples[0].args[1]`" in message
        assert "NUL" in message

    def test_nul_in_test_code_is_refused(self, tmp_path: Path) -> None:
        gate = {"type": "python_tests", "code": "assert True\0"}
        message = bad(tmp_path, suite_with({"id": "t", "prompt": "p", "gate": gate}))
        assert "field `gate.code`" in message and "NUL" in message

    @pytest.mark.parametrize("field", ["stdin", "expected_stdout", "expected_stderr"])
    def test_lone_surrogate_in_cli_text_is_refused(self, tmp_path: Path, field: str) -> None:
        path = tmp_path / "bad.json"
        # JSON's escape gives the decoder a lone surrogate; Python cannot write one as UTF-8.
        example = '{"args": [], "FIELD": "\\ud800"}'.replace("FIELD", field)
        gate = '{"type": "cli_examples", "examples": [EXAMPLE]}'.replace("EXAMPLE", example)
        path.write_text(
            '{"tasks": [{"id": "s", "prompt": "p", "gate": GATE}]}'.replace("GATE", gate)
        )
        with pytest.raises(SuiteError) as info:
            load_suite(path)
        assert f"field `gate.examples[0].{field}`" in str(info.value)
        assert "surrogate" in str(info.value)

    def test_invalid_regex_names_task(self, tmp_path: Path) -> None:
        task = {"id": "rx", "prompt": "p", "constraints": {"regex_required": ["("]}}
        assert "rx" in bad(tmp_path, suite_with(task))

    def test_ill_typed_ast_rule_names_task(self, tmp_path: Path) -> None:
        rules = {"ast_rules": [{"argument_count": "two"}]}
        task = {"id": "ast", "prompt": "p", "constraints": rules}
        assert "ast" in bad(tmp_path, suite_with(task))


BANK_TASK: dict[str, Any] = {
    "id": 7,
    "problem": "Count the vowels in a string.",
    "instruction": "Implement the function.",
    "function_signature": "def count_vowels(text: str) -> int:",
    "constraints": ["no imports"],
    "evaluation": {
        "type": "function_examples",
        "function_name": "count_vowels",
        "examples": [{"args": ["abc"], "expected": 1}],
        "entrypoint": "agent_output/main.py",
    },
    "acceptance_contract": {
        "mode": "function",
        "quality_required_keywords": ["def count_vowels(", "return"],
        "quality_forbidden_keywords": ["print("],
    },
}


class TestTaskBank:
    def test_bank_task_becomes_prompt_constraints_and_gate(self, tmp_path: Path) -> None:
        suite = load_suite(write(tmp_path, "bank.json", [BANK_TASK]))
        (task,) = suite.tasks
        assert task.id == "7" and suite.name == "bank"
        assert task.prompt.startswith("Count the vowels in a string.\n\nImplement the function.")
        assert "Function signature: def count_vowels(text: str) -> int:" in task.prompt
        assert "- no imports" in task.prompt
        assert isinstance(task.gate, FunctionExamplesGate)
        assert task.gate.function_name == "count_vowels"
        assert task.constraints is not None

    def test_keywords_are_escaped_literal_case_insensitive_patterns(self, tmp_path: Path) -> None:
        suite = load_suite(write(tmp_path, "bank.json", [BANK_TASK]))
        constraints = suite.tasks[0].constraints
        assert constraints is not None
        required = [str(getattr(c, "pattern", c)) for c in constraints.regex_required]
        assert "(?i)def\\ count_vowels\\(" in required

    def test_signature_becomes_an_ast_rule(self) -> None:
        rule = signature_rule("def f(a, /, b, *args, c, **kw) -> list[int]:", "w")
        assert rule == {
            "required_function_name": "f",
            "argument_count": 5,
            "return_type_annotation": "list[int]",
        }
        assert signature_rule("g(x)", "w") == {"required_function_name": "g", "argument_count": 1}

    def test_cli_evaluation_drops_orket_only_fields(self, tmp_path: Path) -> None:
        task = {
            "id": "c1",
            "instruction": "Echo.",
            "evaluation": {
                "type": "cli_examples",
                "entrypoint": "agent_output/main.py",
                "artifact_paths": ["agent_output/main.py"],
                "examples": [
                    {
                        "args": ["a"],
                        "expected_stdout": "a\n",
                        "expected_stderr": "",
                        "expected_exit_code": 0,
                        "note": "x",
                    }
                ],
            },
        }
        suite = load_suite(write(tmp_path, "bank.json", [task]))
        assert isinstance(suite.tasks[0].gate, CliExamplesGate)

    def test_bad_signature(self, tmp_path: Path) -> None:
        task = dict(BANK_TASK, function_signature="def (((:")
        assert "field `function_signature`" in bad(tmp_path, [task])

    def test_unknown_evaluation_type(self, tmp_path: Path) -> None:
        task = dict(BANK_TASK, evaluation={"type": "llm_judge"})
        assert "field `evaluation.type`" in bad(tmp_path, [task])

    def test_no_problem_or_instruction(self, tmp_path: Path) -> None:
        assert "problem" in bad(tmp_path, [{"id": "x"}])


def test_parse_suite_names_the_given_file() -> None:
    with pytest.raises(SuiteError, match=r"^here\.json: "):
        parse_suite(b"[1]", name="here.json")


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=300)
    | st.text(alphabet='{}[]",:=\n #"abtidpromptaskgye0123', max_size=120).map(str.encode)
)
def test_any_bytes_give_a_suite_or_one_line_suite_error(data: bytes) -> None:
    for name in ("fuzz.json", "fuzz.toml", "fuzz"):
        try:
            suite = parse_suite(data, name=name)
        except SuiteError as exc:
            assert "\n" not in str(exc) and str(exc).startswith(name)
        else:
            assert suite.tasks and len({t.id for t in suite.tasks}) == len(suite.tasks)


FUZZ_KEYS = ["id", "prompt", "gate", "type", "code", "tasks", "examples", "args", "constraints"]
FUZZ_KEYS += ["regex_required", "ast_rules", "argument_count", "evaluation", "problem"]


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    ["id", "prompt", "gate", "type", "code", "tasks", "examples", "args"]
                ),
                inner,
                max_size=4,
            )
        ),
        max_leaves=20,
    )
)
def test_any_json_document_gives_a_suite_or_a_suite_error(document: Any) -> None:
    try:
        parse_suite(json.dumps(document).encode(), name="doc.json")
    except SuiteError as exc:
        assert "\n" not in str(exc)


class TestSuiteOptions:
    def test_generation_options_at_the_top_level_are_loaded(self) -> None:
        document = {
            "options": {"max_tokens": 64, "temperature": 0, "seed": 7, "stop": ["\n\n"]},
            "tasks": [{"id": "a", "prompt": "p"}],
        }
        suite = parse_suite(json.dumps(document).encode(), name="s.json")
        assert suite.options == SuiteOptions(max_tokens=64, temperature=0.0, seed=7, stop=("\n\n",))
        assert parse_suite(b'{"tasks": [{"id": "a", "prompt": "p"}]}', name="s").options is None

    def test_toml_suites_take_them_too(self) -> None:
        text = 'name = "s"\n[options]\nsystem = "be brief"\nstream = false\n'
        text += '[[tasks]]\nid = "a"\nprompt = "p"\n'
        suite = parse_suite(text.encode(), name="s.toml")
        assert suite.options == SuiteOptions(system="be brief", stream=False)

    @pytest.mark.parametrize(
        ("options", "field"),
        [
            ({"max_tokens": 0}, "options.max_tokens"),
            ({"max_tokens": True}, "options.max_tokens"),
            ({"temperature": "hot"}, "options.temperature"),
            ({"temperature": -1}, "options.temperature"),
            ({"seed": 1.5}, "options.seed"),
            ({"stop": "x"}, "options.stop"),
            ({"stop": [""]}, "options.stop[0]"),
            ({"max_token": 5}, "options.max_token"),
            ({"system": "a\u0000b"}, "options.system"),
            ([1], "options"),
        ],
    )
    def test_a_bad_option_is_one_line_naming_file_and_field(self, options: Any, field: str) -> None:
        document = {"options": options, "tasks": [{"id": "a", "prompt": "p"}]}
        with pytest.raises(SuiteError) as caught:
            parse_suite(json.dumps(document).encode(), name="s.json")
        message = str(caught.value)
        assert message.startswith(f"s.json: field `{field}`"), message
        assert "\n" not in message

    def test_an_unknown_option_lists_the_known_ones(self) -> None:
        document = {"options": {"top_p": 1}, "tasks": [{"id": "a", "prompt": "p"}]}
        with pytest.raises(SuiteError, match=r"unknown option \(known: max_tokens, temperature"):
            parse_suite(json.dumps(document).encode(), name="s.json")
