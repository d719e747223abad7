"""TTFT over real HTTP: the pipeline's `openai:` provider, a bare httpx client and GuideLLM,
side by side against one loopback server that stamps its own time to first chunk.

The server (`benchmarks._stamping_server`, its own process) sends its first content delta DELAY
after reading a request, stamping `perf_counter()` (CLOCK_MONOTONIC, one clock for every
process) when it read the request and just before it wrote that delta. Every method runs the
same workload at concurrency 1 and 100 (that many workers, each sending its next request when
the last one ended); the server's stamps of the same block are the reference:

* pipeline: `TelemetryPipeline.generate` over `OpenAIProvider` (pool sized to the concurrency,
  `connect()` first); its figure is the run's unrounded `init_latency`, read where the
  LatencyTracker's part reaches the aggregator, as `bench_ttft` does;
* provider: `OpenAIProvider.stream` alone, no pipeline, stamping its first `str` itself (what
  the provider's reading costs, apart from the pipeline's);
* bare httpx: one `httpx.AsyncClient` streaming, stamping the first content line itself;
* GuideLLM (when installed; `pip install guidellm`): `guidellm run` with a concurrent profile,
  a tiny word-level tokenizer built locally (no hub is reachable), its per-request
  `time_to_first_token_ms` read from its JSON output.

TTFT error = client TTFT - the server's own (first delta written - request read). For the
pipeline and the bare client it is paired per request (by prompt); GuideLLM's prompts are its
own, so its error compares the distributions (p50 - p50, p99 - p99). The error holds what every
client pays: sending the request, loopback, parsing, the event loop's lateness. `cpu/req` is
this process's CPU time per request (GuideLLM runs in its own processes: not shown).

Usage: python -m benchmarks.bench_http_ttft [--quick | --smoke]
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from time import perf_counter, process_time
from typing import Any

import anyio
import anyio.to_thread
import httpx

from benchmarks._common import header
from benchmarks._fixtures import TelemetryPipeline, check_lossless, typical_constraints
from benchmarks._results import parse_mode, pick, verdict
from benchmarks._stamping_server import serve
from orket_pipeline.providers import OpenAIProvider, ProviderOptions
from orket_pipeline.telemetry._events import LatencyMeasured

BENCH = "http_ttft"
DELAY = 0.010
# requests per method and concurrency (full, quick, smoke)
SAMPLES = {1: (300, 60, 20), 100: (2_000, 400, 200)}
TARGET_MS = 1.0  # the pipeline's median error beyond the bare client's, at each concurrency

Figures = dict[str, list[float]]  # "client", "server", "paired" (seconds)


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


async def _server_log(client: httpx.AsyncClient, root: str) -> dict[str, tuple[float, float]]:
    stats = (await client.get(f"{root}/stats")).json()
    return {key: (t_received, t_first) for key, t_received, t_first in stats["requests"]}


async def _workers(concurrency: int, total: int, one: Any) -> None:
    keys = iter(range(total))

    async def worker() -> None:
        for index in keys:  # workers share one iterator: each request goes to one worker
            await one(f"r{index}")

    async with anyio.create_task_group() as group:
        for _ in range(concurrency):
            group.start_soon(worker)


CPU: dict[str, float] = {}  # the last measured block's CPU seconds per request


async def _timed_workers(concurrency: int, total: int, one: Any) -> None:
    c0 = process_time()
    await _workers(concurrency, total, one)
    CPU["per_request"] = (process_time() - c0) / total


async def _bare(root: str, concurrency: int, total: int) -> dict[str, float]:
    measured: dict[str, float] = {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def one(key: str) -> None:
            body = {"model": "bench", "messages": [{"role": "user", "content": key}]}
            t_sent = perf_counter()
            async with client.stream(
                "POST", f"{root}/v1/chat/completions", json={**body, "stream": True}
            ) as reply:
                async for line in reply.aiter_lines():
                    if line == "data: [DONE]":
                        break
                    if key not in measured and line.startswith("data: "):
                        choices = json.loads(line[6:])["choices"]
                        if choices and choices[0]["delta"].get("content"):
                            measured[key] = perf_counter() - t_sent

        await _workers(concurrency, concurrency, one)  # warm-up: the pool's connections
        measured.clear()
        await client.post(f"{root}/reset")
        await _timed_workers(concurrency, total, one)
    return measured


async def _connected(root: str, concurrency: int) -> OpenAIProvider:
    """The `openai:` provider on the loopback server, its pool sized to the concurrency."""
    options = ProviderOptions(max_connections=concurrency)
    provider = OpenAIProvider("bench", f"{root}/v1", options=options)
    await provider.connect()
    return provider


async def _provider(root: str, concurrency: int, total: int) -> dict[str, float]:
    measured: dict[str, float] = {}
    provider = await _connected(root, concurrency)

    async def one(key: str) -> None:
        t_sent = perf_counter()
        async for item in provider.stream(key):
            if key not in measured and isinstance(item, str):
                measured[key] = perf_counter() - t_sent

    try:
        await _workers(concurrency, concurrency, one)
        measured.clear()
        async with httpx.AsyncClient() as control:
            await control.post(f"{root}/reset")
        await _timed_workers(concurrency, total, one)
    finally:
        await provider.aclose()
    return measured


async def _pipeline(root: str, concurrency: int, total: int) -> dict[str, float]:
    measured: dict[str, float] = {}
    provider = await _connected(root, concurrency)
    try:
        async with TelemetryPipeline(inbox_capacity=8 * total + 64) as pipeline:
            aggregator: Any = pipeline._aggregator
            handle_batch = aggregator.handle_batch

            def keep(events: list[Any]) -> None:
                for event in events:
                    if isinstance(event, LatencyMeasured) and event.init_latency is not None:
                        measured[event.test_id] = event.init_latency
                handle_batch(events)

            aggregator.handle_batch = keep

            rules = typical_constraints()

            async def one(key: str) -> None:
                await pipeline.generate(key, provider, key, constraints=rules)
                pipeline.record_outcome(key, "pass")

            await _workers(concurrency, concurrency, lambda key: one(f"warm-{key}"))
            async with httpx.AsyncClient() as control:
                await control.post(f"{root}/reset")
            await _timed_workers(concurrency, total, one)
        check_lossless(pipeline, total + concurrency)
    finally:
        await provider.aclose()
    return {key: value for key, value in measured.items() if not key.startswith("warm-")}


def _tokenizer(directory: Path) -> str:
    """A word-level tokenizer saved where `AutoTokenizer.from_pretrained` can read it."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = "the a of to and in is it you that for on are with as be at this from or def return"
    vocab = {"[UNK]": 0, "[PAD]": 1, **{word: i + 2 for i, word in enumerate(words.split())}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]")
    fast.save_pretrained(str(directory))
    return str(directory)


