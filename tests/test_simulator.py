"""The simulator, run for real on loopback: each wire format, every timing knob and every fault it can play."""

from __future__ import annotations

import asyncio
import json
import math
import re
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.simulator import DIALECT_PATHS, Params, RunningSimulator, timeline

ROOT = Path(__file__).resolve().parent.parent
FORMATS = list(DIALECT_PATHS)
PREAMBLE = {
    "openai-chat": ["role"],
    "openai-responses": [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ],
    "anthropic": ["message_start", "content_block_start", "ping"],
    "gemini": [],
    "generic": [],
}
END = {
    "openai-chat": ["finish", "usage", "[DONE]"],
    "openai-responses": [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ],
    "anthropic": ["content_block_stop", "message_delta", "message_stop"],
    "gemini": ["finish"],
    "generic": ["done"],
}
ERROR = {
    "openai-chat": "error",
    "openai-responses": "response.failed",
    "anthropic": "error",
    "gemini": "error",
    "generic": "error",
}
FAST = {"ttft": "0", "rate": "1000"}


# ---- a simulator process, and a client that records what arrived when ------------------------------------------------


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    """`python -m monitor.simulator --port 0`, as the benchmark runs it; yields the base URL it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor.simulator", "--port", "0"], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    line = proc.stdout.readline()
    match = re.fullmatch(r"sse-monitor simulator listening on (http://127\.0\.0\.1:(\d+))\n", line)
    if not match or match.group(2) == "0":
        proc.kill()
        pytest.fail(f"unexpected first line {line!r}")
    yield match.group(1)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=5)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as c:
        yield c


@dataclass
class Got:
    status: int
    headers: httpx.Headers
    chunks: list[tuple[float, bytes]]  # (seconds since the request was sent, raw bytes)
    headers_at: float
    error: Exception | None = None

    @property
    def body(self) -> bytes:
        return b"".join(c for _, c in self.chunks)

    @property
    def events(self) -> list[tuple[float, str, str]]:
        """(arrival, event type or ":" for a comment, data) of each event."""
        return parse(self.chunks)


def fetch(client: httpx.Client, url: str, method: str = "GET", **kw) -> Got:
    """One request, reading the raw body as it arrives; a transport error mid-body is kept, not raised."""
    t0 = time.monotonic()
    with client.stream(method, url, **kw) as r:
        got = Got(r.status_code, r.headers, [], time.monotonic() - t0)
        try:
            for chunk in r.iter_raw():
                got.chunks.append((time.monotonic() - t0, chunk))
        except httpx.TransportError as exc:
            got.error = exc
    return got


def parse(chunks: list[tuple[float, bytes]]) -> list[tuple[float, str, str]]:
    """A minimal SSE reader (LF only), stamping each event with the arrival of the chunk that completed it."""
    events, buf = [], ""
    for t, chunk in chunks:
        buf += chunk.decode()
        while "\n\n" in buf:
            block, buf = buf.split("\n\n", 1)
            if block.startswith(":"):
                events.append((t, ":", block[1:].strip()))
                continue
            fields = dict(line.split(": ", 1) for line in block.split("\n"))
            events.append((t, fields.get("event", ""), fields["data"]))
    return events


def label(fmt: str, name: str, data: str) -> str:
    """A short name for an event, the same across formats for the parts the tests compare."""
    if name == ":":
        return "ping" if data == "ping" else ":"
    if fmt == "openai-chat":
        if data == "[DONE]":
            return data
        obj = json.loads(data)
        if "error" in obj:
            return "error"
        if not obj["choices"]:
            return "usage"
        choice = obj["choices"][0]
        return "finish" if choice["finish_reason"] else "token" if choice["delta"].get("content") else "role"
    if fmt == "gemini":
        obj = json.loads(data)
        return "error" if "error" in obj else "finish" if obj["candidates"][0].get("finishReason") else "token"
    if fmt == "generic":
        return name or "token"
    return {"response.output_text.delta": "token", "content_block_delta": "token"}.get(name, name)


def labels(fmt: str, got: Got) -> list[str]:
    return [label(fmt, name, data) for _, name, data in got.events]


def url(base: str, fmt: str, **params: object) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{base}{DIALECT_PATHS[fmt]}" + (f"?{query}" if query else "")


def token_text(fmt: str, obj: dict) -> str:
    return {
        "openai-chat": lambda: obj["choices"][0]["delta"]["content"],
        "openai-responses": lambda: obj["delta"],
        "anthropic": lambda: obj["delta"]["text"],
        "gemini": lambda: obj["candidates"][0]["content"]["parts"][0]["text"],
        "generic": lambda: obj["token"],
    }[fmt]()


# ---- wire formats ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_streams_its_event_sequence(base: str, client: httpx.Client, fmt: str) -> None:
    before = time.monotonic()
    body = {"model": "m-test", "stream": True, "stream_options": {"include_usage": True}}
    got = fetch(client, url(base, fmt, tokens=3, **FAST), "POST", json=body)
    after = time.monotonic()
    assert got.status == 200 and got.error is None
    assert got.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert got.headers["cache-control"] == "no-cache"
    assert "x-accel-buffering" not in got.headers and "content-encoding" not in got.headers
    assert labels(fmt, got) == PREAMBLE[fmt] + ["token"] * 3 + END[fmt]
    objects = [json.loads(data) for _, _, data in got.events if data != "[DONE]"]
    tokens = [obj for (_, name, data), obj in zip(got.events, objects) if label(fmt, name, data) == "token"]
    assert [token_text(fmt, obj) for obj in tokens] == ["1\n", "2\n", "3\n"]
    assert all(before < obj["sim_sent"] < after for obj in objects)  # the simulator's send time, on our clock
    if fmt != "generic":  # gemini takes the model from the path, the others from the body
        assert ('"sim-1"' if fmt == "gemini" else '"m-test"') in json.dumps(objects[0])


def test_formats_carry_the_details_clients_read(base: str, client: httpx.Client) -> None:
    responses = [json.loads(d) for _, _, d in fetch(client, url(base, "openai-responses", tokens=2, **FAST)).events]
    assert [r["sequence_number"] for r in responses] == list(range(len(responses)))
    assert responses[1]["response"] == {
        "id": "resp_sim",
        "object": "response",
        "created_at": responses[1]["response"]["created_at"],
        "status": "in_progress",
        "model": "sim-1",
        "output": [],
    }
    assert responses[-1]["response"]["status"] == "completed"
    assert responses[-1]["response"]["usage"]["output_tokens"] == 2
    assert responses[-4]["text"] == "1\n2\n"

    anthropic = [json.loads(d) for _, _, d in fetch(client, url(base, "anthropic", tokens=2, **FAST)).events]
    assert anthropic[0]["message"]["id"] == "msg_sim" and anthropic[0]["message"]["role"] == "assistant"
    assert anthropic[-2]["delta"]["stop_reason"] == "end_turn" and anthropic[-2]["usage"] == {"output_tokens": 2}

    chat = fetch(client, url(base, "openai-chat", tokens=2, **FAST), "POST", json={"model": "x"})
    assert labels("openai-chat", chat) == ["role", "token", "token", "finish", "[DONE]"]  # usage only when asked
    first = json.loads(chat.events[0][2])
    assert first["id"] == "chatcmpl-sim" and first["object"] == "chat.completion.chunk"
    assert first["choices"] == [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]

    gemini = json.loads(fetch(client, url(base, "gemini", tokens=2, **FAST)).events[-1][2])
    assert gemini["candidates"][0]["content"] == {"parts": [{"text": ""}], "role": "model"}
    assert gemini["usageMetadata"]["candidatesTokenCount"] == 2


@pytest.mark.parametrize("query", ["?alt=sse&", "?"])
def test_gemini_route_takes_the_model_from_the_path(base: str, client: httpx.Client, query: str) -> None:
    got = fetch(client, f"{base}/v1beta/models/gemini-2.0-flash:streamGenerateContent{query}tokens=1&ttft=0", "POST")
    assert got.status == 200
    assert json.loads(got.events[0][2])["modelVersion"] == "gemini-2.0-flash"
    assert labels("gemini", got) == ["token", "finish"]


def test_health_and_unknown_paths(base: str, client: httpx.Client) -> None:
    health = client.get(f"{base}/-/healthy")
    assert (health.status_code, health.text) == (200, "ok")
    assert client.get(f"{base}/v1/nothing").status_code == 404


# ---- timing ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_first_token_comes_at_ttft_and_the_preamble_at_once(base: str, client: httpx.Client, fmt: str) -> None:
    got = fetch(client, url(base, fmt, ttft=0.25, tokens=1), "POST")
    arrivals = {label(fmt, name, data): t for t, name, data in reversed(got.events)}  # first arrival of each kind
    assert 0.25 <= arrivals["token"] < 0.30
    assert all(t < 0.1 for kind, t in arrivals.items() if kind in PREAMBLE[fmt])
    assert got.headers_at < 0.1


def test_tokens_follow_an_absolute_schedule(base: str, client: httpx.Client) -> None:
    got = fetch(client, url(base, "generic", ttft=0.05, tokens=15, rate=50))
    tokens = [(t, json.loads(data)["sim_sent"]) for t, name, data in got.events if name == ""]
    assert len(tokens) == 15
    sent0 = tokens[0][1]
    for i, (_, sent) in enumerate(tokens):
        assert sent - sent0 == pytest.approx(i / 50, abs=0.008)  # no drift: token 15 is as exact as token 2
    start = time.monotonic() - got.chunks[-1][0]  # roughly when the request was sent, on the shared clock
    for arrival, sent in tokens:
        assert -0.002 <= (start + arrival) - sent < 0.03  # sim_sent is taken just before the bytes leave


def test_heartbeats_fill_every_wait_without_delaying_tokens(base: str, client: httpx.Client) -> None:
    got = fetch(client, url(base, "generic", ttft=0.25, tokens=2, rate=10, pause_after=1, pause=0.2, heartbeat=0.1))
    assert labels("generic", got) == ["ping", "ping", "token", "ping", "ping", "ping", "token", "done"]
    sent = [json.loads(data)["sim_sent"] for _, name, data in got.events if name == ""]
    assert sent[1] - sent[0] == pytest.approx(0.1 + 0.2, abs=0.01)
    assert b": ping\n\n" in got.body


def test_headers_delay_holds_back_the_response(base: str, client: httpx.Client) -> None:
    got = fetch(client, url(base, "generic", headers_delay=0.2, ttft=0.05, tokens=1))
    assert 0.2 <= got.headers_at < 0.3
    assert got.events[0][0] < 0.3  # the ttft had already passed: the token follows the headers at once


def test_endless_stream_keeps_going(base: str, client: httpx.Client) -> None:
    seen = 0
    with client.stream("GET", url(base, "generic", endless=1, rate=500, ttft=0)) as r:
        for line in r.iter_lines():
            seen += line.startswith("data:")
            if seen == 60:
                break
    assert seen == 60  # more than the default 20 tokens, and it would not stop by itself


# ---- ends and faults -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("drop_after", [0, 2])
def test_drop_after_cuts_the_connection(base: str, client: httpx.Client, drop_after: int) -> None:
    got = fetch(client, url(base, "openai-chat", tokens=5, drop_after=drop_after, **FAST))
    assert isinstance(got.error, httpx.RemoteProtocolError)
    assert labels("openai-chat", got) == ["role"] + ["token"] * drop_after


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_terminal_ends_cleanly_after_the_last_token(base: str, client: httpx.Client, fmt: str) -> None:
    got = fetch(client, url(base, fmt, tokens=3, no_terminal=1, **FAST))
    assert got.error is None
    assert labels(fmt, got) == PREAMBLE[fmt] + ["token"] * 3


@pytest.mark.parametrize("fmt", FORMATS)
def test_error_after_sends_the_error_event(base: str, client: httpx.Client, fmt: str) -> None:
    got = fetch(client, url(base, fmt, tokens=5, error_after=2, **FAST))
    assert got.error is None
    assert labels(fmt, got) == PREAMBLE[fmt] + ["token", "token", ERROR[fmt]]
    error = json.loads(got.events[-1][2])
    assert "simulated server error" in json.dumps(error) or "verload" in json.dumps(error)


@pytest.mark.parametrize(
    "fmt, status, shape",
    [
        ("openai-chat", 429, lambda b: b["error"]["type"] and "message" in b["error"] and "code" in b["error"]),
        ("openai-responses", 500, lambda b: b["error"]["type"] == "server_error"),
        ("anthropic", 529, lambda b: b["type"] == "error" and b["error"]["type"] == "overloaded_error"),
        ("gemini", 503, lambda b: b["error"]["code"] == 503 and b["error"]["status"] == "UNAVAILABLE"),
        ("generic", 502, lambda b: b["error"]["status"] == 502),
    ],
)
def test_status_replies_with_the_formats_error_body(base: str, client: httpx.Client, fmt, status, shape) -> None:
    r = client.post(url(base, fmt, status=status))
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    assert shape(r.json())


@pytest.mark.parametrize("ending, eol", [("crlf", b"\r\n"), ("cr", b"\r")])
def test_line_endings_are_used_on_the_wire(base: str, client: httpx.Client, ending: str, eol: bytes) -> None:
    got = fetch(client, url(base, "anthropic", tokens=2, ttft=0.15, heartbeat=0.12, line_ending=ending))
    body = got.body
    assert body.count(eol * 2) == 3 + 1 + 2 + 3  # preamble, one heartbeat, tokens, end
    if ending == "cr":
        assert b"\n" not in body
    else:
        assert body.count(b"\n") == body.count(b"\r\n") == body.count(b"\r")
    normal = parse([(0.0, body.replace(eol, b"\n"))])
    expected = PREAMBLE["anthropic"] + [":"] + ["content_block_delta"] * 2 + END["anthropic"]
    assert [name for _, name, _ in normal] == expected


def test_gzip_streams_compressed_events(base: str, client: httpx.Client) -> None:
    got = fetch(client, url(base, "openai-chat", gzip=1, ttft=0.3, tokens=2))
    assert got.headers["content-encoding"] == "gzip"
    assert got.body[:2] == b"\x1f\x8b"
    first_at, first = got.chunks[0]
    assert first_at < 0.15  # flushed after each event: the preamble arrives long before the first token
    assert zlib.decompressobj(wbits=31).decompress(first).startswith(b"data: {")
    plain = zlib.decompress(got.body, wbits=31)  # a complete, valid gzip member
    assert [label("openai-chat", name, data) for _, name, data in parse([(0, plain)])] == [
        "role", "token", "token", "finish", "[DONE]",
    ]


def test_content_length_buffers_the_whole_stream(base: str, client: httpx.Client) -> None:
    got = fetch(client, url(base, "generic", content_length=1, ttft=0.5, rate=1, tokens=3, heartbeat=0.1))
    assert got.chunks[-1][0] < 0.3  # no delays at all
    assert int(got.headers["content-length"]) == len(got.body)
    assert "transfer-encoding" not in got.headers
    assert labels("generic", got) == ["token"] * 3 + ["done"]


def test_content_length_with_a_drop_sends_less_than_announced(base: str, client: httpx.Client) -> None:
    got = fetch(client, url(base, "generic", content_length=1, tokens=3, drop_after=1, **FAST))
    assert isinstance(got.error, httpx.RemoteProtocolError)
    assert int(got.headers["content-length"]) > len(got.body)


def test_headers_can_be_chosen(base: str, client: httpx.Client) -> None:
    got = fetch(client, url(base, "generic", tokens=1, x_accel_buffering="no", content_type="text/plain", **FAST))
    assert got.headers["x-accel-buffering"] == "no"
    assert got.headers["content-type"] == "text/plain"
    assert labels("generic", got) == ["token", "done"]  # still a stream, only labelled wrongly


def test_json_content_type_sends_a_plain_json_body(base: str, client: httpx.Client) -> None:
    r = client.post(url(base, "openai-chat", tokens=2, content_type="application/json"))
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json()["choices"][0]["message"]["content"] == "1\n2\n"


def test_garbage_is_never_utf8(base: str, client: httpx.Client) -> None:
    got = fetch(client, url(base, "openai-chat", garbage=5000))
    assert got.status == 200 and got.error is None
    assert len(got.body) == 5000
    assert b"\n" not in got.body and b"\r" not in got.body and min(got.body) >= 0x80
    with pytest.raises(UnicodeDecodeError):
        got.body.decode()


def test_huge_line_is_sent_then_the_stream_goes_on(base: str, client: httpx.Client) -> None:
    got = fetch(client, url(base, "openai-chat", huge_line=300_000, tokens=2, **FAST))
    lines = got.body.split(b"\n")
    huge = [line for line in lines if len(line) > 1000]
    assert len(huge) == 1 and len(huge[0]) == 300_000 and huge[0].startswith(b"data: ")
    assert got.body.index(huge[0]) > got.body.index(b'"role"')  # after the preamble
    assert lines[-3:] == [b"data: [DONE]", b"", b""]


def test_gzip_bomb_inflates_to_the_asked_size(base: str, client: httpx.Client) -> None:
    size = 20 * 1024 * 1024
    got = fetch(client, url(base, "generic", gzip_bomb=size))
    assert got.headers["content-encoding"] == "gzip"
    assert got.headers["content-type"].startswith("text/event-stream")
    assert len(got.body) < size / 500
    inflate, total, data = zlib.decompressobj(wbits=31), 0, got.body
    while data:  # bounded steps, as a careful client would
        out = inflate.decompress(data, 1 << 20)
        assert out.count(b"a") == len(out)
        total, data = total + len(out), inflate.unconsumed_tail
    assert total == size and inflate.eof


def test_redirect(base: str, client: httpx.Client) -> None:
    r = client.get(url(base, "generic", redirect="http://127.0.0.1:1/elsewhere"))
    assert r.status_code == 302 and r.headers["location"] == "http://127.0.0.1:1/elsewhere"


# ---- parameters ------------------------------------------------------------------------------------------------------


def test_parameters_can_be_headers_and_the_query_wins(base: str, client: httpx.Client) -> None:
    headers = {"X-Sim-Tokens": "3", "X-Sim-Ttft": "0", "X-Sim-Rate": "1000", "X-Sim-Line-Ending": "crlf"}
    got = fetch(client, url(base, "generic"), headers=headers)
    assert got.body.count(b"\r\n\r\n") == 4
    got = fetch(client, url(base, "generic", tokens=1), headers=headers)
    assert got.body.count(b"\r\n\r\n") == 2


@pytest.mark.parametrize(
    "name, value",
    [
        ("ttft", "soon"),
        ("tokens", "-1"),
        ("rate", "0"),
        ("endless", "2"),
        ("heartbeat", "nan"),
        ("line_ending", "lfcr"),
        ("status", "200"),
        ("drop_after", "1.5"),
    ],
)
def test_an_invalid_parameter_is_a_400_naming_it(base: str, client: httpx.Client, name: str, value: str) -> None:
    for r in (
        client.post(url(base, "anthropic", **{name: value})),
        client.post(url(base, "anthropic"), headers={"X-Sim-" + name.replace("_", "-").title(): value}),
    ):
        assert r.status_code == 400
        assert f"'{name}'" in r.json()["error"]["message"]


def test_pause_needs_pause_after(base: str, client: httpx.Client) -> None:
    r = client.get(url(base, "generic", pause=1))
    assert r.status_code == 400 and "'pause_after'" in r.text


@settings(max_examples=60, deadline=None)
@given(
    tokens=st.integers(0, 12),
    endless=st.booleans(),
    drop_after=st.none() | st.integers(0, 15),
    error_after=st.none() | st.integers(0, 15),
    no_terminal=st.booleans(),
    heartbeat=st.sampled_from([0.0, 0.5]),
)
def test_timeline_steps(tokens, endless, drop_after, error_after, no_terminal, heartbeat) -> None:
    if endless and drop_after is None and error_after is None:
        drop_after = tokens
    p = Params(
        tokens=tokens,
        endless=endless,
        drop_after=drop_after,
        error_after=error_after,
        no_terminal=no_terminal,
        heartbeat=heartbeat,
    )

    async def steps() -> list[tuple[str, int]]:
        return [step async for step in timeline(p, 0.0, instant=True)]

    got = asyncio.run(steps())
    limits = [n for n in (None if endless else tokens, drop_after, error_after) if n is not None]
    sent = min(limits)
    assert got[0] == ("preamble", 0)
    assert got[1 : sent + 1] == [("token", i) for i in range(1, sent + 1)]
    last = (
        [("drop", sent)]
        if sent == drop_after
        else [("error", sent)]
        if sent == error_after
        else []
        if no_terminal
        else [("end", sent)]
    )
    assert got[sent + 1 :] == last  # and never a heartbeat when instant


# ---- resumption: ids, Last-Event-ID / resume, and what a resumed stream does wrong on demand -------------------------

USAGE = {"stream": True, "stream_options": {"include_usage": True}}  # so that openai-chat's end is END's
RESUMED = {"none": 4, "restart": 1, "gap": 6, "duplicate": 3, "noids": 4}  # the first token after resuming after 3


def with_ids(fmt: str, got: Got) -> list[tuple[str, str | None]]:
    """(label, its `id:` or None) of each event."""
    blocks = got.body.decode().split("\n\n")[:-1]
    return list(zip(labels(fmt, got), [dict(ln.split(": ", 1) for ln in b.split("\n")).get("id") for b in blocks]))


def expected(fmt: str, first: int, last: int, ids: bool = True) -> list[tuple[str, str | None]]:
    tokens = [("token", str(i) if ids else None) for i in range(first, last + 1)]
    return [(e, None) for e in PREAMBLE[fmt]] + tokens + [(e, None) for e in END[fmt]]


def resumed(client: httpx.Client, link: str, how: str, last: str, **kw) -> Got:
    """The stream at `link`, resumed after event `last` by a Last-Event-ID header or the `resume` parameter."""
    if how == "header":
        return fetch(client, link, "POST", json=USAGE, headers={"Last-Event-ID": last, **kw.pop("headers", {})}, **kw)
    return fetch(client, f"{link}&resume={last}", "POST", json=USAGE, **kw)


@pytest.mark.parametrize("fmt", ["openai-chat", "anthropic"])
def test_ids_number_the_token_events_only_when_asked(base: str, client: httpx.Client, fmt: str) -> None:
    got = fetch(client, url(base, fmt, tokens=3, ids=1, **FAST), "POST", json=USAGE)
    assert with_ids(fmt, got) == expected(fmt, 1, 3)
    assert b"id:" not in fetch(client, url(base, fmt, tokens=3, **FAST), "POST", json=USAGE).body
    assert b"id:" not in fetch(client, url(base, fmt, tokens=3, ids=1, resume_fault="noids", **FAST)).body


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_resumes_after_the_last_event_id(base: str, client: httpx.Client, fmt: str) -> None:
    got = resumed(client, url(base, fmt, tokens=3, **FAST), "header", "1")  # no ids=1: a resumed stream has ids
    assert got.status == 200 and got.error is None
    assert with_ids(fmt, got) == expected(fmt, 2, 3)
    texts = [token_text(fmt, json.loads(d)) for _, name, d in got.events if label(fmt, name, d) == "token"]
    assert texts == ["2\n", "3\n"]


@pytest.mark.parametrize("how", ["header", "query"])
@pytest.mark.parametrize("fault", list(RESUMED))
@pytest.mark.parametrize("fmt", ["openai-chat", "anthropic"])
def test_resume_faults(base: str, client: httpx.Client, fmt: str, fault: str, how: str) -> None:
    got = resumed(client, url(base, fmt, tokens=8, resume_fault=fault, **FAST), how, "3")
    assert got.status == 200 and got.error is None
    assert with_ids(fmt, got) == expected(fmt, RESUMED[fault], 8, ids=fault != "noids")


@pytest.mark.parametrize("how", ["header", "query"])
@pytest.mark.parametrize("fmt", ["openai-chat", "anthropic"])
def test_refuse_is_a_409_in_the_formats_error_body(base: str, client: httpx.Client, fmt: str, how: str) -> None:
    link = url(base, fmt, tokens=3, resume_fault="refuse", **FAST)
    r = client.post(link, headers={"Last-Event-ID": "2"}) if how == "header" else client.post(link + "&resume=2")
    assert r.status_code == 409 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["error"]["message"] == "resumption refused (resume_fault=refuse)"
    assert body["type"] == "error" if fmt == "anthropic" else body["error"]["type"] == "invalid_request_error"
    assert with_ids(fmt, fetch(client, link, "POST", json=USAGE)) == expected(fmt, 1, 3, ids=False)  # not resumed


@pytest.mark.parametrize("how, name", [("header", "'Last-Event-ID'"), ("query", "'resume'")])
@pytest.mark.parametrize("fmt", ["openai-chat", "anthropic"])
def test_an_invalid_event_id_is_a_400_naming_it(base: str, client: httpx.Client, fmt: str, how: str,
                                                name: str) -> None:
    for last in ("x", "-1", "2.0", ""):
        link = url(base, fmt, tokens=3, **({} if how == "header" else {"resume": last}))
        r = client.post(link, headers={"Last-Event-ID": last} if how == "header" else {})
        assert r.status_code == 400 and name in r.json()["error"]["message"]


def test_the_resume_parameter_wins_over_the_header(base: str, client: httpx.Client) -> None:
    got = resumed(client, url(base, "anthropic", tokens=5, **FAST), "query", "3", headers={"Last-Event-ID": "1"})
    assert with_ids("anthropic", got) == expected("anthropic", 4, 5)


def sent_times(got: Got) -> list[tuple[float, float]]:
    """(arrival, sim_sent) of each generic token."""
    return [(t, json.loads(data)["sim_sent"]) for t, name, data in got.events if name == ""]


def test_a_resumed_stream_is_paced_as_a_new_one(base: str, client: httpx.Client) -> None:
    tokens = sent_times(resumed(client, url(base, "generic", tokens=5, ttft=0.2, rate=20), "header", "2"))
    assert len(tokens) == 3 and 0.2 <= tokens[0][0] < 0.25  # the first resumed token comes after ttft
    assert [sent - tokens[0][1] for _, sent in tokens] == pytest.approx([0, 0.05, 0.1], abs=0.008)


@pytest.mark.parametrize("last, gaps", [("1", [0.3, 0.01]), ("2", [0.01])])
def test_a_pause_is_kept_only_by_a_stream_that_sends_the_token_before_it(base: str, client: httpx.Client,
                                                                          last: str, gaps: list[float]) -> None:
    link = url(base, "generic", tokens=4, ttft=0, rate=100, pause_after=2, pause=0.29)
    sent = [s for _, s in sent_times(resumed(client, link, "header", last))]
    assert [b - a for a, b in zip(sent, sent[1:])] == pytest.approx(gaps, abs=0.008)


@pytest.mark.parametrize("fault, again", [("none", False), ("duplicate", True)])
def test_a_drop_then_a_resumption(base: str, client: httpx.Client, fault: str, again: bool) -> None:
    """What a probe's resumption check does: the stream drops after token 2; the client resumes after id 2."""
    link = url(base, "openai-chat", tokens=5, drop_after=2, ids=1, resume_fault=fault, **FAST)
    cut = fetch(client, link, "POST", json=USAGE)
    assert isinstance(cut.error, httpx.RemoteProtocolError)
    assert with_ids("openai-chat", cut) == [("role", None), ("token", "1"), ("token", "2")]
    got = resumed(client, link, "header", "2")
    if again:  # token 2 comes again, and drop_after still means token 2: it drops again
        assert isinstance(got.error, httpx.RemoteProtocolError)
        assert with_ids("openai-chat", got) == [("role", None), ("token", "2")]
    else:  # the drop after token 2 lies behind a stream resumed after it
        assert got.error is None and with_ids("openai-chat", got) == expected("openai-chat", 3, 5)


