"""The simulator under load (the benchmark's instrument, not the product): its CPU and its own lateness at N streams.

    python3 bench/simulator_load.py --streams 1000,2000      # ~30 s a level

Starts this tree's simulator (`python -m monitor.simulator --truth-log FILE`, as bench/process.py does) pinned to
core 1, and a client process pinned to core 0 that keeps N OpenAI-chat streams open (`ttft=0.5&tokens=60&rate=20`,
one request per connection, each slot opening the next at the tick after one ends, the first requests spread over
one stream's length). After a warm-up, over a window: the simulator's CPU (utime + stime from /proc) as a share of
its core and per event received by the client, the other processes' share of each core (`foreign`), and the
simulator's lateness (sent minus due for every token event) from two readings of its GET /-/lateness. Prints one
line per level and writes JSON (--out). Linux only, two cores; only 127.0.0.1 is contacted; every loop is bounded in
count and time.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from processes import Simulator, core_busy, pinned, proc_cpu, say, sleep_until
from workload import OUT, ROOT

from monitor.simulator.lateness import summary, window

QUERY = "ttft=0.5&tokens=60&rate=20"
STREAM_SECONDS = 0.5 + 59 / 20  # first token at 0.5 s, then 59 more at 20 per second
MAX_REQUESTS = 200_000  # a bound beside the time bound


class _Client:
    """N slots, each one request at a time on its own connection, read every TICK seconds (a socket's buffer holds a
    whole stream, so reading late changes nothing the simulator sees, and costs the client a read per tick, not per
    event)."""

    TICK = 0.05

    def __init__(self, port: int, streams: int, query: str) -> None:
        self.request = (f"GET /v1/chat/completions?{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                        "Connection: close\r\n\r\n").encode()
        self.port, self.streams = port, streams
        self.poll = select.epoll()
        self.open: dict[int, tuple[socket.socket, bytes]] = {}  # fd: (socket, its last byte read)
        self.events = self.done = self.failed = self.requests = 0

    def run(self, window_from: float, window_to: float, end: float) -> dict[str, Any]:
        begin, samples = time.time(), []
        while (now := time.time()) < end:
            started = min(self.streams, int((now - begin) / STREAM_SECONDS * self.streams) + 1)
            while len(self.open) < started and self.requests < MAX_REQUESTS:
                self._connect()
            counted = window_from <= now < window_to
            for fd, _ in self.poll.poll(0):
                self._read(fd, counted)
            if counted:
                samples.append(len(self.open))
            time.sleep(self.TICK)
        return {"events": self.events, "streams_done": self.done, "failed": self.failed,
                "open_mean": round(sum(samples) / max(len(samples), 1), 1)}

    def _connect(self) -> None:
        self.requests += 1
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            sock.sendall(self.request)
        except OSError:
            self.failed += 1
            return
        sock.setblocking(False)
        self.open[sock.fileno()] = (sock, b"")
        self.poll.register(sock.fileno(), select.EPOLLIN)

    def _read(self, fd: int, counted: bool) -> None:
        sock, last = self.open[fd]
        try:
            data = sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data, self.failed = b"", self.failed + 1
        if counted:
            self.events += data.count(b"\n\n") + (last == b"\n" and data[:1] == b"\n")
            self.done += data.count(b"[DONE]")
        if data:
            self.open[fd] = (sock, data[-1:])
            return
        self.poll.unregister(fd)
        del self.open[fd]
        sock.close()


def client_main(port: int, streams: int, query: str, window_from: float, window_to: float, end: float) -> None:
    print(json.dumps(_Client(port, streams, query).run(window_from, window_to, end)), flush=True)


def _system_cpu(pid: int) -> float:
    """stime of a process, seconds: its time in the kernel (sends on loopback, accepts, closes)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[12]) / os.sysconf("SC_CLK_TCK")


def _softirq(core: int) -> float:
    """Seconds a core spent in softirqs since boot (/proc/stat): on loopback, much of TCP's work for both ends."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            return int(line.split()[7]) / os.sysconf("SC_CLK_TCK")
    return 0.0


def _lateness(base_url: str) -> dict[str, Any]:
    """A reading of the simulator's GET /-/lateness (127.0.0.1; never through a proxy from the environment)."""
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(f"{base_url}/-/lateness", timeout=10) as r:
        return json.load(r)


