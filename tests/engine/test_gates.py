"""Gates: passing and failing payloads per gate type, and containment of hostile code."""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import msgspec
import psutil
import pytest

from orket_pipeline.engine import Gate, _gates
from orket_pipeline.engine._gates import GateResult, json_equal, run_gate
from orket_pipeline.engine.sandbox import Sandbox, SandboxLimits, _process, resolve_sandbox
from orket_pipeline.engine.sandbox._seccomp import seccomp_filter


@pytest.fixture
def anyio_backend() -> str:
    # Gates are subprocess work; the engine tests cover trio. One backend keeps this file fast.
    return "asyncio"


def gate(**fields: Any) -> Gate:
    converted: Gate = msgspec.convert(fields, Gate)
    return converted


def py_gate(code: str = "assert True", **extra: Any) -> Gate:
    return gate(type="python_tests", code=code, **extra)


ADD = "def add(a, b):\n    return a + b\n"
ADD_EXAMPLES = gate(
    type="function_examples",
    function_name="add",
    examples=[
        {"args": [1, 2], "expected": 3},
        {"args": [], "kwargs": {"a": 2, "b": 2}, "expected": 4},
    ],
)
DOUBLER_CLI = gate(
    type="cli_examples",
    examples=[
        {"args": ["3"], "expected_stdout": "6\n"},
        {"args": ["x"], "expected_exit_code": 2, "expected_stderr": "not a number\n"},
        {"stdin": "5", "expected_stdout": "10\n"},
    ],
)
DOUBLER = """\
import sys
raw = sys.argv[1] if len(sys.argv) > 1 else sys.stdin.read()
try:
    n = int(raw)
except ValueError:
    sys.stderr.write("not a number\\n")
    sys.exit(2)
print(n * 2)
"""


async def test_no_gate_passes() -> None:
    assert await run_gate(None, "") == GateResult(True)


class TestPythonTests:
    async def test_passing_tests(self) -> None:
        assert (await run_gate(py_gate("assert add(1, 2) == 3"), ADD)).passed

    async def test_failing_assertion_reason_shows_the_assertion(self) -> None:
        result = await run_gate(py_gate("assert add(1, 2) == 4, 'bad sum'"), ADD)
        assert not result.passed
        assert result.reason is not None
        assert result.reason.startswith("AssertionError: bad sum")
        assert "assert add(1, 2) == 4" in result.reason

    async def test_syntax_error(self) -> None:
        result = await run_gate(py_gate(), "def f(:\n")
        assert not result.passed and result.reason and "SyntaxError" in result.reason

    async def test_sys_exit_zero_before_the_tests_does_not_pass(self) -> None:
        result = await run_gate(py_gate("assert False"), "import sys\nsys.exit(0)\n")
        assert not result.passed and result.reason and "before the tests finished" in result.reason

    async def test_os_exit_zero_does_not_pass(self) -> None:
        result = await run_gate(py_gate(), "import os\nos._exit(0)\n")
        assert not result.passed

    async def test_sys_exit_one(self) -> None:
        result = await run_gate(py_gate(), "import sys\nsys.exit(1)\n")
        assert result == GateResult(False, "exit code 1")


class TestFunctionExamples:
    async def test_passing_examples_with_args_and_kwargs(self) -> None:
        assert (await run_gate(ADD_EXAMPLES, ADD)).passed

    async def test_wrong_result_says_expected_and_got(self) -> None:
        result = await run_gate(ADD_EXAMPLES, "def add(a, b):\n    return a + b + 1\n")
        assert result == GateResult(False, "add(1, 2): expected 3, got 4")

    async def test_results_compare_as_json(self) -> None:
        payload = "def add(a, b):\n    return (a + b, True)\n"
        examples = [{"args": [1, 1], "expected": [2, True]}]
        ok = gate(type="function_examples", function_name="add", examples=examples)
        assert (await run_gate(ok, payload)).passed
        examples = [{"args": [1, 1], "expected": [2, 1]}]
        strict = gate(type="function_examples", function_name="add", examples=examples)
        assert not (await run_gate(strict, payload)).passed

    async def test_missing_function(self) -> None:
        result = await run_gate(ADD_EXAMPLES, "def plus(a, b):\n    return a + b\n")
        assert result == GateResult(False, "no function 'add' defined")

    async def test_exception_in_call(self) -> None:
        result = await run_gate(ADD_EXAMPLES, "def add(a, b):\n    raise ValueError('no')\n")
        assert result.reason and result.reason.startswith("add(1, 2): ValueError: no")

    async def test_non_json_result(self) -> None:
        result = await run_gate(ADD_EXAMPLES, "def add(a, b):\n    return {a, b}\n")
        assert result.reason and "non-JSON value of type set" in result.reason

    async def test_printing_does_not_disturb_the_results(self) -> None:
        payload = "print('noise')\ndef add(a, b):\n    print('more noise')\n    return a + b\n"
        assert (await run_gate(ADD_EXAMPLES, payload)).passed

    async def test_sys_exit_inside_the_function(self) -> None:
        payload = "import sys\ndef add(a, b):\n    sys.exit(3)\n"
        assert await run_gate(ADD_EXAMPLES, payload) == GateResult(False, "exit code 3")


