"""The proxy-chain canary, run for real on loopback: the stream shapes chain-check asks for, as a client reads them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from monitor.canary import CanaryLimits, RunningCanary

ROOT = Path(__file__).resolve().parent.parent
HELLO = b'event: canary\ndata: {"canary":"sse-monitor","version":1,"t":0.0}\n\n'
LATE_MS = 15  # how late the canary may write an event on a busy machine (idle: < 4 ms; never early)


def start_canary(*args: str) -> tuple[subprocess.Popen, str]:
    """`python -m monitor.canary --listen 127.0.0.1:0 ARGS`: the process and the base URL it printed."""
    proc = subprocess.Popen([sys.executable, "-m", "monitor.canary", "--listen", "127.0.0.1:0", *args],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    line = proc.stdout.readline()
    match = re.fullmatch(r"sse-monitor canary listening on (http://127\.0\.0\.1:(\d+))\n", line)
    if not match or match.group(2) == "0":
        proc.kill()
        pytest.fail(f"unexpected first line {line!r}")
    return proc, match.group(1)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=5)
    finally:
        proc.kill()


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    """A canary process, mounted under a prefix as a team would: yields that URL."""
    proc, url = start_canary()
    yield url + "/api/sse-canary"
    assert stop(proc) == 0


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


@dataclass
class Event:
    at: float  # arrival: seconds since the request was sent
    fields: dict[str, str]  # id, event, data; a comment's text under ":"

    @property
    def kind(self) -> str:
        return "hb" if ":" in self.fields else self.fields.get("event", "data")

    @property
    def data(self) -> dict:
        return json.loads(self.fields["data"])

    @property
    def t(self) -> float:
        """The canary's send time: ms since its response start."""
        return float(self.fields[":"].removeprefix(" hb ")) if self.kind == "hb" else self.data["t"]


@dataclass
class Got:
    response: httpx.Response
    body: bytes
    events: list[Event]

    def kinds(self) -> list[str]:
        """Each event's kind, a data event as its seq."""
        return [str(e.data["seq"]) if e.kind == "data" else e.kind for e in self.events]

    def data(self) -> list[Event]:
        return [e for e in self.events if e.kind == "data"]


def parse(chunks: list[tuple[float, bytes]]) -> list[Event]:
    """An SSE reader for the canary's LF-only events, stamping each with the arrival of the chunk that completed it."""
    events, buf = [], b""
    for at, chunk in chunks:
        buf += chunk
        while b"\n\n" in buf:
            block, buf = buf.split(b"\n\n", 1)
            lines = block.decode().split("\n")
            events.append(Event(at, dict((":", ln[1:]) if ln.startswith(":") else ln.split(": ", 1) for ln in lines)))
    assert buf == b"", "the body ends with a whole event"
    return events


def fetch(client: httpx.Client, url: str, method: str = "GET", **kw) -> Got:
    t0, chunks = time.monotonic(), []
    with client.stream(method, url, **kw) as r:
        for chunk in r.iter_raw():
            chunks.append((time.monotonic() - t0, chunk))
    return Got(r, b"".join(c for _, c in chunks), parse(chunks))


