"""`FrozenHeap`: the objects a command starts with are kept out of the garbage collector's scans.

A full collection scans every object the collector tracks. In `orket-pipeline run` that is
the whole interpreter (its modules, the suite, the provider) plus what the suite's runs
leave behind; a suite of 10,000 runs with telemetry leaves enough (a report row, its list
of checks) to trigger one, at about 30 ms on a 2-core VM, ~3 us per run
(benchmarks/README.md, "run path"). Frozen objects (`gc.freeze`) are not scanned, so the
collections made while the command runs scan only what the runs made. They are given back
(`gc.unfreeze`) when the command returns; a process that then exits collects once more at
exit, as every Python process does.
"""

from __future__ import annotations

import gc
from types import TracebackType

__all__ = ["FrozenHeap"]


class FrozenHeap:
    """Freezes the heap on entry and after each `freeze()`, unfreezes it on exit.

    A caller that froze objects itself (an embedding program: `gc.get_freeze_count()` is not
    zero on entry) keeps its own arrangement: nothing is frozen or unfrozen then. Not
    reentrant. Never blocks (beyond moving the collector's lists) or raises.
    """

    def __init__(self) -> None:
        self._owned = False

    def __enter__(self) -> FrozenHeap:
        self._owned = gc.get_freeze_count() == 0
        self.freeze()
        return self

    def freeze(self) -> None:
        """Freeze the objects made since entry too (the suite just loaded, the provider)."""
        if self._owned:
            gc.freeze()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._owned:
            self._owned = False
            gc.unfreeze()
