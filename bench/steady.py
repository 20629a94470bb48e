"""bench/process.py's `steady` level: the installed daemon's memory once every bounded store is full.

Every target's run history (server.history runs, default 100) is full before the daemon starts: the history file in
the daemon's data directory (./data of its working directory, as a user's) is filled with that many real results of
the level's stream per target (one probe of the simulator, recorded again with earlier start times), through this
tree's own `monitor.history`, so the daemon starts where one that ran for days would be: the landing page's recent
runs loaded, every insert deleting the oldest run. Then the daemon probes for the warm-up (five intervals: every
target has run five times) and the window, and RSS is read every 2 s. Figures: RSS at the end of the window and
its growth (least-squares slope over the window, MB per hour), VmHWM, the history file's size, and the CPU of the
history writer thread (named `sse-history`) as a share of the daemon's. Throughout, /metrics is scraped every 15 s
with the Accept header Prometheus sends (OpenMetrics first), as the shipped config/prometheus/prometheus.yml does: a
daemon in use is scraped, and a scrape's texts and buffers are part of its memory. `--steady-no-prefill` starts from
an empty history instead: the RSS curve then shows what filling it costs (the issue's scenario)."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import threading
import time
import urllib.request
from pathlib import Path

from daemon_pass import daemon_figures
from processes import DaemonProcess, Simulator, proc_cpu, proc_status_kb, say, sleep_until
from records import read_truth
from workload import PATH, RUN_DIR, Workload

STEADY_TARGETS = 1000
STEADY_STREAMS = 200  # streams open on average: the targets' interval is set to keep this many
SAMPLE_SECONDS = 2.0
SCRAPE_SECONDS = 15.0  # config/prometheus/prometheus.yml's scrape_interval
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")  # what Prometheus asks /metrics for
WARMUP_INTERVALS = 5  # measured (rss_curve): RSS levels off within ~4 intervals of the start, then steps < 0.5 MB


def steady_spec(name: str, w: Workload) -> dict:
    """'steady' / 'steady:TARGETS': TARGETS targets (default 1,000), each every TARGETS x stream / 200 seconds."""
    targets = int(name.partition(":")[2] or STEADY_TARGETS)
    interval = max(w.interval, round(targets * w.stream_seconds / STEADY_STREAMS, 2))
    return {"name": name, "kind": "steady", "targets": targets, "interval": interval,
            "streams": round(targets * w.stream_seconds / interval), "max_concurrent": None}


def thread_cpu(pid: int, comm: str) -> float:
    """utime + stime of the process's threads with this name, seconds."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "comm").read_text().strip() != comm:
                continue
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class Scraper:
    """GET /metrics every SCRAPE_SECONDS, as Prometheus does, until stopped; each scrape's seconds and bytes."""

    def __init__(self, base_url: str) -> None:
        self.url = base_url.rstrip("/") + "/metrics"
        self.scrapes: list[tuple[float, int]] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scraper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SCRAPE_SECONDS):
            started = time.perf_counter()
            try:
                request = urllib.request.Request(self.url, headers={"Accept": PROMETHEUS_ACCEPT})
                with urllib.request.urlopen(request, timeout=SCRAPE_SECONDS) as response:
                    size = len(response.read())
                self.scrapes.append((time.perf_counter() - started, size))
            except OSError:
                self.failures += 1

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join(SCRAPE_SECONDS + 5)
        seconds = sorted(s for s, _ in self.scrapes)
        return {"every_seconds": SCRAPE_SECONDS, "scrapes": len(seconds), "failures": self.failures,
                "seconds_p50": round(seconds[len(seconds) // 2], 3) if seconds else None,
                "seconds_max": round(seconds[-1], 3) if seconds else None,
                "body_mb": round(self.scrapes[-1][1] / 1e6, 2) if self.scrapes else None}


def slope_per_hour(samples: list[tuple[float, float]]) -> float:
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    return 0.0 if var == 0 else sum((t - mt) * (v - mv) for t, v in samples) / var * 3600


def prefill(data_dir: Path, names: list[str], base: str, w: Workload, interval: float, per_target: int) -> dict:
    """Fill the history file as a daemon that ran per_target intervals would have."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from monitor.history import History
    from monitor.probe import run_probe
    from monitor.result import ProbeSpec

    result = asyncio.run(run_probe(ProbeSpec(url=f"{base}{PATH}?{w.query}&tag=prefill", timeout=60)))
    if result.outcome != "completed":
        raise RuntimeError(f"the prefill probe did not complete: {result.outcome} ({result.reason})")
    started = time.monotonic()
    history = History(data_dir / "sse-monitor.db", per_target=per_target, retention=7 * 86400)
    history.start()
    now = time.time()
    for k in range(per_target):
        for name in names:
            result.started_at = now - (per_target - k) * interval
            history.record(name, result)
    history.stop(timeout=600)
    return {"runs": per_target * len(names), "seconds": round(time.monotonic() - started, 1),
            "tokens_per_run": result.token_events}


def steady_pass(spec: dict, w: Workload, opts: argparse.Namespace, env: dict) -> dict:
    monitor_core, sim_core = env["cores"]
    tag = spec["name"].replace(":", "-")
    truth_path, config = RUN_DIR / f"truth-{tag}.jsonl", RUN_DIR / f"config-{tag}.yaml"
    log_path, err_path = RUN_DIR / f"daemon-{tag}.log", RUN_DIR / f"daemon-{tag}.stderr"
    data_dir = RUN_DIR / "data"  # the daemon's default data directory: ./data of its working directory
    shutil.rmtree(data_dir, ignore_errors=True)
    interval, window = spec["interval"], opts.steady_window
    warmup = WARMUP_INTERVALS * interval  # every target has run that often: its last result, pools, caches in place
    say(f"level {spec['name']}: {spec['targets']} targets every {interval:g} s (~{spec['streams']} streams), history "
        f"{'full from the start' if opts.steady_prefill else 'empty at the start'}; warm-up {warmup:g} s, window "
        f"{window:g} s ...")
    sim = Simulator(env["sim_python"], sim_core, truth_path, RUN_DIR / f"simulator-{tag}.stderr")
    daemon = None
    names = [f"t{i:04d}" for i in range(spec["targets"])]
    try:
        config.write_text("\n".join(
            [f"# generated by bench/steady.py, level {spec['name']}", f"defaults: {{interval: {interval:g}s}}",
             "server: {listen: '127.0.0.1:0'}", "targets:"]
            + [f"  - {{name: {n}, url: '{sim.base_url}{PATH}?{w.query}&tag={n}'}}" for n in names]) + "\n")
        filled = prefill(data_dir, names, sim.base_url, w, interval, 100) if opts.steady_prefill else None
        daemon = DaemonProcess(env["daemon_cmd"], monitor_core, config, log_path, err_path)
        scraper = Scraper(daemon.wait_started(90))
        t0 = time.time()
        w0, w1 = t0 + warmup, t0 + warmup + window
        curve = []
        while time.time() < w0:
            time.sleep(SAMPLE_SECONDS)
            curve.append((round(time.time() - t0, 1), round((proc_status_kb(daemon.pid, "VmRSS") or 0) / 1024, 1)))
        cpu0, writer0 = proc_cpu(daemon.pid), thread_cpu(daemon.pid, "sse-history")
        samples = []
        while time.time() < w1:
            time.sleep(SAMPLE_SECONDS)
            rss = (proc_status_kb(daemon.pid, "VmRSS") or 0) / 1024
            samples.append((time.time(), rss))
            curve.append((round(time.time() - t0, 1), round(rss, 1)))
        cpu1, writer1 = proc_cpu(daemon.pid), thread_cpu(daemon.pid, "sse-history")
        real_w1 = time.time()
        sleep_until(real_w1 + w.stream_seconds + opts.tail)
        scraped = scraper.stop()
        hwm = proc_status_kb(daemon.pid, "VmHWM")
        file_bytes = sum(p.stat().st_size for p in data_dir.glob("sse-monitor.db*") if p.is_file())
        alive = daemon.proc.poll() is None
    finally:
        status = daemon.stop() if daemon is not None else None
        sim.stop()
    seconds = real_w1 - w0
    out = {
        "level": spec["name"], "kind": "steady", "targets": spec["targets"], "nominal_streams": spec["streams"],
        "interval_seconds": interval, "history_per_target": 100, "prefilled": filled,
        "warmup_seconds": warmup, "window_seconds": round(seconds, 1),
        "daemon_alive_at_end": alive, "daemon_exit_status": status,
        "daemon_core_share": round((cpu1 - cpu0) / seconds, 3),
        "history_writer_share_of_daemon_cpu": round((writer1 - writer0) / (cpu1 - cpu0), 4) if cpu1 > cpu0 else None,
        "steady_rss_mb": round(samples[-1][1], 1), "rss_mb_min": round(min(v for _, v in samples), 1),
        "rss_mb_max": round(max(v for _, v in samples), 1),
        "rss_growth_mb_per_hour": round(slope_per_hour(samples), 2),
        "peak_rss_mb": None if hwm is None else round(hwm / 1024, 1),
        "history_file_mb": round(file_bytes / 2**20, 1),
        "metrics_scrapes": scraped,
        "rss_curve": curve,
    }
    out.update(daemon_figures({**spec, "kind": "streams"}, w, names, log_path, read_truth(truth_path), w0, real_w1,
                              cpu1 - cpu0))
    out["config"] = str(config.relative_to(RUN_DIR.parent.parent.parent))
    return out