@settings(max_examples=60, deadline=None)
@given(tokens=st.integers(0, 8), start=st.integers(1, 11), drop_after=st.none() | st.integers(0, 10))
def test_a_resumed_timeline_counts_tokens_from_its_start(tokens, start, drop_after) -> None:
    p = Params(tokens=tokens, drop_after=drop_after)

    async def steps() -> list[tuple[str, int]]:
        return [step async for step in timeline(p, 0.0, instant=True, start=start)]

    # a drop after a token the stream sends (or, at 0, before its first when it starts at the first)
    drop = drop_after if drop_after is not None and (drop_after >= start or drop_after == start - 1 == 0) else None
    stop = min(max(start - 1, tokens), math.inf if drop is None else drop)
    last = ("drop", stop) if stop == drop else ("end", min(stop, tokens))
    assert asyncio.run(steps()) == [("preamble", 0), *[("token", i) for i in range(start, stop + 1)], last]


# ---- in-process use and the process's life ---------------------------------------------------------------------------


def test_running_simulator_in_process() -> None:
    async def main() -> tuple[float, list[str]]:
        handler = signal.getsignal(signal.SIGINT)
        async with RunningSimulator() as sim:
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+", sim.base_url) and not sim.base_url.endswith(":0")
            assert signal.getsignal(signal.SIGINT) is handler  # uvicorn's handlers stay out of in-process use
            async with httpx.AsyncClient(timeout=5) as c:
                async with c.stream("GET", url(sim.base_url, "generic", tokens=2, **FAST)) as r:
                    body = b"".join([chunk async for chunk in r.aiter_raw()])
                async with c.stream("GET", url(sim.base_url, "generic", endless=1, rate=100, ttft=0)) as r:
                    async for _ in r.aiter_raw():
                        break  # walk away from an endless stream: the simulator must notice
            left = time.monotonic()
        return time.monotonic() - left, [name for _, name, _ in parse([(0, body)])]

    exit_seconds, names = asyncio.run(main())
    assert names == ["", "", "done"]
    assert exit_seconds < 1.0  # no stream was left running into the graceful-shutdown timeout


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_cleanly_on_a_signal(sig: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor.simulator", "--port", "0"], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        base = proc.stdout.readline().split()[-1]
        assert httpx.get(f"{base}/-/healthy").text == "ok"
        proc.send_signal(sig)
        assert proc.wait(timeout=5) == 0
    finally:
        proc.kill()


# ---- the truth log: a benchmark's ground truth per request -----------------------------------------------------------


def _simulator_with_truth(path: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor.simulator", "--port", "0", "--truth-log", str(path), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        pytest.fail(f"unexpected first line {line!r}: {proc.stderr.read()}")
    return proc, line.split()[-1]


def _stop(proc: subprocess.Popen) -> str:
    """SIGTERM, wait; the stderr it wrote."""
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
    return proc.stderr.read()


def _wall_fetch(client: httpx.Client, url: str, method: str = "GET") -> dict:
    """Client-side wall-clock times of one request: sent, headers in, first chunk carrying a token in, done."""
    out = {"sent": time.time(), "token_in": None}
    with client.stream(method, url) as r:
        out["headers_in"], out["status"] = time.time(), r.status_code
        for chunk in r.iter_raw():
            if out["token_in"] is None and b'"content":"1\\n"' in chunk:
                out["token_in"] = time.time()
    out["done"] = time.time()
    return out


def test_truth_log_records_receipt_first_byte_and_first_token(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    proc, base = _simulator_with_truth(path)
    try:
        with httpx.Client(timeout=10) as c:
            stream = _wall_fetch(c, url(base, "openai-chat", ttft=0.3, tokens=3, rate=100, tag="s-1"), "POST")
            held = _wall_fetch(c, url(base, "openai-chat", ttft=0.2, headers_delay=0.2, tokens=2, rate=100, tag="h"))
            bad = _wall_fetch(c, url(base, "openai-chat", tokens=-1, tag="bad"))
            empty = _wall_fetch(c, url(base, "generic", tokens=0, ttft=0, tag="none"))
            # a parameter the simulator does not know is ignored, so a benchmark may label requests its own way
            other = _wall_fetch(c, url(base, "openai-chat", tokens=1, ttft=0, bench_id="x7"))
            assert c.get(f"{base}/-/healthy").text == "ok"  # not a format's route: not recorded
    finally:
        stderr = _stop(proc)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    by_tag = {r["tag"]: r for r in records}
    assert [r["tag"] for r in records] == ["s-1", "h", "bad", "none", None]
    assert stderr == ""
    statuses = (stream["status"], held["status"], bad["status"], empty["status"], other["status"])
    assert statuses == (200, 200, 400, 200, 200)

    assert records[0]["received_by"] == "kernel"  # a new connection's (the client keeps the others alive: "loop")
    r = by_tag["s-1"]
    assert r["path"] == "/v1/chat/completions" and r["status"] == 200
    assert stream["sent"] <= r["received"] <= r["app"] <= r["first_byte"] <= stream["headers_in"]
    assert 0.295 <= r["first_token"] - r["app"] < 0.4  # the first token is due ttft after the endpoint got it
    assert r["first_byte"] < r["first_token"] <= stream["token_in"]

    r = by_tag["h"]  # headers held back until the first token: the first byte is that late too
    assert held["sent"] <= r["received"] and 0.2 <= r["first_byte"] - r["received"] < 0.3
    assert r["first_byte"] <= held["headers_in"] and r["first_byte"] <= r["first_token"] <= held["token_in"]

    assert by_tag["bad"]["status"] == 400 and by_tag["bad"]["first_token"] is None
    assert bad["sent"] <= by_tag["bad"]["received"] <= by_tag["bad"]["first_byte"] <= bad["headers_in"]
    assert by_tag["none"]["status"] == 200 and by_tag["none"]["first_token"] is None
    assert by_tag["none"]["first_byte"] <= empty["headers_in"]
    assert records[-1]["first_token"] is not None and records[-1]["first_token"] <= other["done"]


def test_truth_log_records_an_endless_stream_once_its_first_token_is_out(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    proc, base = _simulator_with_truth(path)
    try:
        with httpx.Client(timeout=10) as c, c.stream("GET", url(base, "generic", endless=1, rate=1e9, ttft=0,
                                                                tag="flood")) as r:
            seen = 0
            for chunk in r.iter_raw():  # a flood of valid events, as fast as the simulator can make them
                seen += chunk.count(b"\n\n")
                if seen > 2000:
                    break
        time.sleep(0.2)
    finally:
        _stop(proc)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 1 and records[0]["tag"] == "flood" and records[0]["first_token"] is not None


def test_truth_log_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    proc, base = _simulator_with_truth(path, "--truth-max-records", "2")
    try:
        with httpx.Client(timeout=10) as c:
            for i in range(4):
                assert c.get(url(base, "generic", tokens=1, ttft=0, tag=f"r{i}")).status_code == 200
    finally:
        stderr = _stop(proc)
    assert [json.loads(line)["tag"] for line in path.read_text().splitlines()] == ["r0", "r1"]
    assert "2 records written, 2 not" in stderr


def test_truth_log_is_flushed_while_running(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    proc, base = _simulator_with_truth(path)
    try:
        with httpx.Client(timeout=10) as c:
            c.get(url(base, "generic", tokens=1, ttft=0, tag="a"))
            time.sleep(1.1)  # the buffer is flushed at most once a second, by a later write
            c.get(url(base, "generic", tokens=1, ttft=0, tag="b"))
            assert [json.loads(line)["tag"] for line in path.read_text().splitlines()] == ["a", "b"]
    finally:
        _stop(proc)


def test_truth_log_stamps_each_request_of_a_kept_alive_connection(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    proc, base = _simulator_with_truth(path)
    sent = []
    try:
        with httpx.Client(timeout=10) as c:  # one connection, reused
            for i in range(3):
                time.sleep(0.1)
                sent.append(time.time())
                assert c.get(url(base, "generic", tokens=1, ttft=0, tag=f"k{i}")).status_code == 200
    finally:
        _stop(proc)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["tag"] for r in records] == ["k0", "k1", "k2"]
    for r, t in zip(records, sent):
        assert t <= r["received"] <= r["app"] <= r["first_byte"] <= r["first_token"] < t + 0.1
    # a new connection is accepted once its request is there: the kernel's stamp; a kept-alive one's, the loop's
    assert [r["received_by"] for r in records] == ["kernel", "loop", "loop"]


def test_a_request_waiting_at_the_accept_gets_the_kernels_receive_time() -> None:
    import socket as sockets

    from monitor.simulator import _enable_receive_stamps, _kernel_receipt

    class Transport:  # what the protocol is handed: get_extra_info("socket")
        def __init__(self, sock: sockets.socket) -> None:
            self.sock = sock

        def get_extra_info(self, name: str) -> object:
            return self.sock if name == "socket" else None

    with sockets.create_server(("127.0.0.1", 0)) as server:
        if not _enable_receive_stamps(server):
            pytest.skip("no SO_TIMESTAMPNS here")
        time.sleep(0.2)  # the kernel turns receive stamping on for the whole host a moment later (a deferred work item)
        with sockets.create_connection(server.getsockname()) as client:
            server.settimeout(0.05)
            with pytest.raises(TimeoutError):  # connected, but nothing sent: nothing to accept yet (deferred accept)
                server.accept()
            server.settimeout(5)
            sent = time.time()
            client.sendall(b"GET / HTTP/1.1\r\n\r\n")
            time.sleep(0.05)  # the server's loop is busy elsewhere: the bytes wait
            accepted, _ = server.accept()
            with accepted:
                stamp = _kernel_receipt(Transport(accepted))
                assert stamp is not None and sent <= stamp < sent + 0.04  # when they came, not when they were looked at
                assert accepted.recv(100) == b"GET / HTTP/1.1\r\n\r\n"  # only peeked at: all still there for the server
