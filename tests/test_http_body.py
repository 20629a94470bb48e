"""The probe's transport (monitor.transport, its body read by monitor.http_body) against httpx's own: a real loopback
server sends the same bytes, in the same segments, to a stock httpx client (httpcore and h11) and to one on
ProbeTransport. Both must hand over the same payload, or fail with the same exception and words."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import pytest

from monitor.transport import ProbeTransport

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
CHUNKED = HEAD + b"transfer-encoding: chunked\r\n\r\n"
EVENT = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'


def chunk(payload: bytes, extension: bytes = b"") -> bytes:
    return b"%x%s\r\n%s\r\n" % (len(payload), extension, payload)


# name -> the segments the server sends (about 20 ms apart, so each is a read of its own), then it closes
SCRIPTS = {
    "one chunk a segment": [CHUNKED, chunk(EVENT), chunk(EVENT), b"0\r\n\r\n"],
    "head and first chunks in one segment": [CHUNKED + chunk(EVENT) + chunk(EVENT), chunk(EVENT) + b"0\r\n\r\n"],
    "split everywhere": [CHUNKED[:-3], CHUNKED[-3:-1], CHUNKED[-1:] + b"3", b"0\r", b"\n" + EVENT[:10],
                         EVENT[10:] + b"\r", b"\n0", b"\r\n", b"\r", b"\n"],
    "extensions, whitespace and trailers": [CHUNKED, chunk(EVENT, b";name=value"), chunk(EVENT, b" \t"),
                                            b"0\r\nx-trailer: 1\r\n", b"x-other: 2\r\n\r\n"],
    "informational heads before the final one": [b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n"
                                                 b"HTTP/1.1 100 Continue\r\n\r\n" + CHUNKED + chunk(EVENT),
                                                 b"0\r\n\r\n"],
    "bare LF ends the head": [HEAD.replace(b"\r\n", b"\n") + b"transfer-encoding: chunked\n\n" + chunk(EVENT),
                              b"0\r\n\r\n"],
    "bytes after the last chunk are not the body's": [CHUNKED + chunk(EVENT) + b"0\r\n\r\nHTTP/1.1 200 OK\r\n"],
    "content-length": [HEAD + b"content-length: %d\r\n\r\n" % (2 * len(EVENT)) + EVENT[:5], EVENT[5:] + EVENT],
    "content-length with more sent": [HEAD + b"content-length: 10\r\n\r\n" + EVENT],
    "content-length cut short": [HEAD + b"content-length: 500\r\n\r\n" + EVENT],
    "no framing: the close ends it": [HEAD + b"connection: close\r\n\r\n", EVENT, EVENT],
    "HTTP/1.0": [b"HTTP/1.0 200 OK\r\ncontent-type: text/event-stream\r\n\r\n" + EVENT],
    "no content": [b"HTTP/1.1 204 No Content\r\n\r\n"],
    "cut inside a chunk": [CHUNKED + b"100\r\n" + EVENT],
    "cut before the last chunk": [CHUNKED + chunk(EVENT)],
    "illegal chunk size": [CHUNKED + chunk(EVENT), b"zz\r\n" + EVENT],
    "chunk without its CRLF": [CHUNKED + b"%x\r\n" % len(EVENT) + EVENT + b"XX"],
    "endless chunk size line": [CHUNKED, b"1" * 60_000, b"1" * 60_000],
}


@pytest.fixture(scope="module")
def scripted_server():
    """One loopback server; the request's path names the script to play."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def play(conn: socket.socket) -> None:
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(65536)
            name = request.split(b" ")[1].decode().lstrip("/").replace("%20", " ")
            for segment in SCRIPTS[name]:
                conn.sendall(segment)
                time.sleep(0.02)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=play, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(5)
    server.close()


async def read_pulled(url: str, transport: httpx.AsyncBaseTransport | None = None) -> tuple[list[bytes], str | None]:
    """As httpx streams are read (aiter_raw), on httpx's own transport (httpcore, h11) or the given one."""
    pieces: list[bytes] = []
    async with httpx.AsyncClient(transport=transport, timeout=5) as client, client.stream("GET", url) as response:
        try:
            async for piece in response.aiter_raw():
                pieces.append(piece)
        except httpx.HTTPError as exc:
            return pieces, f"{type(exc).__name__}: {exc}"
    return pieces, None


async def read_with_body(url: str, pushed: bool = False) -> tuple[list[bytes], str | None]:
    """On ProbeTransport: pulled as httpx streams are read, or pushed as the probe reads it (pump)."""
    if not pushed:
        return await read_pulled(url, ProbeTransport())
    pieces: list[bytes] = []

    def take(piece: bytes) -> bool:
        pieces.append(piece)
        return False

    async with ProbeTransport() as transport:  # on its own, as the probe uses it
        request = httpx.Request("GET", url, extensions={"timeout": httpx.Timeout(5).as_dict()})
        response = await transport.handle_async_request(request)
        try:
            await response.stream.pump(take)
        except httpx.HTTPError as exc:
            return pieces, f"{type(exc).__name__}: {exc}"
        finally:
            await response.aclose()
    return pieces, None


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_the_body_is_what_h11_makes_of_the_same_bytes(scripted_server, name):
    url = f"{scripted_server}/{name.replace(' ', '%20')}"
    expected, expected_error = asyncio.run(read_pulled(url))
    for pushed in (False, True):
        got, error = asyncio.run(read_with_body(url, pushed))
        assert (b"".join(got), error) == (b"".join(expected), expected_error), "pushed" if pushed else "pulled"
        assert all(got)  # no empty piece before the end


@pytest.mark.parametrize("pushed", [False, True])
def test_each_piece_is_one_read_of_the_connection(scripted_server, pushed):
    """One chunk a segment: a piece per segment, never two segments merged (each keeps its own arrival)."""
    got, error = asyncio.run(read_with_body(f"{scripted_server}/one%20chunk%20a%20segment", pushed))
    assert (got, error) == ([EVENT, EVENT], None)
