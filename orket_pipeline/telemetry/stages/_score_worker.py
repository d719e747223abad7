"""The constraint stage's worker process for large outputs.

Reads one msgspec-JSON `ScoreJob` from stdin, validates it, writes the `ValidationResult`
(or null) to stdout. Run as ``python -m orket_pipeline.telemetry.stages._score_worker``. A separate
process, not a thread: `ast.parse` holds the GIL for its whole run, which would stall the
engine's event loop for tens of milliseconds on a megabyte of code; and a process also
contains whatever hostile input might do to the parser.
"""

from __future__ import annotations

import sys

import msgspec

from ...constraints import Constraints, ValidationResult, validate_output

__all__ = ["ScoreJob", "decode_result", "encode_job", "main"]


class ScoreJob(msgspec.Struct, frozen=True):
    """One output to score."""

    constraints: Constraints | None
    output: str


_ENCODER = msgspec.json.Encoder()
_JOB_DECODER = msgspec.json.Decoder(ScoreJob)
# The validator's own result travels back: null when there was no code payload.
_RESULT_DECODER = msgspec.json.Decoder(ValidationResult | None)


def encode_job(constraints: Constraints | None, output: str) -> bytes:
    """The job as the worker reads it from stdin."""
    return _ENCODER.encode(ScoreJob(constraints, output))


def decode_result(data: bytes) -> ValidationResult | None:
    """The worker's answer. Raises `msgspec.DecodeError` on anything else."""
    return _RESULT_DECODER.decode(data)


def main() -> int:
    """Score one job from stdin. Never imports or executes the scored code."""
    job = _JOB_DECODER.decode(sys.stdin.buffer.read())
    result = validate_output(job.constraints, job.output)
    sys.stdout.buffer.write(_ENCODER.encode(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
