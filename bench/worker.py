"""One measurement in a fresh process (so ru_maxrss and CPU time are its own), pinned by bench/run.py: the
in-process micro-benchmark (not the product's figures: see bench/process.py).

    python bench/worker.py load   --base URL --streams N --seconds S --mode cpu|timing --out FILE
    python bench/worker.py scrape --targets 1000 --scrapes 9 --out FILE

`load` drives N concurrent streams through the daemon's own path: a real `Daemon` built from a YAML config of N
targets, each stream run by `Daemon._run_target(name)` (semaphore, run_probe, lag check, record: metrics and the
probe_finished log line, result listeners). The scheduler is not started: each of the N slots runs its target back
to back, the slots' first starts spread over one stream length so connection set-ups are spread too, until the
time is up. The daemon's LoopLagMonitor runs as in production.

  --mode cpu     no instrumentation at all: process CPU time and ru_maxrss over the whole run, divided by the
                 events the results counted.
  --mode timing  one hook around StreamRecorder._on_item records, per event, the arrival time the probe itself
                 measured (recorder.started + now, perf_counter) and the simulator's `sim_sent` (both read
                 CLOCK_MONOTONIC), into flat arrays of floats; nothing else changes.

Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import gc
import itertools
import json
import math
import os
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE = os.environ.get("SSE_BENCH_CODE") or str(ROOT)  # the tree whose `monitor` is measured (run.py --code)
sys.path.insert(0, CODE)

from monitor.cli import run_async  # the daemon's loop: uvloop when installed
from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.logs import configure_logging
from monitor.result import WARNING_EVENT_LOOP_LAG

PATH = "/v1/chat/completions"


_OUTCOMES = [("completed", "ok", []), ("ended_early", "connection_lost", ["SSEProbeStreamEndedEarly"]),
             ("completed", "ok", ["SSEProbeTTFTHigh"])]


def _record_finished(daemon: Daemon, name: str, rng, variant: int) -> None:
    """A finished run of a 100-token stream, recorded by the daemon as a real one is (metrics, log line)."""
    from monitor.result import ProbeResult

    outcome, reason, alerts = _OUTCOMES[variant % 3]
    ttft = rng.uniform(0.2, 3.0)
    times = array.array("d", (ttft + j * rng.uniform(0.03, 0.07) for j in range(100)))
    result = ProbeResult(url="http://127.0.0.1:9/v1/chat/completions", dialect="openai-chat", outcome=outcome,
                         reason=reason, status_code=200, started_at=time.time(), headers_seconds=0.05,
                         first_byte_seconds=0.06, first_event_seconds=0.06, ttft_seconds=ttft,
                         duration_seconds=times[-1] + 0.01, events=103, token_events=100,
                         max_silence_seconds=0.07, alerts=list(alerts), token_times=times)
    daemon.record(name, result)


async def _start_scraper(daemon: Daemon, args: argparse.Namespace, out: Path, scrapes: int, interval: float,
                         delay: float):
    """The daemon's /metrics served as in production, and a scraping process on its own core (none of the daemon's
    CPU). Returns (server, client process)."""
    from monitor.serving import AppServer
    from monitor.web import create_app

    server = AppServer(create_app(daemon), "127.0.0.1", 0)
    await server.start()
    client = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "scrape-client", "--url", server.base_url + "/metrics", "--scrapes", str(scrapes),
        "--interval", str(interval), "--delay", str(delay), "--out", str(out))
    if args.client_core is not None:
        os.sched_setaffinity(client.pid, {args.client_core})
    return server, client


def _loopback(base: str) -> str:
    host = base.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
    if host not in ("127.0.0.1", "localhost"):
        raise SystemExit(f"refusing to send load to {host!r}: the benchmark only talks to 127.0.0.1")
    return base.rstrip("/")


def _write_config(path: Path, base: str, n: int, query: str, max_concurrent: int) -> None:
    lines = [
        "defaults: {interval: 24h, timeout: 120s, idle_timeout: 30s, ttft_threshold: 2s}",
        f"scheduler: {{jitter: 0s, max_concurrent: {max_concurrent}}}",
        "server: {listen: '127.0.0.1:0'}",
        "targets:",
    ]
    for i in range(n):
        lines.append(f"  - {{name: s{i:04d}, dialect: openai-chat, url: '{base}{PATH}?{query}'}}")
    path.write_text("\n".join(lines) + "\n")


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _summary_ms(values: list[float]) -> dict:
    return {
        "n": len(values),
        "p50_ms": _ms(percentile(values, 50)),
        "p99_ms": _ms(percentile(values, 99)),
        "max_ms": _ms(max(values) if values else None),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


# ---- load ------------------------------------------------------------------------------------------------------------


async def _load(args: argparse.Namespace) -> dict:
    base = _loopback(args.base)
    n = args.streams
    stream_seconds = args.ttft + args.tokens / args.rate
    query = f"ttft={args.ttft}&tokens={args.tokens}&rate={args.rate}"
    out_dir = Path(args.out).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path = out_dir / f"load-{n}-{args.mode}.yaml"
    scraped = bool(args.scrape_every)  # the first N targets stream; the others only fill /metrics
    _write_config(config_path, base, max(n, args.scrape_targets if scraped else 0), query, max_concurrent=max(n, 1))
    daemon = Daemon(load_config(config_path), listen="127.0.0.1:0")
    names = list(daemon.specs)[:n]
    timing = args.mode == "timing"
    if scraped:
        import random

        rng = random.Random(7)
        for i, name in enumerate(list(daemon.specs)[n:]):
            for k in range(3):
                _record_finished(daemon, name, rng, i + k if k == 2 else 0)

    totals = {"probes": 0, "events": 0, "token_events": 0, "lagged": 0, "outcomes": {}}

    probe_log = _TimingHook(args.rate) if timing else None
    if probe_log is not None:
        probe_log.install()

    def listener(target, result) -> None:
        totals["probes"] += 1
        totals["events"] += result.events
        totals["token_events"] += result.token_events
        key = f"{result.outcome}/{result.reason}"
        totals["outcomes"][key] = totals["outcomes"].get(key, 0) + 1
        if WARNING_EVENT_LOOP_LAG in result.warnings:
            totals["lagged"] += 1
        if probe_log is not None:
            probe_log.finished(result)

    daemon.result_listeners.append(listener)

    loop = asyncio.get_running_loop()
    # warm-up, as in a long-running daemon: the shared SSL context, first-use code paths
    from monitor.probe import run_probe
    from monitor.result import ProbeSpec

    await run_probe(ProbeSpec(url=f"{base}{PATH}?ttft=0&tokens=2&rate=1000", dialect="openai-chat"))
    daemon.lag.start()
    await asyncio.sleep(0.3)  # the lag monitor's first samples
    report_gc = {"tracked_objects_at_start": len(gc.get_objects()), "gc": _apply_gc(args.gc)}
    gc_before = [g["collections"] for g in gc.get_stats()]
    pauses = _GcPauses() if timing else None  # instrumentation: timing pass only
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    ramp_end = t0 + stream_seconds  # every slot has started its first stream by now
    stop_at = ramp_end + args.seconds  # no stream starts after this
    stop_loop = loop.time() + (stop_at - t0)

    async def slot(i: int, name: str) -> None:
        await asyncio.sleep(i * stream_seconds / n)
        while loop.time() < stop_loop:
            await daemon._run_target(name)

    scraper = None
    if scraped:  # scrapes spread over the steady window
        count = max(1, int(args.seconds // args.scrape_every))
        scraper = await _start_scraper(daemon, args, Path(args.out).with_suffix(".client.json"), count - 1,
                                       args.scrape_every, (ramp_end - time.perf_counter()) + args.scrape_every / 2)
    window_cpu: list[float] = []  # process CPU at the start and the end of the steady window
    loop.call_at(loop.time() + (ramp_end - t0), lambda: window_cpu.append(time.process_time()))
    loop.call_at(stop_loop, lambda: window_cpu.append(time.process_time()))
    tasks = [asyncio.create_task(slot(i, name)) for i, name in enumerate(names)]
    _, pending = await asyncio.wait(tasks, timeout=(stop_at - t0) + stream_seconds + 30)
    for task in pending:
        task.cancel()
    t1 = time.perf_counter()
    cpu1 = time.process_time()
    scrapes = None
    if scraper is not None:
        server, client = scraper
        await asyncio.wait_for(client.wait(), 120)
        await server.stop()
        client_out = Path(args.out).with_suffix(".client.json")
        scrapes = json.loads(client_out.read_text())
        client_out.unlink()
    report_gc["collections"] = [g["collections"] - b for g, b in zip(gc.get_stats(), gc_before)]
    if pauses is not None:
        report_gc["pauses"] = pauses.stop()
    await daemon.lag.stop()
    usage = resource.getrusage(resource.RUSAGE_SELF)

    lag_samples = _lag_histogram(daemon)
    report = {
        "mode": args.mode,
        "streams": n,
        "rate": args.rate,
        "tokens": args.tokens,
        "ttft": args.ttft,
        "seconds_measured": args.seconds,
        "wall_seconds": round(t1 - t0, 3),
        "cpu_seconds": round(cpu1 - cpu0, 3),
        "cpu_seconds_total": round(cpu1, 3),  # since the process started (imports, config, warm-up included)
        "unfinished_slots": len(pending),
        **{k: v for k, v in totals.items()},
        "events_per_second": round(totals["events"] / (t1 - t0), 1),
        "cpu_us_per_event": round((cpu1 - cpu0) / totals["events"] * 1e6, 2) if totals["events"] else None,
        "cpu_share_of_core": round((cpu1 - cpu0) / (t1 - t0), 3),  # over the whole run, ramps included
        # in the steady window, all streams running (a share near 1.0: the monitor's core is saturated)
        "steady_cpu_share": round((window_cpu[1] - window_cpu[0]) / args.seconds, 3) if len(window_cpu) == 2 else None,
        "max_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "lagged_probes_metric": _lagged_metric(daemon),
        "loop_lag": lag_samples,
        "scrapes_during_run": None if scrapes is None else {
            "targets": args.scrape_targets, "every_seconds": args.scrape_every,
            "times_ms": [round(x, 1) for x in scrapes["times_ms"]], "bytes": scrapes["bytes"],
            "failures": scrapes["failures"]},
        "gc_threshold": list(gc.get_threshold()),
        **report_gc,
    }
    if probe_log is not None:
        report["timing"] = probe_log.summary(ramp_end, stop_at)
    return report


def _lagged_metric(daemon: Daemon) -> float:
    total = 0.0
    for metric in daemon.metrics.registry.collect():
        if metric.name == "sse_monitor_lagged_probes":
            total += sum(s.value for s in metric.samples if s.name.endswith("_total"))
    return total


def _lag_histogram(daemon: Daemon) -> dict:
    out = {}
    for metric in daemon.metrics.registry.collect():
        if metric.name == "sse_monitor_event_loop_lag_seconds":
            for s in metric.samples:
                if s.name.endswith("_count"):
                    out["samples"] = s.value
                elif s.name.endswith("_sum"):
                    out["sum_seconds"] = round(s.value, 4)
                elif s.name.endswith("_bucket") and s.labels["le"] in ("0.005", "0.05"):
                    out["le_" + s.labels["le"]] = s.value
    if out.get("samples"):
        out["over_5ms"] = out["samples"] - out.get("le_0.005", 0)
        out["over_50ms_bound"] = out["samples"] - out.get("le_0.05", 0)
    return out


def _apply_gc(mode: str) -> str:
    """The garbage collector as the daemon process has it, once start-up is done (or CPython's defaults)."""
    gc.collect()
    if mode == "daemon":
        try:
            from monitor.daemon import tune_gc
        except ImportError:  # a tree from before tune_gc (run.py --code): its daemon ran on the defaults
            return "CPython defaults (this tree's daemon does not tune the collector)"
        tune_gc()
        return "monitor.daemon.tune_gc()"
    return "CPython defaults"


class _GcPauses:
    """How long the garbage collector stopped the world, per generation (gc.callbacks: timing pass only)."""

    def __init__(self) -> None:
        self.pauses: list[list[float]] = [[], [], []]
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses[info["generation"]].append(time.perf_counter() - self._started)

    def stop(self) -> list[dict]:
        gc.callbacks.remove(self._callback)
        return [{"n": len(p), "total_ms": round(sum(p) * 1000, 1), "max_ms": round(max(p, default=0.0) * 1000, 2)}
                for p in self.pauses]


class _TimingHook:
    """The timing pass's one hook, around StreamRecorder._on_item: for each event carrying `sim_sent`, its arrival
    (recorder.started + now, the perf_counter reading the probe itself took) and the send time, into flat float
    arrays: no per-event object that the garbage collector would have to walk."""

    SENT = '"sim_sent":'

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.arrived, self.sent = array.array("d"), array.array("d")
        self.first = array.array("b")  # 1: the probe's first token event
        self.late_at, self.late = array.array("d"), array.array("d")  # simulator lateness of token k >= 2
        self.first_delay_at, self.first_delay = array.array("d"), array.array("d")
        self.probes = {"probes": 0, "flagged": 0, "over_50ms": 0, "over_50ms_flagged": 0, "flagged_under_5ms": 0}

    def install(self) -> None:
        from monitor import probe

        original = probe.StreamRecorder._on_item
        hook = self

        def _on_item(recorder, item, now: float) -> bool:
            r = recorder.result
            tokens = r.token_events
            ended = original(recorder, item, now)
            data = getattr(item, "data", "")
            i = data.rfind(hook.SENT)
            if i >= 0:
                hook.event(recorder, r, tokens, recorder.started + now, float(data[i + 11 : data.index("}", i)]))
            return ended

        probe.StreamRecorder._on_item = _on_item

    def event(self, recorder, r, tokens_before: int, arrived: float, sent: float) -> None:
        self.arrived.append(arrived)
        self.sent.append(sent)
        error = arrived - sent
        if error > getattr(r, "bench_worst", 0.0):
            r.bench_worst = error
        token = r.token_events > tokens_before
        self.first.append(token and tokens_before == 0)
        if token and tokens_before == 0:
            r.bench_first_sent = sent
            self.first_delay_at.append(arrived)  # an upper bound: includes the request's way in
            self.first_delay.append(sent - recorder.started - float(_param(r.url, "ttft")))
        elif token:
            self.late_at.append(arrived)
            self.late.append(sent - r.bench_first_sent - (r.token_events - 1) / self.rate)

    def finished(self, r) -> None:
        worst = getattr(r, "bench_worst", 0.0)
        flagged = WARNING_EVENT_LOOP_LAG in r.warnings
        p = self.probes
        p["probes"] += 1
        p["flagged"] += flagged
        p["over_50ms"] += worst > 0.05
        p["over_50ms_flagged"] += worst > 0.05 and flagged
        p["flagged_under_5ms"] += worst < 0.005 and flagged

    def summary(self, start: float, end: float) -> dict:
        """Errors of the events that arrived in the steady window [start, end]."""
        every, first = [], []
        for arrived, sent, is_first in zip(self.arrived, self.sent, self.first):
            if start <= arrived <= end:
                every.append(arrived - sent)
                if is_first:
                    first.append(arrived - sent)
        late = [x for t, x in zip(self.late_at, self.late) if start <= t <= end]
        first_delay = [x for t, x in zip(self.first_delay_at, self.first_delay) if start <= t <= end]
        return {
            "first_token": _summary_ms(first),
            "every_event": _summary_ms(every),
            "simulator_lateness": _summary_ms(late),  # token k: sent - (first token's send + (k-1)/rate)
            "simulator_first_token_delay": _summary_ms(first_delay),  # first token: sent - (request start + ttft)
            "probes_by_worst_error": self.probes,  # every probe of the run: its worst event error, and the lag flag
        }


def _param(url: str, name: str) -> str:
    query = url.split("?", 1)[1]
    return dict(p.split("=", 1) for p in query.split("&"))[name]


# ---- scrape ----------------------------------------------------------------------------------------------------------


async def _scrape(args: argparse.Namespace) -> dict:
    import random

    out_dir = Path(args.out).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path = out_dir / f"scrape-{args.targets}.yaml"
    _write_config(config_path, "http://127.0.0.1:9", args.targets, "tokens=1", max_concurrent=50)
    t = time.perf_counter()
    daemon = Daemon(load_config(config_path), listen="127.0.0.1:0")
    setup_seconds = time.perf_counter() - t
    rng = random.Random(7)
    names = list(daemon.specs)

    def finished(i: int, k: int) -> None:
        _record_finished(daemon, names[i], rng, i + k if k % args.results == args.results - 1 else 0)

    for i in range(len(names)):
        for k in range(args.results):
            finished(i, k)
    gc_mode = _apply_gc(args.gc)  # the daemon process, as `sse-monitor run` sets it up
    churned = itertools.count()

    def churn(n: int) -> None:  # n more targets finish a run (round robin): their series change before the next scrape
        for _ in range(n):
            c = next(churned)
            finished(c % len(names), args.results + c // len(names))

    try:
        from monitor.metrics import render
    except ImportError:  # a tree from before the renderer (run.py --code): what its /metrics handler calls
        from prometheus_client import generate_latest as render

    per_scrape = round(args.changed * len(names))
    renders = []  # the page built in this process, as the /metrics handler builds it (in a thread), without HTTP
    for _ in range(args.scrapes + 1):
        churn(per_scrape)
        t = time.perf_counter()
        await asyncio.to_thread(render, daemon.metrics.registry)
        renders.append((time.perf_counter() - t) * 1000)
    out = Path(args.out).with_suffix(".client.json")

    async def keep_churning() -> None:  # the scraper waits 1 s between scrapes: per_scrape targets finish meanwhile
        while True:
            await asyncio.sleep(0.1)
            churn(max(1, per_scrape // 10))

    churner = asyncio.create_task(keep_churning())
    server, client = await _start_scraper(daemon, args, out, args.scrapes, 1.0, 0.0)
    try:
        if await asyncio.wait_for(client.wait(), 300) != 0:
            raise RuntimeError("the scrape client failed")
    finally:
        churner.cancel()
        await server.stop()
    scraped = json.loads(out.read_text())
    out.unlink()
    times_ms = scraped["times_ms"][1:]  # the first is a warm-up
    return {
        "targets": args.targets,
        "results_per_target": args.results,
        "changed_between_scrapes": args.changed,
        "gc": gc_mode,
        "scrapes": len(times_ms),
        "first_ms": round(scraped["times_ms"][0], 2),  # the very first scrape fills the renderer's text cache
        "median_ms": round(statistics.median(times_ms), 2),
        "first_byte_median_ms": round(statistics.median(scraped["first_byte_ms"][1:]), 2),
        "min_ms": round(min(times_ms), 2),
        "max_ms": round(max(times_ms), 2),
        "render_first_ms": round(renders[0], 2),
        "render_median_ms": round(statistics.median(renders[1:]), 2),
        "bytes": scraped["bytes"],
        "lines": scraped["lines"],
        "failures": scraped["failures"],  # status codes of scrapes that failed
        "daemon_setup_seconds": round(setup_seconds, 2),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _scrape_client(args: argparse.Namespace) -> None:
    import httpx

    _loopback(args.url)
    times_ms, first_byte_ms, failures, size, lines = [], [], [], 0, 0
    time.sleep(max(0.0, args.delay))
    with httpx.Client(trust_env=False, timeout=60) as client:
        for i in range(args.scrapes + 1):
            if i:
                time.sleep(args.interval)  # as Prometheus does, only more often: targets finish runs in between
            t = time.perf_counter()
            with client.stream("GET", args.url) as response:
                first_byte_ms.append((time.perf_counter() - t) * 1000)  # headers: the page is built
                response.read()
            times_ms.append((time.perf_counter() - t) * 1000)
            if response.status_code != 200:  # counted, not fatal: a failing /metrics is a finding
                failures.append(response.status_code)
                continue
            size, lines = len(response.content), response.content.count(b"\n")
    Path(args.out).write_text(json.dumps({"times_ms": times_ms, "first_byte_ms": first_byte_ms, "bytes": size,
                                          "lines": lines, "failures": failures}))


# ---- main ------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    load = sub.add_parser("load")
    load.add_argument("--base", required=True, help="the simulator's base URL (127.0.0.1 only)")
    load.add_argument("--streams", type=int, required=True)
    load.add_argument("--seconds", type=float, default=10.0, help="the steady window, after one stream of ramp-up")
    load.add_argument("--mode", choices=("cpu", "timing"), required=True)
    load.add_argument("--rate", type=float, default=20.0, help="events per second of each stream")
    load.add_argument("--tokens", type=int, default=100, help="token events per stream")
    load.add_argument("--ttft", type=float, default=0.1)
    load.add_argument("--scrape-every", type=float, help="scrape /metrics every S seconds during the run")
    load.add_argument("--scrape-targets", type=int, default=1000, help="targets configured when scraping")
    load.add_argument("--client-core", type=int, help="the core of the scraping process")
    load.add_argument("--gc", choices=("daemon", "default"), default="daemon",
                      help="daemon: the collector set up as `sse-monitor run` sets it (monitor.daemon.tune_gc, when "
                           "the tree has it); default: CPython's defaults, for comparison")
    load.add_argument("--out", required=True)
    scrape = sub.add_parser("scrape")
    scrape.add_argument("--targets", type=int, default=1000)
    scrape.add_argument("--results", type=int, default=3, help="finished results recorded per target")
    scrape.add_argument("--scrapes", type=int, default=9)
    scrape.add_argument("--client-core", type=int, help="the core of the scraping process")
    scrape.add_argument("--gc", choices=("daemon", "default"), default="daemon", help="as for load")
    scrape.add_argument("--changed", type=float, default=0.25,
                        help="share of the targets that finish a run between two scrapes (default 0.25)")
    scrape.add_argument("--out", required=True)
    client = sub.add_parser("scrape-client")
    client.add_argument("--url", required=True)
    client.add_argument("--scrapes", type=int, default=9)
    client.add_argument("--interval", type=float, default=1.0)
    client.add_argument("--delay", type=float, default=0.0)
    client.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.command == "scrape-client":
        _scrape_client(args)
        return
    configure_logging("json", "info")  # as the daemon logs in production (stdout is /dev/null here)
    report = run_async(lambda: (_load if args.command == "load" else _scrape)(args))
    report["cpu"] = sorted(os.sched_getaffinity(0))
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
