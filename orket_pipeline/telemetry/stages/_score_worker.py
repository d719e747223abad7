"""The constraint stage's worker process for large outputs.

Reads one msgspec-JSON `ScoreJob` from stdin, validates it, writes the `ScoreResult` to
stdout. Run as ``python -m orket_pipeline.telemetry.stages._score_worker``. A separate
process, not a thread: `ast.parse` holds the GIL for its whole run, which would stall the
engine's event loop for tens of milliseconds on a megabyte of code; and a process also
contains whatever hostile input might do to the parser.
"""

from __future__ import annotations

import sys

import msgspec

from ...constraints import Constraints, validate_output

__all__ = ["ScoreJob", "ScoreResult", "decode_result", "encode_job", "main"]


class ScoreJob(msgspec.Struct, frozen=True):
    """One output to score."""

    constraints: Constraints | None
    output: str


class ScoreResult(msgspec.Struct, frozen=True):
    """Its adherence score (null when there is no code payload)."""

    adherence_score: float | None


_ENCODER = msgspec.json.Encoder()
_JOB_DECODER = msgspec.json.Decoder(ScoreJob)
_RESULT_DECODER = msgspec.json.Decoder(ScoreResult)


def encode_job(constraints: Constraints | None, output: str) -> bytes:
    """The job as the worker reads it from stdin."""
    return _ENCODER.encode(ScoreJob(constraints, output))


def decode_result(data: bytes) -> float | None:
    """The worker's answer. Raises `msgspec.DecodeError` on anything else."""
    return _RESULT_DECODER.decode(data).adherence_score


def main() -> int:
    """Score one job from stdin. Never imports or executes the scored code."""
    job = _JOB_DECODER.decode(sys.stdin.buffer.read())
    result = validate_output(job.constraints, job.output)
    score = None if result is None else result.adherence_score
    sys.stdout.buffer.write(_ENCODER.encode(ScoreResult(score)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
