"""Orphaned temp files of the atomic report write: removed by the next write, but only when
their writer is dead (its lock released), never while a live writer is still using one."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from orket_pipeline.report._io import _create_temp, read_report, write_report
from orket_pipeline.report._model import Report, TestRun

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="advisory locks are POSIX")


def report(test_id: str) -> Report:
    return Report(test_runs=[TestRun(test_id=test_id, outcome="pass")])


def temps(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_a_live_writers_temp_file_survives_and_an_orphan_does_not(tmp_path: Path) -> None:
    target = tmp_path / "orket_report.json"
    fd, live = _create_temp(target)  # another writer, mid-write: it holds the lock
    try:
        write_report(target, report("first"))
        assert temps(tmp_path) == [live.name]
    finally:
        os.close(fd)  # that writer dies: its lock goes with it, its file stays
    assert temps(tmp_path) == [live.name]
    write_report(target, report("second"))
    assert temps(tmp_path) == []
    assert read_report(target).test_runs[0].test_id == "second"


def test_only_temp_files_of_the_same_report_are_touched(tmp_path: Path) -> None:
    kept = [".other.json.0123456789ab.tmp", ".orket_report.json.notahexname0.tmp", "x.tmp"]
    for name in kept:
        (tmp_path / name).write_text("keep")
    write_report(tmp_path / "orket_report.json", report("a"))
    assert temps(tmp_path) == sorted(kept)
