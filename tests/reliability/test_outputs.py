"""Nothing lost through the outputs: two runs never share a report or a journal, and a report
that cannot be written is described by what is really on disk."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from orket_pipeline.report._journal import read_journal
from orket_pipeline.report._model import decode_report

from ._helpers import CLI, cli_env, start_cli, wait_for

# The first run waits (on a file, not a clock) until the test lets it finish.
GATED = """
import os
from pathlib import Path

import anyio


class Gated:
    supports_streaming = False

    async def generate(self, prompt):
        Path(os.environ["ORKET_STARTED"]).touch()
        while not Path(os.environ["ORKET_GO"]).exists():
            await anyio.sleep(0.01)
        return "x = 1"
"""


def test_a_second_run_on_the_same_out_refuses_at_start_naming_the_first(tmp_path: Path) -> None:
    (tmp_path / "gated.py").write_text(GATED)
    tasks = [{"id": f"t{i}", "prompt": f"p{i}"} for i in range(4)]
    (tmp_path / "suite.json").write_text(json.dumps({"tasks": tasks}))
    env = cli_env()
    env |= {"ORKET_STARTED": str(tmp_path / "started"), "ORKET_GO": str(tmp_path / "go")}
    args = ["run", "suite.json", "--provider", "python:gated.py:Gated", "--quiet"]
    first = start_cli(args, tmp_path, env)
    try:
        wait_for(lambda: (tmp_path / "started").exists(), first, timeout=30)
        second = subprocess.run(
            [*CLI, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
        (tmp_path / "go").touch()
        first.communicate(timeout=60)
    finally:
        first.kill()
    assert second.returncode == 2
    assert second.stderr == (
        "orket-pipeline: error: run: --out orket_report.json is in use by another run "
        f"(pid {first.pid}); wait for it or choose another --out\n"
    )
    assert first.returncode == 0
    report = decode_report((tmp_path / "orket_report.json").read_bytes())
    assert [r.test_id for r in report.test_runs] == ["t0", "t1", "t2", "t3"]
    assert not (tmp_path / "orket_report.json.journal.jsonl").exists()
    assert not (tmp_path / "orket_report.json.lock").exists()


# In the CLI process: the disk fills up mid-run. Journal writes fail from the third batch on,
# and the report cannot be written at the end.
DISK_FILLS = """
import errno, sys
from orket_pipeline.report import _io, _journal
calls = 0
original = _journal._write_all
def filling(file, data):
    global calls
    calls += 1
    if calls > 3:  # the header and two batches fit
        raise OSError(errno.ENOSPC, "No space left on device")
    original(file, data)
def full(path, data):
    raise OSError(errno.ENOSPC, "No space left on device")
_journal._write_all = filling
_io.write_bytes_atomic = full
from orket_pipeline.cli import main
sys.exit(main(sys.argv[1:]))
"""

INSTANT = """
import anyio

class P:
    supports_streaming = False

    async def generate(self, prompt):
        await anyio.sleep(0.01 * int(prompt[1:]))
        return "x = 1"
"""


def test_a_full_disk_message_never_claims_more_runs_than_the_journal_holds(
    tmp_path: Path,
) -> None:
    (tmp_path / "p.py").write_text(INSTANT)
    tasks = [{"id": f"t{i}", "prompt": f"p{i}"} for i in range(20)]
    (tmp_path / "suite.json").write_text(json.dumps({"tasks": tasks}))
    args = ["run", "suite.json", "--provider", "python:p.py:P", "--quiet"]
    result = subprocess.run(
        [sys.executable, "-c", DISK_FILLS, *args],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    journal = "orket_report.json.journal.jsonl"
    kept = len(read_journal(tmp_path / journal).runs)
    assert 0 < kept < 20
    assert result.stderr.endswith(
        f"; the journal {journal} holds {kept} of the 20 finished runs "
        f"(orket-pipeline rebuild {journal} -o orket_report.json)\n"
    ), result.stderr
