"""What the engine does about a provider that is not there: connect first, stop early.

- `connect(provider)`: before the first run, an HTTP provider opens its client and connects
  (`async def connect()`, when it has one), so the first run's `init_latency` does not carry
  client creation and the TCP handshake, and an unreachable server is told at once (its
  `ProviderConnectionError` names the URL) instead of as a column of `error` rows.
- `UnreachableWatch`: a server that dies mid-suite. When `limit` runs in a row (in the order
  they finish) all fail to connect at all (refused, cannot connect, connect timeout: see
  `report._causes.CONNECT_CAUSES`), no further run is started; the runs in flight finish (they
  fail fast against a dead server, or at their timeout) and `SuiteStopped` is raised once the
  finished runs are recorded. A connection broken mid-reply does not count: a server that
  aborts requests (llama-cpp-python's `--interrupt_requests`) is alive.
- `InFlight`: the most generations in flight at once, counted on the `--no-telemetry` path as
  the pipeline's wrapper counts it on the other.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Final

from .._exceptions import ProviderConnectionError
from ..report._causes import CONNECT_CAUSES, error_cause
from ..report._model import RunError

__all__ = ["UNREACHABLE_LIMIT", "InFlight", "SuiteStopped", "UnreachableWatch", "connect"]

#: Runs in a row that must fail to connect before a suite stops (fewer when it has fewer).
UNREACHABLE_LIMIT: Final = 8


class SuiteStopped(ProviderConnectionError):
    """The suite stopped early: `count` runs in a row could not reach the provider. The runs
    that finished were recorded (report and journal) before this was raised."""

    def __init__(self, message: str, *, count: int, finished: int) -> None:
        super().__init__(message)
        self.count = count
        self.finished = finished


async def connect(provider: Any) -> None:
    """Await `provider.connect()` if the provider has an async one; else do nothing.

    Raises:
        ProviderConnectionError: the provider's own, naming the URL it could not reach.
    """
    method = getattr(provider, "connect", None)
    if method is not None and inspect.iscoroutinefunction(method):
        await method()


@dataclass
class UnreachableWatch:
    """Counts runs in a row that failed to connect; `stopped` is set once `limit` did.
    Never blocks or raises."""

    limit: int
    streak: int = 0
    finished: int = 0
    first: RunError | None = None
    stopped: SuiteStopped | None = None

    def record(self, error: RunError | None) -> None:
        """Note one finished run's generation error (None: it reached the provider)."""
        self.finished += 1
        cause = None if error is None else error_cause(error.type, error.message)
        if cause not in CONNECT_CAUSES:
            self.streak, self.first = 0, None
            return
        self.streak += 1
        if self.first is None:
            self.first = error
        if self.streak >= self.limit and self.stopped is None:
            assert error is not None and self.first is not None
            self.stopped = SuiteStopped(
                f"stopped after {self.streak} runs in a row could not reach the provider "
                f"({cause}): {self.first.message or self.first.type}",
                count=self.streak,
                finished=self.finished,
            )


@dataclass
class InFlight:
    """Generations in flight now (`now`) and the most there ever were at once (`most`)."""

    now: int = 0
    most: int = 0

    def enter(self) -> None:
        """One more generation in flight. Never blocks or raises."""
        self.now += 1
        self.most = max(self.most, self.now)

    def leave(self) -> None:
        """One generation fewer in flight. Never blocks or raises."""
        self.now -= 1
