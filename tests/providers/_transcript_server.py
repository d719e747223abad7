"""A real HTTP/1.1 server on loopback that replays protocol transcripts byte for byte.

Each reply is a status, headers and a list of steps: `bytes` are written as they are (one
HTTP chunk each, with chunked transfer encoding), a `float` pauses that many seconds, a
`threading.Event` holds the stream until the test sets it (or aborts the connection after
`HOLD_LIMIT_S`, so a provider that buffers fails instead of hanging; a `threading.Barrier`
holds until that many connections reached it), `RESET` aborts the
connection with a TCP reset, and an `Endless` source writes its pieces until the client hangs
up (a hostile server). A reply with `reset_before_head` resets the connection before a byte of
it is sent; one with `keep_alive` leaves the connection open for the next request (each
request records the serial number of its connection). `open_now`/`max_open` count the
connections open at once. It runs in its own thread, so it works under any event loop.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import anyio

__all__ = [
    "HOLD_LIMIT_S",
    "Pausing",
    "RESET",
    "Recorded",
    "Endless",
    "Reply",
    "TranscriptServer",
    "ndjson",
    "sse",
]

HOLD_LIMIT_S = 5.0


class _Reset:
    def __repr__(self) -> str:
        return "RESET"


RESET = _Reset()


@dataclass
class Endless:
    """Writes `piece` again and again (one HTTP chunk each) until the client hangs up or
    `limit_bytes` were sent; `sent` counts what went out."""

    piece: bytes
    limit_bytes: int = 1 << 31
    sent: int = 0


Step = bytes | float | threading.Event | threading.Barrier | _Reset | Endless


def sse(obj: Any, *, newline: str = "\n") -> bytes:
    """One server-sent event carrying `obj` as JSON (or a string as is)."""
    data = obj if isinstance(obj, str) else json.dumps(obj)
    return f"data: {data}{newline}{newline}".encode()


def ndjson(obj: Any) -> bytes:
    """One NDJSON line."""
    return (json.dumps(obj) + "\n").encode()


@dataclass
class Reply:
    """What the server sends for one request."""

    steps: list[Step] = field(default_factory=list)
    status: int = 200
    content_type: str = "text/event-stream"
    chunked: bool = True
    headers: dict[str, str] = field(default_factory=dict)
    reset_before_head: bool = False
    keep_alive: bool = False


@dataclass
class Recorded:
    """A request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    connection: int = 0


class TranscriptServer:
    """Serves queued replies in order, one per connection (`Connection: close`)."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[Recorded] = []
        self._replies: deque[Reply] = deque()
        self._holds: list[threading.Event] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._count_lock = threading.Lock()
        self.connections = 0
        self.open_now = 0
        self.max_open = 0
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def add(self, *replies: Reply) -> None:
        self._replies.extend(replies)
        for reply in replies:
            self._holds += [step for step in reply.steps if isinstance(step, threading.Event)]

    def close(self) -> None:
        """Stop accepting, release every hold and wait for the connections to finish."""
        self._stop.set()
        for hold in self._holds:
            hold.set()
        self._accepting.join()
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=HOLD_LIMIT_S + 1)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(HOLD_LIMIT_S)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._count_lock:
            self.connections += 1
            serial = self.connections
            self.open_now += 1
            self.max_open = max(self.max_open, self.open_now)
        try:
            while self._serve_one(conn, serial):
                pass
        except OSError:
            conn.close()
        finally:
            with self._count_lock:
                self.open_now -= 1

    def _serve_one(self, conn: socket.socket, serial: int) -> bool:
        """Answer one request; True when the connection stays open for another."""
        request = _read_request(conn)
        if request is None:
            conn.close()
            return False
        request.connection = serial
        self.requests.append(request)
        reply = self._replies.popleft() if self._replies else Reply(status=599)
        if reply.reset_before_head:
            _step(conn, RESET, chunked=False)
            return False
        if not _send(conn, reply):
            return False
        if not reply.keep_alive:
            conn.close()
        return reply.keep_alive


def _read_request(conn: socket.socket) -> Recorded | None:
    """The next request, or None when the client closed the connection first."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece:
            return None
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    while len(body) < int(headers.get("content-length", "0")):
        body += conn.recv(65536)
    method, path, _ = request_line.split(" ", 2)
    return Recorded(method, path, headers, json.loads(body) if body else None)


def _send(conn: socket.socket, reply: Reply) -> bool:
    """Write the reply; returns False when it ended with a reset (the socket is then closed)."""
    head = [f"HTTP/1.1 {reply.status} Status", f"Content-Type: {reply.content_type}"]
    head.append("Connection: keep-alive" if reply.keep_alive else "Connection: close")
    head += [f"{name}: {value}" for name, value in reply.headers.items()]
    if reply.chunked:
        head.append("Transfer-Encoding: chunked")
    else:
        length = sum(len(step) for step in reply.steps if isinstance(step, bytes))
        head.append(f"Content-Length: {length}")
    conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    for step in reply.steps:
        if not _step(conn, step, chunked=reply.chunked):
            return False
    if reply.chunked:
        conn.sendall(b"0\r\n\r\n")
    return True


def _step(conn: socket.socket, step: Step, *, chunked: bool) -> bool:
    if isinstance(step, Endless):
        data = b"%x\r\n%s\r\n" % (len(step.piece), step.piece) if chunked else step.piece
        try:
            while step.sent < step.limit_bytes:
                conn.sendall(data)
                step.sent += len(step.piece)
        except OSError:
            conn.close()
            return False
    elif isinstance(step, bytes):
        conn.sendall(b"%x\r\n%s\r\n" % (len(step), step) if chunked else step)
    elif isinstance(step, float):
        time.sleep(step)
    elif isinstance(step, threading.Event) and not step.wait(HOLD_LIMIT_S):
        step = RESET
    elif isinstance(step, threading.Barrier):
        try:
            step.wait(HOLD_LIMIT_S)
        except threading.BrokenBarrierError:
            step = RESET
    if step is RESET:
        # SO_LINGER with a zero timeout makes close() send RST: a reset, not a clean end.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        return False
    return True


class Pausing:
    """A provider passed through, pausing `pause_s` after each reasoning chunk was taken (so
    the answer's stamp is at least that much later than the thinking's, however the loop or
    the machine is loaded)."""

    supports_streaming = True

    def __init__(self, provider: Any, pause_s: float = 0.05) -> None:
        self.provider = provider
        self.pause_s = pause_s

    async def stream(self, prompt: str) -> Any:
        async for item in self.provider.stream(prompt):
            yield item
            if getattr(item, "reasoning", ""):
                await anyio.sleep(self.pause_s)
