"""The crash-safe journal: appended per batch, torn last line skipped, suite order restored."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orket_pipeline._exceptions import ReportFormatError
from orket_pipeline.report._journal import (
    JournalContents,
    JournalWriter,
    read_journal,
    rebuild_report,
)
from orket_pipeline.report._model import Metadata, ServerTimings, Telemetry, TestRun


def run(test_id: str, outcome: str = "pass") -> TestRun:
    return TestRun(test_id=test_id, outcome=outcome, telemetry=Telemetry(total_latency=0.250))


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    """A journal whose runs finished out of suite order: 2, 0, 3, then 1."""
    path = tmp_path / "orket_report.journal.jsonl"
    writer = JournalWriter(path, Metadata(suite="demo"))
    writer.open()
    writer.append_many([(2, run("t2")), (0, run("t0", "fail"))])
    writer.append_many([(3, run("t3"))])
    writer.append_many([])
    writer.append_many([(1, run("t1", "error"))])
    writer.close()
    return path


class TestWriter:
    def test_header_then_one_line_per_run(self, journal: Path) -> None:
        lines = journal.read_bytes().splitlines()
        assert len(lines) == 5
        assert lines[0].startswith(b'{"journal":"orket-pipeline","version":1,"metadata":{')
        assert lines[1].startswith(b'{"order":2,"run":{"test_id":"t2"')
        assert b'"total_latency":0.250' in lines[1]

    def test_each_batch_is_on_disk_before_close(self, tmp_path: Path) -> None:
        path = tmp_path / "j.jsonl"
        writer = JournalWriter(path, Metadata())
        writer.open()
        assert path.read_bytes().count(b"\n") == 1
        writer.append_many([(0, run("a")), (1, run("b"))])
        assert path.read_bytes().count(b"\n") == 3  # flushed, not just buffered
        writer.close()
        writer.close()  # idempotent

    def test_every_float_has_three_decimals_with_or_without_server_timings(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "j.jsonl"
        writer = JournalWriter(path, Metadata())
        writer.open()
        timed = TestRun(
            test_id="t0",
            outcome="pass",
            telemetry=Telemetry(total_latency=0.5, server=ServerTimings(load_s=0.25)),
        )
        writer.append_many([(1, run("t1"))])  # no object ends with a float
        writer.append_many([(0, timed), (2, run("t2"))])
        writer.close()
        lines = path.read_bytes().splitlines()
        assert b'"total_latency":0.250,' in lines[1]
        assert b'"total_latency":0.500,' in lines[2]
        assert b'"server":{"prompt_s":null,"generation_s":null,"load_s":0.250}}' in lines[2]
        assert [r.telemetry for _, r in read_journal(path).runs] == [
            timed.telemetry,
            run("t1").telemetry,
            run("t2").telemetry,
        ]

    def test_open_truncates_an_old_journal(self, journal: Path) -> None:
        writer = JournalWriter(journal, Metadata())
        writer.open()
        writer.close()
        assert read_journal(journal).runs == []

    def test_append_before_open_is_a_programming_error(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="not open"):
            JournalWriter(tmp_path / "j", Metadata()).append_many([(0, run("a"))])

    def test_open_in_a_missing_directory_raises_oserror(self, tmp_path: Path) -> None:
        with pytest.raises(OSError):
            JournalWriter(tmp_path / "no" / "j.jsonl", Metadata()).open()

    def test_remove_deletes_and_tolerates_a_missing_file(self, journal: Path) -> None:
        writer = JournalWriter(journal, Metadata())
        writer.open()
        writer.remove()
        assert not journal.exists()
        writer.remove()


class TestRead:
    def test_runs_come_back_in_suite_order(self, journal: Path) -> None:
        contents = read_journal(journal)
        assert [order for order, _ in contents.runs] == [0, 1, 2, 3]
        assert [r.test_id for _, r in contents.runs] == ["t0", "t1", "t2", "t3"]
        assert contents.metadata is not None
        assert contents.metadata.suite == "demo"
        assert not contents.torn_last_line

    @pytest.mark.parametrize("cut", [1, 10, 30])
    def test_a_torn_last_line_is_skipped_and_reported(self, journal: Path, cut: int) -> None:
        data = journal.read_bytes()
        journal.write_bytes(data + b'{"order":4,"run":{"test_id":"t4","outcome":"pass"}}'[:cut])
        contents = read_journal(journal)
        assert contents.torn_last_line
        assert contents.torn_line == 6
        assert len(contents.runs) == 4

    def test_a_deeply_nested_torn_last_line_is_skipped_too(self, journal: Path) -> None:
        journal.write_bytes(journal.read_bytes() + b'{"order":4,"run":' + b"[" * 100_000)
        report, warnings = rebuild_report(journal)
        assert [run.test_id for run in report.test_runs] == ["t0", "t1", "t2", "t3"]
        assert warnings == [f"{journal}: line 6: skipped a torn last line"]

    @pytest.mark.parametrize("line", [b'{"x":' + b"[" * 100_000, b'{"journal":' + b"[" * 100_000])
    def test_deeply_nested_lines_are_one_line_naming_file_and_line(
        self, journal: Path, line: bytes
    ) -> None:
        lines = journal.read_bytes().splitlines()
        lines.insert(2, line)
        journal.write_bytes(b"\n".join(lines) + b"\n")
        with pytest.raises(ReportFormatError) as info:
            rebuild_report(journal)
        assert str(info.value) == (
            f"{journal}: line 3: not valid JSON (arrays or objects nested too deeply)"
        )
        journal.write_bytes(line + b"\n" + b"\n".join(lines[1:]))
        with pytest.raises(ReportFormatError, match=r"line 1: not an orket-pipeline journal"):
            rebuild_report(journal)

    def test_a_complete_last_line_without_newline_is_kept(self, journal: Path) -> None:
        journal.write_bytes(journal.read_bytes().rstrip(b"\n"))
        contents = read_journal(journal)
        assert not contents.torn_last_line
        assert len(contents.runs) == 4

    def test_a_bad_line_in_the_middle_is_an_error_naming_file_and_line(self, journal: Path) -> None:
        lines = journal.read_bytes().splitlines(keepends=True)
        lines[2] = lines[2][:20] + b"\n"
        journal.write_bytes(b"".join(lines))
        with pytest.raises(ReportFormatError, match=r"j[a-z.]*jsonl: line 3: not valid JSON"):
            read_journal(journal)

    def test_a_wrong_type_in_the_middle_names_the_field(self, journal: Path) -> None:
        lines = journal.read_bytes().splitlines(keepends=True)
        lines[1] = b'{"order":9,"run":{"test_id":"x","outcome":3}}\n'
        journal.write_bytes(b"".join(lines))
        with pytest.raises(ReportFormatError) as info:
            read_journal(journal)
        assert str(info.value) == f"{journal}: line 2: $.run.outcome: Expected `str`, got `int`"

    def test_an_empty_file_has_no_runs_and_no_metadata(self, tmp_path: Path) -> None:
        path = tmp_path / "j.jsonl"
        path.write_bytes(b"")
        assert read_journal(path) == JournalContents(metadata=None, runs=[])

    def test_a_torn_header_is_reported(self, tmp_path: Path) -> None:
        path = tmp_path / "j.jsonl"
        path.write_bytes(b'{"journal":"orket-pip')
        contents = read_journal(path)
        assert contents.metadata is None
        assert contents.torn_line == 1

    @pytest.mark.parametrize(
        "data",
        [
            b"hello",
            b'{"schema_version":"1.0","test_runs":[]}',
            b'{"journal":"something-else","version":1}\n',
            b"\n\n",
        ],
    )
    def test_a_file_that_is_not_a_journal_is_an_error(self, tmp_path: Path, data: bytes) -> None:
        path = tmp_path / "j.jsonl"
        path.write_bytes(data)
        with pytest.raises(ReportFormatError, match=r"j\.jsonl: line 1: not an orket-pipeline"):
            read_journal(path)

    def test_a_newer_journal_version_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "j.jsonl"
        path.write_bytes(b'{"journal":"orket-pipeline","version":2}\n')
        with pytest.raises(ReportFormatError, match="version 2 is not supported"):
            read_journal(path)

    def test_a_missing_file_is_a_format_error(self, tmp_path: Path) -> None:
        with pytest.raises(ReportFormatError, match="no such file"):
            read_journal(tmp_path / "missing.jsonl")


class TestRebuild:
    def test_rebuild_restores_order_and_warns_about_a_torn_line(self, journal: Path) -> None:
        journal.write_bytes(journal.read_bytes() + b'{"order":4,"ru')
        report, warnings = rebuild_report(journal)
        assert [r.test_id for r in report.test_runs] == ["t0", "t1", "t2", "t3"]
        assert report.metadata.suite == "demo"
        assert report.report_generated_at is None
        assert warnings == [f"{journal}: line 6: skipped a torn last line"]

    def test_duplicate_orders_keep_the_last_line_and_warn(self, journal: Path) -> None:
        extra = msgspec.json.encode({"order": 0, "run": {"test_id": "t0", "outcome": "pass"}})
        journal.write_bytes(journal.read_bytes() + extra + b"\n")
        report, warnings = rebuild_report(journal)
        assert report.test_runs[0].outcome == "pass"
        assert warnings == [f"{journal}: order 0 appears more than once; kept the last"]

    def test_a_journal_without_header_warns(self, tmp_path: Path) -> None:
        path = tmp_path / "j.jsonl"
        path.write_bytes(b"")
        report, warnings = rebuild_report(path)
        assert report.test_runs == []
        assert warnings == [f"{path}: no journal header; metadata unknown"]


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_any_bytes_give_contents_or_a_format_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(data)
    try:
        contents = read_journal(path)
    except ReportFormatError as exc:
        assert str(path) in str(exc)
        assert "\n" not in str(exc)
    else:
        assert isinstance(contents, JournalContents)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0))
def test_a_journal_cut_anywhere_keeps_every_complete_line(journal: Path, cut: int) -> None:
    data = journal.read_bytes()
    cut %= len(data) + 1
    path = journal.with_name("cut.jsonl")
    path.write_bytes(data[:cut])
    contents = read_journal(path)
    complete_runs = max(data[:cut].count(b"\n") - 1, 0)  # minus the header
    assert complete_runs <= len(contents.runs) <= complete_runs + 1
