"""The command line as a whole: one program name per error line, nothing raw on the terminal,
every default in `--help`, and `report`'s table capped as `run`'s is."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from orket_pipeline.cli import _DefaultsFormatter, build_parser, main
from orket_pipeline.report._io import write_report
from orket_pipeline.report._model import Report, TestRun


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "s.json", "--concurrency", "0"], "run: argument --concurrency: expected"),
        (["bogus"], "argument COMMAND: invalid choice: 'bogus'"),
        (["report"], "report: the following arguments are required: REPORT"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_a_usage_error_names_the_program_once(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"orket-pipeline: error: {expected}"), err
    assert err.count("orket-pipeline") == 1


def test_control_characters_in_an_error_line_are_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile = str(tmp_path / "\x1b[2J\x1b[Hall passed\r.json")
    assert main(["run", hostile, "--provider", "replay:x.jsonl", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\r" not in err
    assert "\\x1b[2J\\x1b[Hall passed .json" in err  # a line break becomes a space


def _options_taking_a_value(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        action
        for action in parser._actions
        if action.option_strings and action.nargs != 0 and not action.required
    ]


def test_help_shows_a_default_for_every_option_that_takes_a_value() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for name, sub in commands.choices.items():
        formatter = _DefaultsFormatter(name)
        for action in _options_taking_a_value(sub):
            if "default" not in (formatter._get_help_string(action) or ""):
                missing.append(f"{name} {action.option_strings[0]}")
    assert missing == []
    run_help = commands.choices["run"].format_help()
    assert "(default: 4)" in run_help and "(default: orket_report.json)" in run_help


class TestReportRows:
    def _report(self, tmp_path: Path) -> str:
        runs = [TestRun(test_id=f"ok{i}", outcome="pass") for i in range(200)]
        runs.append(TestRun(test_id="bad", outcome="fail"))
        path = tmp_path / "r.json"
        write_report(path, Report(test_runs=runs))
        return str(path)

    def test_a_long_report_table_shows_only_what_did_not_pass(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["report", self._report(tmp_path)]) == 0
        out = capsys.readouterr().out
        assert "1 runs that did not pass (of 201)" in out
        assert "bad" in out and "ok1 " not in out
        assert "201 runs: 200 pass, 1 fail, 0 error" in out

    def test_max_rows_0_shows_every_run_and_a_file_is_capped_too(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        report = self._report(tmp_path)
        assert main(["report", report, "--max-rows", "0"]) == 0
        assert "ok199" in capsys.readouterr().out
        assert main(["report", report, "-o", str(tmp_path / "t.txt")]) == 0
        assert "ok1 " not in (tmp_path / "t.txt").read_text()
