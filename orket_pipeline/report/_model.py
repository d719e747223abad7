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
    "SCHEMA_VERSIONS_READ",
    "CheckRecord",
    "GenerationOptions",
    "Generator",
    "Metadata",
    "PipelineStatistics",
    "Report",
    "RunError",
    "ServerTimings",
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

SCHEMA_VERSION: Final = "1.1"
# The versions this reader was written for; a report of another version still loads (unknown
# fields are ignored), this only lets a tool say which it understands in full.
SCHEMA_VERSIONS_READ: Final = ("1.0", "1.1")

OUTCOMES: Final = ("pass", "fail", "error")


class ServerTimings(msgspec.Struct, kw_only=True, gc=False):
    """The server's own account of a generation, in seconds, when it sends one (llama.cpp's
    `timings`, Ollama's `*_duration`): prompt processing, token generation, model loading."""

    prompt_s: float | None = None
    generation_s: float | None = None
    load_s: float | None = None


class Telemetry(msgspec.Struct, kw_only=True, gc=False):
    """Per-run telemetry; seconds and MiB, three decimals.

    The first four fields are the contract. The rest are extras that consumers may ignore:
    `chunk_count` (non-empty chunks received; 1 with a streaming provider means it delivered
    everything in one burst), `output_chars`, `stream_duration` (first to last non-empty chunk,
    seconds), `error_type` (exception class name when the generation failed), and, from schema
    1.1, null whenever the provider or server did not give what they need:
    `first_content_latency` (dispatch → first chunk of answer text; `init_latency` counts a
    reasoning token too), the server's token counts, `time_per_output_token`
    ((total - init) / (completion_tokens - 1), streaming only), `inter_chunk_p50` and
    `inter_chunk_max` (gaps between consecutive non-empty chunks) and `server` (its timings).
    """

    init_latency: float | None = None
    total_latency: float | None = None
    peak_memory_rss: float | None = None
    adherence_score: float | None = None
    chunk_count: int | None = None
    output_chars: int | None = None
    stream_duration: float | None = None
    error_type: str | None = None
    first_content_latency: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    time_per_output_token: float | None = None
    inter_chunk_p50: float | None = None
    inter_chunk_max: float | None = None
    server: ServerTimings | None = None


class CheckRecord(msgspec.Struct, kw_only=True, gc=False):
    """One constraint check of a run: what it asked (`regex_required 'return\\s+a'`), whether
    it passed, and a short detail (`no match`, `found at line 3`)."""

    check: str
    passed: bool
    detail: str = ""


class RunError(msgspec.Struct, kw_only=True, gc=False):
    """Why a generation failed: exception type and message."""

    type: str
    message: str = ""


class TestRun(msgspec.Struct, kw_only=True, gc=False):
    """One test run: its outcome (`pass`, `fail` or `error`) and, beside it, its telemetry.

    `telemetry` is null when no generation was instrumented (`--no-telemetry`, or a run recorded
    without a generation). `error` holds the generation's failure, `reason` the gate's short
    explanation of a failed test. From schema 1.1: `checks` (every constraint check with its
    result; null when the run was not scored), `output` (the generated text, cut at
    `metadata.output_cap` bytes with `output_truncated` true; null when none was saved),
    `attempts` (provider calls the run took, retries included) and `worker` (where it ran, with
    a distributed executor).
    """

    __test__ = False  # not a pytest test class, despite the name

    test_id: str
    outcome: str
    telemetry: Telemetry | None = None
    error: RunError | None = None
    reason: str | None = None
    checks: list[CheckRecord] | None = None
    output: str | None = None
    output_truncated: bool | None = None
    attempts: int | None = None
    worker: str | None = None


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


class GenerationOptions(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What a run asked the model for, beside the prompt; unset options are left out."""

    max_tokens: int | None = None
    temperature: float | None = None
    seed: int | None = None
    stream: bool | None = None
    system: str | None = None
    stop: list[str] | None = None


class Metadata(msgspec.Struct, kw_only=True):
    """Report-level metadata: who wrote it, where, in which units, for which suite and provider.

    `suite_digest` is a hash of the suite's tasks (ids, prompts, constraints, gates, in order),
    so `run --resume` can tell a journal of another suite with the same name and ids; null in
    reports written without it. From schema 1.1: the `model` and generation `options`, the
    `executor` (`"local"` or `"ray"`), the nominal `concurrency` and `max_in_flight` (the most
    generations that were actually in flight at once), the pid whose memory was measured with
    how it was chosen (`memory_pid_source`: `"self"`, `"option"`, `"auto: listening on
    HOST:PORT"`), and `output_cap` (bytes of each run's output kept; null: none kept).
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
    model: str | None = None
    options: GenerationOptions | None = None
    executor: str | None = None
    concurrency: int | None = None
    max_in_flight: int | None = None
    memory_pid: int | None = None
    memory_pid_source: str | None = None
    output_cap: int | None = None


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


def encode_json(obj: object, *, floats_last: bool | None = None) -> bytes:
    """Encode a report, a run or metadata as compact JSON in field-declaration order.

    Every float is written with exactly three decimals (`0.100`, `1.000`), see `three_decimals`.
    `floats_last=False` is the caller's word that no object in `obj` ends with a float (it
    knows the values; None: decided from the type, for any value).
    """
    last = _floats_last(type(obj)) if floats_last is None else floats_last
    return three_decimals(_ENCODER.encode(obj), floats_last=last)


def encode_json_lines(objs: Iterable[object], *, floats_last: bool | None = None) -> bytes:
    """Encode each object as one line of compact JSON (JSONL), floats as `encode_json` does.

    One padding pass for the whole batch, not one per line; `floats_last` as `encode_json`.
    """
    objs = objs if isinstance(objs, list) else list(objs)
    last = floats_last
    if last is None:
        last = any(_floats_last(kind) for kind in {type(obj) for obj in objs})
    return three_decimals(_ENCODER.encode_lines(objs), floats_last=last)  # one C call


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
