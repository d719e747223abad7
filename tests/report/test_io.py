"""Reading and writing report files: atomic replacement, write-time stamps, one-line errors."""

from __future__ import annotations

import os
import re
import stat
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orket_pipeline._exceptions import InputError, ReportFormatError
from orket_pipeline.cli._render import render_html, render_json
from orket_pipeline.report._io import (
    floats_may_end_objects,
    outcomes_only_report,
    read_report,
    utc_timestamp,
    write_bytes_atomic,
    write_report,
)
from orket_pipeline.report._model import (
    GenerationOptions,
    Metadata,
    Report,
    ServerTimings,
    Telemetry,
    TestRun,
    encode_json,
)

GOLDEN = Path(__file__).parent / "golden"
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def sample_report(n: int = 3) -> Report:
    runs = [
        TestRun(
            test_id=f"t{i:03d}",
            outcome="pass",
            telemetry=Telemetry(total_latency=0.100, peak_memory_rss=1.000),
        )
        for i in range(n)
    ]
    return Report(test_runs=runs)


class TestWrite:
    def test_written_report_reads_back_equal(self, tmp_path: Path) -> None:
        path = tmp_path / "orket_report.json"
        written = write_report(path, sample_report())
        assert read_report(path) == written
        assert b'"total_latency":0.100' in path.read_bytes()

    def test_timestamp_is_utc_with_milliseconds_taken_at_write_time(self, tmp_path: Path) -> None:
        report = sample_report()
        before = datetime.now(timezone.utc) - timedelta(milliseconds=1)
        written = write_report(tmp_path / "r.json", report)
        after = datetime.now(timezone.utc)
        assert report.report_generated_at is None  # the caller's report is untouched
        stamp = written.report_generated_at
        assert stamp is not None
        assert STAMP.fullmatch(stamp)
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        assert before <= moment <= after

    def test_an_existing_timestamp_is_replaced(self, tmp_path: Path) -> None:
        old = msgspec.structs.replace(
            sample_report(), report_generated_at="1999-01-01T00:00:00.000Z"
        )
        assert write_report(tmp_path / "r.json", old).report_generated_at != old.report_generated_at

    def test_utc_timestamp_converts_other_zones(self) -> None:
        moment = datetime(2026, 11, 24, 11, 15, 2, 118_999, tzinfo=timezone(timedelta(hours=1)))
        assert utc_timestamp(moment) == "2026-11-24T10:15:02.118Z"

    def test_new_file_honours_the_umask_like_open_does(self, tmp_path: Path) -> None:
        if os.name != "posix":
            pytest.skip("POSIX permissions")
        path = tmp_path / "r.json"
        write_report(path, sample_report())
        (tmp_path / "plain").write_bytes(b"")
        assert path.stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777

    def test_missing_directory_raises_oserror(self, tmp_path: Path) -> None:
        with pytest.raises(OSError):
            write_report(tmp_path / "no" / "r.json", sample_report())


def _structs_that_may_end_with_a_float(kind: type) -> set[type]:
    """Every Struct reachable from `kind` whose JSON object may end with a float: its last
    field is one, or it leaves unset fields out (`omit_defaults`) and has one."""
    found: set[type] = set()
    seen: set[type] = set()
    pending: list[msgspec.inspect.Type] = [msgspec.inspect.type_info(kind)]

    def floaty(info: msgspec.inspect.Type) -> bool:
        if isinstance(info, msgspec.inspect.UnionType):
            return any(floaty(member) for member in info.types)
        return isinstance(info, (msgspec.inspect.FloatType, msgspec.inspect.AnyType))

    while pending:
        info = pending.pop()
        if isinstance(info, msgspec.inspect.StructType) and info.cls not in seen:
            seen.add(info.cls)
            types = [field.type for field in info.fields]
            omits = info.cls.__struct_config__.omit_defaults
            if any(map(floaty, types if omits else types[-1:])):
                found.add(info.cls)
            pending += types
        elif isinstance(info, msgspec.inspect.UnionType):
            pending += info.types
        elif isinstance(info, (msgspec.inspect.ListType, msgspec.inspect.VarTupleType)):
            pending.append(info.item_type)
        elif isinstance(info, msgspec.inspect.DictType):
            pending.append(info.value_type)
    return found


