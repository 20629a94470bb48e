"""The probe's own network backend under httpx: TLS, resets, idle timeouts and address fallback behave as before."""

from __future__ import annotations

import asyncio
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from conftest import probe_json, require_binary

from monitor.network import _Protocol, _Stream
from monitor.probe import run_probe
from monitor.result import ProbeSpec
from monitor.simulator import create_app

CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def tls_simulator(tmp_path_factory) -> Iterator[str]:
    """The simulator behind TLS with a self-signed certificate for 127.0.0.1 and localhost. Yields the port."""
    openssl = require_binary("openssl")
    where: Path = tmp_path_factory.mktemp("tls")
    key, cert = where / "key.pem", where / "cert.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    sock = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(), log_level="warning", lifespan="off",
                            ssl_certfile=str(cert), ssl_keyfile=str(key))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield sock.getsockname()[1]
    server.should_exit = True
    thread.join(10)


def test_a_tls_stream_is_timed_and_counted_like_a_plain_one(tls_simulator):
    status, r = probe_json(f"https://127.0.0.1:{tls_simulator}{CHAT}?ttft=0.1&tokens=8&rate=50", "--insecure")
    assert (status, r["outcome"], r["reason"], r["token_events"]) == (0, "completed", "ok", 8)
    assert 0 < r["connect_seconds"] < r["tls_seconds"] < r["headers_seconds"] < r["ttft_seconds"]
    assert 0.1 <= r["ttft_seconds"] < 0.5


def test_an_untrusted_certificate_is_a_tls_error_naming_the_reason(tls_simulator):
    status, r = probe_json(f"https://localhost:{tls_simulator}{CHAT}?tokens=2")
    assert (status, r["outcome"], r["reason"]) == (1, "failed", "tls_error")
    assert "CERTIFICATE_VERIFY_FAILED" in r["detail"]


def test_a_tls_stream_cut_mid_way_is_connection_lost(tls_simulator):
    _, r = probe_json(f"https://127.0.0.1:{tls_simulator}{CHAT}?ttft=0&tokens=5&rate=50&drop_after=2", "--insecure")
    assert (r["outcome"], r["reason"], r["token_events"]) == ("ended_early", "connection_lost", 2)
    assert "incomplete chunked read" in r["detail"]


def test_a_reset_mid_stream_is_connection_lost_with_httpx_read_error():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def answer() -> None:
            conn, _ = server.accept()
            conn.recv(65536)
            body = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                         + b"%x\r\n" % len(body) + body + b"\r\n")
            time.sleep(0.2)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a RST
            conn.close()

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        _, r = probe_json(f"http://127.0.0.1:{port}{CHAT}")
        thread.join(5)
    assert (r["outcome"], r["reason"], r["token_events"]) == ("ended_early", "connection_lost", 1)
    assert r["detail"] == "the connection was lost mid-stream: ReadError"


def test_gaps_shorter_than_the_idle_timeout_never_add_up_to_one(simulator):
    # 0.2 s gaps for 2 s under a 0.3 s idle timeout: the one lazily re-armed timer must follow each read
    status, r = probe_json(f"{simulator}{CHAT}?ttft=0.1&tokens=10&rate=5", "--idle-timeout", "0.3")
    assert (status, r["outcome"], r["token_events"]) == (0, "completed", 10)


def test_a_pause_past_the_idle_timeout_ends_it_on_time(simulator):
    _, r = probe_json(f"{simulator}{CHAT}?ttft=0.1&tokens=10&rate=5&pause_after=3&pause=1", "--idle-timeout", "0.3")
    assert (r["outcome"], r["reason"], r["token_events"]) == ("ended_early", "idle_timeout", 3)
    assert 0.3 <= r["max_silence_seconds"] < 0.35


def test_a_name_with_several_addresses_falls_back_to_the_one_that_answers(simulator):
    # localhost is ::1 and 127.0.0.1; the simulator listens on 127.0.0.1 only
    port = simulator.rsplit(":", 1)[1]
    status, r = probe_json(f"http://localhost:{port}{CHAT}?ttft=0&tokens=3&rate=100")
    assert (status, r["outcome"], r["token_events"]) == (0, "completed", 3)


def test_no_answer_at_all_is_a_connect_error_worded_as_before():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        _, r = probe_json(f"http://127.0.0.1:{port}{CHAT}")
    assert (r["outcome"], r["reason"], r["detail"]) == ("failed", "connect_error", "cannot connect: All connection attempts failed")


def test_what_arrived_while_nobody_read_is_handed_over_at_once_up_to_the_limit():
    async def scenario() -> list[bytes]:
        loop = asyncio.get_running_loop()
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, protocol = await loop.create_connection(_Protocol, "127.0.0.1", port)
        stream = _Stream(transport, protocol)
        for piece in (b"a" * 10, b"b" * 10, b"c" * 10):
            protocol.data_received(piece)
        reads = [await stream.read(25), await stream.read(25)]
        protocol.data_received(b"d" * 40)
        reads += [await stream.read(25), await stream.read(25)]
        protocol.eof_received()
        reads.append(await stream.read(25))
        await stream.aclose()
        server.close()
        return reads

    assert asyncio.run(scenario()) == [b"a" * 10 + b"b" * 10, b"c" * 10, b"d" * 25, b"d" * 15, b""]


def test_a_probe_frees_what_it_used_without_the_garbage_collector(simulator):
    import gc

    async def scenario() -> list[str]:
        spec = ProbeSpec(url=f"{simulator}{CHAT}?ttft=0&tokens=5&rate=1000")
        await run_probe(spec)  # warm
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            result = await run_probe(spec)
            assert result.outcome == "completed"
            await asyncio.sleep(0.05)
            gc.collect()
            return sorted({f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage})
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()

    left = asyncio.run(scenario())  # (asyncio's own socket transport holds a cycle of its own: not ours)
    assert [name for name in left if name.startswith(("httpx.", "httpcore.", "h11.", "monitor."))] == []
