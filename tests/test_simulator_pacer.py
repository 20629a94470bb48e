"""The simulator's fast lane (pacer.py): a plain paced stream on an HTTP/1.1 connection is written from one timer, and
the client gets the same events as from the general path (what an HTTP/1.0 request still takes), on schedule."""

from __future__ import annotations

import asyncio
import re
import socket
import time

import pytest

from monitor.simulator import DIALECT_PATHS, RunningSimulator
from monitor.simulator.anthropic import Anthropic
from monitor.simulator.gemini import Gemini
from monitor.simulator.generic import Generic
from monitor.simulator.openai_chat import OpenAIChat
from monitor.simulator.openai_responses import OpenAIResponses
from monitor.simulator.pacer import WRITE_HIGH, pacer
from monitor.simulator.params import Params
from monitor.simulator.stream import encode_event, step_renderer

CASES = [
    "tokens=3",
    "tokens=4&ids=1&thinking=2",
    "tokens=0",
    "tokens=5&drop_after=2",
    "tokens=5&error_after=1",
    "tokens=3&no_terminal=1",
    "tokens=4&pause_after=2&pause=0.05",
    "tokens=3&line_ending=crlf&server_timing=1",
    "tokens=6&resume=2",
]
FORMAT_CLASSES = {"openai-chat": OpenAIChat, "openai-responses": OpenAIResponses, "anthropic": Anthropic,
                  "gemini": Gemini, "generic": Generic}
VARYING = re.compile(rb'"(sim_sent|created|created_at)":[0-9.e+-]+|req_sim_\d+')