class TestPadding:
    """The writer skips the look for floats before a `}` when no object can end with one."""

    def test_only_server_timings_and_generation_options_may_end_with_a_float(self) -> None:
        # `floats_may_end_objects` knows these two; a Struct added here must be taught to it.
        assert _structs_that_may_end_with_a_float(Report) == {ServerTimings, GenerationOptions}

    @pytest.mark.parametrize(
        ("server", "options", "floats_last"),
        [
            (None, None, False),
            (None, GenerationOptions(temperature=0.5, seed=1, stream=True), False),
            (None, GenerationOptions(max_tokens=8, temperature=0.5), True),
            (ServerTimings(prompt_s=0.5, load_s=0.25), GenerationOptions(stream=False), True),
        ],
    )
    def test_the_bytes_are_those_of_the_full_padding(
        self,
        tmp_path: Path,
        server: ServerTimings | None,
        options: GenerationOptions | None,
        floats_last: bool,
    ) -> None:
        telemetry = Telemetry(total_latency=0.5, peak_memory_rss=1.25, server=server)
        runs = [
            TestRun(test_id="a", outcome="pass", telemetry=telemetry),
            TestRun(test_id="b", outcome="fail", reason="x = 0.5}", telemetry=Telemetry()),
        ]
        report = Report(metadata=Metadata(options=options), test_runs=runs)
        assert floats_may_end_objects(runs, report.metadata) is floats_last
        path = tmp_path / "r.json"
        written = write_report(path, report)
        data = path.read_bytes()
        assert data == encode_json(written)  # padding decided by the type: the full look
        assert b'"total_latency":0.500,"peak_memory_rss":1.250,' in data
        assert b'"reason":"x = 0.5}"' in data  # text is never padded
        if server is not None:
            assert b'"server":{"prompt_s":0.500,"generation_s":null,"load_s":0.250}' in data
        if floats_last and server is None:
            assert b'"temperature":0.500}' in data


short_floats = st.none() | st.integers(-2000, 2000).map(lambda n: n / 1000) | st.just(0.5)
texts = st.none() | st.sampled_from(["x", "a.5}", '1.25,"k":'])


@st.composite
def padded_reports(draw: st.DrawFn) -> Report:
    runs = []
    for i in range(draw(st.integers(0, 3))):
        server = draw(
            st.none()
            | st.builds(
                ServerTimings, prompt_s=short_floats, generation_s=short_floats, load_s=short_floats
            )
        )
        telemetry = draw(
            st.none()
            | st.builds(
                Telemetry,
                init_latency=short_floats,
                total_latency=short_floats,
                inter_chunk_max=short_floats,
                error_type=texts,
                server=st.just(server),
            )
        )
        runs.append(
            TestRun(test_id=f"t{i}", outcome="pass", reason=draw(texts), telemetry=telemetry)
        )
    options = draw(
        st.none()
        | st.builds(
            GenerationOptions,
            temperature=short_floats,
            seed=st.none() | st.integers(0, 9),
            system=texts,
        )
    )
    return Report(metadata=Metadata(options=options), test_runs=runs)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=200)
@given(padded_reports())
def test_any_report_is_written_as_the_full_padding_writes_it(
    tmp_path: Path, report: Report
) -> None:
    written = write_report(tmp_path / "r.json", report)
    assert (tmp_path / "r.json").read_bytes() == encode_json(written)


