"""Bad input through the real command line: exit 2, one line naming the file, task or field.

Every case runs `python -m orket_pipeline` as its own process (all of them at once, so the set
costs a couple of seconds); the in-process variants are in tests/cli and tests/test_suite.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ._helpers import CLI, cli_env

GOOD_SUITE = {"tasks": [{"id": "t", "prompt": "p"}]}


def task(**fields: object) -> dict[str, object]:
    return {"tasks": [{"id": "t", "prompt": "p", **fields}]}


FILES: dict[str, str | dict[str, object]] = {
    "good.json": GOOD_SUITE,
    "notes.txt": "not json = = [",
    "broken.json": '{"tasks": [',
    "broken.toml": "[tasks\nid = 1",
    "wrong_type.json": {"tasks": [{"id": "t", "prompt": 5}]},
    "wrong_type.toml": '[[tasks]]\nid = 1\nprompt = "p"\n',
    "duplicates.json": {"tasks": [{"id": "t", "prompt": "p"}, {"id": "t", "prompt": "q"}]},
    "unknown_gate.json": task(gate={"type": "magic"}),
    "bad_regex.json": task(constraints={"regex_required": ["a("]}),
    "bad_rule.json": task(constraints={"ast_rules": [{"argument_count": "two"}]}),
    "raises.py": "raise RuntimeError('no model here')\n",
    "syntax.py": "def f(:\n",
    "empty.py": "x = 1\n",
    "not_provider.py": "class P:\n    supports_streaming = 1\n",
    "cassette.jsonl": "garbage\n",
    "report.json": {"test_runs": [{"test_id": "a", "outcome": "pass"}]},
    "not_json.json": "{'single': 'quotes'}",
    "wrong_report.json": {"test_runs": 5},
    "journal.jsonl": "not a journal\n",
    "code.py": "x = 1\n",
}

RUN = ["run", "good.json", "--provider"]
CASES: dict[str, tuple[list[str], list[str]]] = {
    # name: (arguments, fragments the one line must contain)
    "suite-not-json-or-toml": (["run", "notes.txt", "--provider", "replay:x"], ["notes.txt"]),
    "suite-invalid-json": (["run", "broken.json", "--provider", "replay:x"], ["broken.json"]),
    "suite-invalid-toml": (["run", "broken.toml", "--provider", "replay:x"], ["broken.toml"]),
    "suite-wrong-type": (
        ["run", "wrong_type.json", "--provider", "replay:x"],
        ["wrong_type.json", "task 't'", "`prompt`"],
    ),
    "suite-wrong-type-toml": (
        ["run", "wrong_type.toml", "--provider", "replay:x"],
        ["wrong_type.toml", "`id`"],
    ),
    "suite-duplicate-ids": (
        ["run", "duplicates.json", "--provider", "replay:x"],
        ["duplicates.json", "task 't'", "duplicate"],
    ),
    "suite-unknown-gate": (
        ["run", "unknown_gate.json", "--provider", "replay:x"],
        ["unknown_gate.json", "task 't'", "`gate.type`", "magic"],
    ),
    "suite-invalid-regex": (
        ["run", "bad_regex.json", "--provider", "replay:x"],
        ["bad_regex.json", "task 't'", "regex_required[0]", "a("],
    ),
    "suite-ill-typed-rule": (
        ["run", "bad_rule.json", "--provider", "replay:x"],
        ["bad_rule.json", "task 't'", "ast_rules[0].argument_count"],
    ),
    "suite-missing": (["run", "missing.json", "--provider", "replay:x"], ["missing.json"]),
    "provider-unknown-scheme": ([*RUN, "nosuch:model"], ["nosuch:model", "unknown scheme"]),
    "provider-module-missing": ([*RUN, "python:no_such_module_xyz:P"], ["no_such_module_xyz"]),
    "provider-raises-on-import": ([*RUN, "python:raises.py:P"], ["raises.py", "RuntimeError"]),
    "provider-syntax-error": ([*RUN, "python:syntax.py:P"], ["syntax.py", "SyntaxError"]),
    "provider-name-missing": ([*RUN, "python:empty.py:P"], ["empty.py", "no attribute 'P'"]),
    "provider-not-a-provider": ([*RUN, "python:not_provider.py:P"], ["not a provider"]),
    "provider-bad-cassette": ([*RUN, "replay:cassette.jsonl"], ["cassette.jsonl line 1"]),
    "concurrency-zero": ([*RUN, "replay:x", "--concurrency", "0"], ["--concurrency"]),
    "concurrency-word": ([*RUN, "replay:x", "--concurrency", "many"], ["--concurrency"]),
    "concurrency-negative": ([*RUN, "replay:x", "--concurrency=-3"], ["--concurrency"]),
    "journal-directory-missing": (
        [*RUN, "python:not_provider.py:P", "--journal", "no/such/j.jsonl"],
        ["--journal no/such/j.jsonl"],
    ),
    "report-not-json": (["report", "not_json.json"], ["not_json.json", "not valid JSON"]),
    "report-wrong-types": (["report", "wrong_report.json"], ["wrong_report.json", "$.test_runs"]),
    "report-missing": (["report", "missing.json"], ["missing.json", "no such file"]),
    "rebuild-journal-not-json": (["rebuild", "journal.jsonl", "-o", "out.json"], ["journal.jsonl"]),
    "rebuild-report-is-not-a-journal": (
        ["rebuild", "report.json", "-o", "out.json"],
        ["report.json"],
    ),
    "rebuild-journal-missing": (["rebuild", "missing.jsonl", "-o", "out.json"], ["missing.jsonl"]),
    "merge-not-json": (
        ["merge", "report.json", "not_json.json", "-o", "out.json"],
        ["not_json.json", "not valid JSON"],
    ),
    "validate-rules-not-json": (
        ["validate", "code.py", "--constraints", "notes.txt"],
        ["notes.txt", "invalid JSON"],
    ),
}
if Path("/dev/full").exists():  # a journal that cannot be written: the disk is full
    CASES["journal-disk-full"] = (
        ["run", "good.json", "--provider", "python:working.py:P", "--journal", "/dev/full"],
        ["cannot write the journal /dev/full", "No space left on device"],
    )
    FILES["working.py"] = (
        "class P:\n    supports_streaming = False\n"
        "    async def generate(self, prompt):\n        return 'x = 1'\n"
    )


@pytest.fixture(scope="module")
def results(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[subprocess.CompletedProcess[str], Path]]:
    """Every case, each in its own directory and process, all running at once."""
    root = tmp_path_factory.mktemp("bad_input")
    started = {}
    for name, (args, _) in CASES.items():
        directory = root / name
        directory.mkdir()
        for file_name, content in FILES.items():
            text = content if isinstance(content, str) else json.dumps(content)
            (directory / file_name).write_text(text)
        process = subprocess.Popen(
            [*CLI, *args],
            cwd=directory,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started[name] = (process, directory)
    finished = {}
    for name, (process, directory) in started.items():
        out, err = process.communicate(timeout=60)
        done = subprocess.CompletedProcess(process.args, process.returncode, out, err)
        finished[name] = (done, directory)
    return finished


@pytest.mark.skipif(sys.platform == "win32", reason="paths in the cases are POSIX")
@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_exit_2_and_one_line_naming_the_culprit(
    results: dict[str, tuple[subprocess.CompletedProcess[str], Path]], case: str
) -> None:
    result, directory = results[case]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("orket-pipeline: error: ")
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), result.stderr
    for fragment in CASES[case][1]:
        assert fragment in result.stderr
    assert result.stdout == ""
    written = {"orket_report.json", "out.json", "orket_report.json.journal.jsonl"}
    assert not written & {p.name for p in directory.iterdir()}, "nothing written"