def _guidellm(root: str, concurrency: int, total: int, work: Path) -> list[float] | None:
    """GuideLLM's per-request TTFT (seconds), or None when it is not installed or failed."""
    command = shutil.which("guidellm")
    if command is None:
        return None
    out = work / f"guidellm-{concurrency}.json"
    argv = [
        command, "run",
        "--backend", f"kind=openai_http,target={root},model=bench",
        "--profile", f"kind=concurrent,streams={concurrency}",
        "--constraint", f"kind=max_requests,count={total}",
        "--tokenizer", f"kind=huggingface_auto,model={_tokenizer(work / 'tokenizer')}",
        "--data", "kind=synthetic_text,prompt_tokens=16,output_tokens=16",
        "--output", f"kind=json,path={out}",
        "--disable-console",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0 or not out.exists():
        print(f"  GuideLLM failed (exit {done.returncode}): {done.stderr.strip()[-300:]}")
        return None
    requests = json.loads(out.read_text())["benchmarks"][0]["requests"]["successful"]
    return [request["time_to_first_token_ms"] / 1e3 for request in requests]


async def _measure_block(
    name: str, root: str, concurrency: int, total: int, work: Path
) -> Figures | None:
    async with httpx.AsyncClient() as control:
        await control.post(f"{root}/reset")
        if name == "GuideLLM":
            client = await anyio.to_thread.run_sync(_guidellm, root, concurrency, total, work)
            if client is None:
                return None
            log = await _server_log(control, root)
            server = [t1 - t0 for t0, t1 in log.values()]
            return {"client": client, "server": server, "paired": [], "cpu": []}
        measure = {"pipeline": _pipeline, "provider": _provider, "bare httpx": _bare}[name]
        measured = await measure(root, concurrency, total)
        log = await _server_log(control, root)
    paired = [measured[key] - (log[key][1] - log[key][0]) for key in measured if key in log]
    server = [log[key][1] - log[key][0] for key in measured if key in log]
    cpu = [CPU.pop("per_request", float("nan"))]
    return {"client": list(measured.values()), "server": server, "paired": paired, "cpu": cpu}


def _row(concurrency: int, name: str, figures: Figures) -> tuple[float, float]:
    client, server, paired = figures["client"], figures["server"], figures["paired"]
    err50 = statistics.median(client) - statistics.median(server)
    err99 = _p99(client) - _p99(server)
    paired50 = f"{statistics.median(paired) * 1e3:8.3f}" if paired else f"{'-':>8s}"
    cpu = f"{figures['cpu'][0] * 1e3:8.3f}" if figures["cpu"] else f"{'-':>8s}"
    print(
        f"{concurrency:11,d}  {name:10s} {len(client):6d} {statistics.median(client) * 1e3:8.3f}"
        f" {_p99(client) * 1e3:8.3f} {statistics.median(server) * 1e3:8.3f}"
        f" {err50 * 1e3:8.3f} {err99 * 1e3:8.3f} {paired50} {cpu}"
    )
    return err50, err99


async def _run(mode: str, root: str, work: Path) -> None:
    methods = ["bare httpx", "provider", "pipeline"] + ([] if mode == "smoke" else ["GuideLLM"])
    print(
        f"{'concurrency':>11s}  {'method':10s} {'n':>6s} {'ttft p50':>8s} {'ttft p99':>8s}"
        f" {'srv p50':>8s} {'err p50':>8s} {'err p99':>8s} {'paired':>8s} {'cpu/req':>8s}   (ms)"
    )
    for concurrency, counts in SAMPLES.items():
        total = pick(mode, *counts)
        errors: dict[str, float] = {}
        for name in methods:
            figures = await _measure_block(name, root, concurrency, total, work)
            if figures is None:
                print(f"{concurrency:11,d}  {name:10s} not run (not installed, or it failed)")
                continue
            errors[name] = _row(concurrency, name, figures)[0]
        added = (errors["pipeline"] - errors["bare httpx"]) * 1e3
        verdict(
            BENCH,
            f"pipeline TTFT error beyond a bare httpx client, concurrency {concurrency}, median",
            added,
            TARGET_MS,
            "ms",
            digits=3,
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_mode(argv, __doc__.splitlines()[0])
    print(header(f"TTFT over HTTP: pipeline vs bare httpx vs GuideLLM ({args.mode} mode)"))
    print(
        f"loopback server sends its first delta {DELAY * 1e3:g} ms after reading the request;"
        " err = client TTFT - server's own (p50 - p50, p99 - p99); paired = median per request"
    )
    with tempfile.TemporaryDirectory() as work, serve(DELAY) as root:
        anyio.run(_run, args.mode, root, Path(work))
    return 0


if __name__ == "__main__":
    sys.exit(main())
