"""`report`, `merge` and `rebuild` from the command line, in-process and once as a subprocess."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from orket_pipeline.cli import main
from orket_pipeline.report._io import read_report, write_report
from orket_pipeline.report._journal import JournalWriter
from orket_pipeline.report._model import Metadata, Report, Telemetry, TestRun

GOLDEN = Path(__file__).parent.parent / "report" / "golden"


def write_shard(path: Path, *test_ids: str) -> Path:
    runs = [
        TestRun(test_id=t, outcome="pass", telemetry=Telemetry(total_latency=Decimal("0.200")))
        for t in test_ids
    ]
    write_report(path, Report(test_runs=runs))
    return path


class TestReport:
    def test_table_on_stdout(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["report", str(GOLDEN / "report_v1.json")]) == 0
        out = capsys.readouterr().out
        for cell in ("t001", "t003", "48.512", "1.100", "p99"):
            assert cell in out

    def test_json_on_stdout(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["report", str(GOLDEN / "report_v1.json"), "--format", "json"]) == 0
        document = msgspec.json.decode(capsys.readouterr().out)
        assert document["summary"]["outcomes"] == {"pass": 1, "fail": 1, "error": 1}

    @pytest.mark.parametrize("fmt", ["table", "json", "html"])
    def test_output_file(self, tmp_path: Path, fmt: str) -> None:
        out = tmp_path / f"summary.{fmt}"
        assert (
            main(
                [
                    "report",
                    str(GOLDEN / "report_v0_no_telemetry.json"),
                    "--format",
                    fmt,
                    "-o",
                    str(out),
                ]
            )
            == 0
        )
        assert "legacy_003" in out.read_text()

    def test_a_wrong_type_exits_2_with_one_line(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = tmp_path / "report.json"
        path.write_text('{"test_runs": [{"test_id": "a", "outcome": 1}]}')
        assert main(["report", str(path)]) == 2
        err = capsys.readouterr().err
        assert (
            err == f"orket-pipeline: error: {path}: $.test_runs[0].outcome: "
            "Expected `str`, got `int`\n"
        )

    def test_an_unwritable_output_exits_2(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        out = tmp_path / "missing" / "out.json"
        args = ["report", str(GOLDEN / "report_v1.json"), "--format", "json", "-o", str(out)]
        assert main(args) == 2
        assert "cannot write" in capsys.readouterr().err


def test_a_non_json_report_exits_2_without_traceback_as_a_real_process(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text("this is not json")
    result = subprocess.run(
        [sys.executable, "-m", "orket_pipeline", "report", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert str(path) in lines[0]
    assert "not valid JSON" in lines[0]
    assert "Traceback" not in result.stderr


class TestMerge:
    def test_merge_writes_one_report(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        a = write_shard(tmp_path / "a.json", "t1", "t2")
        b = write_shard(tmp_path / "b.json", "t3")
        out = tmp_path / "all.json"
        assert main(["merge", str(a), str(b), "-o", str(out)]) == 0
        merged = read_report(out)
        assert [r.test_id for r in merged.test_runs] == ["t1", "t2", "t3"]
        assert merged.report_generated_at is not None
        assert "3 runs from 2 reports" in capsys.readouterr().out

    def test_duplicates_exit_2_unless_resolved(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        a = write_shard(tmp_path / "a.json", "t1")
        b = write_shard(tmp_path / "b.json", "t1")
        out = tmp_path / "all.json"
        assert main(["merge", str(a), str(b), "-o", str(out)]) == 2
        assert "duplicate test id 't1'" in capsys.readouterr().err
        assert not out.exists()
        assert main(["merge", str(a), str(b), "-o", str(out), "--on-duplicate", "last"]) == 0
        assert len(read_report(out).test_runs) == 1

    def test_output_is_required(self, tmp_path: Path) -> None:
        assert main(["merge", str(write_shard(tmp_path / "a.json", "t1"))]) == 2


class TestRebuild:
    def test_rebuild_skips_a_torn_line_and_says_so(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        journal = tmp_path / "run.jsonl"
        writer = JournalWriter(journal, Metadata(suite="demo"))
        writer.open()
        writer.append_many(
            [(1, TestRun(test_id="b", outcome="fail")), (0, TestRun(test_id="a", outcome="pass"))]
        )
        writer.close()
        with journal.open("ab") as file:
            file.write(b'{"order":2,"run":{"test_')
        out = tmp_path / "report.json"
        assert main(["rebuild", str(journal), "-o", str(out)]) == 0
        captured = capsys.readouterr()
        assert "line 4: skipped a torn last line" in captured.err
        report = read_report(out)
        assert [r.test_id for r in report.test_runs] == ["a", "b"]
        assert report.metadata.suite == "demo"

    def test_a_report_is_not_a_journal(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        out = tmp_path / "out.json"
        assert main(["rebuild", str(GOLDEN / "report_v1.json"), "-o", str(out)]) == 2
        assert "not an orket-pipeline journal" in capsys.readouterr().err
        assert not out.exists()
