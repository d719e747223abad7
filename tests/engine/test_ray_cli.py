"""`orket-pipeline run --executor ray`: its options, its refusals, Ray imported only when used,
and one run end to end on the local Ray the command starts (loopback only) and stops."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from orket_pipeline.cli import main
from orket_pipeline.engine._ray_cluster import ray_available
from tests.engine.test_ray import TASKS, humaneval_like


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--workers", "2"], "--workers goes with --executor ray"),
        (["--ray-address", "127.0.0.1:1"], "--ray-address goes with --executor ray"),
        (["--provider", "replay:x.jsonl"], "--provider given more than once needs --executor ray"),
        (["--executor", "ray", "--memory-pid", "1"], "--memory-pid measures a process"),
        (["--executor", "ray", "--gate-concurrency", "2"], "--gate-concurrency is not used"),
    ],
)
def test_options_that_do_not_go_together_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    suite, spec = humaneval_like(tmp_path)
    code = main(["run", str(suite), "--provider", spec, "--out", str(tmp_path / "r.json"), *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.json").exists()


def test_executor_ray_without_ray_exits_2_saying_what_to_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    suite, spec = humaneval_like(tmp_path)
    out = tmp_path / "r.json"
    code = main(["run", str(suite), "--provider", spec, "--out", str(out), "--executor", "ray"])
    err = capsys.readouterr().err
    assert code == 2
    assert "pip install 'orket-pipeline[ray]'" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_local_run_never_imports_ray(tmp_path: Path) -> None:
    code = (
        "import sys; from orket_pipeline.cli import main; "
        f"code = main(['run', '--demo', '-q', '--out', {str(tmp_path / 'r.json')!r}]); "
        "assert 'ray' not in sys.modules, 'ray was imported'; print('exit', code)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "exit 1" in done.stdout, done.stderr  # the demo has failing tasks on purpose


@pytest.mark.ray
@pytest.mark.skipif(not ray_available(), reason="needs Ray: pip install 'orket-pipeline[ray]'")
def test_run_on_a_local_ray_end_to_end(tmp_path: Path) -> None:
    suite, spec = humaneval_like(tmp_path)
    out = tmp_path / "report.json"
    command = [sys.executable, "-m", "orket_pipeline", "run", str(suite), "--provider", spec]
    command += ["--out", str(out), "--executor", "ray", "--workers", "2", "-q"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=100, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["metadata"]["executor"] == "ray"
    assert [run["outcome"] for run in report["test_runs"]] == ["pass"] * TASKS
    assert len({run["worker"] for run in report["test_runs"]}) == 2
    assert "Traceback" not in done.stderr
    assert done.stdout.startswith("memory: each Ray worker's own process")


def test_provider_files_are_made_absolute_for_the_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orket_pipeline.cli._executor import _absolute

    monkeypatch.chdir(tmp_path)
    assert _absolute("python:oracle.py:Oracle") == f"python:{tmp_path}/oracle.py:Oracle"
    assert _absolute("python:sub/mod.py:Oracle") == f"python:{tmp_path}/sub/mod.py:Oracle"
    assert _absolute("replay:c.jsonl") == f"replay:{tmp_path}/c.jsonl"
    for unchanged in ("python:pkg.mod:Name", "ollama:qwen2.5-coder:7b", "openai:m@http://h:1/v1"):
        assert _absolute(unchanged) == unchanged


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.ray
@pytest.mark.skipif(not ray_available(), reason="needs Ray: pip install 'orket-pipeline[ray]'")
@pytest.mark.parametrize(
    "address",
    [f"127.0.0.1:{_closed_port()}", "127.0.0.1:99999", ":", "localhost:"],
    ids=["nothing-listening", "port-out-of-range", "colon", "no-port"],
)
def test_a_ray_address_nothing_answers_at_exits_2_with_one_line_without_waiting_on_ray(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], address: str
) -> None:
    # Ray itself retries such an address for minutes (and logs a traceback for a malformed
    # one); the run must fail at once, one line, naming the address.
    suite, spec = humaneval_like(tmp_path)
    out = tmp_path / "r.json"
    argv = ["run", str(suite), "--provider", spec, "--out", str(out), "--executor", "ray"]
    code = main([*argv, "--ray-address", address])
    err = capfd.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert f"--ray-address {address}" in err
    assert not out.exists()


@pytest.mark.ray
@pytest.mark.skipif(not ray_available(), reason="needs Ray: pip install 'orket-pipeline[ray]'")
@pytest.mark.parametrize("server", ["silent", "http1"])
def test_a_ray_address_where_no_ray_head_answers_exits_2_with_one_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], server: str
) -> None:
    # A port that accepts connections but is no Ray head: Ray waited minutes on it.
    listener = socket.create_server(("127.0.0.1", 0))
    address = f"127.0.0.1:{listener.getsockname()[1]}"

    def answer_http1() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(64)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=answer_http1, daemon=True)
    if server == "http1":
        thread.start()
    suite, spec = humaneval_like(tmp_path)
    argv = ["run", str(suite), "--provider", spec, "--out", str(tmp_path / "r.json")]
    with listener:
        code = main([*argv, "--executor", "ray", "--ray-address", address])
    err = capfd.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert f"--ray-address {address}" in err


@pytest.mark.ray
@pytest.mark.skipif(not ray_available(), reason="needs Ray: pip install 'orket-pipeline[ray]'")
def test_without_ray_address_a_local_ray_starts_even_when_ray_address_is_in_the_environment(
    tmp_path: Path,
) -> None:
    # Ray's own default joins $RAY_ADDRESS (here: nothing listens, so it waited minutes);
    # without --ray-address the contract is a local Ray on loopback. In a process of its own,
    # as a user runs it: a second local Ray started in a process that had one (the module's
    # session above) can fail to start its GCS while the first one's is still stopping.
    dead = f"127.0.0.1:{_closed_port()}"
    code = (
        "import os; from orket_pipeline.engine._ray_cluster import ray_session\n"
        "with ray_session(None, num_cpus=1) as ray:\n"
        "    print('gcs', ray.get_runtime_context().gcs_address)\n"
    )
    env = {**os.environ, "RAY_ADDRESS": dead}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=100, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "gcs 127.0.0.1:" in done.stdout and dead not in done.stdout


@pytest.mark.ray
@pytest.mark.skipif(not ray_available(), reason="needs Ray: pip install 'orket-pipeline[ray]'")
def test_ray_address_auto_with_a_dead_ray_address_in_the_environment_exits_2_at_once(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = f"127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("RAY_ADDRESS", dead)  # what `auto` joins, for Ray
    suite, spec = humaneval_like(tmp_path)
    argv = ["run", str(suite), "--provider", spec, "--out", str(tmp_path / "r.json")]
    code = main([*argv, "--executor", "ray", "--ray-address", "auto"])
    err = capfd.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert dead in err
