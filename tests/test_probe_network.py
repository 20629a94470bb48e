"""The probe's own network backend under httpx: TLS, resets, idle timeouts and address fallback behave as before."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, free_port, probe_json, require_binary, wait_for_port

from monitor import network
from monitor.network import Arrival, _Socket, _Stream
from monitor.probe import run_probe
from monitor.result import ProbeResult, ProbeSpec
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
    port = free_port()
    # its own process, as a real origin is: a thread of the test process would share its GIL with the probe
    code = ("import uvicorn; from monitor.simulator import create_app; "
            f"uvicorn.run(create_app(), host='127.0.0.1', port={port}, log_level='warning', lifespan='off', "
            f"ssl_certfile={str(cert)!r}, ssl_keyfile={str(key)!r})")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        wait_for_port(port, proc=proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_tls_stream_is_timed_and_counted_like_a_plain_one(tls_simulator):
    status, r = probe_json(f"https://127.0.0.1:{tls_simulator}{CHAT}?ttft=0.1&tokens=8&rate=50", "--insecure")
    assert (status, r["outcome"], r["reason"], r["token_events"]) == (0, "completed", "ok", 8)
    assert 0 < r["connect_seconds"] < 0.05 and 0 < r["tls_seconds"] < 0.1  # set-up, before the request
    assert 0 < r["headers_seconds"] <= r["first_byte_seconds"] < r["ttft_seconds"]
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
    assert r["detail"] == "the connection was lost mid-stream: [Errno 104] Connection reset by peer"


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


def test_each_read_hands_over_one_arrival_in_pieces_of_at_most_the_limit():
    async def scenario() -> list[tuple[bytes, float | None]]:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        raw = _Socket(sock, asyncio.get_running_loop())
        stream = _Stream(raw)
        for piece, stamp in ((b"a" * 10, 1.0), (b"b" * 10, 2.0), (b"c" * 40, 3.0)):  # three reads of the socket
            raw.chunks.append((piece, Arrival(stamp, 0.0)))
            raw.size += len(piece)
        reads = []
        for _ in range(4):
            data = await stream.read(25)
            reads.append((data, stream.arrival.stamp))
        raw.eof = True
        reads.append((await stream.read(25), stream.arrival.stamp))
        await stream.aclose()
        server.close()
        return reads

    # never merged across reads (each keeps its own stamp), split where the reader asks for less
    assert asyncio.run(scenario()) == [(b"a" * 10, 1.0), (b"b" * 10, 2.0), (b"c" * 25, 3.0), (b"c" * 15, 3.0),
                                       (b"", None)]


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


def test_a_finished_probe_leaves_nothing_of_its_connection_alive(simulator):
    """Nothing scheduled on the loop (a read deadline, an idle timer) keeps a finished probe's connection objects:
    memory follows the open streams, not the probes of the last read timeout (90 s by default)."""
    import gc

    async def scenario() -> tuple[int, int]:
        spec = ProbeSpec(url=f"{simulator}{CHAT}?ttft=0.05&tokens=5&rate=100")
        results = await asyncio.gather(*(run_probe(spec) for _ in range(5)))
        assert [r.outcome for r in results] == ["completed"] * 5
        await asyncio.sleep(0.05)
        gc.collect()
        streams = sum(isinstance(o, _Stream) for o in gc.get_objects())
        sockets = sum(isinstance(o, _Socket) for o in gc.get_objects())
        return streams, sockets

    assert asyncio.run(scenario()) == (0, 0)


# -- kernel receive timestamps -----------------------------------------------------------------------------------------


async def _probe_with_the_loop_blocked(url: str, block_at: float, block_for: float) -> ProbeResult:
    """A probe while the event loop does `block_for` seconds of busy work, `block_at` seconds after it starts."""
    probe = asyncio.create_task(run_probe(ProbeSpec(url=url, trace=True, verify_tls=False)))
    await asyncio.sleep(block_at)
    end = time.perf_counter() + block_for
    while time.perf_counter() < end:  # busy: nothing else runs on the loop meanwhile
        pass
    return await probe


def _token_errors(result: ProbeResult) -> list[float]:
    """For every token event: its reported arrival minus when the simulator sent it (its `sim_sent`, CLOCK_MONOTONIC,
    turned into wall-clock time, which the result's times are measured on)."""
    offset = time.time() - time.monotonic()
    return [result.started_at + entry["t"] - (chunk["sim_sent"] + offset) for entry, chunk in _tokens(result)]


def _tokens(result: ProbeResult) -> list[tuple[dict, dict]]:
    """The trace's token events (a chunk with content), each with its parsed data."""
    tokens = []
    for entry in result.trace:
        if entry["kind"] == "event" and entry["data"].startswith("{"):
            chunk = json.loads(entry["data"])
            if chunk.get("choices") and chunk["choices"][0].get("delta", {}).get("content"):
                tokens.append((entry, chunk))
    return tokens


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_loop_blocked_while_the_first_token_arrives_does_not_move_the_ttft(scheme, simulator, tls_simulator):
    # the first token comes at 0.5 s and three more during the 250 ms the loop is busy
    base = simulator if scheme == "http" else f"https://127.0.0.1:{tls_simulator}"
    result = asyncio.run(_probe_with_the_loop_blocked(f"{base}{CHAT}?ttft=0.5&tokens=8&rate=20", 0.4, 0.25))
    assert (result.outcome, result.clock, result.token_events) == ("completed", "kernel", 8)
    errors = _token_errors(result)
    assert len(errors) == 8
    assert 0 <= errors[0] < 0.002, f"TTFT off by {errors[0] * 1000:.1f} ms"
    assert max(abs(e) for e in errors) < 0.002, [round(e * 1000, 2) for e in errors]
    # the reported TTFT is that first token's arrival, measured from the connection's start
    assert result.ttft_seconds == pytest.approx(_tokens(result)[0][0]["t"], abs=1e-6)


def test_without_kernel_stamps_the_user_clock_is_used_and_said(simulator, monkeypatch):
    monkeypatch.setattr(network, "KERNEL_TIMESTAMPS", False)
    result = asyncio.run(_probe_with_the_loop_blocked(f"{simulator}{CHAT}?ttft=0.5&tokens=8&rate=20", 0.4, 0.25))
    assert (result.outcome, result.clock) == ("completed", "user")
    # read by the stall reader's thread, which gets the GIL at least every switch interval (5 ms) while the loop is busy
    assert max(_token_errors(result)) < 0.02


def test_the_json_output_says_which_clock(simulator):
    status, r = probe_json(f"{simulator}{CHAT}?ttft=0.1&tokens=3&rate=50")
    assert (status, r["clock"]) == (0, "kernel")


# -- budgets and fairness ----------------------------------------------------------------------------------------------

FLOOD = f"{CHAT}?ttft=0&endless=1&rate=1000000"  # valid events as fast as the simulator can write, never ending


@pytest.mark.parametrize(("budget", "reason", "named"), [
    ({"max_events": 5000}, "too_many_events", "max_events (5,000)"),
    ({"max_stream_bytes": 1 << 20}, "too_many_bytes", "max_stream_bytes (1 MiB)"),
])
def test_each_budget_ends_a_flooding_stream_with_its_own_reason(simulator, budget, reason, named):
    result = asyncio.run(run_probe(ProbeSpec(url=simulator + FLOOD, **budget)))
    assert (result.outcome, result.reason) == ("failed", reason)
    assert result.detail.startswith(f"the stream exceeded {named} after ")
    assert "SSEProbeFailed" in result.alerts
    if reason == "too_many_events":
        assert result.events + result.comments == 5000
    else:
        assert 1 << 20 < result.bytes <= (1 << 20) + network.PIECE_BYTES


def test_a_healthy_stream_beside_a_flooding_one_keeps_its_timing(simulator):
    async def both() -> tuple[ProbeResult, ProbeResult]:
        flood = asyncio.create_task(run_probe(ProbeSpec(url=simulator + FLOOD, max_events=150_000)))
        await asyncio.sleep(0.3)  # the flood is in full swing
        healthy = await run_probe(ProbeSpec(url=f"{simulator}{CHAT}?ttft=0.3&tokens=20&rate=20", trace=True))
        flood.cancel()
        return healthy, await asyncio.gather(flood, return_exceptions=True)

    healthy, _ = asyncio.run(both())
    assert (healthy.outcome, healthy.clock, healthy.warnings) == ("completed", "kernel", [])
    errors = _token_errors(healthy)
    assert len(errors) == 20
    assert max(abs(e) for e in errors) < 0.002, [round(e * 1000, 2) for e in errors]


def test_a_flooding_stream_is_paused_and_says_so(simulator):
    result = asyncio.run(run_probe(ProbeSpec(url=simulator + FLOOD, max_events=30_000)))
    assert (result.reason, result.warnings) == ("too_many_events", ["stream_throttled"])


def test_streams_reset_at_once_are_all_noticed_at_once_on_the_daemons_loop():
    """uvloop (the daemon's loop) never calls a reader back for a socket in error: libuv stops a poll handle that
    reports POLLERR, here an event with a reset right behind it. Six streams cut so must still end as connection_lost
    right then, not at their idle timeout (before network._StallReader watched for errors, all six ended 15 s later)."""
    uvloop = pytest.importorskip("uvloop")
    server = socket.create_server(("127.0.0.1", 0), backlog=16)
    port = server.getsockname()[1]
    body = b'data: {"n":1}\n\n'
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"

    def serve() -> None:
        conns = []
        for _ in range(6):
            conn, _ = server.accept()
            conn.recv(65536)
            conn.sendall(head)
            conns.append(conn)
        for _ in range(10):  # streaming: an event every 50 ms on each
            time.sleep(0.05)
            for conn in conns:
                conn.sendall(b"%x\r\n%s\r\n" % (len(body), body))
        for conn in conns:  # then, right behind the last event, a RST on each (as a proxy cutting mid-stream)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    async def probes() -> list[ProbeResult]:
        spec = ProbeSpec(url=f"http://127.0.0.1:{port}/", dialect="generic", terminal_event="done",
                         idle_timeout=15, timeout=30)
        return await asyncio.gather(*(run_probe(spec) for _ in range(6)))

    try:
        results = uvloop.run(probes())
    finally:
        server.close()
        thread.join(5)
    for r in results:
        assert (r.outcome, r.reason) == ("ended_early", "connection_lost"), (r.reason, r.detail)
        assert "reset" in r.detail and r.duration_seconds < 2.0, (r.duration_seconds, r.detail)
