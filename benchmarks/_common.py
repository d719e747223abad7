"""What every benchmark prints beside its figures: machine, Python, date."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from time import perf_counter


def machine() -> str:
    """One line naming the machine, Python version and date of the measurement."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, {today}"
    )


def header(title: str) -> str:
    """A benchmark's title with the machine line under it."""
    return f"## {title}\n({machine()})"


# Runs the command line in a fresh interpreter and reports its own peak RSS on stderr.
_CHILD = (
    "import resource, sys\n"
    "from orket_pipeline.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "sys.stderr.write(f'MAXRSS_KIB {peak}\\n')\n"
    "sys.exit(code)\n"
)


def cli_in_child(argv: list[str], *, ok: tuple[int, ...] = (0,)) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MiB) and exit code of `orket-pipeline ARGV` in a fresh child.

    Raises `RuntimeError` when the exit code is not in `ok`. Linux (ru_maxrss in KiB).
    """
    t0 = perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *argv], capture_output=True, text=True, check=False
    )
    elapsed = perf_counter() - t0
    if done.returncode not in ok:
        raise RuntimeError(f"{argv[0]} exited {done.returncode}: {done.stderr.strip()}")
    peak_kib = int(done.stderr.rsplit("MAXRSS_KIB ", 1)[1])
    return elapsed, peak_kib / 1024, done.returncode


@contextlib.contextmanager
def server_process(module: str, *args: str) -> Iterator[int]:
    """Run `python -m MODULE ARGS` (a loopback server that prints its port, then serves until
    its stdin closes); yield the port. Blocks until it listens; stops it when the block ends."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield int(process.stdout.readline())
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
