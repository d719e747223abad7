"""Lines under the summary of `run` and `report`: errors by cause, tokens, concurrency, hints.

The hints recognise symptoms a user cannot easily read from the table:

- llama-cpp-python's server aborts the running request when a new one arrives
  (`--interrupt_requests`, on by default): with `--concurrency` above 1, several runs fail with
  the connection closed mid-reply ("peer closed connection", "incomplete chunked read").
- A server that queues requests: with concurrency above 1 the median `init_latency` is many
  times the fastest one, so it is mostly time spent waiting in the server's queue.
"""

from __future__ import annotations

from typing import Final

from ..report._model import Metadata, Report
from ..report._summary import Summary

__all__ = ["hints", "summary_lines"]

_MID_REPLY: Final = "connection closed mid-reply"
_QUEUE_RATIO: Final = 5.0  # median init this many times the fastest one...
_QUEUE_MIN_S: Final = 0.5  # ...and at least this long
_QUEUE_MIN_RUNS: Final = 4


def summary_lines(summary: Summary, metadata: Metadata) -> list[str]:
    """Errors grouped by cause, token totals, concurrency: one line each, when there is
    something to say. Never raises."""
    lines = []
    errored = summary.outcomes.get("error", 0)
    if errored:
        causes = ", ".join(f"{count} {cause}" for cause, count in summary.error_causes.items())
        noun = "error" if errored == 1 else "errors"
        lines.append(f"{errored} {noun}: {causes}")
    tokens = _tokens(summary)
    if tokens:
        lines.append(tokens)
    if metadata.concurrency is not None:
        flight = "-" if metadata.max_in_flight is None else str(metadata.max_in_flight)
        lines.append(f"concurrency {metadata.concurrency}, max in flight {flight}")
    return lines


def hints(report: Report, summary: Summary) -> list[str]:
    """What to try, when the runs show a known symptom. Never raises."""
    concurrency = report.metadata.concurrency or 0
    if concurrency <= 1:
        return []
    found = []
    if summary.error_causes.get(_MID_REPLY, 0) >= 2:
        found.append(
            "hint: the server closed several connections mid-reply while runs overlapped: "
            "llama-cpp-python's server aborts a request when a new one arrives "
            "(--interrupt_requests); try --concurrency 1, or start it with "
            "--interrupt_requests False"
        )
    init = summary.init_latency
    fastest = _fastest_init(report)
    if (
        init.count >= _QUEUE_MIN_RUNS
        and init.p50 is not None
        and fastest is not None
        and init.p50 >= _QUEUE_MIN_S
        and init.p50 >= _QUEUE_RATIO * fastest
    ):
        found.append(
            f"hint: init_latency p50 {init.p50:.3f} s is {init.p50 / max(fastest, 0.001):.0f}x "
            f"the fastest ({fastest:.3f} s): with --concurrency {concurrency} the server may "
            "queue requests, so init_latency includes queue time; compare with --concurrency 1"
        )
    return found


def _fastest_init(report: Report) -> float | None:
    values = [
        run.telemetry.init_latency
        for run in report.test_runs
        if run.telemetry is not None
        and run.telemetry.init_latency is not None
        and run.outcome != "error"
    ]
    return min(values) if values else None


def _tokens(summary: Summary) -> str:
    parts = []
    if summary.prompt_tokens is not None:
        parts.append(f"{summary.prompt_tokens} prompt")
    if summary.completion_tokens is not None:
        parts.append(f"{summary.completion_tokens} completion")
    text = f"tokens: {', '.join(parts)}" if parts else ""
    per_token = summary.time_per_output_token
    if per_token is not None and per_token.p50 is not None:
        text += f"{'; ' if text else ''}time per output token p50 {per_token.p50:.3f} s"
    return text
