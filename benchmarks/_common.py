"""What every benchmark prints beside its figures: machine, Python, date."""

from __future__ import annotations

import datetime
import os
import platform


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
