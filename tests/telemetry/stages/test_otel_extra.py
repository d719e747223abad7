"""Without the `otel` extra, `--otel` and `TelemetryPipeline(otel=True)` refuse with the line
to install it, before anything runs (this test needs no OpenTelemetry installed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from orket_pipeline._exceptions import InputError
from orket_pipeline.cli import main
from orket_pipeline.telemetry import TelemetryPipeline

HINT = "pip install 'orket-pipeline[otel]'"


@pytest.fixture
def no_otel(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry makes `import opentelemetry.sdk` raise ImportError, as if not installed.
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk", None)


@pytest.mark.usefixtures("no_otel")
def test_run_otel_without_the_extra_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    assert main(["run", "--demo", "--otel", "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert HINT in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.usefixtures("no_otel")
def test_the_python_api_refuses_the_same_way() -> None:
    with pytest.raises(InputError, match=r"orket-pipeline\[otel\]"):
        TelemetryPipeline(otel=True)


def test_otel_with_no_telemetry_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    assert main(["run", "--demo", "--otel", "--no-telemetry", "--out", str(out)]) == 2
    assert "--otel needs telemetry" in capsys.readouterr().err
