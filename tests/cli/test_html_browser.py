"""`report --format html` in a real browser, offline: Debian's Chromium, headless, inside a
network namespace with no interface but loopback (`unshare -n`), so the page is proven to work
from `file://` with nothing outside the machine reachable.

The DOM Chromium dumps after the page's script ran is read back with `html.parser`: the table
rows exist only if the script ran, the charts are SVG with data marks, every run is reachable
through the pages of the table, and a test id carrying `<script>` and an `onerror` handler
shows as text without running (either would change the title). A screenshot is kept for a
person to look at: under `$ORKET_ARTIFACTS` when set, else `artifacts/` in the repository
(gitignored); its path is printed in the test output.

Skipped, saying why, where `chromium` or `unshare -n` is missing; `.ci/run` installs Chromium so
that in CI it runs.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import pytest

from orket_pipeline.cli._html import PAGE_SIZE, render_report_html
from orket_pipeline.report._model import CheckRecord, Report, RunError, Telemetry, TestRun

HOSTILE_ID = (
    "</script><script>document.title='pwned'</script><img src=x onerror=\"document.title='img'\">"
)
HOSTILE_REASON = "<script>document.title='reason'</script> & \u2028 done"
HOSTILE_OUTPUT = "def f():\n    return '</script><script>document.title=\"out\"</script>'\n"
RUNS = 2 * PAGE_SIZE + 37  # three pages
TITLE = "orket-pipeline report 2026-12-03T12:00:00Z"
CHARTS = (
    "chart-ttft",
    "chart-total",
    "chart-cdf",
    "chart-scatter",
    "chart-memory",
    "chart-adherence",
    "chart-outcomes",
)


def _browser_missing() -> str | None:
    if shutil.which("chromium") is None:
        return "chromium is not installed (Debian: apt-get install chromium; .ci/run does)"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        return "unshare -n is not permitted here (needs root or user namespaces)"
    return None


pytestmark = [
    pytest.mark.skipif((missing := _browser_missing()) is not None, reason=missing or ""),
    pytest.mark.slow,  # a browser start per page looked at: seconds each
    pytest.mark.timeout(300),  # three browser starts in one test, on a loaded machine
]


def _report() -> Report:
    runs = []
    for i in range(RUNS):
        outcome = "" if i == 7 else ("pass", "pass", "fail", "error")[i % 4]  # "": a name too
        runs.append(
            TestRun(
                test_id=HOSTILE_ID if i == 5 else f"task-{i:03d}",
                outcome=outcome,
                telemetry=Telemetry(
                    init_latency=0.05 + (i % 17) / 100,
                    total_latency=0.5 + (i % 23) / 10,
                    peak_memory_rss=40 + (i % 7),
                    adherence_score=None if outcome == "error" else (i % 4) / 3,
                ),
                error=RunError(type="ProviderTimeoutError", message="slow")
                if outcome == "error"
                else None,
                reason=HOSTILE_REASON if i == 5 else ("expected 3, got 4" if i % 4 == 2 else None),
                output=HOSTILE_OUTPUT if i == 5 else f"answer {i}",
                checks=[
                    CheckRecord(check="regex_required 'return'", passed=True),
                    CheckRecord(check="ast function_name 'g'", passed=False, detail="found f"),
                ],
            )
        )
    return Report(report_generated_at="2026-12-03T12:00:00Z", test_runs=runs)


class _Dom(HTMLParser):
    """What the tests read from a dumped DOM."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.title, self.imgs = "", 0
        self.rows: list[list[str]] = []  # the run table's rows, as the texts of their cells
        self.attrs: dict[str, dict[str, str | None]] = {}  # by element id
        self.marks: dict[str, int] = dict.fromkeys(CHARTS, 0)
        self.detail_heading = self.detail_text = ""
        self._stack: list[tuple[str, str]] = []  # (tag, nearest enclosing element id)
        self._cell: list[str] | None = None
        self._in_title = self._in_heading = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        scope = values.get("id") or (self._stack[-1][1] if self._stack else "")
        if values.get("id"):
            self.attrs[str(values["id"])] = values
        if tag == "img":
            self.imgs += 1
        if "mark" in (values.get("class") or "").split() and scope in self.marks:
            self.marks[scope] += 1
        self._in_title |= tag == "title" and not self._stack_has("svg")
        if tag == "tr" and self._stack_has("tbody") and self._stack_has("run-table"):
            self.rows.append([])
        if tag == "td" and self._stack_has("run-table"):
            self._cell = []
        self._in_heading |= tag == "h2" and scope == "run-detail"
        if tag not in ("meta", "input", "br", "img", "line", "circle", "rect", "polyline"):
            self._stack.append((tag, str(scope)))

    @property
    def row_ids(self) -> list[str]:
        return [row[0] for row in self.rows]

    def _stack_has(self, name: str) -> bool:
        return any(name in (tag, scope) for tag, scope in self._stack)

    def handle_endtag(self, tag: str) -> None:
        if self._stack and self._stack[-1][0] == tag:
            self._stack.pop()
        if tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None
        self._in_title &= tag != "title"
        self._in_heading &= tag != "h2"

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if self._cell is not None:
            self._cell.append(data)
        if self._in_heading:
            self.detail_heading += data
        if self._stack_has("run-detail"):
            self.detail_text += data


