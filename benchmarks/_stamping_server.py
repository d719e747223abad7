"""A loopback OpenAI-compatible server that stamps its own time to first chunk, as a subprocess.

`python -m benchmarks._stamping_server [--delay S] [--chunks N]` listens on 127.0.0.1 (a free
port), prints the port on its first line, and serves until stdin closes:

* `POST /v1/chat/completions` (and `/v1/completions`, for clients that use it): `"stream": true`
  gets server-sent events over chunked HTTP/1.1, kept alive: a role-only delta, then after
  `--delay` seconds N content deltas, a finish chunk, a usage chunk (when asked) and `[DONE]`;
  otherwise the whole completion as JSON after the delay.
* `GET /v1/models`: a one-model list (what `OpenAIProvider.connect()` asks); `GET /health`.
* `GET /stats`: `{"requests": [[key, t_received, t_first_sent], ...], "max_in_flight": n,
  "connections": n}` (connections accepted) since the last `POST /reset`; the key is the prompt (the last message's content), the stamps are
  `time.perf_counter()` (CLOCK_MONOTONIC on Linux, the same clock in every process), taken when
  the request was read and just before the first content event was written.

Each request is its own task, so concurrent requests are served concurrently; `max_in_flight`
is the most requests between their arrival and their last byte at once. It only binds 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Iterator
from time import perf_counter

from benchmarks._common import server_process
from benchmarks._fixtures import CODE_OUTPUT, split_chunks

__all__ = ["main", "serve"]

_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)
_USAGE = {"prompt_tokens": 12, "completion_tokens": 180, "total_tokens": 192}


def _event(obj: object) -> bytes:
    data = b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


def _json_reply(obj: object) -> bytes:
    body = json.dumps(obj).encode()
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
    return head % len(body) + body


class _State:
    def __init__(self, delay: float, chunks: tuple[str, ...]) -> None:
        self.delay = delay
        self.chunks = chunks
        self.log: list[tuple[str, float, float]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections = 0


def _choice(chat: bool, text: str | None, finish: str | None = None) -> dict[str, object]:
    if chat:
        delta = {} if text is None else {"content": text}
        return {"index": 0, "delta": delta, "finish_reason": finish}
    return {"index": 0, "text": text or "", "finish_reason": finish}


def _chunk(chat: bool, choices: list[dict[str, object]], **more: object) -> bytes:
    kind = "chat.completion.chunk" if chat else "text_completion"
    return _event({"id": "b", "object": kind, "model": "bench", "choices": choices, **more})


async def _stream(writer: asyncio.StreamWriter, state: _State, chat: bool, usage: bool) -> float:
    writer.write(_HEAD)
    if chat:
        writer.write(_chunk(chat, [{"index": 0, "delta": {"role": "assistant", "content": ""}}]))
    await writer.drain()
    await asyncio.sleep(state.delay)
    t_first = perf_counter()
    for text in state.chunks:
        writer.write(_chunk(chat, [_choice(chat, text)]))
        await writer.drain()
    writer.write(_chunk(chat, [_choice(chat, None, "stop")]))
    if usage:
        writer.write(_chunk(chat, [], usage=_USAGE))
    writer.write(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")
    await writer.drain()
    return t_first


async def _generation(writer: asyncio.StreamWriter, state: _State, path: str, body: bytes) -> None:
    t_received = perf_counter()
    request = json.loads(body or b"{}")
    chat = "chat" in path
    messages = request.get("messages") or [{"content": request.get("prompt", "")}]
    key = str(messages[-1].get("content", ""))
    state.in_flight += 1
    state.max_in_flight = max(state.max_in_flight, state.in_flight)
    try:
        if request.get("stream"):
            usage = bool((request.get("stream_options") or {}).get("include_usage"))
            t_first = await _stream(writer, state, chat, usage)
        else:
            await asyncio.sleep(state.delay)
            t_first = perf_counter()
            text = "".join(state.chunks)
            choice = {"index": 0, "message": {"role": "assistant", "content": text}}
            if not chat:
                choice = {"index": 0, "text": text}
            writer.write(_json_reply({"choices": [choice], "usage": _USAGE}))
            await writer.drain()
    finally:
        state.in_flight -= 1
    state.log.append((key, t_received, t_first))


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: _State) -> None:
    state.connections += 1
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            method, path, *_ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length) if length else b""
            if method == "POST" and path.endswith("completions"):
                await _generation(writer, state, path, body)
            elif path.endswith("/models"):
                writer.write(_json_reply({"object": "list", "data": [{"id": "bench"}]}))
            elif path == "/stats":
                writer.write(
                    _json_reply(
                        {
                            "requests": state.log,
                            "max_in_flight": state.max_in_flight,
                            "connections": state.connections,
                        }
                    )
                )
            elif path == "/reset":
                state.log, state.max_in_flight, state.connections = [], 0, 0
                writer.write(_json_reply({}))
            elif method == "GET" and path.endswith("/health"):
                writer.write(_json_reply({"status": "ok"}))  # GuideLLM's check
            else:
                writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _main(delay: float, chunks: int) -> None:
    state = _State(delay, split_chunks(CODE_OUTPUT, chunks))
    server = await asyncio.start_server(
        lambda r, w: _serve(r, w, state), host="127.0.0.1", port=0, backlog=1024
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    # Stop when the parent closes our stdin (or dies): never outlive the benchmark.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    server.close()


@contextlib.contextmanager
def serve(delay: float, chunks: int = 8) -> Iterator[str]:
    """Start the server in a subprocess; yield its root (`http://127.0.0.1:PORT`).

    Blocks until the server listens; the server stops when the block ends (its stdin closes).
    """
    args = ("--delay", str(delay), "--chunks", str(chunks))
    with server_process("benchmarks._stamping_server", *args) as port:
        yield f"http://127.0.0.1:{port}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=0.01, help="seconds to the first chunk")
    parser.add_argument("--chunks", type=int, default=8, help="content deltas per reply")
    args = parser.parse_args(argv)
    asyncio.run(_main(args.delay, args.chunks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
