"""The renderers of `run` and `report`: terminal table, JSON, HTML; nothing a report holds acts
on the terminal or the page."""

from __future__ import annotations

import io
from decimal import Decimal

import msgspec
import pytest
from rich.console import Console

from orket_pipeline.cli._render import render_html, render_json, render_table
from orket_pipeline.report._model import Report, Telemetry, TestRun


def run(test_id: str, outcome: str = "pass", **numbers: str | None) -> TestRun:
    values = {name: None if v is None else Decimal(v) for name, v in numbers.items()}
    return TestRun(test_id=test_id, outcome=outcome, telemetry=msgspec.convert(values, Telemetry))


@pytest.fixture
def report() -> Report:
    return Report(
        test_runs=[
            run(
                "a",
                init_latency="0.100",
                total_latency="1.000",
                peak_memory_rss="10.000",
                adherence_score="1.000",
            ),
            run(
                "b",
                "fail",
                init_latency=None,
                total_latency="2.000",
                peak_memory_rss="30.000",
                adherence_score="0.500",
            ),
            run("c", "error", total_latency="0.500", peak_memory_rss="20.000"),
            TestRun(test_id="[bold]d", outcome="pass"),  # no telemetry (an old report)
        ]
    )


class TestRenderers:
    def test_table_has_a_row_per_run_and_the_summary(self, report: Report) -> None:
        buffer = io.StringIO()
        render_table(report, Console(file=buffer, width=120, color_system=None))
        text = buffer.getvalue()
        assert "[bold]d" in text  # test ids are not rich markup
        for cell in ("0.100", "2.000", "30.000", "0.500", "total_latency", "p99", "2 pass"):
            assert cell in text

    def test_a_long_table_shows_only_runs_that_did_not_pass_but_sums_up_all(self) -> None:
        runs = [run(f"ok{i}") for i in range(60)] + [run("bad", "fail"), run("boom", "error")]
        out = io.StringIO()
        render_table(Report(test_runs=runs), Console(file=out, width=200), max_rows=50)
        text = out.getvalue()
        assert "2 runs that did not pass (of 62)" in text
        assert "bad" in text and "boom" in text and "ok1 " not in text
        assert "62 runs: 60 pass, 1 fail, 1 error" in text

    def test_json_holds_summary_and_runs_with_three_decimals(self, report: Report) -> None:
        data = render_json(report)
        document = msgspec.json.decode(data)
        assert document["summary"]["outcomes"] == {"pass": 2, "fail": 1, "error": 1}
        assert [r["test_id"] for r in document["test_runs"]] == ["a", "b", "c", "[bold]d"]
        assert b'"adherence_mean":0.750' in data
        assert data.endswith(b"\n")

    def test_html_is_escaped_and_self_contained(self, report: Report) -> None:
        page = render_html(
            Report(test_runs=[*report.test_runs, TestRun(test_id="<script>", outcome="pass")])
        )
        assert page.startswith("<!doctype html>")
        assert page.count("<script") == 2  # the embedded data and the page's own script
        assert "\\u003cscript\\u003e" in page  # the test id, as escaped JSON
        assert "http:" not in page and "https:" not in page  # nothing fetched from elsewhere


HOSTILE = [
    TestRun(test_id="\x1b[2J\x1b[HALL TESTS PASSED", outcome="fail"),
    TestRun(test_id="ok\rALL TESTS PASSED\x07", outcome="[/bold]"),
    TestRun(test_id="[red]x[/red]", outcome="\x1b]0;owned\x07"),
    TestRun(test_id="line\nbreak", outcome="\x9b2J"),  # a C1 control: CSI on some terminals
]


def _terminal_output(report: Report, **options: int) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, force_terminal=True, color_system="truecolor")
    render_table(report, console, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("max_rows", [None, 2])
def test_markup_and_control_characters_in_a_report_never_act_on_the_terminal(
    max_rows: int | None,
) -> None:
    text = _terminal_output(
        Report(test_runs=HOSTILE), **({} if max_rows is None else {"max_rows": max_rows})
    )
    for raw in ("\x1b[2J", "\x1b[H", "\r", "\x07", "\x1b]0", "\x9b", "line\nbreak"):
        assert raw not in text
    assert "\\x1b[2J\\x1b[HALL TESTS PASSED" in text
    assert "[/bold]" in text  # the outcome as itself (also counted in the summary caption)
    assert "\\x9b2J" in text


def test_html_escapes_test_ids_and_outcomes() -> None:
    page = render_html(
        Report(
            test_runs=[
                TestRun(test_id="<script>alert(1)</script>", outcome="<img src=x onerror=alert(1)>")
            ]
        )
    )
    assert page.count("<script") == 2  # the embedded data and the page's own script
    assert "<script>alert" not in page and "<img" not in page and "</script>alert" not in page
    # In the embedded data, as JSON escapes (tests/cli/test_html_browser.py: shown as text).
    assert "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e" in page
    assert "\\u003cimg src=x onerror=alert(1)\\u003e" in page
