"""`compare BASELINE CANDIDATE` from the command line: exit codes, JSON for CI, table, HTML."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from orket_pipeline.cli import main
from orket_pipeline.report import Report, Telemetry, TestRun, write_report
from tests.report.test_compare import noisy_report

HOSTILE = "<script>alert(1)</script>\x1b[2J[bold]"


@pytest.fixture
def reports(tmp_path: Path) -> dict[str, str]:
    paths = {
        "base": noisy_report(1, 300, sigma=0.5),
        "same": noisy_report(2, 300, sigma=0.5),
        "slow": noisy_report(3, 300, sigma=0.5, slowdown=1.3),
    }
    for name, report in paths.items():
        write_report(tmp_path / f"{name}.json", report)
    return {name: str(tmp_path / f"{name}.json") for name in paths}


def hostile_pair(tmp_path: Path) -> tuple[str, str]:
    base = Report(test_runs=[TestRun(test_id=HOSTILE, outcome="pass")])
    cand = Report(test_runs=[TestRun(test_id=HOSTILE, outcome="fail")])
    write_report(tmp_path / "b.json", base)
    write_report(tmp_path / "c.json", cand)
    return str(tmp_path / "b.json"), str(tmp_path / "c.json")


class TestExitCodes:
    def test_the_same_model_twice_exits_0(
        self, reports: dict[str, str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["compare", reports["base"], reports["same"], "--resamples", "2000"]) == 0
        out = capsys.readouterr().out
        assert "no significant regression" in out
        assert "total_latency p50" in out

    def test_a_slowdown_exits_1_and_json_names_the_metric(
        self, reports: dict[str, str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        argv = ["compare", reports["base"], reports["slow"], "--format", "json"]
        assert main([*argv, "--resamples", "2000"]) == 1
        document = msgspec.json.decode(capsys.readouterr().out)
        assert "total_latency" in {r["metric"] for r in document["regressions"]}
        for key in ("improvements", "flips", "only_in_baseline", "only_in_candidate", "changes"):
            assert isinstance(document[key], list)

    def test_a_slowdown_within_max_slowdown_exits_0(
        self, reports: dict[str, str], tmp_path: Path
    ) -> None:
        argv = ["compare", reports["base"], reports["slow"], "--resamples", "2000"]
        out = str(tmp_path / "compare.json")  # never /dev/null: tests run as root
        assert main([*argv, "--max-slowdown", "60%", "--format", "json", "-o", out]) == 0

    @pytest.mark.parametrize(
        ("extra", "named"),
        [
            (["--alpha", "1.5"], "--alpha"),
            (["--max-slowdown", "fast"], "--max-slowdown"),
            (["--resamples", "10"], "--resamples"),
        ],
    )
    def test_bad_options_exit_2_with_one_line(
        self,
        reports: dict[str, str],
        capsys: pytest.CaptureFixture[str],
        extra: list[str],
        named: str,
    ) -> None:
        assert main(["compare", reports["base"], reports["same"], *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and named in err

    def test_a_bad_report_exits_2_naming_the_file(
        self, tmp_path: Path, reports: dict[str, str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        broken = tmp_path / "broken.json"
        broken.write_text('{"test_runs": [{"test_id": 1}]}')
        assert main(["compare", reports["base"], str(broken)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(broken) in err

    def test_a_duplicate_test_id_exits_2_naming_the_file(
        self, tmp_path: Path, reports: dict[str, str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        twice = tmp_path / "twice.json"
        write_report(twice, Report(test_runs=[TestRun(test_id="a", outcome="pass")] * 2))
        assert main(["compare", str(twice), reports["base"]]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{twice}: test id 'a'" in err


class TestRendering:
    def test_the_table_shows_flips_and_hostile_ids_as_plain_text(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        base, cand = hostile_pair(tmp_path)
        main(["compare", base, cand])
        out = capsys.readouterr().out
        assert "\x1b" not in out
        assert "\\x1b[2J[bold]" in out  # escaped, and not taken as rich markup
        assert "1 pass → not pass" in out

    def test_html_is_self_contained_with_both_distributions_and_escaped_text(
        self, tmp_path: Path, reports: dict[str, str]
    ) -> None:
        out = tmp_path / "compare.html"
        argv = ["compare", reports["base"], reports["slow"], "--format", "html", "-o", str(out)]
        assert main([*argv, "--resamples", "2000"]) == 1
        page = out.read_text()
        assert "<script" not in page and not re.search(r"(src|href)=", page)
        assert page.count("<svg") == 3  # init, total, peak memory
        assert page.count("<polyline") == 6  # baseline and candidate on each
        assert "REGRESSED" in page

        base, cand = hostile_pair(tmp_path)
        assert main(["compare", base, cand, "--format", "html", "-o", str(out)]) == 0
        page = out.read_text()
        assert "<script>alert" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page

    def test_a_table_to_a_file_is_written(self, tmp_path: Path, reports: dict[str, str]) -> None:
        out = tmp_path / "compare.txt"
        argv = ["compare", reports["base"], reports["same"], "--format", "table", "-o", str(out)]
        assert main([*argv, "--resamples", "2000"]) == 0
        assert "no significant regression" in out.read_text()

    def test_reports_without_telemetry_compare_by_outcome(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        empty = Telemetry()
        runs = [TestRun(test_id="a", outcome="pass", telemetry=empty)]
        write_report(tmp_path / "r.json", Report(test_runs=runs))
        path = str(tmp_path / "r.json")
        assert main(["compare", path, path, "--format", "json"]) == 0
        document = msgspec.json.decode(capsys.readouterr().out)
        assert [c["metric"] for c in document["changes"]] == ["pass_rate"]


def test_too_few_resamples_for_alpha_exit_2_saying_how_many(
    reports: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["compare", reports["base"], reports["same"], "--alpha", "0.001"]
    assert main([*argv, "--resamples", "1000"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "use at least 14000" in err
