"""orket-pipeline's pytest plugin, as pytest loads it (entry point `pytest11`) in every session.

Only the option, the hooks and the fixtures live here, with nothing imported but pytest: the work
is in `orket_pipeline.integrations.pytest_plugin`, imported the first time a test asks for the
`orket` fixture or `--orket-report` is given. A session that uses neither pays for this module
alone and behaves exactly as without it. (A top-level module, as hypothesis does, because
importing anything inside `orket_pipeline` imports the whole package.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from pathlib import Path
from typing import Any

import pytest

_REPORTS = pytest.StashKey[list[Any]]()  # this process's pipeline reports, once closed
_SHARDS = pytest.StashKey[list[str]]()  # xdist workers' reports (JSON), on the controller
_WRITTEN = pytest.StashKey[str]()  # the line the terminal summary shows
_CALL = pytest.StashKey[Any]()  # a test's call-phase result, on its item
_WORKER_KEY = "orket_report"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("orket-pipeline")
    group.addoption(
        "--orket-report",
        metavar="PATH",
        default=None,
        help="write the orket-pipeline report of the runs made through the `orket` fixture "
        "to PATH at the end of the session (with pytest-xdist: one report for all workers)",
    )


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("orket_report", None)
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise pytest.UsageError(f"--orket-report {path}: is a directory")
    if not target.parent.is_dir():
        raise pytest.UsageError(f"--orket-report {path}: directory {target.parent} does not exist")


@pytest.fixture(scope="session")
async def _orket_pipeline(anyio_backend: Any, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """The session's `TelemetryPipeline` (one per backend when `anyio_backend` is parametrized).

    Needs a session-scoped `anyio_backend` fixture, so that the pipeline's event loop outlives
    every test that uses it.
    """
    from orket_pipeline.integrations.pytest_plugin import open_pipeline

    reports = request.config.stash.setdefault(_REPORTS, [])
    async with open_pipeline(reports) as pipeline:
        yield pipeline


@pytest.fixture
async def orket(_orket_pipeline: Any, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """`await orket.generate(provider, prompt, constraints={...})`: a run recorded under this
    test's node id, whose outcome is the test's own result."""
    from orket_pipeline.integrations.pytest_plugin import Orket

    handle = Orket(_orket_pipeline, request.node.nodeid)
    yield handle
    handle.record(request.node.stash.get(_CALL, None))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    if call.when != "call" or "orket" not in getattr(item, "fixturenames", ()):
        return
    from orket_pipeline.integrations.pytest_plugin import CallResult

    report = outcome.get_result()
    excinfo = call.excinfo
    item.stash[_CALL] = CallResult(
        outcome=report.outcome,
        exception=None if excinfo is None else excinfo.type.__name__,
        message="" if excinfo is None else str(excinfo.value),
        xfail=hasattr(report, "wasxfail"),
    )


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist, on the controller: keep a finished worker's report."""
    shard = getattr(node, "workeroutput", {}).get(_WORKER_KEY)
    if shard is not None:
        node.config.stash.setdefault(_SHARDS, []).append(shard)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    path = config.getoption("orket_report", None)
    if path is None:
        return
    from orket_pipeline.integrations import pytest_plugin as plugin

    local = config.stash.get(_REPORTS, [])
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller writes the report
        workeroutput[_WORKER_KEY] = plugin.encode_shard(local)
        return
    shards = [plugin.decode_shard(text) for text in config.stash.get(_SHARDS, [])]
    try:
        report = plugin.write_session_report(path, plugin.session_report(local, shards))
    except (OSError, plugin.InputError) as exc:  # unwritable, or a test id seen twice
        config.stash[_WRITTEN] = f"orket-pipeline: could not write --orket-report {path}: {exc}"
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
        return
    runs = len(report.test_runs)
    config.stash[_WRITTEN] = f"orket-pipeline: {runs} runs written to {path}"


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    line = config.stash.get(_WRITTEN, None)
    if line is not None:
        terminalreporter.write_line(line)
