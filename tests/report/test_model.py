"""The report contract: golden files for the old, current and a future shape."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from orket_pipeline.report._model import (
    SCHEMA_VERSION,
    SCHEMA_VERSIONS_READ,
    GenerationOptions,
    Report,
    Telemetry,
    TestRun,
    decode_report,
    decode_test_run,
    encode_json,
)
from orket_pipeline.report._rounding import round3

GOLDEN = Path(__file__).parent / "golden"


def golden(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


class TestCurrentShape:
    def test_decoding_and_encoding_reproduces_the_golden_file_byte_for_byte(self) -> None:
        data = golden("report_v1_1.json")
        encoded = encode_json(decode_report(data))
        assert msgspec.json.format(encoded, indent=2) + b"\n" == data

    def test_keys_come_in_declaration_order(self) -> None:
        text = encode_json(decode_report(golden("report_v1.json"))).decode()
        root = ["schema_version", "report_generated_at", "metadata", "test_runs"]
        telemetry = ["init_latency", "total_latency", "peak_memory_rss", "adherence_score"]
        for keys in (root, telemetry):
            positions = [text.index(f'"{key}"') for key in keys]
            assert positions == sorted(positions)

    def test_telemetry_numbers_keep_exactly_three_decimals(self) -> None:
        text = encode_json(decode_report(golden("report_v1.json"))).decode()
        numbers = re.findall(
            r'"(?:init_latency|total_latency|peak_memory_rss|adherence_score)":'
            r"(-?[\d.]+)",
            text,
        )
        assert numbers
        assert all(re.fullmatch(r"\d+\.\d{3}", number) for number in numbers)
        assert '"adherence_score":1.000' in text
        assert '"total_latency":1.100' in text

    def test_values_decode_as_exact_decimals(self) -> None:
        run = decode_report(golden("report_v1.json")).test_runs[0]
        assert run.telemetry == Telemetry(
            init_latency=0.052,
            total_latency=0.093,
            peak_memory_rss=48.512,
            adherence_score=1.000,
            chunk_count=7,
            output_chars=120,
            stream_duration=0.041,
        )

    def test_the_1_1_fields_decode(self) -> None:
        report = decode_report(golden("report_v1_1.json"))
        assert report.schema_version == SCHEMA_VERSION == "1.1"
        first, second = report.test_runs[:2]
        assert first.telemetry is not None and first.telemetry.server is not None
        assert first.telemetry.server.generation_s == 0.030
        assert first.telemetry.completion_tokens == 42
        assert first.checks is not None and first.checks[0].passed
        assert second.checks is not None and second.checks[0].detail == "found 3"
        assert (first.attempts, second.attempts) == (1, 2)
        assert report.metadata.options is not None and report.metadata.options.seed == 7
        assert report.metadata.max_in_flight == 4

    def test_unset_generation_options_are_left_out(self) -> None:
        assert encode_json(GenerationOptions(seed=1)) == b'{"seed":1}'

    def test_a_run_round_trips_through_a_journal_line(self) -> None:
        run = TestRun(
            test_id="t9",
            outcome="pass",
            telemetry=Telemetry(total_latency=round3(0.1), peak_memory_rss=round3(3)),
        )
        encoded = encode_json(run)
        assert b'"total_latency":0.100' in encoded
        assert b'"peak_memory_rss":3.000' in encoded
        assert decode_test_run(encoded) == run


class TestVersion1_0:
    def test_a_1_0_report_loads_with_the_new_fields_null(self) -> None:
        report = decode_report(golden("report_v1.json"))
        assert report.schema_version in SCHEMA_VERSIONS_READ
        run = report.test_runs[0]
        assert (run.checks, run.output, run.attempts, run.worker) == (None, None, None, None)
        assert run.telemetry is not None and run.telemetry.first_content_latency is None
        assert report.metadata.options is None


class TestOldShape:
    def test_runs_without_telemetry_load_with_defaults(self) -> None:
        report = decode_report(golden("report_v0_no_telemetry.json"))
        assert report.schema_version == SCHEMA_VERSION
        assert report.report_generated_at is None
        assert [(r.test_id, r.outcome) for r in report.test_runs] == [
            ("legacy_001", "pass"),
            ("legacy_002", "fail"),
            ("legacy_003", "error"),
        ]
        assert all(run.telemetry is None for run in report.test_runs)

    def test_an_old_report_rewritten_gains_the_current_shape(self) -> None:
        report = decode_report(golden("report_v0_no_telemetry.json"))
        again = decode_report(encode_json(report))
        assert again == report
        assert b'"schema_version":"1.1"' in encode_json(report)


class TestFutureShape:
    @pytest.fixture
    def report(self) -> Report:
        return decode_report(golden("report_future.json"))

    def test_unknown_fields_at_every_level_are_ignored(self, report: Report) -> None:
        assert report.schema_version == "2.3"
        assert report.metadata.generator.version == "9.0.0"
        assert report.metadata.units.memory == "MiB"
        assert report.metadata.pipeline is not None
        assert report.metadata.pipeline.max_loop_lag == 0.001
        assert report.test_runs[0].telemetry is not None
        assert report.test_runs[0].telemetry.adherence_score == 0.750
        assert report.test_runs[1].error is not None
        assert report.test_runs[1].error.type == "ValueError"

    def test_missing_telemetry_fields_are_null(self, report: Report) -> None:
        telemetry = report.test_runs[1].telemetry
        assert telemetry == Telemetry(total_latency=0.500)

    def test_unknown_fields_are_not_written_back(self, report: Report) -> None:
        text = encode_json(report)
        for unknown in ("signature", "summary", "energy", "tokens", "attempt", "hostname"):
            assert f'"{unknown}"'.encode() not in text