def raw_get(url: str) -> tuple[str, list[bytes]]:
    """GET over a plain socket: the response head, and the body's HTTP/1.1 chunks as framed on the wire (the
    terminating empty chunk included)."""
    parts = urllib.parse.urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as s:
        s.sendall(f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: canary\r\nConnection: close\r\n\r\n".encode())
        data = b"".join(iter(lambda: s.recv(65536), b""))
    head, _, body = data.partition(b"\r\n\r\n")
    chunks = []
    while True:
        size, _, body = body.partition(b"\r\n")
        n = int(size, 16)
        assert body[n:n + 2] == b"\r\n"
        chunks.append(body[:n])
        body = body[n + 2:]
        if n == 0:
            assert body == b""  # the body ended properly, and nothing after it
            return head.decode(), chunks


def ms(seconds: float) -> float:
    return seconds * 1000


def on_time(events: list[Event], due_ms: list[float]) -> bool:
    """Each event written when due, by the canary's own `t`: never early, at most LATE_MS late."""
    return len(events) == len(due_ms) and all(0 <= e.t - due < LATE_MS for e, due in zip(events, due_ms))


# ---- the wire format -------------------------------------------------------------------------------------------------


def test_one_write_per_event_in_the_documented_format(base: str) -> None:
    head, chunks = raw_get(base + "?events=3&interval=0.04&size=6&pad=text&heartbeat=0.05")
    assert head.startswith("HTTP/1.1 200 ")
    headers = dict(line.lower().split(": ", 1) for line in head.split("\r\n")[1:])
    assert headers["content-type"] == "text/event-stream; charset=utf-8"
    assert headers["cache-control"] == "no-cache" and headers["transfer-encoding"] == "chunked"
    assert "content-length" not in headers and "x-accel-buffering" not in headers
    body = [c.decode() for c in chunks]
    assert body[0] == HELLO.decode()
    assert body[-1] == ""  # the chunked body is terminated
    event = r'id: {0}\ndata: \{{"seq":{0},"t":\d+\.\d{{1,3}},"pad":"the qu"\}}\n\n'
    patterns = [event.format(1), event.format(2), r": hb \d+\.\d{1,3}\n\n", event.format(3),
                r'event: done\ndata: \{"seq":3,"t":\d+\.\d{1,3}\}\n\n']
    assert len(body[1:-1]) == len(patterns)
    for chunk, pattern in zip(body[1:-1], patterns):  # each event, comment, done: one chunk, whole
        assert re.fullmatch(pattern, chunk), chunk


def test_any_path_and_post_stream_and_bodies_are_ignored(base: str, client: httpx.Client) -> None:
    root = base.removesuffix("/api/sse-canary")
    for url, method in ((root + "/anything/deep?events=1", "GET"), (root + "/?events=1", "GET"),
                        (base + "?events=1", "POST")):
        got = fetch(client, url, method, content=b"secret-request-body")
        assert got.response.status_code == 200 and got.kinds() == ["canary", "1", "done"]
        assert b"secret" not in got.body
    health = client.get(root + "/-/healthy")
    assert (health.status_code, health.text) == (200, "ok")


def test_defaults(base: str, client: httpx.Client) -> None:
    got = fetch(client, base)
    assert got.kinds() == ["canary", "1", "2", "3", "done"]
    assert [e.data["pad"] for e in got.data()] == ["", "", ""]
    assert [round(e.t / 50) for e in got.data()] == [0, 1, 2]  # every 0.05 s
    assert got.events[-1].data == {"seq": 3, "t": got.events[-1].t}


# ---- timing ----------------------------------------------------------------------------------------------------------


def test_events_follow_the_interval_on_an_absolute_schedule(base: str, client: httpx.Client) -> None:
    got = fetch(client, base + "?events=8&interval=0.1")
    events = got.data()
    assert [e.data["seq"] for e in events] == list(range(1, 9))
    assert on_time(events, [ms(i * 0.1) for i in range(8)])  # no drift: the 8th is as exact as the 2nd
    arrivals = [e.at for e in events]
    for a, b in zip(arrivals, arrivals[1:]):
        assert b - a == pytest.approx(0.1, abs=0.015)
    assert got.events[-1].kind == "done" and got.events[-1].t - events[-1].t < LATE_MS


def test_heartbeats_fill_the_silence_after_silence_after(base: str, client: httpx.Client) -> None:
    got = fetch(client, base + "?events=4&interval=0.1&silence=0.4&silence_after=2&heartbeat=0.13")
    assert got.kinds() == ["canary", "1", "2", "hb", "hb", "hb", "hb", "3", "hb", "4", "done"]
    assert on_time(got.data(), [0, 100, 600, 700])
    beats = [e for e in got.events if e.kind == "hb"]
    assert on_time(beats, [ms(k * 0.13) for k in range(1, 6)])
    arrivals = {kind: e.at for kind, e in zip(got.kinds(), got.events)}
    assert arrivals["3"] - arrivals["2"] == pytest.approx(0.5, abs=0.02)  # the silence really passes on the wire
    assert beats[0].at - arrivals["2"] == pytest.approx(0.03, abs=0.02)  # and the comments come out in it


@pytest.mark.parametrize("silence_after, due, done", [(0, [300, 350], 350), (2, [0, 50], 350), (5, [0, 50], 50)])
def test_silence_can_come_first_or_last(base: str, client: httpx.Client, silence_after: int, due: list[int],
                                        done: int) -> None:
    got = fetch(client, base + f"?events=2&interval=0.05&silence=0.3&silence_after={silence_after}&heartbeat=0.2")
    beats = ["hb"] if done == 350 else []  # one comment inside the silence, at 200 ms
    assert got.kinds() == (["canary", *beats, "1", "2", "done"] if silence_after == 0
                           else ["canary", "1", "2", *beats, "done"])
    assert on_time(got.data(), due) and on_time(got.events[-1:], [done])


def test_no_heartbeats_unless_asked(base: str, client: httpx.Client) -> None:
    got = fetch(client, base + "?events=2&interval=0&silence=0.3")
    assert got.kinds() == ["canary", "1", "2", "done"]  # no comment, not even in the silence


# ---- what a chain may change: padding, buffering header --------------------------------------------------------------


def test_random_pad_is_incompressible_and_text_pad_compresses(base: str, client: httpx.Client) -> None:
    random = fetch(client, base + "?events=20&interval=0&size=4000")
    text = fetch(client, base + "?events=20&interval=0&size=4000&pad=text")
    pads = [e.data["pad"] for e in random.data()]
    assert all(len(p) == 4000 for p in pads) and len(set(pads)) == 20  # fresh for every event
    assert len(random.body) / len(zlib.compress(random.body, 9)) < 1.3
    assert {len(e.data["pad"]) for e in text.data()} == {4000}
    assert len(text.body) / len(zlib.compress(text.body, 9)) > 10
    assert random.response.headers.get("content-encoding") is None  # the canary never compresses: the chain may


@pytest.mark.parametrize("accel", [None, "no", "yes"])
def test_x_accel_buffering_only_when_asked(base: str, client: httpx.Client, accel: str | None) -> None:
    got = fetch(client, base + "?events=1" + (f"&accel={accel}" if accel else ""))
    assert got.response.headers.get("x-accel-buffering") == accel


# ---- refusals: fixed messages that name the parameter and never echo the request -------------------------------------


@pytest.mark.parametrize("name, bad, expected", [
    ("events", "100001", "a whole number from 0 to 100000"),
    ("interval", "-1", "seconds from 0 to 60"),
    ("size", "65537", "a whole number from 0 to 65536"),
    ("pad", "zeros", "random or text"),
    ("silence", "901", "seconds from 0 to 900"),
    ("silence_after", "1.5", "a whole number from 0 to 100000"),
    ("heartbeat", "0.01", "0, or seconds from 0.05 to 60"),
    ("accel", "maybe", "no or yes"),
    ("resume_fault", "crash", "none, refuse, restart, gap, duplicate or noids"),
])
def test_an_invalid_parameter_is_a_400_naming_it(base: str, client: httpx.Client, name: str, bad: str,
                                                 expected: str) -> None:
    for value in (bad, "<script>xyz", "nan"):
        r = client.get(base, params={name: value, "other": "<b>"})
        assert r.status_code == 400 and r.headers["content-type"].startswith("text/plain")
        assert r.text == f"invalid parameter '{name}': expected {expected}"
        assert "script" not in r.text and "xyz" not in r.text and "<" not in r.text


@pytest.mark.parametrize("how", ["header", "query"])
def test_an_invalid_event_id_is_a_400(base: str, client: httpx.Client, how: str) -> None:
    for value in ("<script>xyz", "-1", "1.5", ""):
        kw = {"headers": {"Last-Event-ID": value}} if how == "header" else {"params": {"resume": value}}
        r = client.get(base, **kw)
        assert r.status_code == 400 and r.headers["content-type"].startswith("text/plain")
        assert r.text == "invalid Last-Event-ID: expected an event id this canary sent (a number)"


@pytest.mark.parametrize("query, too_much", [
    ("events=100000&interval=0.01", "stream too long"),
    ("events=2&interval=1&silence=900", "stream too long"),
    ("events=2000&size=65536", "stream too large"),
])
def test_bounds(base: str, client: httpx.Client, query: str, too_much: str) -> None:
    r = client.get(f"{base}?{query}")
    assert r.status_code == 400 and r.text.startswith(too_much + ":")


def test_the_largest_allowed_stream_is_served(base: str, client: httpx.Client) -> None:
    with client.stream("GET", base + "?events=1024&size=65436&interval=0") as r:  # exactly 64 MiB by the bound
        assert r.status_code == 200 and next(r.iter_raw()).startswith(b"event: canary")


# ---- resumption ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["header", "query"])
@pytest.mark.parametrize("fault, first", [("none", 4), ("restart", 1), ("gap", 6), ("duplicate", 3), ("noids", 4)])
def test_resumption_and_its_faults(base: str, client: httpx.Client, how: str, fault: str, first: int) -> None:
    url = base + f"?events=8&interval=0.05&resume_fault={fault}"
    got = fetch(client, url, headers={"Last-Event-ID": "3"}) if how == "header" else fetch(client, url + "&resume=3")
    assert got.response.status_code == 200
    assert got.kinds() == ["canary", *map(str, range(first, 9)), "done"]
    data = got.data()
    assert [e.fields.get("id") for e in data] == [None if fault == "noids" else str(e.data["seq"]) for e in data]
    assert on_time(data[:2], [0, 50])  # scheduled from this response's start
    assert got.events[-1].data["seq"] == 8


def test_refuse_is_a_409_for_a_resumed_request_only(base: str, client: httpx.Client) -> None:
    for url, headers in ((base + "?resume_fault=refuse", {"Last-Event-ID": "2"}),
                         (base + "?resume_fault=refuse&resume=2", {})):
        r = client.get(url, headers=headers)
        assert (r.status_code, r.text) == (409, "resumption refused (resume_fault=refuse)")
    assert fetch(client, base + "?resume_fault=refuse").kinds() == ["canary", "1", "2", "3", "done"]


def test_the_query_parameter_wins_over_the_header(base: str, client: httpx.Client) -> None:
    got = fetch(client, base + "?events=5&interval=0&resume=3", headers={"Last-Event-ID": "1"})
    assert got.kinds() == ["canary", "4", "5", "done"]


def test_noids_also_on_a_fresh_request_and_resuming_past_the_end(base: str, client: httpx.Client) -> None:
    got = fetch(client, base + "?events=2&interval=0&resume_fault=noids")
    assert got.kinds() == ["canary", "1", "2", "done"] and b"id:" not in got.body
    done = fetch(client, base + "?events=2&interval=0&resume=2").events
    assert [e.kind for e in done] == ["canary", "done"] and done[-1].data["seq"] == 0


@pytest.mark.parametrize("resume, fault, due", [("2", "none", [0, 50]), ("3", "none", [0]),
                                                ("1", "none", [0, 350, 400]), ("2", "duplicate", [0, 350, 400])])
def test_a_resumed_stream_is_silent_only_after_the_event_it_sends_again(base: str, client: httpx.Client,
                                                                        resume: str, fault: str, due: list) -> None:
    got = fetch(client, base + f"?events=4&interval=0.05&silence=0.3&silence_after=2&resume={resume}"
                               f"&resume_fault={fault}")
    assert on_time(got.data(), due)  # resumed after the silence's place: it goes on at once


# ---- bounded concurrency, and the process ----------------------------------------------------------------------------


def test_max_streams_answers_503_and_a_client_leaving_frees_its_slot(client: httpx.Client) -> None:
    proc, url = start_canary("--max-streams", "2", "--max-duration", "60")
    long = url + "/s?events=2&silence=50&heartbeat=0.1"
    try:
        with contextlib.ExitStack() as open_streams:
            reading = [open_streams.enter_context(client.stream("GET", long)).iter_raw() for _ in range(2)]
            assert all(next(r).startswith(b"event: canary") for r in reading)  # both open (and kept so)
            sent = time.monotonic()
            r = client.get(long)
            assert (r.status_code, r.text) == (503, "too many streams") and time.monotonic() - sent < 0.5
            assert r.headers["content-type"].startswith("text/plain")
            assert client.get(url + "/-/healthy").text == "ok"
            assert client.get(url + "/s?silence=61").status_code == 400  # --max-duration bounds the silence too
        deadline = time.monotonic() + 3  # both clients walked away: the canary notices and frees their slots
        while (r := client.get(url + "/s?events=1")).status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert r.status_code == 200
        with client.stream("GET", long) as a, client.stream("GET", long) as b:
            assert a.status_code == b.status_code == 200
    finally:
        assert stop(proc) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_process_stops_cleanly_on_a_signal(sig: int) -> None:
    proc, url = start_canary()
    with httpx.Client(timeout=5) as c, c.stream("GET", url + "/?events=2&silence=30&heartbeat=1") as r:
        assert r.status_code == 200
        started = time.monotonic()
        assert stop(proc, sig) == 0
    assert time.monotonic() - started < 4  # an open stream does not hold the exit up beyond the grace period


def test_bad_command_line_options_are_refused() -> None:
    for args in (["--max-streams", "0"], ["--max-duration", "-5"], ["--listen", "nowhere"]):
        proc = subprocess.run([sys.executable, "-m", "monitor.canary", *args], capture_output=True, text=True,
                              cwd=ROOT, timeout=20)
        assert proc.returncode == 2 and args[0] in proc.stderr


def test_running_canary_in_process_with_its_limits() -> None:
    async def main() -> float:
        handler = signal.getsignal(signal.SIGINT)
        async with RunningCanary(limits=CanaryLimits(max_duration=2, max_streams=1)) as canary:
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+", canary.base_url)
            assert signal.getsignal(signal.SIGINT) is handler
            async with httpx.AsyncClient(timeout=5) as c:
                r = await c.get(canary.base_url + "/?silence=2.5")
                assert r.text == "invalid parameter 'silence': expected seconds from 0 to 2"
                r = await c.get(canary.base_url + "/?events=3&interval=1&silence=0.5")
                assert r.text.startswith("stream too long:") and "at most 2 seconds" in r.text
                async with c.stream("GET", canary.base_url + "/?events=2&silence=1.5") as r:
                    reading = r.aiter_raw()
                    assert (await anext(reading)).startswith(b"event: canary")  # the only slot is taken
                    assert (await c.get(canary.base_url + "/")).status_code == 503
            left = time.monotonic()
        return time.monotonic() - left

    assert asyncio.run(main()) < 1.0  # no stream was left running into the graceful-shutdown timeout
