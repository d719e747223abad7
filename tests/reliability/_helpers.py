"""What the reliability tests share: the CLI as a real process, suites and provider files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

CLI = [sys.executable, "-m", "orket_pipeline"]

# A provider written to a file and loaded with `python:provider.py:NAME`, as a user would.
# Each generation appends "<prompt> <time.time()>" to $ORKET_TEST_LOG when it completes, so a
# test can compare what the process finished with what it wrote. Delays are per prompt index.
PROVIDER_SOURCE = '''
import os
import time

import anyio
import anyio.lowlevel

LOG = os.environ.get("ORKET_TEST_LOG", "completed.log")


def _log(prompt):
    with open(LOG, "a") as log:
        log.write(f"{prompt} {time.time()}\\n")


class Slow:
    """Streams two chunks; generation k takes 50-140 ms."""

    supports_streaming = True

    async def stream(self, prompt):
        index = int(prompt.split()[-1])
        yield "def answer():\\n"
        await anyio.sleep(0.05 + (index % 4) * 0.03)
        yield "    return 42\\n"
        _log(prompt)


class Instant:
    """Answers at once (yielding to the loop once), logging nothing."""

    supports_streaming = False

    async def generate(self, prompt):
        await anyio.lowlevel.checkpoint()
        return "def answer():\\n    return 42\\n"
'''


def write_provider(directory: Path) -> Path:
    path = directory / "provider.py"
    path.write_text(PROVIDER_SOURCE)
    return path


def write_suite(path: Path, count: int, **task_fields: Any) -> list[str]:
    """A suite of `count` tasks `t000`...; prompt `prompt <index>`. Returns the ids in order."""
    ids = [f"t{index:03d}" for index in range(count)]
    tasks = [
        {"id": test_id, "prompt": f"prompt {index}", **task_fields}
        for index, test_id in enumerate(ids)
    ]
    path.write_text(json.dumps({"name": path.stem, "tasks": tasks}))
    return ids


def read_log(path: Path) -> dict[str, float]:
    """`prompt <index>` completion log → {test id: completion time}."""
    if not path.exists():
        return {}
    completed = {}
    for line in path.read_text().splitlines():
        *_, index, when = line.split()
        completed[f"t{int(index):03d}"] = float(when)
    return completed


def cli_env(log: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("COLUMNS", None)
    if log is not None:
        env["ORKET_TEST_LOG"] = str(log)
    return env


def start_cli(args: Sequence[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*CLI, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def wait_for(
    condition: Callable[[], bool], process: subprocess.Popen[bytes], timeout: float
) -> None:
    """Poll `condition` until true; fail if the process exits first or time runs out.

    Real elapsed time is the thing under test in these crash tests, so this polls.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def journal_ids(path: Path) -> list[str]:
    """Test ids of the complete run lines of a journal, in file order (the header skipped)."""
    if not path.exists():
        return []
    ids = []
    for line in path.read_bytes().split(b"\n")[1:]:
        try:
            ids.append(json.loads(line)["run"]["test_id"])
        except (ValueError, KeyError):
            continue  # a torn last line
    return ids
