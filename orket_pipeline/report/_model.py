"""The `orket_report.json` contract as msgspec Structs, with the one encoder and decoder for it.

Readers ignore unknown fields at every level (msgspec's default for Structs) and every field
beyond `test_id` and `outcome` has a default, so reports written before telemetry existed and
reports from future versions both load. Telemetry numbers are plain `float`s rounded to three
places by `round3`; `encode_json` writes every float with exactly three decimals (`0.100`), see
`_rounding`.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Iterable
from typing import Final

import msgspec
import msgspec.inspect

from .._version import __version__
from ._rounding import three_decimals

__all__ = [
    "SCHEMA_VERSION",
    "Generator",
    "Metadata",
    "PipelineStatistics",
    "Report",
    "RunError",
    "Telemetry",
    "TestRun",
    "Units",
    "current_metadata",
    "decode_report",
    "decode_test_run",
    "encode_json",
    "encode_json_lines",
    "fields_of_type",
]

SCHEMA_VERSION: Final = "1.0"

OUTCOMES: Final = ("pass", "fail", "error")


class Telemetry(msgspec.Struct, kw_only=True, gc=False):
    """Per-run telemetry; seconds and MiB, three decimals.

    The first four fields are the contract. The rest are extras that consumers may ignore:
    `chunk_count` (non-empty chunks received; 1 with a streaming provider means it delivered
    everything in one burst), `output_chars`, `stream_duration` (first to last non-empty chunk,
    seconds), `error_type` (exception class name when the generation failed).
    """

    init_latency: float | None = None
    total_latency: float | None = None
    peak_memory_rss: float | None = None
    adherence_score: float | None = None
    chunk_count: int | None = None
    output_chars: int | None = None
    stream_duration: float | None = None
    error_type: str | None = None


class RunError(msgspec.Struct, kw_only=True, gc=False):
    """Why a generation failed: exception type and message."""

    type: str
    message: str = ""


class TestRun(msgspec.Struct, kw_only=True, gc=False):
    """One test run: its outcome (`pass`, `fail` or `error`) and, beside it, its telemetry.

    `telemetry` is null when no generation was instrumented (`--no-telemetry`, or a run recorded
    without a generation). `error` holds the generation's failure, `reason` the gate's short
    explanation of a failed test.
    """

    __test__ = False  # not a pytest test class, despite the name

    test_id: str
    outcome: str
    telemetry: Telemetry | None = None
    error: RunError | None = None
    reason: str | None = None


class Generator(msgspec.Struct, kw_only=True):
    """The program that wrote the report."""

    name: str = "orket-pipeline"
    version: str = __version__


class Units(msgspec.Struct, kw_only=True):
    """Units of the telemetry fields."""

    latency: str = "s"
    memory: str = "MiB"


class PipelineStatistics(msgspec.Struct, kw_only=True):
    """The pipeline's account of itself while it ran.

    `events_dropped` counts events a full stage inbox refused; `stage_errors` counts exceptions
    per stage; `late_events` counts events published after close began; `journal_errors` counts
    failed journal writes; `abandoned_events` counts work the drain deadline cut short (outputs
    left unscored, whose adherence is then null); `max_loop_lag` is the largest event-loop lag
    seen (seconds).
    """

    events_published: int = 0
    events_dropped: int = 0
    late_events: int = 0
    stage_errors: dict[str, int] = msgspec.field(default_factory=dict)
    journal_errors: int = 0
    abandoned_events: int = 0
    max_loop_lag: float | None = None
    memory_method: str | None = None


class Metadata(msgspec.Struct, kw_only=True):
    """Report-level metadata: who wrote it, where, in which units, for which suite and provider.

    `suite_digest` is a hash of the suite's tasks (ids, prompts, constraints, gates, in order),
    so `run --resume` can tell a journal of another suite with the same name and ids; null in
    reports written without it.
    """

    generator: Generator = msgspec.field(default_factory=Generator)
    python: str | None = None
    platform: str | None = None
    units: Units = msgspec.field(default_factory=Units)
    suite: str | None = None
    provider: str | None = None
    pipeline: PipelineStatistics | None = None
    sandbox: str | None = None  # what ran the gates: "bwrap" or "process"; None: no gates
    suite_digest: str | None = None


class Report(msgspec.Struct, kw_only=True):
    """The whole `orket_report.json`. `test_runs` are in registration (suite) order.

    `test_runs` is the one required field: a JSON object without it (a suite file given by
    mistake, say) is not a report, rather than an empty one.
    """

    schema_version: str = SCHEMA_VERSION
    report_generated_at: str | None = None
    metadata: Metadata = msgspec.field(default_factory=Metadata)
    test_runs: list[TestRun]


def current_metadata(
    *,
    suite: str | None = None,
    provider: str | None = None,
    pipeline: PipelineStatistics | None = None,
    sandbox: str | None = None,
    suite_digest: str | None = None,
) -> Metadata:
    """Metadata describing this interpreter and platform. Never blocks, never raises."""
    return Metadata(
        python=f"{platform.python_implementation()} {platform.python_version()}",
        platform=f"{sys.platform}-{platform.machine()}",
        suite=suite,
        provider=provider,
        pipeline=pipeline,
        sandbox=sandbox,
        suite_digest=suite_digest,
    )


_ENCODER: Final = msgspec.json.Encoder(decimal_format="number")  # a caller's Decimal too
_REPORT_DECODER: Final = msgspec.json.Decoder(Report)
_RUN_DECODER: Final = msgspec.json.Decoder(TestRun)


def fields_of_type(struct: type[msgspec.Struct], *types: object) -> tuple[str, ...]:
    """The names of `struct`'s fields declared as one of `types`, in declaration order.

    The one source for every list of fields (checked numbers, summed counters), so readers,
    merge and summary cannot drift from the model. Never raises for the model's Structs.
    """
    return tuple(f.name for f in msgspec.structs.fields(struct) if f.type in types)


def encode_json(obj: object) -> bytes:
    """Encode a report, a run or metadata as compact JSON in field-declaration order.

    Every float is written with exactly three decimals (`0.100`, `1.000`), see `three_decimals`.
    """
    return three_decimals(_ENCODER.encode(obj), floats_last=_floats_last(type(obj)))


def encode_json_lines(objs: Iterable[object]) -> bytes:
    """Encode each object as one line of compact JSON (JSONL), floats as `encode_json` does.

    One padding pass for the whole batch, not one per line.
    """
    objs = list(objs)
    last = any(_floats_last(kind) for kind in {type(obj) for obj in objs})
    return three_decimals(b"".join(_ENCODER.encode(o) + b"\n" for o in objs), floats_last=last)


def _floats_last(kind: type) -> bool:
    """Whether some Struct inside `kind` may end with a float field (then `three_decimals`
    must look for floats before a `}`); True for anything that is not a Struct. Cached."""
    known = _FLOATS_LAST.get(kind)
    if known is None:
        known = _FLOATS_LAST[kind] = _find_floats_last(kind)
    return known


_FLOATS_LAST: dict[type, bool] = {}


def _find_floats_last(kind: type) -> bool:
    if not issubclass(kind, msgspec.Struct):
        return True
    seen: set[type] = set()
    pending: list[msgspec.inspect.Type] = [msgspec.inspect.type_info(kind)]
    while pending:
        info = pending.pop()
        if isinstance(info, msgspec.inspect.StructType):
            if info.cls in seen:
                continue
            seen.add(info.cls)
            if info.fields and _may_be_float(info.fields[-1].type):
                return True
            pending += [field.type for field in info.fields]
        elif isinstance(info, msgspec.inspect.UnionType):
            pending += info.types
        elif isinstance(info, (msgspec.inspect.ListType, msgspec.inspect.VarTupleType)):
            pending.append(info.item_type)
        elif isinstance(info, msgspec.inspect.TupleType):
            pending += info.item_types
        elif isinstance(info, msgspec.inspect.DictType):
            pending.append(info.value_type)
        elif isinstance(info, (msgspec.inspect.AnyType, msgspec.inspect.CustomType)):
            return True
    return False


def _may_be_float(info: msgspec.inspect.Type) -> bool:
    if isinstance(info, msgspec.inspect.UnionType):
        return any(_may_be_float(member) for member in info.types)
    return isinstance(info, (msgspec.inspect.FloatType, msgspec.inspect.AnyType))


def decode_report(data: bytes | str) -> Report:
    """Decode a report. Raises `msgspec.DecodeError` (or its `ValidationError`)."""
    return _REPORT_DECODER.decode(data)


def decode_test_run(data: bytes | str) -> TestRun:
    """Decode one journal line. Raises `msgspec.DecodeError` (or its `ValidationError`)."""
    return _RUN_DECODER.decode(data)