class TestAtomicity:
    def test_a_pipe_or_device_is_written_into_never_replaced(self, tmp_path: Path) -> None:
        # `-o /dev/stdout` works, and `-o /dev/null` as root must not replace the device with a
        # file. A FIFO stands for the device: the test must not touch the machine's /dev.
        fifo = tmp_path / "out.fifo"
        os.mkfifo(fifo)
        received: list[bytes] = []
        reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
        reader.start()
        write_bytes_atomic(fifo, b"report bytes")
        reader.join(timeout=10)
        assert received == [b"report bytes"]
        assert stat.S_ISFIFO(os.stat(fifo).st_mode)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.fifo"]

    @pytest.mark.parametrize("failing", ["fsync", "replace"])
    def test_a_crash_mid_write_leaves_the_old_file_and_no_temp_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
    ) -> None:
        path = tmp_path / "orket_report.json"
        write_report(path, sample_report(1))
        old = path.read_bytes()

        def crash(*args: object) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, failing, crash)
        with pytest.raises(OSError, match="No space"):
            write_report(path, sample_report(1000))
        monkeypatch.undo()
        assert path.read_bytes() == old
        assert sorted(p.name for p in tmp_path.iterdir()) == ["orket_report.json"]

    def test_an_interrupt_mid_write_also_cleans_up(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = tmp_path / "r.json"

        def interrupt(fd: int) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(os, "fsync", interrupt)
        with pytest.raises(KeyboardInterrupt):
            write_report(path, sample_report())
        monkeypatch.undo()
        assert list(tmp_path.iterdir()) == []


class TestReadErrors:
    def write(self, tmp_path: Path, data: bytes) -> Path:
        path = tmp_path / "report.json"
        path.write_bytes(data)
        return path

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(ReportFormatError, match=r"^.*nope\.json: no such file$"):
            read_report(tmp_path / "nope.json")

    def test_a_directory(self, tmp_path: Path) -> None:
        with pytest.raises(ReportFormatError, match="cannot read"):
            read_report(tmp_path)

    def test_not_json(self, tmp_path: Path) -> None:
        path = self.write(tmp_path, b"<html>")
        with pytest.raises(ReportFormatError, match=r"report\.json: not valid JSON"):
            read_report(path)

    def test_wrong_type_names_file_and_field(self, tmp_path: Path) -> None:
        runs: list[dict[str, object]] = [{"test_id": f"t{i}", "outcome": "pass"} for i in range(3)]
        runs.append({"test_id": "t3", "outcome": 7})
        path = self.write(tmp_path, msgspec.json.encode({"test_runs": runs}))
        with pytest.raises(ReportFormatError) as info:
            read_report(path)
        assert str(info.value) == f"{path}: $.test_runs[3].outcome: Expected `str`, got `int`"

    def test_an_object_without_test_runs_is_not_a_report(self, tmp_path: Path) -> None:
        path = self.write(tmp_path, b'{"name": "a suite", "tasks": []}')
        with pytest.raises(ReportFormatError, match=r"report\.json: .*test_runs"):
            read_report(path)

    def test_wrong_root_type(self, tmp_path: Path) -> None:
        path = self.write(tmp_path, b"[]")
        with pytest.raises(ReportFormatError, match=r"report\.json: \$: Expected `object`"):
            read_report(path)

    @pytest.mark.parametrize("value", ['"NaN"', '"-Infinity"', "1e400", '"1e999999999"'])
    def test_non_finite_or_huge_telemetry_is_refused(self, tmp_path: Path, value: str) -> None:
        run = f'{{"test_id":"a","outcome":"pass","telemetry":{{"init_latency":{value}}}}}'
        data = f'{{"test_runs":[{run}]}}'
        with pytest.raises(ReportFormatError, match=r"\$\.test_runs\[0\]\.telemetry\.init_latency"):
            read_report(self.write(tmp_path, data.encode()))

    def test_the_first_bad_number_among_many_runs_is_named(self, tmp_path: Path) -> None:
        runs: list[dict[str, object]] = [{"test_id": "none", "outcome": "pass"}]
        runs += [
            {"test_id": f"t{i}", "outcome": "pass", "telemetry": {"total_latency": 0.5}}
            for i in range(5)
        ]
        runs[3]["telemetry"] = {"total_latency": -2e15}
        runs[4]["telemetry"] = {"peak_memory_rss": 3e15}
        path = self.write(tmp_path, msgspec.json.encode({"test_runs": runs}))
        with pytest.raises(ReportFormatError) as info:
            read_report(path)
        assert str(info.value) == (
            f"{path}: $.test_runs[3].telemetry.total_latency: "
            "Expected a finite number below 1e+15, got -2000000000000000.0"
        )

    @pytest.mark.parametrize(
        "data",
        [
            b'{"x": ' + b"[" * 100_000,
            b'{"test_runs": [], "extra": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            b'{"test_runs": [{"test_id": "a", "outcome": "pass", "x": '
            + b'{"a":' * 50_000
            + b"1"
            + b"}" * 50_000
            + b"}]}",
        ],
        ids=["unclosed", "in-an-ignored-field", "in-a-run"],
    )
    def test_deeply_nested_json_is_one_line_naming_the_file(
        self, tmp_path: Path, data: bytes
    ) -> None:
        path = self.write(tmp_path, data)
        with pytest.raises(ReportFormatError) as info:
            read_report(path)
        assert str(info.value) == f"{path}: not valid JSON (arrays or objects nested too deeply)"

    def test_errors_are_input_errors_and_one_line(self, tmp_path: Path) -> None:
        path = self.write(tmp_path, b'{"test_runs": [\n\n{"test_id": 1}]}')
        with pytest.raises(InputError) as info:
            read_report(path)
        assert "\n" not in str(info.value)


def test_outcomes_only_report_has_no_telemetry() -> None:
    report = outcomes_only_report([("a", "pass"), ("b", "fail")])
    assert [(r.test_id, r.outcome, r.telemetry) for r in report.test_runs] == [
        ("a", "pass", None),
        ("b", "fail", None),
    ]
    assert report.metadata.python is not None
    assert report.metadata.pipeline is None


# A fixed alphabet: st.text() without one builds a Unicode table on first use (slow in CI).
ALPHABET = 'aé"\\\x00\U0001f600'
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(ALPHABET, max_size=3),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(ALPHABET, max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)
report_like = st.fixed_dictionaries(
    {},
    optional={
        "schema_version": json_values,
        "metadata": json_values,
        "test_runs": st.lists(
            st.fixed_dictionaries(
                {
                    "test_id": st.text(ALPHABET, max_size=3) | json_values,
                    "outcome": st.sampled_from(["pass"]),
                },
                optional={
                    "telemetry": st.dictionaries(
                        st.sampled_from(["init_latency", "total_latency", "adherence_score"]),
                        json_values | st.sampled_from(["NaN", "1e999999999", "0.5"]),
                    )
                },
            ),
            max_size=3,
        ),
    },
)


def read_or_format_error(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        report = read_report(path)
    except ReportFormatError as exc:
        assert str(path) in str(exc)
        assert "\n" not in str(exc)
    else:
        # Whatever loads must also summarize and render: no arithmetic trap downstream.
        assert isinstance(report, Report)
        encode_json(report)
        render_json(report)
        render_html(report)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_any_bytes_give_a_report_or_a_format_error(tmp_path: Path, data: bytes) -> None:
    read_or_format_error(tmp_path / "fuzz.json", data)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(report_like)
def test_any_report_like_json_gives_a_report_or_a_format_error(
    tmp_path: Path, document: object
) -> None:
    read_or_format_error(tmp_path / "fuzz.json", msgspec.json.encode(document))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(min_value=0), st.binary(min_size=1, max_size=4))
def test_corrupted_golden_file_gives_a_report_or_a_format_error(
    tmp_path: Path, position: int, garbage: bytes
) -> None:
    data = (GOLDEN / "report_v1.json").read_bytes()
    position %= len(data)
    read_or_format_error(tmp_path / "fuzz.json", data[:position] + garbage + data[position + 1 :])
