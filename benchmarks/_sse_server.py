"""A loopback OpenAI-compatible chat-completions server for the benchmarks, run as a subprocess.

`python -m benchmarks._sse_server [--chunks N]` listens on 127.0.0.1 (a free port), prints the
port on its first line, and answers `POST /v1/chat/completions` until stdin closes or it is
terminated. A streaming request gets server-sent events over HTTP/1.1 chunked encoding: a
role-only delta, N content deltas (a typical model output cut in N), a finish chunk, a usage
chunk when `stream_options.include_usage` asks for it, and `data: [DONE]`; each event is one
HTTP chunk, written and drained on its own, as a model server emits tokens. A non-streaming
request gets the whole completion as JSON. Connections are kept alive.

It runs in its own process so that the CPU time a benchmark reads with `time.process_time()`
is the client's alone. It only ever binds 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Iterator

from benchmarks._common import server_process
from benchmarks._fixtures import CODE_OUTPUT, split_chunks

__all__ = ["main", "serve"]


def _event(obj: object) -> bytes:
    data = b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


def _chunk(choices: list[dict[str, object]], usage: object = None) -> dict[str, object]:
    chunk: dict[str, object] = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "bench",
        "choices": choices,
    }
    if usage is not None:
        chunk["usage"] = usage
    return chunk


_USAGE = {"prompt_tokens": 12, "completion_tokens": 180, "total_tokens": 192}


def _stream_events(chunks: tuple[str, ...], include_usage: bool) -> list[bytes]:
    events = [_event(_chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}}]))]
    events += [
        _event(_chunk([{"index": 0, "delta": {"content": text}, "finish_reason": None}]))
        for text in chunks
    ]
    events.append(_event(_chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}])))
    if include_usage:
        events.append(_event(_chunk([], usage=_USAGE)))
    events.append(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")
    return events


def _completion() -> bytes:
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": CODE_OUTPUT},
                "finish_reason": "stop",
            }
        ],
        "usage": _USAGE,
    }
    return json.dumps(body).encode()


_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


async def _serve_one(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, chunks: tuple[str, ...]
) -> None:
    streams = {flag: _stream_events(chunks, flag) for flag in (False, True)}
    completion = _completion()
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            request = json.loads(await reader.readexactly(length)) if length else {}
            if not head.startswith(b"POST ") or b"/chat/completions" not in head.split(b"\r\n")[0]:
                writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
                continue
            if request.get("stream"):
                usage = bool((request.get("stream_options") or {}).get("include_usage"))
                writer.write(_STREAM_HEAD)
                for event in streams[usage]:
                    writer.write(event)
                    await writer.drain()
            else:
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(completion), completion)
                )
                await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _main(chunks: int) -> None:
    parts = split_chunks(CODE_OUTPUT, chunks)
    server = await asyncio.start_server(
        lambda r, w: _serve_one(r, w, parts), host="127.0.0.1", port=0
    )
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    loop = asyncio.get_running_loop()
    # Stop when the parent closes our stdin (or dies): never outlive the benchmark.
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


@contextlib.contextmanager
def serve(chunks: int = 8) -> Iterator[str]:
    """Start the server in a subprocess; yield its API root (`http://127.0.0.1:PORT/v1`).

    Blocks until the server listens; the server stops when the block ends (its stdin closes).
    """
    with server_process("benchmarks._sse_server", "--chunks", str(chunks)) as port:
        yield f"http://127.0.0.1:{port}/v1"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=8, help="content deltas per reply")
    args = parser.parse_args(argv)
    asyncio.run(_main(args.chunks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
