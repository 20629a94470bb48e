"""Where a probe's CPU per event goes, layer by layer: an in-process experiment (not the product's figures).

    python3 bench/readpath.py                        # each layer at 200 streams, 15 s windows; ~2 minutes
    python3 bench/readpath.py --streams 500 --window 20 --layers protocol,run_probe

This tree's simulator (pinned to core 1) serves N OpenAI-chat streams of 20 events/s; this process (pinned to core 0,
uvloop) keeps N of them open, a new request as soon as one ends, reading them with one layer of the probe's read path
at a time, each adding to the one before:

  protocol    uvloop's own transport and a Protocol that counts events: the floor of an event loop reading sockets
  recvmsg     a reader callback per socket doing what network._Socket does at its core: recvmsg_into with the
              kernel's receive stamp, a copy of the bytes
  socket      network._Socket and _Stream (the stall reader, fairness, arrivals), the body pushed to a consumer that
              only counts
  transport   monitor.transport.ProbeTransport: h11 for the head, http_body for the chunked body, httpx objects
  run_probe   the whole probe (monitor.probe.run_probe): the recorder, the SSE decoder, the dialect, the result

The figure is this process's CPU (utime + stime, all its threads) over the window, per event received. The daemon
adds its scheduler, log line, metrics and history to the last layer (bench/process.py measures that).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from processes import Simulator  # noqa: E402
from workload import RUN_DIR  # noqa: E402

LAYERS = ("protocol", "recvmsg", "socket", "transport", "run_probe")
QUERY = "ttft=0.5&tokens=60&rate=20"
PATH = "/v1/chat/completions"
BODY = json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()


def raw_request(host: str, port: int) -> bytes:
    return (f"POST {PATH}?{QUERY} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(BODY)}\r\nconnection: close\r\n\r\n").encode() + BODY


class Counter:
    def __init__(self) -> None:
        self.events = 0


class CountingProtocol(asyncio.Protocol):
    def __init__(self, counter: Counter, done: asyncio.Future) -> None:
        self.counter, self.done = counter, done

    def data_received(self, data: bytes) -> None:
        self.counter.events += data.count(b"data:")

    def connection_lost(self, exc) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def one_protocol(host: str, port: int, counter: Counter) -> None:
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    transport, _ = await loop.create_connection(lambda: CountingProtocol(counter, done), host, port)
    transport.write(raw_request(host, port))
    await done
    transport.close()


async def one_recvmsg(host: str, port: int, counter: Counter) -> None:
    from monitor import network

    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, (host, port))
    network._enable_stamps(sock)
    done = loop.create_future()
    buffer = memoryview(bytearray(network.RECV_BYTES))

    def readable() -> None:
        try:
            size, ancillary, _, _ = sock.recvmsg_into((buffer,), network._ANCILLARY_BYTES)
        except BlockingIOError:
            return
        if not size:
            loop.remove_reader(sock.fileno())
            done.set_result(None)
            return
        stamp = network._stamp_of(ancillary)
        data = buffer[:size].tobytes()
        piece = (data, stamp, time.perf_counter())  # what network._Socket keeps for each read
        counter.events += piece[0].count(b"data:")

    await loop.sock_sendall(sock, raw_request(host, port))
    loop.add_reader(sock.fileno(), readable)
    await done
    sock.close()


async def one_socket(host: str, port: int, counter: Counter) -> None:
    from monitor import network

    stream = await network._BACKEND.connect_tcp(host, port)
    try:
        await stream.write(raw_request(host, port))
        head = b""
        while b"\r\n\r\n" not in head:
            piece = await stream.read(65536)
            if not piece:
                return
            head += piece

        def consume(data: bytes) -> bool:
            counter.events += data.count(b"data:")
            return not data

        await stream.pump(consume)
    finally:
        await stream.aclose()


async def one_transport(host: str, port: int, counter: Counter) -> None:
    import httpx

    from monitor.transport import ProbeTransport

    request = httpx.Request("POST", f"http://{host}:{port}{PATH}?{QUERY}", content=BODY,
                            headers={"content-type": "application/json"})
    async with ProbeTransport(True) as transport:
        response = await transport.handle_async_request(request)
        try:
            def on_payload(data: bytes) -> bool:
                counter.events += data.count(b"data:")
                return False

            await response.stream.pump(on_payload)
        finally:
            await response.aclose()


async def one_run_probe(host: str, port: int, counter: Counter) -> None:
    from monitor.probe import ProbeSpec, run_probe

    result = await run_probe(ProbeSpec(url=f"http://{host}:{port}{PATH}?{QUERY}"))
    counter.events += result.events


ONE = {"protocol": one_protocol, "recvmsg": one_recvmsg, "socket": one_socket, "transport": one_transport,
       "run_probe": one_run_probe}


async def measure(layer: str, host: str, port: int, streams: int, window: float) -> dict:
    counter = Counter()
    probes = 0
    stop = time.monotonic() + 4 + window + 1  # warm-up, window, a little past it

    async def slot(delay: float) -> None:
        nonlocal probes
        await asyncio.sleep(delay)
        while time.monotonic() < stop:
            await ONE[layer](host, port, counter)
            probes += 1

    tasks = [asyncio.create_task(slot(i * 3.5 / streams)) for i in range(streams)]  # spread over one stream
    await asyncio.sleep(4)
    usage0, events0, probes0, t0 = resource.getrusage(resource.RUSAGE_SELF), counter.events, probes, time.monotonic()
    await asyncio.sleep(window)
    usage1, events1, probes1, t1 = resource.getrusage(resource.RUSAGE_SELF), counter.events, probes, time.monotonic()
    await asyncio.gather(*tasks, return_exceptions=True)
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    events = events1 - events0
    return {"layer": layer, "streams": streams, "window_seconds": round(t1 - t0, 2), "events": events,
            "probes": probes1 - probes0, "core_share": round(cpu / (t1 - t0), 3),
            "cpu_us_per_event": round(cpu / events * 1e6, 1) if events else None,
            "system_share": round(((usage1.ru_stime - usage0.ru_stime)) / (t1 - t0), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--window", type=float, default=15.0)
    parser.add_argument("--layers", default=",".join(LAYERS))
    parser.add_argument("--out", type=Path)
    opts = parser.parse_args()
    import uvloop

    os.sched_setaffinity(0, {0})
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    simulator = Simulator(sys.executable, 1, RUN_DIR / "readpath-truth.jsonl", RUN_DIR / "readpath-simulator.stderr")
    rows = []
    try:
        host, port = simulator.base_url.split("//")[1].split(":")
        for layer in opts.layers.split(","):
            row = uvloop.run(measure(layer, host, int(port), opts.streams, opts.window))
            rows.append(row)
            print(f"{layer:10s} {row['cpu_us_per_event']:6.1f} us/event  core {row['core_share'] * 100:5.1f} % "
                  f"(system {row['system_share'] * 100:4.1f} %)  {row['events']} events, {row['probes']} probes",
                  flush=True)
    finally:
        simulator.stop()
    if opts.out:
        opts.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
