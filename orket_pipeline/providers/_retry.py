"""When and how long to wait before trying a request again.

A request is tried again only while nothing of its reply has been read: after HTTP 429 (rate
limited) or 503 (unavailable), and after a connection that was refused or dropped before the
reply's first byte. The wait is the server's `Retry-After` (seconds or an HTTP date, capped),
else a short exponential backoff with jitter. The random source and the sleep are injectable,
so tests neither wait nor depend on chance.
"""

from __future__ import annotations

import random as _random
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Final

import anyio

__all__ = ["RETRIED_STATUSES", "RetryPolicy", "retry_after_s"]

#: The statuses that mean "try again later"; every other 4xx is the request's own fault.
RETRIED_STATUSES: Final = frozenset({429, 503})


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """The wait a `Retry-After` header asks for, in seconds (never negative).

    Args:
        value: the header's value: delay-seconds (`"2"`) or an HTTP date.
        now: the present, for an HTTP date (default: the clock).

    Returns:
        None when there is no header or it cannot be read. Never raises.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


class RetryPolicy:
    """How often, and after how long, a transient failure is retried.

    Args:
        retries: how many times a request may be tried again (0: never); attempts are at most
            `retries + 1`.
        base_s: the first backoff (when the server gave no `Retry-After`); it doubles each time.
        max_s: the longest backoff.
        retry_after_cap_s: the longest wait a server's `Retry-After` can impose.
        random: a source of floats in [0, 1) for the jitter (default: a fresh `random.Random`).
        sleep: the awaitable wait (default `anyio.sleep`); tests pass one that records.

    Never raises once built.
    """

    def __init__(
        self,
        retries: int = 2,
        *,
        base_s: float = 0.1,
        max_s: float = 2.0,
        retry_after_cap_s: float = 30.0,
        random: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be 0 or more")
        self.retries = retries
        self.base_s = base_s
        self.max_s = max_s
        self.retry_after_cap_s = retry_after_cap_s
        self.random = random or _random.Random().random
        self.sleep = sleep

    def __repr__(self) -> str:
        return f"RetryPolicy(retries={self.retries})"

    def delay_s(self, attempt: int, retry_after: str | None = None) -> float:
        """The wait before the attempt after `attempt` (1 for the first). Never raises.

        A readable `Retry-After` wins (capped at `retry_after_cap_s`); otherwise the backoff
        is `base_s * 2 ** (attempt - 1)`, scaled by a jitter between 0.5 and 1.5, capped at
        `max_s`, so concurrent clients do not retry in step.
        """
        asked = retry_after_s(retry_after)
        if asked is not None:
            return min(asked, self.retry_after_cap_s)
        doublings = min(attempt - 1, 64)  # 2.0 ** 1024 overflows: `--retries 2000` would raise
        backoff: float = self.base_s * 2.0**doublings * (0.5 + self.random())
        return min(backoff, self.max_s)
