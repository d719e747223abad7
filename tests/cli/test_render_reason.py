"""The run table's reason column: why each run did not pass, short, on the terminal safely."""

from __future__ import annotations

import io

from rich.console import Console

from orket_pipeline.cli._render import _reason, render_table
from orket_pipeline.report import Report, RunError, TestRun


def table_text(*runs: TestRun) -> str:
    buffer = io.StringIO()
    render_table(Report(test_runs=list(runs)), Console(file=buffer, width=200, color_system=None))
    return buffer.getvalue()


def test_a_failed_run_shows_the_gates_reason_and_an_errored_one_its_error() -> None:
    out = table_text(
        TestRun(test_id="wrong", outcome="fail", reason="add(1, 2) returned 4"),
        TestRun(
            test_id="down",
            outcome="error",
            error=RunError(type="ConnectError", message="refused :8000"),
        ),
        TestRun(test_id="fine", outcome="pass"),
    )
    assert "reason" in out
    assert "add(1, 2) returned 4" in out
    assert "ConnectError: refused :8000" in out


def test_a_reason_is_one_short_line() -> None:
    long = TestRun(test_id="t", outcome="fail", reason="line one\nline two  " + "x" * 200)
    short = _reason(long)
    assert short.startswith("line one line two x")
    assert len(short) == 80 and short.endswith("…")
    assert _reason(TestRun(test_id="t", outcome="pass")) == ""
    assert _reason(TestRun(test_id="t", outcome="error", error=RunError(type="E"))) == "E"


def test_control_characters_and_markup_in_a_reason_never_act_on_the_terminal() -> None:
    out = table_text(TestRun(test_id="t", outcome="fail", reason="\x1b[2J[bold]x"))
    assert "\x1b" not in out
    assert "\\x1b[2J[bold]x" in out
