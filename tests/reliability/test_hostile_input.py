"""Hostile input, as an attacker would write it: refused at load with one line, never a crash,
never a silent change of meaning, never unbounded memory.

The CLI cases run `python -m orket_pipeline` as its own process, with its address space capped
where memory is the thing under test, so a regression fails the test instead of the machine.
"""

from __future__ import annotations

import json
import resource
import subprocess
from pathlib import Path

import pytest

from orket_pipeline._exceptions import SuiteError
from orket_pipeline.engine._load import parse_suite

from ._helpers import CLI, cli_env

BOMB = "((((a{100}){100}){100}){100})"  # 10^8 expanded copies: 24 GB before the size check
_ADDRESS_SPACE = 2 << 30


def _capped_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (_ADDRESS_SPACE, _ADDRESS_SPACE))


def run_capped(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_capped_memory,
    )


def assert_one_line(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("orket-pipeline: error: ")
    assert result.stderr.count("\n") == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


class TestRegexCompileBomb:
    def test_run_refuses_the_suite_at_load_naming_task_and_field(self, tmp_path: Path) -> None:
        task = {"id": "boom", "prompt": "p", "constraints": {"regex_forbidden": ["x", BOMB]}}
        (tmp_path / "suite.json").write_text(json.dumps({"tasks": [task]}))
        result = run_capped(["run", "suite.json", "--provider", "replay:none.jsonl"], tmp_path)
        assert_one_line(result, "suite.json", "task 'boom'", "regex_forbidden[1]", "too large")
        assert not (tmp_path / "orket_report.json").exists()

    def test_validate_refuses_the_rules_file_naming_the_field(self, tmp_path: Path) -> None:
        (tmp_path / "rules.json").write_text(json.dumps({"regex_required": [BOMB]}))
        (tmp_path / "code.py").write_text("a = 1\n")
        result = run_capped(["validate", "code.py", "--constraints", "rules.json"], tmp_path)
        assert_one_line(result, "rules.json", "regex_required[0]", "too large")


def _refusal(document: bytes) -> str:
    with pytest.raises(SuiteError) as caught:
        parse_suite(document, name="s.json")
    return str(caught.value)


class TestDuplicateKeys:
    def test_a_gate_key_given_twice_is_refused_not_dropped(self) -> None:
        suite = b"""{"tasks": [{"id": "t", "prompt": "p",
            "gate": {"type": "python_tests", "code": "assert False"}, "gate": null}]}"""
        assert _refusal(suite) == "s.json: task 't': field `gate`: key given more than once"

    @pytest.mark.parametrize(
        ("document", "where"),
        [
            (b'{"tasks": [{"id": "t", "prompt": "p"}], "tasks": []}', "s.json: field `tasks`"),
            (b'{"name": "a", "name": "b", "tasks": []}', "s.json: field `name`"),
            (
                b'{"tasks": [{"id": "t", "prompt": "p", "gate": {"type": "cli_examples",'
                b' "examples": [{"args": [], "stdin": "a", "stdin": "b"}]}}]}',
                "s.json: task 't': field `gate.examples[0].stdin`",
            ),
            (
                b'[{"id": 7, "problem": "p", "acceptance_contract": {"quality_required_keywords":'
                b' ["x"], "quality_required_keywords": []}}]',
                "s.json: task '7': field `acceptance_contract.quality_required_keywords`",
            ),
        ],
    )
    def test_anywhere_in_a_suite_or_a_task_bank(self, document: bytes, where: str) -> None:
        assert _refusal(document) == f"{where}: key given more than once"


class TestLoneSurrogates:
    @pytest.mark.parametrize(
        ("task", "where"),
        [
            ('{"id": "\\ud800", "prompt": "p"}', "task '\\ud800': field `id`"),
            (
                '{"id": "t", "prompt": "p", "gate": {"type": "python_tests", "code": "#\\ud800"}}',
                "task 't': field `gate.code`",
            ),
            (
                '{"id": "t", "prompt": "p", "gate": {"type": "cli_examples", "examples":'
                ' [{"args": ["\\udcff"], "stdin": "ok"}]}}',
                "task 't': field `gate.examples[0].args[0]`",
            ),
            (
                '{"id": "t", "prompt": "p", "gate": {"type": "cli_examples", "examples":'
                ' [{"stdin": "x\\udfff"}]}}',
                "task 't': field `gate.examples[0].stdin`",
            ),
            ('{"id": "t", "prompt": "\\udbff"}', "task 't': field `prompt`"),
            ('{"id": "t", "prompt": "p", "\\ud800": 1}', "task 't': field `\\ud800`"),
        ],
    )
    def test_are_refused_at_load_naming_task_and_field(self, task: str, where: str) -> None:
        message = _refusal(('{"tasks": [' + task + "]}").encode())
        assert message.startswith(f"s.json: {where}: a lone surrogate (")
        message.encode("ascii")  # printable on any terminal

    def test_through_the_cli_is_exit_2_and_one_line_no_traceback(self, tmp_path: Path) -> None:
        task = '{"id": "t", "prompt": "p", "gate": {"type": "python_tests", "code": "\\ud800"}}'
        (tmp_path / "suite.json").write_text('{"tasks": [' + task + "]}")
        (tmp_path / "p.py").write_text(
            "class P:\n    supports_streaming = False\n"
            "    async def generate(self, prompt):\n        return 'x = 1'\n"
        )
        result = run_capped(["run", "suite.json", "--provider", "python:p.py:P"], tmp_path)
        assert_one_line(result, "suite.json", "task 't'", "`gate.code`", "\\ud800")
        assert "Traceback" not in result.stderr
        assert not (tmp_path / "orket_report.json").exists()
