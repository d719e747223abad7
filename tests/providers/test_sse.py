"""The server-sent events decoder: the WHATWG field rules, one event per blank line, a cap."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from orket_pipeline.providers._sse import EventTooLarge, ServerSentEvent, SSEDecoder, aiter_sse


def decode_all(lines: list[str], max_data: int | None = None) -> list[ServerSentEvent]:
    decoder = SSEDecoder(max_data)
    events = [event for line in lines if (event := decoder.decode(line)) is not None]
    last = decoder.flush()
    return events if last is None else [*events, last]


class TestDecoder:
    def test_a_blank_line_dispatches_the_data_gathered(self) -> None:
        assert decode_all(["data: one", "", "data: two", ""]) == [
            ServerSentEvent("message", "one"),
            ServerSentEvent("message", "two"),
        ]

    def test_data_lines_join_with_newlines(self) -> None:
        assert decode_all(["data: a", "data:b", "data:  c", ""]) == [
            ServerSentEvent("message", "a\nb\n c")  # one leading space is dropped, no more
        ]

    def test_comments_ids_retries_and_unknown_fields_are_ignored(self) -> None:
        lines = [": keep-alive", "id: 7", "retry: 100", "foo: bar", "data: x", ""]
        assert decode_all(lines) == [ServerSentEvent("message", "x")]

    def test_the_event_field_names_the_event_and_resets_after_it(self) -> None:
        lines = ["event: error", "data: {}", "", "data: y", ""]
        assert decode_all(lines) == [
            ServerSentEvent("error", "{}"),
            ServerSentEvent("message", "y"),
        ]

    def test_a_field_without_colon_is_a_field_with_an_empty_value(self) -> None:
        assert decode_all(["data", "data", ""]) == [ServerSentEvent("message", "\n")]

    def test_a_blank_line_without_data_dispatches_nothing(self) -> None:
        assert decode_all(["event: ping", "", "", ": only a comment", ""]) == []

    def test_an_event_left_open_at_the_end_is_dispatched_by_flush(self) -> None:
        assert decode_all(["data: last"]) == [ServerSentEvent("message", "last")]

    def test_separators_other_than_newline_stay_inside_the_data(self) -> None:
        data = 'data: {"content": "a\u2028b\u0085c\u2029d\x1ce"}'
        assert decode_all([data, ""]) == [
            ServerSentEvent("message", '{"content": "a\u2028b\u0085c\u2029d\x1ce"}')
        ]


class TestCap:
    def test_an_event_over_max_data_raises(self) -> None:
        decoder = SSEDecoder(max_data=10)
        decoder.decode("data: 12345")
        with pytest.raises(EventTooLarge, match="10 characters"):
            decoder.decode("data: 67890")

    def test_the_count_starts_again_after_each_event(self) -> None:
        lines = ["data: 12345678", ""] * 5
        assert len(decode_all(lines, max_data=10)) == 5

    def test_no_cap_by_default(self) -> None:
        assert decode_all(["data: " + "x" * 1_000_000, ""])[0].data == "x" * 1_000_000


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["message", "error", "ping"]),
            st.lists(st.text(alphabet=st.characters(blacklist_characters="\n\r")), min_size=1),
        ),
        max_size=5,
    )
)
def test_any_events_written_as_lines_decode_to_themselves(
    events: list[tuple[str, list[str]]],
) -> None:
    lines: list[str] = []
    for name, data in events:
        lines += [f"event: {name}", *(f"data: {item}" for item in data), ""]
    assert decode_all(lines) == [ServerSentEvent(name, "\n".join(data)) for name, data in events]


async def source(lines: list[str], gate: anyio.Event | None = None) -> AsyncGenerator[str, None]:
    for line in lines:
        yield line
    if gate is not None:
        await gate.wait()


@pytest.mark.anyio
async def test_aiter_sse_yields_each_event_before_the_stream_ends() -> None:
    gate = anyio.Event()
    events: AsyncIterator[ServerSentEvent] = aiter_sse(source(["data: a", ""], gate))
    with anyio.fail_after(2):
        assert await events.__anext__() == ServerSentEvent("message", "a")
    gate.set()
    assert [event async for event in events] == []


@pytest.mark.anyio
async def test_aiter_sse_raises_at_the_cap_and_abandons_its_lines() -> None:
    lines = source(["data: 12345", "data: 67890", "data: more"], anyio.Event())
    with pytest.raises(EventTooLarge):
        async for _ in aiter_sse(lines, max_data=10):
            pass
    assert lines.ag_frame is None  # finished, not left for the garbage collector