def level(python: str, streams: int, query: str, warmup: float, seconds: float,
          cores: tuple[int, int]) -> dict[str, Any]:
    """One level: a fresh simulator and client; the window's figures."""
    run = OUT / "simulator-load"
    run.mkdir(parents=True, exist_ok=True)
    sim = Simulator(python, cores[1], run / f"truth-{streams}.jsonl", run / f"simulator-{streams}.stderr")
    port = int(sim.base_url.rsplit(":", 1)[1])
    start = time.time()
    window_from, window_to = start + warmup, start + warmup + seconds
    client = subprocess.Popen(
        [python, __file__, "--client", str(port), str(streams), query, str(window_from), str(window_to),
         str(window_to + 1)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT, preexec_fn=pinned(cores[0]))
    try:
        sleep_until(window_from)
        cpu0, sys0, busy0, t0 = proc_cpu(sim.proc.pid), _system_cpu(sim.proc.pid), core_busy(list(cores)), time.time()
        soft0 = _softirq(cores[1])
        late0 = _lateness(sim.base_url)
        sleep_until(window_to)
        cpu1, sys1, busy1, t1 = proc_cpu(sim.proc.pid), _system_cpu(sim.proc.pid), core_busy(list(cores)), time.time()
        soft1 = _softirq(cores[1])
        late1 = _lateness(sim.base_url)
        out, _ = client.communicate(timeout=STREAM_SECONDS + 30)
    finally:
        client.kill()
        sim.stop()
    got = json.loads(out)
    elapsed, cpu = t1 - t0, cpu1 - cpu0
    late = summary(window(late0, late1))
    return {
        "streams": streams, "open_mean": got["open_mean"], "window_seconds": round(elapsed, 2),
        "events": got["events"], "events_per_second": round(got["events"] / elapsed),
        "streams_done": got["streams_done"], "failed": got["failed"],
        "simulator_core_share": round(cpu / elapsed, 3),
        "simulator_cpu_us_per_event": round(cpu / max(got["events"], 1) * 1e6, 1),
        "simulator_system_us_per_event": round((sys1 - sys0) / max(got["events"], 1) * 1e6, 1),
        "client_core_busy_share": round((busy1[cores[0]] - busy0[cores[0]]) / elapsed, 3),
        "simulator_core_foreign_share": round((busy1[cores[1]] - busy0[cores[1]] - cpu) / elapsed, 3),
        "simulator_core_softirq_share": round((soft1 - soft0) / elapsed, 3),
        "lateness": {**late, "max_seconds_since_start": late1["max_seconds"]},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", default="1000,2000", help="comma-separated stream counts (default 1000,2000)")
    parser.add_argument("--warmup", type=float, default=8.0, help="seconds before the window (default 8)")
    parser.add_argument("--window", type=float, default=20.0, help="the window, seconds (default 20, at most 40)")
    parser.add_argument("--query", default=QUERY, help=f"each request's parameters (default {QUERY})")
    parser.add_argument("--python", default=sys.executable, help="the interpreter that runs the simulator and client")
    parser.add_argument("--cores", default="0,1", help="client core, simulator core (default 0,1)")
    parser.add_argument("--out", type=Path, help="write the results as JSON to this file")
    parser.add_argument("--client", nargs=6, help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.client:
        port, streams, query, *times = opts.client
        client_main(int(port), int(streams), query, *map(float, times))
        return 0
    cores = tuple(int(c) for c in opts.cores.split(","))
    results = []
    for n in (int(s) for s in opts.streams.split(",")):
        r = level(opts.python, n, opts.query, opts.warmup, min(opts.window, 40.0), cores)
        late = r["lateness"]
        say(f"{n} streams (open {r['open_mean']}): simulator {r['simulator_core_share']:.0%} of its core, "
            f"{r['simulator_cpu_us_per_event']} µs/event ({r['simulator_system_us_per_event']} in the kernel), "
            f"{r['events_per_second']} events/s; lateness p50 "
            f"{_ms(late['p50_seconds'])} p99 {_ms(late['p99_seconds'])} max {_ms(late['top_seconds'])} ms, "
            f"{late['early']} early of {late['events']}; its core: {r['simulator_core_foreign_share']:.0%} not the "
            f"simulator's ({r['simulator_core_softirq_share']:.0%} softirq)")
        results.append(r)
    if opts.out:
        opts.out.write_text(json.dumps({"benchmark": "bench/simulator_load.py: the simulator (not the product)",
                                        "query": opts.query, "levels": results}, indent=2) + "\n")
    return 0


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.2f}"


if __name__ == "__main__":
    sys.exit(main())