class TestCliExamples:
    async def test_passing_examples_with_args_stdin_stderr_and_exit_code(self) -> None:
        assert (await run_gate(DOUBLER_CLI, DOUBLER)).passed

    async def test_wrong_stdout(self) -> None:
        result = await run_gate(DOUBLER_CLI, DOUBLER.replace("n * 2", "n * 3"))
        assert result == GateResult(False, "example 1 (3): expected stdout '6\\n', got '9\\n'")

    async def test_wrong_exit_code_shows_the_error(self) -> None:
        result = await run_gate(DOUBLER_CLI, "import sys\nprint(int(sys.argv[1]) * 2)\n")
        assert result.reason is not None
        assert result.reason.startswith("example 2 (x): expected exit code 2, got 1 (ValueError")


class TestContainment:
    """Each hostile payload fails its own test with a reason; the engine process is untouched."""

    async def test_infinite_loop_times_out(self) -> None:
        started = time.monotonic()
        result = await run_gate(py_gate(timeout_s=0.5), "while True:\n    pass\n")
        assert result == GateResult(False, "timeout after 0.5 s")
        assert time.monotonic() - started < 5

    async def test_timeout_kills_children_too(self) -> None:
        limits = SandboxLimits(timeout_s=0.5)
        result = await run_gate(ADD_EXAMPLES, "import time\ntime.sleep(60)\n", limits=limits)
        assert result == GateResult(False, "timeout after 0.5 s")

    @pytest.mark.parametrize(
        "payload",
        [
            "x = bytearray(10 * 1024 ** 3)\n",
            "x = [0] * 10 ** 10\n",
            "x = []\nwhile True:\n    x.append(' ' * 10 ** 7)\n",
        ],
    )
    async def test_memory_bomb_fails_with_memory_error(self, payload: str) -> None:
        result = await run_gate(py_gate(), payload, limits=SandboxLimits(memory_bytes=256 << 20))
        assert not result.passed and result.reason and "MemoryError" in result.reason

    async def test_huge_output_is_capped_not_buffered(self) -> None:
        payload = "import sys\nfor _ in range(1600):\n    sys.stdout.write('x' * 65536)\n"
        started = time.monotonic()
        result = await run_gate(py_gate(), payload)  # 100 MiB of output
        assert result == GateResult(False, "output over the 1 MiB limit")
        assert time.monotonic() - started < 5

    async def test_huge_output_on_stderr_too(self) -> None:
        payload = "import sys\nwhile True:\n    sys.stderr.write('e' * 65536)\n"
        result = await run_gate(DOUBLER_CLI, payload, limits=SandboxLimits(output_bytes=4096))
        assert result.reason and "output over the 4096 bytes limit" in result.reason

    @pytest.mark.parametrize(
        "payload",
        [
            "import os\nos.fork()\n",
            "import subprocess\nsubprocess.run(['true'])\n",
            "import os\nos.system('true')\n",
            "import multiprocessing\nmultiprocessing.Process(target=print).start()\n",
        ],
    )
    async def test_process_creation_is_refused(self, payload: str) -> None:
        result = await run_gate(py_gate(), payload)
        assert not result.passed and result.reason and "not allowed" in result.reason

    async def test_signalling_the_engine_is_refused(self) -> None:
        result = await run_gate(py_gate(), "import os\nos.kill(os.getppid(), 9)\n")
        assert not result.passed and result.reason and "not allowed" in result.reason

    async def test_writes_outside_the_temp_dir_are_refused(self, tmp_path: Path) -> None:
        target = tmp_path / "escaped.txt"
        victim = tmp_path / "victim.txt"
        victim.write_text("keep me")
        for payload in (
            f"open({str(target)!r}, 'w').write('x')\n",
            f"import os\nos.remove({str(victim)!r})\n",
            f"import pathlib\npathlib.Path({str(tmp_path)!r}, 'd').mkdir()\n",
            f"import os\nos.rename({str(victim)!r}, 'stolen.txt')\n",
        ):
            result = await run_gate(py_gate(), payload)
            assert not result.passed and result.reason and "outside" in result.reason, payload
        assert not target.exists() and victim.read_text() == "keep me"
        assert os.listdir(tmp_path) == ["victim.txt"]

    async def test_writes_inside_the_temp_dir_are_allowed(self) -> None:
        payload = "import os, tempfile\nopen('a.txt', 'w').write('x')\ntempfile.mkstemp()\n"
        payload += "os.remove('a.txt')\n"
        assert (await run_gate(py_gate(), payload)).passed

    async def test_environment_holds_no_secrets(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
        code = "import os\nassert 'OPENAI_API_KEY' not in os.environ\n"
        assert (await run_gate(py_gate(code), "")).passed


@pytest.mark.parametrize(
    ("left", "right", "equal"),
    [
        (1, 1.0, True),
        (True, 1, False),
        ([1, [2]], [1, [2]], True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        (None, None, True),
        ("1", 1, False),
    ],
)
def test_json_equal(left: Any, right: Any, equal: bool) -> None:
    assert json_equal(left, right) is equal


class TestSandboxLimits:
    """Limits the kernel enforces on the generated code (bubblewrap)."""

    async def test_the_private_tmpfs_is_size_limited(self) -> None:
        payload = "for i in range(4):\n    open(f'f{i}', 'wb').write(b'x' * 400_000)\n"
        result = await run_gate(py_gate(), payload, limits=SandboxLimits(file_bytes=1 << 20))
        assert result.reason and (
            "No space left" in result.reason or "File too large" in result.reason
        )

    async def test_open_files_are_limited(self) -> None:
        payload = "files = [open(__file__) for _ in range(100)]\n"
        result = await run_gate(py_gate(), payload, limits=SandboxLimits(open_files=32))
        assert result.reason and "Too many open files" in result.reason
        assert not result.error  # the code's own doing: the model's fail

    async def test_threads_are_allowed_processes_are_not(self) -> None:
        # The audit hook is switched off first: the kernel's seccomp filter is what refuses.
        payload = (
            "import gc, os, types, threading, ctypes\n"
            "for o in gc.get_objects():\n"
            "    if isinstance(o, types.FunctionType) and o.__name__ == 'hook':\n"
            "        o.__globals__['_PROCESS_EVENTS'] = frozenset()\n"
            "t = threading.Thread(target=print)\nt.start()\nt.join()\n"
            "assert ctypes.CDLL(None).fork() == -1\n"
            "try:\n    os.memfd_create('m')\nexcept PermissionError:\n    pass\n"
            "else:\n    raise AssertionError('memfd_create was allowed')\n"
        )
        assert (await run_gate(py_gate(), payload)).passed

    @pytest.mark.parametrize(
        ("kind", "euid", "nproc"),
        [("bwrap", 1000, 64 + 2), ("process", 1000, 0), ("bwrap", 0, None)],
    )
    def test_threads_are_bounded_where_the_kernel_can(
        self, monkeypatch: pytest.MonkeyPatch, kind: str, euid: int, nproc: int | None
    ) -> None:
        # RLIMIT_NPROC: bwrap's init and the harness beside 64 threads; root is exempt.
        monkeypatch.setattr(_process.os, "geteuid", lambda: euid)
        rlimits = _process._rlimits(Sandbox(kind), SandboxLimits(threads=64))
        assert rlimits.get("RLIMIT_NPROC") == nproc


class TestVerdicts:
    """Expected values stay in the engine; only a record with the run's nonce is a verdict."""

    async def test_expected_values_never_enter_the_sandbox(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        secret = "EXPECTED-" + secrets.token_hex(8)
        sent: list[bytes] = []
        real = _process.supervise

        def spy(make_argv: Any, **kwargs: Any) -> Any:
            sent.append(kwargs["config"] + kwargs["stdin"] + " ".join(make_argv(3, 4, 5)).encode())
            return real(make_argv, **kwargs)

        monkeypatch.setattr(_process, "supervise", spy)
        function = gate(
            type="function_examples",
            function_name="f",
            examples=[{"args": [1], "expected": secret}],
        )
        cli = gate(type="cli_examples", examples=[{"args": ["1"], "expected_stdout": secret}])
        assert not (await run_gate(function, "def f(x):\n    return 'no'\n")).passed
        assert not (await run_gate(cli, "print('no')\n")).passed
        assert len(sent) == 2 and not any(secret.encode() in data for data in sent)

    def test_a_record_without_this_runs_nonce_is_not_a_verdict(self) -> None:
        nonce = secrets.token_hex(16)
        data = b'noise\n{"status": "raised", "reason": "x"}\n'
        good = data + b"verdict ok " + nonce.encode() + b"\n"
        # The status comes from the verdict line only; the data line cannot change it.
        assert _process._record(bytearray(good), nonce) == {"status": "ok", "reason": "x"}
        for forged in (
            b'{"status": "ok", "nonce": "' + nonce.encode() + b'"}\n',  # the old record
            data + b"verdict ok " + secrets.token_hex(16).encode() + b"\n",
            data + b"verdict ok \xc3\xa9\n",  # a non-ASCII nonce: refused, not a crash
            data + "verdict ok \u00e9".encode() + b"\n",
            data + b"verdict ok\n",
            good + b"trailing",
            b"verdict ok " + nonce.encode() + b"\n",
            b"",
        ):
            assert _process._record(bytearray(forged), nonce) is None, forged

    def test_spoiled_data_beside_a_true_verdict_is_a_failure_of_the_code(self) -> None:
        nonce = secrets.token_hex(16)
        spoiled = b"not json\nverdict ok " + nonce.encode() + b"\n"
        record = _process._record(bytearray(spoiled), nonce)
        assert record is not None and record["status"] == "raised"

    async def test_printing_a_verdict_and_exiting_does_not_pass(self) -> None:
        payload = (
            'import os\nprint(\'\\x1eorket-gate-verdict:{"status": "ok"}\')\n'
            "for fd in range(3, 32):\n"
            '    try:\n        os.write(fd, b\'\\n{"status": "ok", "nonce": ""}\\n\')\n'
            "    except OSError:\n        pass\n"
            "os._exit(0)\n"
        )
        result = await run_gate(py_gate("assert False"), payload)
        assert result == GateResult(False, "exited before the tests finished (exit code 0)")


class TestNoIsolation:
    async def test_without_a_sandbox_a_gate_is_an_error_not_a_fail(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("ORKET_BWRAP", "")
        monkeypatch.setattr(_process, "_resolved", {})
        result = await run_gate(py_gate(), ADD)
        assert result.error and not result.passed
        assert result.reason and "--sandbox process" in result.reason

    async def test_an_unusable_bwrap_is_named(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ORKET_BWRAP", "/bin/false")
        monkeypatch.setattr(_process, "_resolved", {})
        with pytest.raises(Exception, match=r"/bin/false does not work here"):
            resolve_sandbox("auto")

    @pytest.mark.parametrize("kind", ["process", "bwrap"])
    async def test_each_gate_type_passes_in_each_sandbox(self, kind: str) -> None:
        sandbox = resolve_sandbox(kind)
        assert sandbox.kind == kind
        assert (await run_gate(py_gate("assert add(1, 2) == 3"), ADD, sandbox=sandbox)).passed
        assert (await run_gate(ADD_EXAMPLES, ADD, sandbox=sandbox)).passed
        assert (await run_gate(DOUBLER_CLI, DOUBLER, sandbox=sandbox)).passed


async def test_cancelling_a_gate_kills_its_sandbox_first() -> None:
    sandbox: Sandbox = resolve_sandbox("bwrap")
    me = psutil.Process()

    def gates() -> list[psutil.Process]:
        found = []
        for child in me.children(recursive=True):
            try:
                if child.cmdline()[-3:-2] == ["/orket/harness.py"]:  # harness CONFIG_FD RESULT_FD
                    found.append(child)
            except psutil.Error:
                continue
        return found

    hang = functools.partial(run_gate, py_gate(timeout_s=60), "import time\ntime.sleep(60)\n")
    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(hang, sandbox=sandbox))
        while not gates():  # noqa: ASYNC110 (processes, not tasks: nothing to wait on)
            await anyio.sleep(0.01)
        started = gates()
        tg.cancel_scope.cancel()
    # Killed when the cancellation arrived: the kernel takes the namespace down at once.
    _, alive = psutil.wait_procs(started, timeout=10)
    assert alive == []
    assert gates() == []


@pytest.mark.parametrize(
    ("machine", "built"), [("x86_64", True), ("aarch64", True), ("mips", False)]
)
def test_seccomp_filter_is_built_for_known_machines(machine: str, built: bool) -> None:
    program = seccomp_filter(machine)
    assert (program is not None) is built
    if program is not None:
        # Every jump is local (0 or 1 ahead), so only the kernel's cap on length applies.
        assert len(program) % 8 == 0 and len(program) // 8 <= 4096


pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="bubblewrap is Linux only"),
]


class TestReasons:
    """What the code printed or raised reaches the report as printable, encodable text."""

    async def test_lone_surrogates_and_control_characters_are_escaped(self) -> None:
        payload = "def add(a, b):\n    raise ValueError('\\ud800 \\x1b[2J done')\n"
        result = await run_gate(ADD_EXAMPLES, payload)
        assert result.reason is not None and result.reason.isprintable()
        assert "\\ud800 \\x1b[2J done" in result.reason
        result.reason.encode("utf-8")  # the report's encoder will not choke on it

    @pytest.mark.parametrize("depth", [150, 985, 995])
    async def test_a_result_nested_too_deeply_fails_without_crashing(self, depth: int) -> None:
        payload = (
            f"def add(a, b):\n    v = 1\n    for _ in range({depth}):\n        v = [v]\n"
            "    return v\n"
        )
        result = await run_gate(ADD_EXAMPLES, payload)
        assert not result.passed and not result.error
        assert result.reason is not None
        # Past the harness's own limit the value never leaves the sandbox.
        assert "nested deeper than 100" in result.reason or "non-JSON" in result.reason

    async def test_an_exception_while_judging_is_this_runs_error(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def broken(left: Any, right: Any) -> bool:
            raise KeyError("judging")

        monkeypatch.setattr(_gates, "json_equal", broken)
        result = await run_gate(ADD_EXAMPLES, "def add(a, b):\n    return a + b\n")
        assert not result.passed and result.error
        assert result.reason is not None and "KeyError" in result.reason


SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture
def unprivileged_bwrap(monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    """As root: the sandbox bwrap gets with an interpreter that `nobody` can read."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("only root's engine starts bwrap as another user")
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip(f"no {SYSTEM_PYTHON} to run the harness with")
    # The harness is standard library only: any system Python 3 runs it.
    monkeypatch.setattr(_process, "python_inside", lambda: (SYSTEM_PYTHON, []))
    monkeypatch.setattr(_process, "_resolved", {})
    sandbox = resolve_sandbox("bwrap")
    hidden = [p for p in (sandbox.bwrap, str(_process._HARNESS)) if p and not _others_reach(p)]
    if hidden:
        # Then the engine falls back to root's own mapping (README, "Running as root").
        pytest.skip(f"`nobody` cannot reach {hidden[0]} (a folder on its path is not o+x)")
    return sandbox


def _others_reach(path: str) -> bool:
    """Whether a user with no special rights can open `path`: o+x on every folder above it."""
    target = Path(path).resolve()
    folders_ok = all(os.stat(folder).st_mode & 0o001 for folder in target.parents)
    return folders_ok and bool(os.stat(target).st_mode & 0o004)


class TestUnderARootEngine:
    """Started by root, bwrap runs as `nobody`: the sandbox is not the host's root."""

    async def test_the_sandbox_runs_as_nobody_on_the_host(
        self, unprivileged_bwrap: Sandbox
    ) -> None:
        assert unprivileged_bwrap.user == _process.UNPRIVILEGED_UID
        me = psutil.Process()

        def host_uids() -> list[int]:
            uids = []
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if child.cmdline()[-3:-2] == ["/orket/harness.py"]:
                        uids.append(child.uids().real)  # bwrap, its init, the harness
            return uids

        wait = functools.partial(run_gate, py_gate(timeout_s=60), "import time\ntime.sleep(60)\n")
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(wait, sandbox=unprivileged_bwrap))
            while not host_uids():  # noqa: ASYNC110 (processes, not tasks: nothing to wait on)
                await anyio.sleep(0.01)
            seen = host_uids()
            tg.cancel_scope.cancel()
        assert set(seen) == {_process.UNPRIVILEGED_UID}  # bwrap and the harness alike

    async def test_its_threads_are_bounded_and_gates_still_pass(
        self, unprivileged_bwrap: Sandbox
    ) -> None:
        bomb = (
            "import threading\nrelease = threading.Event()\n"
            "try:\n    for _ in range(200):\n"
            "        threading.Thread(target=release.wait, daemon=True).start()\n"
            "finally:\n    release.set()\n"
        )
        result = await run_gate(py_gate(), bomb, sandbox=unprivileged_bwrap)
        assert result.reason is not None and "can't start new thread" in result.reason
        sandbox = unprivileged_bwrap
        assert (await run_gate(py_gate("assert add(1, 2) == 3"), ADD, sandbox=sandbox)).passed
        assert (await run_gate(ADD_EXAMPLES, ADD, sandbox=sandbox)).passed
        assert (await run_gate(DOUBLER_CLI, DOUBLER, sandbox=sandbox)).passed
