"""`report --format html` without a browser: the embedded data cannot break out of its element,
the page fetches nothing and runs only its own script, what it draws is bounded however many
runs there are, and reports with little in them still make a page.
(In a real browser: tests/cli/test_html_browser.py.)"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orket_pipeline.cli._compare_render import render_compare_html
from orket_pipeline.cli._html import _columns, render_report_html
from orket_pipeline.cli._html._charts import SCATTER_POINTS
from orket_pipeline.cli._html._page import embed_json
from orket_pipeline.report._compare import compare_reports
from orket_pipeline.report._model import (
    CheckRecord,
    Metadata,
    Report,
    RunError,
    Telemetry,
    TestRun,
)

DANGEROUS = ("<", ">", "&", "\u2028", "\u2029")


def _data(page: str) -> dict[str, object]:
    match = re.search(r"<script type='application/json' id='orket-data'>(.*?)</script>", page)
    assert match is not None
    return json.loads(match.group(1))  # type: ignore[no-any-return]


def _chart(page: str, chart_id: str) -> str:
    match = re.search(rf"<figure class='chart' id='{chart_id}'>(.*?)</figure>", page)
    assert match is not None, chart_id
    return match.group(1)


def _report(runs: int, seed: int = 0) -> Report:
    rng = random.Random(seed)
    test_runs = []
    for i in range(runs):
        init = round(rng.lognormvariate(-2.5, 0.5), 3)
        test_runs.append(
            TestRun(
                test_id=f"t{i}",
                outcome=rng.choice(("pass", "pass", "fail", "error")),
                telemetry=Telemetry(
                    init_latency=init,
                    total_latency=round(init + rng.lognormvariate(-1, 0.5), 3),
                    peak_memory_rss=round(rng.uniform(40, 60), 3),
                    adherence_score=rng.choice((None, 0.5, 1.0)),
                ),
            )
        )
    return Report(test_runs=test_runs)


@given(st.lists(st.text()), st.text())
def test_embedded_json_cannot_close_its_element_and_reads_back(texts: list[str], key: str) -> None:
    data = {key: texts, "end": "</script><!--\u2028\u2029&"}
    embedded = embed_json(data)
    assert not any(char in embedded for char in DANGEROUS)
    assert json.loads(embedded) == data


def test_a_lone_surrogate_is_embedded_as_an_escape() -> None:
    embedded = embed_json(["\ud800</script>"])
    assert not any(char in embedded for char in DANGEROUS)
    assert "\\ud800" in embedded
    assert json.loads(embedded) == ["\ud800</script>"]


def test_the_page_fetches_nothing_and_runs_only_its_own_script() -> None:
    hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    report = _report(5)
    report.metadata = Metadata(suite=hostile, provider=f"openai:{hostile}")
    report.test_runs[0].test_id = hostile
    page = render_report_html(report)
    policy = re.search(r"Content-Security-Policy' content=\"([^\"]*)\"", page)
    assert policy is not None
    directives = dict(d.strip().split(" ", 1) for d in policy.group(1).split(";"))
    assert directives["default-src"] == "'none'"  # no fetch, no frame, no connect, no font
    assert directives["img-src"] == "data:"
    (script,) = re.findall(r"<script>(.*?)</script>", page, re.S)
    (style,) = re.findall(r"<style>(.*?)</style>", page, re.S)
    for name, text in (("script-src", script), ("style-src", style)):
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        assert directives[name] == f"'sha256-{digest}'"
    for needle in ("http:", "https:", "url(", "@import", "<link", "<img", "<script>alert"):
        assert needle not in page
    assert not re.search(r"<[^<>]*\b(?:src|href)\s*=", page)  # no tag loads or links anything
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # the suite name in the header
    assert _data(page)["ids"][0] == hostile  # type: ignore[index]


def test_what_the_page_draws_is_bounded_for_a_large_report() -> None:
    report = _report(20_000)
    page = render_report_html(report)
    assert page == render_report_html(report)  # the sample is seeded: the same page each time
    assert _chart(page, "chart-scatter").count("<circle") == SCATTER_POINTS
    assert "5,000 of 20,000 runs (a seeded sample)" in page
    assert _chart(page, "chart-memory").count("<rect") <= 400
    for chart_id in ("chart-ttft", "chart-total"):
        assert 0 < _chart(page, chart_id).count("<rect") <= 40
    for points in re.findall(r"points='([^']*)'", _chart(page, "chart-cdf")):
        assert len(points.split()) <= 201
    data = _data(page)
    assert data["n"] == 20_000 and len(data["ids"]) == 20_000  # type: ignore[arg-type]
    assert len(page) < 2_000_000  # about 80 bytes a run without outputs


def test_reports_with_little_in_them_still_make_a_page() -> None:
    for report in (
        Report(test_runs=[]),
        Report(test_runs=[TestRun(test_id="a", outcome="pass")]),  # no telemetry (old report)
        Report(
            test_runs=[
                TestRun(test_id="b", outcome="error", error=RunError(type="E", message="m")),
                TestRun(test_id="c", outcome="skipped", telemetry=Telemetry(total_latency=1.0)),
            ]
        ),
    ):
        page = render_report_html(report)
        assert page.count("<figure class='chart'") == 7
        data = _data(page)
        assert data["n"] == len(report.test_runs)
    assert "no data" in render_report_html(Report(test_runs=[]))


def test_the_summary_and_errors_by_cause_are_on_the_page() -> None:
    runs = [
        TestRun(test_id=f"e{i}", outcome="error", error=RunError(type=f"Cause{i % 2}"))
        for i in range(5)
    ]
    page = render_report_html(Report(test_runs=[*runs, *_report(5).test_runs]))
    outcomes = _chart(page, "chart-outcomes")
    assert "error Cause0: 3 runs" in outcomes and "error Cause1: 2 runs" in outcomes
    assert "<span>runs</span><strong>10</strong>" in page


def test_outputs_are_cut_and_bounded_keeping_runs_that_did_not_pass_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_columns, "OUTPUT_CHARS", 10)
    monkeypatch.setattr(_columns, "OUTPUT_BUDGET", 24)
    runs = [
        TestRun(test_id="p0", outcome="pass", output="x" * 30, output_truncated=True),
        TestRun(test_id="f1", outcome="fail", output="y" * 30),
        TestRun(test_id="e2", outcome="error", output="z" * 5),
        TestRun(test_id="n3", outcome="fail"),  # no output saved
    ]
    data = _data(render_report_html(Report(test_runs=runs)))
    # The budget of 24 takes f1 (10 of 30 characters) and e2 (5) before p0 (10 more: 25).
    assert data["out"] == [None, "y" * 10, "z" * 5, None]
    assert data["outLen"] == [30, 30, 5, None]  # the drill-down says what was cut
    assert data["outTrunc"] == [True, None, None, None]  # cut by the report's own cap


def test_checks_are_embedded_failed_first_with_their_names_once() -> None:
    checks = [
        CheckRecord(check="regex_required 'a'", passed=True),
        CheckRecord(check="regex_forbidden 'eval'", passed=False, detail="found at line 3"),
    ]
    runs = [
        TestRun(test_id="a", outcome="fail", checks=checks),
        TestRun(test_id="b", outcome="pass", checks=checks[:1]),
        TestRun(test_id="c", outcome="error"),  # not scored
    ]
    data = _data(render_report_html(Report(test_runs=runs)))
    assert data["checkNames"] == ["regex_required 'a'", "regex_forbidden 'eval'"]
    assert data["checks"] == [[[1, 0, "found at line 3"], [0, 1, ""]], [[0, 1, ""]], None]
    assert "out" not in data  # no run has an output: the drill-down says none was saved


def test_new_per_run_fields_reach_the_drill_down() -> None:
    run = TestRun(test_id="a", outcome="pass", attempts=3, worker="node-1")
    run.telemetry = Telemetry(total_latency=1.0, prompt_tokens=12)
    data = _data(render_report_html(Report(test_runs=[run])))
    assert data["extra"] == {"attempts": [3], "worker": ["node-1"]}
    assert data["num"]["prompt_tokens"] == [12]  # type: ignore[index]


def test_the_compare_page_shares_the_charts_and_allows_no_script_and_no_fetch() -> None:
    base, cand = _report(300, seed=1), _report(300, seed=2)
    cand.test_runs[0].test_id = "</script><script>alert(1)</script>"
    comparison = compare_reports(base, cand, resamples=2_000)
    page = render_compare_html(comparison, ("base<b>", "cand"), base, cand)
    policy = re.search(r"Content-Security-Policy' content=\"([^\"]*)\"", page)
    assert policy is not None and "script-src" not in policy.group(1)  # default-src 'none'
    assert "default-src 'none'" in policy.group(1)
    assert "<script" not in page and "http:" not in page and "style=" not in page
    assert "base&lt;b&gt;" in page and "&lt;/script&gt;&lt;script&gt;alert(1)" in page
    for metric in ("init_latency", "total_latency", "peak_memory_rss"):
        assert _chart(page, f"cdf-{metric}").count("<polyline") == 2  # both runs overlaid


def test_many_outcomes_and_error_causes_are_drawn_as_a_few_bars() -> None:
    runs = [
        TestRun(test_id=f"t{i}", outcome=f"o{i}", error=RunError(type=f"E{i}")) for i in range(500)
    ]
    outcomes = _chart(render_report_html(Report(test_runs=runs)), "chart-outcomes")
    assert outcomes.count("<rect") == 2 * (8 + 1)  # 8 each, and one bar for the rest
    assert "492 runs of other outcomes" in outcomes and "error others: 492 runs" in outcomes