def _chromium(tmp: Path, url: str, *extra: str) -> str:
    """Chromium headless inside `unshare -n` on `url`; its stdout."""
    argv = ["unshare", "-n", "chromium", "--headless=new", "--no-sandbox", "--disable-gpu"]
    argv += [f"--user-data-dir={tmp / 'profile'}", "--no-first-run", *extra, url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("html") / "report.html"
    path.write_text(render_report_html(_report()), encoding="utf-8")
    yield path


def _dom(page: Path, fragment: str = "") -> _Dom:
    return _Dom(_chromium(page.parent, page.as_uri() + fragment, "--dump-dom"))


def test_the_page_renders_offline_with_charts_and_its_table_built_by_script(page: Path) -> None:
    dom = _dom(page)
    assert dom.attrs["run-count"]["data-total"] == str(RUNS)
    assert dom.attrs["run-count"]["data-matching"] == str(RUNS)  # no filter: every run
    assert dom.attrs["run-count"]["data-pages"] == "3"
    assert len(dom.row_ids) == PAGE_SIZE  # rows exist only if the script ran
    assert dom.row_ids[0] == "task-000"
    assert all(count > 0 for count in dom.marks.values()), dom.marks
    assert dom.title == TITLE


def test_every_run_is_reachable_through_the_pages_of_the_table(page: Path) -> None:
    seen: list[str] = []
    for number in (1, 2, 3):
        dom = _dom(page, f"#page={number}")
        assert dom.attrs["run-count"]["data-page"] == str(number)
        seen += dom.row_ids
    expected = [HOSTILE_ID if i == 5 else f"task-{i:03d}" for i in range(RUNS)]
    assert seen == expected


def test_the_table_sorts_and_filters(page: Path) -> None:
    runs = _report().test_runs
    dom = _dom(page, "#sort=-total_latency&outcome=fail")
    failed = [r for r in runs if r.outcome == "fail"]
    assert dom.attrs["run-count"]["data-matching"] == str(len(failed))
    assert {row[1] for row in dom.rows} == {"fail"}
    totals = [float(row[3]) for row in dom.rows]
    assert totals == sorted(totals, reverse=True) and len(totals) == min(PAGE_SIZE, len(failed))
    assert totals[0] == round(max(r.telemetry.total_latency or 0 for r in failed if r.telemetry), 3)

    dom = _dom(page, "#q=expected%203")  # the reason text is searched too
    assert sorted(dom.row_ids) == sorted(r.test_id for r in runs if r.reason == "expected 3, got 4")


def test_hostile_text_stays_text_and_never_runs(page: Path) -> None:
    dom = _dom(page, "#run=" + quote(HOSTILE_ID, safe=""))
    assert dom.title == TITLE  # neither the <script> nor the onerror handler ran
    assert dom.imgs == 0  # the <img> is text, not an element
    assert HOSTILE_ID in dom.row_ids  # shown as itself in the table
    assert "hidden" not in dom.attrs["run-detail"]  # the drill-down opened on it
    assert dom.detail_heading == HOSTILE_ID
    for shown in (HOSTILE_REASON, HOSTILE_OUTPUT, "\u2717 failed", "ast function_name 'g'"):
        assert shown in dom.detail_text  # the gate's reason, the output, the failed check


def test_a_screenshot_is_kept_for_a_person_to_look_at(
    page: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = Path(__file__).resolve().parents[2]
    folder = Path(os.environ.get("ORKET_ARTIFACTS") or root / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    shot = folder / "report-html.png"
    shot.unlink(missing_ok=True)
    url = page.as_uri() + "#run=task-002"
    _chromium(page.parent, url, f"--screenshot={shot}", "--window-size=1400,2600")
    with capsys.disabled():  # in the test output even when output is captured (CI's log)
        print(f"\nscreenshot of the HTML report: {shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_each_run_of_a_test_id_given_twice_opens_its_own_drill_down(tmp_path: Path) -> None:
    # The reader takes a hand-written report with an id twice; each row must open its own run.
    runs = [
        TestRun(test_id="same", outcome="pass", reason=None),
        TestRun(test_id="same", outcome="fail", reason="the second one"),
    ]
    path = tmp_path / "dup.html"
    path.write_text(render_report_html(Report(test_runs=runs)), encoding="utf-8")
    hrefs = re.findall(r'<a href="(#run=[^"]*)"', _chromium(tmp_path, path.as_uri(), "--dump-dom"))
    assert len(hrefs) == 2 and hrefs[0] != hrefs[1]
    dom = _dom(path, html.unescape(hrefs[1]))
    assert "hidden" not in dom.attrs["run-detail"]
    assert "the second one" in dom.detail_text
