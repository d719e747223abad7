"""The HTTP plumbing: bodies decoded in bounded steps, lines split on `\\n` only, caps that
name themselves, replies dropped without waiting, error messages on one line."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Sequence

import anyio
import anyio.lowlevel
import httpx
import pytest

from orket_pipeline.providers import ProviderResponseError, ResponseLimits
from orket_pipeline.providers._http import HTTPProvider, excerpt, message_of
from orket_pipeline.providers._reading import abandon, finish

MIB = 1 << 20


class Pieces(httpx.AsyncByteStream):
    """A body that arrives in the given pieces, each after a checkpoint as a socket read
    has; `read` counts the bytes handed out."""

    def __init__(self, pieces: Sequence[bytes]) -> None:
        self.pieces = pieces
        self.read = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            await anyio.lowlevel.checkpoint()
            self.read += len(piece)
            yield piece


def response(pieces: Sequence[bytes], encoding: str | None = None) -> httpx.Response:
    headers = {"content-encoding": encoding} if encoding else {}
    request = httpx.Request("POST", "http://127.0.0.1/x")
    return httpx.Response(200, headers=headers, stream=Pieces(pieces), request=request)


def provider(**limits: int) -> HTTPProvider:
    return HTTPProvider(
        "test", supports_streaming=True, timeout=1.0, limits=ResponseLimits(**limits)
    )


async def lines_of(reply: httpx.Response, **limits: int) -> list[str]:
    return [line async for line in provider(**limits)._lines(reply)]


async def body_of(reply: httpx.Response, **limits: int) -> bytes:
    return b"".join([part async for part in provider(**limits)._body(reply)])


pytestmark = pytest.mark.anyio


class TestLines:
    async def test_split_on_newline_only_keeping_unicode_separators(self) -> None:
        text = 'data: {"c": "a\u2028b\u0085c\u2029d\x0b\x0c\x1ce"}\r\n\nnext\n'
        assert await lines_of(response([text.encode()])) == [
            'data: {"c": "a\u2028b\u0085c\u2029d\x0b\x0c\x1ce"}',
            "",
            "next",
        ]

    async def test_lines_and_characters_split_across_pieces_are_joined(self) -> None:
        data = "héllo\r\nwörld\n€ last".encode()
        pieces = [data[i : i + 1] for i in range(len(data))]
        assert await lines_of(response(pieces)) == ["héllo", "wörld", "€ last"]

    async def test_runs_of_blank_lines_come_out_as_one(self) -> None:
        # One blank line dispatches an event, more dispatch nothing (SSE), and NDJSON skips
        # them: a flood of newlines costs one regex match, not millions of lines.
        data = b"a\n\n\n\n\r\n\nb\n\nc\n" + b"\n" * 100_000
        assert await lines_of(response([data])) == ["a", "", "b", "", "c", ""]

    async def test_a_carriage_return_inside_a_line_is_kept(self) -> None:
        assert await lines_of(response([b"a\rb\r\n"])) == ["a\rb"]

    async def test_a_line_at_the_cap_passes_and_one_byte_more_fails(self) -> None:
        assert await lines_of(response([b"x" * 10 + b"\n"]), line_bytes=10) == ["x" * 10]
        with pytest.raises(ProviderResponseError, match=r"a line passed the 10 bytes cap"):
            await lines_of(response([b"x" * 11 + b"\n"]), line_bytes=10)

    async def test_a_line_without_end_fails_at_the_cap_without_reading_on(self) -> None:
        stream = Pieces([b"x" * 1024] * 10_000)
        reply = httpx.Response(200, stream=stream, request=httpx.Request("GET", "http://h/"))
        with pytest.raises(ProviderResponseError, match=r"ResponseLimits\.line_bytes"):
            await lines_of(reply, line_bytes=4096)
        assert stream.read <= 4096 + 1024

    async def test_the_cap_names_mib(self) -> None:
        with pytest.raises(ProviderResponseError, match=r"passed the 1 MiB cap"):
            await lines_of(response([b"x" * (MIB + 1)]))


class TestBody:
    async def test_identity_passes_through(self) -> None:
        assert await body_of(response([b"ab", b"cd"])) == b"abcd"

    @pytest.mark.parametrize(
        ("encoding", "encode"),
        [
            ("gzip", gzip.compress),
            ("x-gzip", gzip.compress),
            ("deflate", zlib.compress),
            ("deflate", lambda data: zlib.compress(data)[2:-4]),  # raw deflate, no wrapper
            ("GZip ", gzip.compress),
        ],
    )
    async def test_gzip_and_deflate_are_undone(self, encoding: str, encode: object) -> None:
        data = b"line\n" * 50_000
        packed = encode(data)  # type: ignore[operator]
        pieces = [packed[i : i + 1000] for i in range(0, len(packed), 1000)]
        assert await body_of(response(pieces, encoding)) == data

    async def test_concatenated_gzip_members_are_all_read(self) -> None:
        assert await body_of(response([gzip.compress(b"a") + gzip.compress(b"b")], "gzip")) == (
            b"ab"
        )

    async def test_output_comes_in_steps_of_at_most_64_kib(self) -> None:
        packed = gzip.compress(bytes(10 * MIB))
        parts = [part async for part in provider()._body(response([packed], "gzip"))]
        assert max(map(len, parts)) <= 65536
        assert sum(map(len, parts)) == 10 * MIB

    async def test_a_gzip_bomb_stops_at_the_decompressed_cap(self) -> None:
        member = gzip.compress(bytes(16 * MIB))
        bomb = response([member] * 16, "gzip")  # 256 MiB once inflated, 256 KiB on the wire
        with pytest.raises(
            ProviderResponseError,
            match=r"the body passed the 128 MiB cap \(ResponseLimits\.decompressed_bytes\)",
        ):
            await body_of(bomb)

    async def test_the_wire_size_is_capped(self) -> None:
        with pytest.raises(ProviderResponseError, match=r"the reply passed the 100 bytes cap"):
            await body_of(response([b"x" * 60, b"x" * 60]), response_bytes=100)

    async def test_corrupt_and_unknown_encodings_fail_in_one_line(self) -> None:
        with pytest.raises(ProviderResponseError, match=r"test: undecodable gzip body"):
            await body_of(response([b"not gzip at all"], "gzip"))
        with pytest.raises(ProviderResponseError, match=r"unsupported Content-Encoding 'br'"):
            await body_of(response([b"x"], "br"))

    async def test_only_decodable_encodings_are_asked_for(self) -> None:
        assert provider()._headers["Accept-Encoding"] == "gzip, deflate"


def test_limits_have_the_documented_defaults_and_refuse_nonsense() -> None:
    assert ResponseLimits() == ResponseLimits(
        line_bytes=MIB, response_bytes=128 * MIB, decompressed_bytes=128 * MIB
    )
    with pytest.raises(ValueError, match="line_bytes must be at least 1 byte"):
        ResponseLimits(line_bytes=0)


class TestAbandon:
    async def test_a_reply_is_dropped_at_once_and_every_generator_finishes(self) -> None:
        async def inner() -> AsyncGenerator[int, None]:
            yield 1
            await anyio.sleep_forever()  # a server that never ends its reply

        async def outer(source: AsyncGenerator[int, None]) -> AsyncGenerator[int, None]:
            async for item in source:
                yield item

        source = inner()
        top = outer(source)
        assert await top.__anext__() == 1
        with anyio.fail_after(5):  # a bound on a hang, not a timing
            await abandon(top)
        assert top.ag_frame is None
        assert source.ag_frame is None

    async def test_errors_while_dropping_are_ignored(self) -> None:
        async def failing() -> AsyncGenerator[int, None]:
            yield 1
            raise OSError("reset")

        agen = failing()
        await agen.__anext__()
        await abandon(agen)
        assert agen.ag_frame is None

    async def test_an_exhausted_reply_is_fine(self) -> None:
        async def empty() -> AsyncGenerator[int, None]:
            return
            yield

        agen = empty()
        assert [x async for x in agen] == []
        await abandon(agen)


class TestFinish:
    async def test_an_end_that_comes_after_a_checkpoint_is_read_to_the_end(self) -> None:
        # The reply's end arrives after one more read (a separate TCP segment): `finish` reads
        # it, so the connection could go back to the pool; `abandon` would not wait for it.
        read: list[int] = []

        async def ending() -> AsyncGenerator[int, None]:
            for item in (1, 2, 3):
                await anyio.lowlevel.checkpoint()
                read.append(item)
                yield item

        agen = ending()
        await agen.__anext__()
        await finish(agen)
        assert read == [1, 2, 3] and agen.ag_frame is None

        dropped = ending()
        read.clear()
        await dropped.__anext__()
        await abandon(dropped)
        assert read == [1]

    async def test_a_reply_that_does_not_end_is_dropped_after_the_budget(self) -> None:
        async def held() -> AsyncGenerator[int, None]:
            yield 1
            await anyio.sleep_forever()

        agen = held()
        await agen.__anext__()
        with anyio.fail_after(5):  # a bound on a hang, not a timing
            await finish(agen, 0.01)
        assert agen.ag_frame is None


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"error": {"message": "bad max_tokens", "code": 400}}, "bad max_tokens"),
        ({"error": "model not found"}, "model not found"),
        ({"detail": "invalid api key"}, "invalid api key"),
        ({"object": "error", "message": "too long"}, "too long"),
        ('{"error": {"message": "inner"}}', "inner"),
        ("plain text", "plain text"),
        ("[" * 100_000, "[" * 100_000),  # nested too deeply to decode: kept as text
        ([1, 2], "[1,2]"),
    ],
)
def test_message_of_finds_the_human_message(obj: object, message: str) -> None:
    assert message_of(obj) == message


def test_excerpt_is_one_line_and_capped() -> None:
    assert excerpt("a\n b\t\tc") == "a b c"
    assert excerpt("x" * 500) == "x" * 199 + "…"