async def _exchange(port: int, path: str, version: str) -> tuple[bytes, bytes, bool]:
    """One request on its own connection: the response head, its body (dechunked for HTTP/1.1), and whether a
    chunked body was complete (its last chunk came)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/{version}\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    raw = await asyncio.wait_for(reader.read(-1), 10)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" not in head.lower():
        return head, body, True
    out, rest = [], body
    while rest:
        size_line, sep, rest = rest.partition(b"\r\n")
        assert sep, f"a chunk's size line is cut: {size_line!r}"
        size = int(size_line, 16)
        if size == 0:
            assert rest == b"\r\n"
            return head, b"".join(out), True
        assert rest[size:size + 2] == b"\r\n", "a chunk must end with CRLF"
        out.append(rest[:size])
        rest = rest[size + 2:]
    return head, b"".join(out), False


@pytest.mark.parametrize("fmt", list(DIALECT_PATHS))
def test_the_fast_lane_sends_what_the_general_path_sends(fmt: str) -> None:
    async def main() -> None:
        async with RunningSimulator() as sim:
            lane = pacer()
            for case in CASES:
                path = f"{DIALECT_PATHS[fmt]}?ttft=0.01&rate=200&{case}"
                before = next(lane.order)
                head11, body11, complete11 = await _exchange(sim.port, path, "1.1")
                used = next(lane.order) - before - 1
                head10, body10, _ = await _exchange(sim.port, path, "1.0")
                assert next(lane.order) - before - 2 == used, "an HTTP/1.0 request takes the general path"
                assert b"transfer-encoding: chunked" in head11.lower()
                assert b"transfer-encoding" not in head10.lower()
                assert used > 0 or "tokens=0" in case, f"{case}: the lane was not used"
                assert complete11 == ("drop_after" not in case), case  # a drop cuts the body short, as before
                assert body11 and VARYING.sub(b"", body11) == VARYING.sub(b"", body10), case

    asyncio.run(main())


def test_lane_streams_keep_their_own_schedules_side_by_side() -> None:
    async def one(port: int, rate: float) -> list[float]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {DIALECT_PATHS['generic']}?ttft=0.05&tokens=6&rate={rate} HTTP/1.1\r\n"
                     "Host: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        sent = time.monotonic()
        arrivals, seen = [], b""
        while chunk := await asyncio.wait_for(reader.read(65536), 5):
            seen += chunk
            tokens = seen.count(b'"token"')
            arrivals += [time.monotonic() - sent] * (tokens - len(arrivals))
        writer.close()
        return arrivals

    async def main() -> list[list[float]]:
        async with RunningSimulator() as sim:
            return await asyncio.gather(*(one(sim.port, rate) for rate in (10, 25, 50, 10, 25, 50)))

    for arrivals, rate in zip(asyncio.run(main()), (10, 25, 50, 10, 25, 50)):
        assert len(arrivals) == 6
        for i, t in enumerate(arrivals):
            assert t == pytest.approx(0.05 + i / rate, abs=0.03), (rate, arrivals)


def test_a_client_leaving_a_lane_stream_stops_it() -> None:
    async def main() -> float:
        async with RunningSimulator() as sim:
            reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
            writer.write(f"GET {DIALECT_PATHS['generic']}?ttft=0&tokens=100000&rate=200 HTTP/1.1\r\n"
                         "Host: 127.0.0.1\r\n\r\n".encode())
            await asyncio.wait_for(reader.readuntil(b'"token"'), 5)
            writer.close()
            await asyncio.sleep(0.2)
            assert all(lane.stopped for _, _, lane in pacer().waits), "the left stream's lane still takes steps"
            left = time.monotonic()
        return time.monotonic() - left

    assert asyncio.run(main()) < 1.0  # no stream was left running into the graceful-shutdown timeout


@pytest.mark.parametrize("name", list(DIALECT_PATHS))
def test_a_format_whose_token_events_are_shared_keeps_no_state_between_them(name: str) -> None:
    """Token events are rendered once for all streams of a format, model, second and thinking (Format.pure_tokens):
    a format that says so must give the same events for token i whatever it sent before, and another model's stream
    its own."""
    cls = FORMAT_CLASSES[name]
    fresh = cls("m-1", {})
    used = cls("m-1", {})
    used.created = fresh.created
    for fmt in (fresh, used):
        fmt.thinking = 2
    used.preamble(0)
    walked = [used.token(i) for i in range(1, 6)]
    if not cls.pure_tokens:
        assert walked[3] != fresh.token(4)  # a sequence number: this format may not share its token events
        return
    assert [fresh.token(i) for i in (5, 1, 4, 2, 3)] == [walked[4], walked[0], walked[3], walked[1], walked[2]]
    other = cls("m-2", {})
    other.created, other.thinking = fresh.created, 2
    for fmt in (fresh, other, used):  # the shared rendering is each stream's own, whoever rendered it first
        direct = b"".join(encode_event(e, b"\n") for e in fmt.token(3))
        assert VARYING.sub(b"", step_renderer(Params(), fmt)("token", 3)) == VARYING.sub(b"", direct)


def test_a_client_that_does_not_read_holds_back_its_lane_not_the_simulators_memory() -> None:
    """A lane stops writing while its connection holds more than WRITE_HIGH unsent, as the server's flow control does
    for the general path: a client that never reads costs the kernel's buffers and 64 KiB, not the whole stream."""
    async def main() -> int:
        async with RunningSimulator() as sim:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the sender's buffers fill
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", sim.port))
            reader, writer = await asyncio.open_connection(sock=sock)
            writer.write(f"GET {DIALECT_PATHS['generic']}?ttft=0&tokens=10000000&rate=50000 HTTP/1.1\r\n"
                         "Host: 127.0.0.1\r\n\r\n".encode())
            await asyncio.sleep(4)  # ~12 MB asked, past what the kernel holds for one connection
            (lane,) = [lane for _, _, lane in pacer().waits if not lane.stopped]
            waiting = lane.transport.get_write_buffer_size()
            writer.close()
            return waiting

    waiting = asyncio.run(main())
    assert WRITE_HIGH // 2 < waiting <= WRITE_HIGH + 4096  # it reached the mark, and went at most a chunk past it
