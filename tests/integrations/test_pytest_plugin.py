"""The pytest plugin, run as users run it: small test files in `pytester` sessions.

The plugin is installed with the package (entry point `pytest11`), so every inner session
loads it, as does this one; what matters is what it records when used and that it does nothing
when not.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orket_pipeline.report._io import read_report

PROVIDER = '''
class Adder:
    """Streams a correct `add`."""

    supports_streaming = True

    async def stream(self, prompt):
        yield "def add(a, b):\\n"
        yield "    return a + b\\n"
'''

SESSION_BACKEND = """
import pytest

@pytest.fixture(scope="session", params={backends!r})
def anyio_backend(request):
    return request.param
"""

TESTS = """
import pytest
from provider import Adder

RULES = {"regex_required": ["return a \\\\+ b"], "regex_forbidden": ["import"]}

@pytest.mark.anyio
async def test_passes(orket):
    text = await orket.generate(Adder(), "write add", constraints=RULES)
    assert "def add" in text

@pytest.mark.anyio
async def test_fails(orket):
    text = await orket.generate(Adder(), "write add")
    assert "def sub" in text, "no sub"

@pytest.mark.anyio
async def test_errors(orket):
    await orket.generate(Adder(), "write add")
    {}["missing"]

@pytest.mark.anyio
async def test_skips(orket):
    await orket.generate(Adder(), "write add")
    pytest.skip("not today")

@pytest.mark.anyio
async def test_twice(orket):
    await orket.generate(Adder(), "one")
    await orket.generate(Adder(), "two")

@pytest.mark.anyio
async def test_does_not_generate(orket):
    pass
"""


def setup_files(pytester: pytest.Pytester, backends: list[str]) -> None:
    pytester.makepyfile(provider=PROVIDER, test_things=TESTS)
    pytester.makeconftest(SESSION_BACKEND.format(backends=backends))


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_each_test_is_a_run_whose_outcome_is_the_tests_result(
    pytester: pytest.Pytester, backend: str
) -> None:
    setup_files(pytester, [backend])

    result = pytester.runpytest("--orket-report", "report.json", "-p", "no:cacheprovider")

    result.assert_outcomes(passed=3, failed=2, skipped=1)
    result.stdout.fnmatch_lines(["*orket-pipeline: 6 runs written to report.json*"])
    report = read_report(pytester.path / "report.json")
    node = f"test_things.py::test_{{}}[{backend}]"
    runs = {run.test_id: run for run in report.test_runs}
    assert list(runs) == [
        node.format("passes"),
        node.format("fails"),
        node.format("errors"),
        node.format("skips"),
        node.format("twice"),
        node.format("twice") + "#2",
    ]
    outcomes = {test_id: (run.outcome, run.reason) for test_id, run in runs.items()}
    assert outcomes[node.format("passes")] == ("pass", None)
    assert outcomes[node.format("fails")][0] == "fail"
    assert "no sub" in str(outcomes[node.format("fails")][1])
    assert outcomes[node.format("errors")] == ("error", "KeyError: 'missing'")
    assert outcomes[node.format("skips")] == ("error", "skipped: not today")
    for run in report.test_runs:
        assert run.telemetry is not None and run.telemetry.total_latency is not None
        assert run.telemetry.init_latency is not None  # streamed: time to first chunk
    assert runs[node.format("passes")].telemetry.adherence_score == 1  # type: ignore[union-attr]
    assert report.metadata.suite == "pytest"


def test_a_parametrized_session_backend_gets_a_pipeline_each_and_one_report(
    pytester: pytest.Pytester,
) -> None:
    setup_files(pytester, ["asyncio", "trio"])

    result = pytester.runpytest("--orket-report", "report.json", "-k", "passes or twice")

    result.assert_outcomes(passed=4, deselected=8)
    ids = [run.test_id for run in read_report(pytester.path / "report.json").test_runs]
    assert sorted(ids) == sorted(
        f"test_things.py::test_{name}[{backend}]{suffix}"
        for backend in ("asyncio", "trio")
        for name, suffix in (("passes", ""), ("twice", ""), ("twice", "#2"))
    )


def test_with_xdist_the_workers_runs_are_merged_into_one_report(
    pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("xdist")
    setup_files(pytester, ["asyncio"])

    result = pytester.runpytest("-n", "2", "--orket-report", "report.json")

    result.assert_outcomes(passed=3, failed=2, skipped=1)
    report = read_report(pytester.path / "report.json")
    ids = [run.test_id for run in report.test_runs]
    assert len(ids) == len(set(ids)) == 6
    assert ids == sorted(ids)
    assert {run.outcome for run in report.test_runs} == {"pass", "fail", "error"}
    assert report.metadata.pipeline is not None
    assert report.metadata.pipeline.events_published > 0


def test_bad_constraints_fail_the_test_with_a_line_naming_the_field(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        provider=PROVIDER,
        test_bad="""
import pytest
from provider import Adder

@pytest.mark.anyio
async def test_bad(orket):
    await orket.generate(Adder(), "x", constraints={"regex_requird": ["a"]})
""",
    )
    pytester.makeconftest(SESSION_BACKEND.format(backends=["asyncio"]))

    result = pytester.runpytest("--orket-report", "report.json")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*ConstraintError: test_bad.py::test_bad*regex_requird*"])
    assert read_report(pytester.path / "report.json").test_runs == []


def test_a_module_scoped_anyio_backend_is_refused_by_name(pytester: pytest.Pytester) -> None:
    # anyio's own `anyio_backend` is module-scoped; the session's pipeline needs one loop for
    # the whole session, so pytest refuses the scopes (README, "pytest plugin").
    pytester.makepyfile(provider=PROVIDER, test_things=TESTS)

    result = pytester.runpytest("-k", "passes")

    result.assert_outcomes(errors=2, deselected=10)  # anyio's default: asyncio and trio
    result.stdout.fnmatch_lines(["*ScopeMismatch*anyio_backend*"])


UNUSED = """
import sys

def test_plain():
    assert "orket_pipeline" not in sys.modules  # the plugin imported nothing of ours

def test_options_untouched(pytestconfig):
    assert pytestconfig.getoption("orket_report") is None
"""


def test_a_session_that_does_not_use_it_pays_nothing_and_changes_nothing(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_unused=UNUSED)

    # A subprocess, so that this session's imports do not leak into it.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")

    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["plugins: *orket-pipeline*"])  # loaded, and idle
    result.stdout.no_fnmatch_line("orket-pipeline: *")
    pytester_own = ("runpytest", "stdout", "stderr")
    made = [p.name for p in pytester.path.iterdir() if not p.name.startswith(pytester_own)]
    assert made == ["test_unused.py"]  # no report, no journal


def test_the_option_alone_writes_an_empty_report(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_unused=UNUSED.replace('"orket_pipeline" not in sys.modules', "True"))

    result = pytester.runpytest("--orket-report", "report.json")

    result.assert_outcomes(passed=1, failed=1)  # the option is set: test_options_untouched
    data = json.loads((pytester.path / "report.json").read_text())
    assert data["test_runs"] == [] and data["metadata"]["suite"] == "pytest"


def test_a_report_path_in_a_missing_directory_is_a_usage_error(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_unused=UNUSED)

    result = pytester.runpytest("--orket-report", "no/such/dir/report.json")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--orket-report no/such/dir/report.json*does not exist*"])


def test_the_entry_point_is_installed() -> None:
    from importlib.metadata import entry_points

    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert plugins.get("orket-pipeline") == "_orket_pipeline_pytest"
    assert Path(__file__).parents[2].joinpath("_orket_pipeline_pytest.py").exists()
