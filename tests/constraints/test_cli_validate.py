import json
import subprocess
import sys

import pytest

from orket_pipeline.cli import main

CODE = "def add(a: int, b: int) -> int:\n    return a + b\n"


@pytest.fixture
def rules(tmp_path):
    def write(obj, name="rules.json"):
        path = tmp_path / name
        path.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
        return str(path)

    return write


@pytest.fixture
def code(tmp_path):
    path = tmp_path / "code.py"
    path.write_text(CODE, encoding="utf-8")
    return str(path)


def test_all_checks_passing_exits_0_and_prints_each_check(code, rules, capsys):
    rules_path = rules({"regex_required": ["return\\s+a"], "ast_rules": [{"argument_count": 2}]})
    assert main(["validate", code, "--constraints", rules_path]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "PASS  regex_required[0]: return\\s+a",
        "PASS  ast_rules[0].argument_count: 2",
        "adherence: 1.000 (2/2 checks passed)",
    ]


def test_a_failing_check_exits_1_and_shows_its_reason(code, rules, capsys):
    rules_path = rules({"ast_rules": [{"required_function_name": "sub"}]})
    assert main(["validate", code, "--constraints", rules_path]) == 1
    out = capsys.readouterr().out
    assert "FAIL  ast_rules[0].required_function_name: sub  (function sub not found)" in out
    assert "adherence: 0.000 (0/1 checks passed)" in out


def test_json_output_has_three_decimal_score(code, rules, capsys):
    rules_path = rules({"regex_required": ["a", "zzz", "b"]})
    assert main(["validate", code, "--constraints", rules_path, "--json"]) == 1
    out = capsys.readouterr().out
    assert '"adherence_score":0.667' in out
    assert json.loads(out)["checks"][1]["reason"] == "no match"


def test_extract_takes_the_code_of_a_model_answer(tmp_path, rules, capsys):
    answer = tmp_path / "answer.md"
    answer.write_text(f"Here:\n```python\n{CODE}```\nDone.", encoding="utf-8")
    rules_path = rules({"ast_rules": [{"argument_count": 2}]})
    assert main(["validate", str(answer), "--constraints", rules_path]) == 1
    assert main(["validate", str(answer), "--constraints", rules_path, "--extract"]) == 0


def test_empty_code_file_has_no_score_and_exits_1(tmp_path, rules, capsys):
    empty = tmp_path / "empty.py"
    empty.write_text("", encoding="utf-8")
    assert main(["validate", str(empty), "--constraints", rules({})]) == 1
    assert "adherence: none (no code payload)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("rules_text", "message"),
    [
        ("{", "invalid JSON"),
        ('{"regex_required": ["a("]}', "constraints.regex_required[0]: invalid regex 'a('"),
        ('{"ast_rules": [{"argument_count": "two"}]}', "constraints.ast_rules[0].argument_count"),
    ],
)
def test_bad_constraints_exit_2_with_one_line(code, rules, capsys, rules_text, message):
    rules_path = rules(rules_text)
    assert main(["validate", code, "--constraints", rules_path]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert rules_path in err and message in err


def test_missing_code_file_exits_2(rules, capsys, tmp_path):
    assert main(["validate", str(tmp_path / "nope.py"), "--constraints", rules({})]) == 2
    assert "nope.py: cannot read" in capsys.readouterr().err


@pytest.mark.timeout(60)
def test_subprocess_bad_regex_exits_2_with_one_line_and_no_traceback(code, rules):
    rules_path = rules({"regex_forbidden": ["(unclosed"]})
    done = subprocess.run(
        [sys.executable, "-m", "orket_pipeline", "validate", code, "--constraints", rules_path],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1
    assert "Traceback" not in done.stderr
    assert "invalid regex '(unclosed'" in done.stderr
