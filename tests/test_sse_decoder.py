"""The SSE decoder follows the WHATWG EventSource parsing rules, whatever the chunking of its input."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.sse import Comment, Event, EventTooLarge, SSEDecoder


def decode(data: bytes, chunks: list[int] | None = None, **kw) -> tuple[list, bool]:
    decoder = SSEDecoder(**kw)
    out = []
    if chunks is None:
        out += decoder.feed(data)
    else:
        pos = 0
        for size in chunks:
            out += decoder.feed(data[pos : pos + size])
            pos += size
        out += decoder.feed(data[pos:])
    return out, decoder.close()


def events(data: bytes) -> list[Event]:
    return [x for x in decode(data)[0] if isinstance(x, Event)]


def test_data_lines_are_joined_with_lf_and_dispatched_on_blank_line():
    assert events(b"data: a\ndata: b\n\n") == [Event("message", "a\nb")]


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending_ends_a_line(ending):
    stream = b"event: x" + ending + b"data: 1" + ending + ending + b"data: 2" + ending + ending
    assert events(stream) == [Event("x", "1"), Event("message", "2")]


def test_cr_at_end_of_one_read_and_lf_at_start_of_next_are_one_line_end():
    out, _ = decode(b"data: 1\r\ndata: 2\r\n\r\n", chunks=[8])  # the split falls between \r and \n
    assert out == [Event("message", "1\n2")]


def test_lone_cr_then_a_read_starting_with_lf_is_still_two_line_ends_when_lf_is_not_adjacent():
    # "\r" ends line one; a following "\n" right after it belongs to it; a later "\n" is a blank line
    out, _ = decode(b"data: 1\r\n\ndata: 2\r\r", chunks=[8, 1])
    assert out == [Event("message", "1"), Event("message", "2")]


def test_one_leading_bom_is_ignored_but_a_second_is_data():
    bom = "\ufeff".encode()
    assert events(bom + b"data: x\n\n") == [Event("message", "x")]
    # a second BOM starts the first line: the field name is then "\ufeffdata", an unknown field
    assert events(bom + bom + b"data: x\n\n") == []


def test_bom_split_across_reads_is_still_ignored():
    bom = "\ufeff".encode()
    out, _ = decode(bom + b"data: x\n\n", chunks=[1, 1])
    assert out == [Event("message", "x")]


def test_comments_are_returned_as_comments_and_never_dispatched():
    out, unfinished = decode(b": ping\n\n:\n\n")
    assert out == [Comment(" ping"), Comment("")]
    assert not unfinished


def test_only_one_leading_space_is_removed_from_a_value():
    assert events(b"data:  two spaces\n\ndata:none\n\n") == [Event("message", " two spaces"), Event("message", "none")]


def test_a_line_without_colon_is_a_field_with_empty_value():
    # "data" alone appends an empty line to the data buffer: the event dispatches with empty data
    assert events(b"data\n\n") == [Event("message", "")]
    assert events(b"data\ndata\n\n") == [Event("message", "\n")]


def test_empty_data_line_dispatches_empty_data_but_a_block_without_data_does_not():
    assert events(b"data:\n\n") == [Event("message", "")]
    assert events(b"event: ping\n\n") == []
    assert events(b"id: 7\n\n") == []


def test_event_type_does_not_leak_into_the_next_event():
    assert events(b"event: a\ndata: 1\n\ndata: 2\n\n") == [Event("a", "1"), Event("message", "2")]


def test_event_type_of_an_undispatched_block_is_dropped():
    assert events(b"event: a\n\ndata: 2\n\n") == [Event("message", "2")]


def test_id_persists_across_events_and_is_ignored_when_it_contains_nul():
    got = events(b"id: 1\ndata: a\n\ndata: b\n\nid: x\x00y\ndata: c\n\nid\ndata: d\n\n")
    assert [e.id for e in got] == ["1", "1", "1", ""]


def test_retry_takes_ascii_digits_only():
    decoder = SSEDecoder()
    decoder.feed(b"retry: 1500\n\n")
    assert decoder.retry == 1500
    decoder.feed(b"retry: 15x\n\nretry: \xc2\xb2\n\nretry: -1\n\n")  # "²" is a digit to str.isdigit, not to the spec
    assert decoder.retry == 1500


def test_unknown_fields_are_ignored():
    assert events(b"foo: bar\ndata: x\nbaz\n\n") == [Event("message", "x")]


def test_field_names_are_case_sensitive():
    assert events(b"Data: x\n\n") == []


def test_unfinished_event_at_end_of_stream_is_discarded_and_reported():
    out, unfinished = decode(b"data: 1\n\ndata: 2\n")
    assert out == [Event("message", "1")]
    assert unfinished


def test_a_partial_line_at_end_of_stream_is_reported_as_unfinished():
    out, unfinished = decode(b"data: 1\n\ndat")
    assert out == [Event("message", "1")] and unfinished


def test_a_stream_ending_after_a_blank_line_is_finished():
    assert decode(b"data: 1\n\n: bye\n")[1] is False


def test_invalid_utf8_is_replaced_not_fatal():
    assert events(b"data: \xff\xfeok\n\n") == [Event("message", "\ufffd\ufffdok")]


def test_multibyte_character_split_across_reads():
    text = "data: héllo ✓\n\n".encode()
    for cut in range(1, len(text)):
        out, _ = decode(text, chunks=[cut])
        assert out == [Event("message", "héllo ✓")]


def test_a_line_over_the_limit_raises_even_when_it_never_ends():
    decoder = SSEDecoder(max_event_chars=1000)
    with pytest.raises(EventTooLarge):
        for _ in range(100):
            decoder.feed(b"a" * 100)


def test_an_event_over_the_limit_raises_even_with_short_lines():
    decoder = SSEDecoder(max_event_chars=1000)
    with pytest.raises(EventTooLarge):
        for _ in range(100):
            decoder.feed(b"data: " + b"x" * 50 + b"\n")


def test_events_within_the_limit_pass():
    decoder = SSEDecoder(max_event_chars=1000)
    for _ in range(100):
        assert decoder.feed(b"data: " + b"x" * 500 + b"\n\n") == [Event("message", "x" * 500)]


# ---- random chunkings: the same bytes, cut anywhere, give the same events ------------------------------------------

FIELD_LINES = st.sampled_from(
    [
        "data: token",
        "data:",
        "data",
        "data:  spaced",
        "event: delta",
        "event:",
        "id: 42",
        "id: a\0b",
        "retry: 300",
        ": ping",
        ":",
        "unknown: x",
        "data: héllo ✓",
        "data: {\"choices\":[{\"delta\":{\"content\":\"1\"}}]}",
        "data: [DONE]",
        "",
    ]
)


@st.composite
def streams(draw):
    lines = draw(st.lists(FIELD_LINES, min_size=1, max_size=40))
    endings = draw(st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=len(lines), max_size=len(lines)))
    bom = draw(st.booleans())
    text = ("\ufeff" if bom else "") + "".join(line + end for line, end in zip(lines, endings))
    return text.encode()


@st.composite
def stream_and_cuts(draw):
    data = draw(streams())
    cuts = draw(st.lists(st.integers(min_value=0, max_value=len(data)), max_size=20))
    sizes, last = [], 0
    for cut in sorted(cuts):
        sizes.append(cut - last)
        last = cut
    return data, sizes


@settings(max_examples=400, deadline=None)
@given(stream_and_cuts())
def test_any_chunking_gives_the_same_events_as_one_read(case):
    data, sizes = case
    assert decode(data, sizes) == decode(data)


@settings(max_examples=200, deadline=None)
@given(streams())
def test_byte_at_a_time_gives_the_same_events_as_one_read(data):
    assert decode(data, [1] * len(data)) == decode(data)


def test_a_cr_crlf_mix_at_chunk_edges_matches_reference():
    data = b"data: a\r\r\ndata: b\r\n\r\n"
    # "\r" ends "data: a", then "\r\n" is a blank line (dispatch "a"), "data: b", blank line (dispatch "b")
    assert events(data) == [Event("message", "a"), Event("message", "b")]
    for cut in range(1, len(data)):
        assert decode(data, [cut])[0] == [Event("message", "a"), Event("message", "b")]
