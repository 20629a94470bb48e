"""Soak test: the daemon, started as the README says, probes 20 simulator targets for N minutes; RSS sampled.

    python bench/soak.py [--minutes 10] [--targets 20]

Writes bench/soak-results.json: RSS every 10 s, runs by outcome, error log lines, skipped runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent

# a mix of every behaviour the daemon must live with for hours: healthy, slow, cut, unterminated, paused, failing
BEHAVIOURS = [
    ("openai-chat", "/v1/chat/completions", "ttft=0.3&tokens=100&rate=25&heartbeat=1"),
    ("anthropic", "/v1/messages", "ttft=2.5&tokens=40&rate=20"),
    ("openai-responses", "/v1/responses", "ttft=0.2&tokens=80&rate=20&drop_after=30"),
    ("gemini", "/v1beta/models/sim-1:streamGenerateContent", "ttft=0.4&tokens=60&rate=30&no_terminal=1"),
    ("openai-chat", "/v1/chat/completions", "ttft=0.2&tokens=40&rate=20&pause_after=10&pause=3&heartbeat=1"),
    ("openai-chat", "/v1/chat/completions", "status=503"),
    ("anthropic", "/v1/messages", "ttft=0.2&tokens=60&rate=20&error_after=20"),
    ("generic", "/v1/stream", "ttft=0.1&tokens=50&rate=50&gzip=1"),
]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def config(base: str, targets: int) -> str:
    lines = ["defaults: {timeout: 60s, idle_timeout: 15s}", "scheduler: {jitter: 1s}", "targets:"]
    for i in range(targets):
        dialect, path, query = BEHAVIOURS[i % len(BEHAVIOURS)]
        extra = "    terminal_event: done\n" if dialect == "generic" else ""
        lines.append(f"  - name: t{i:02d}-{dialect}\n    dialect: {dialect}\n    interval: {5 + i % 4 * 3}s\n"
                     f"    url: \"{base}{path}?{query}\"\n{extra}".rstrip())
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--targets", type=int, default=20)
    parser.add_argument("--port", type=int, default=9311)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    sim = subprocess.Popen([sys.executable, "-m", "monitor.cli", "simulate", "--port", "0"], stdout=subprocess.PIPE, text=True)
    base = sim.stdout.readline().rsplit(" ", 1)[-1].strip()
    (work / "config.yaml").write_text(config(base, args.targets))
    log = open(work / "daemon.log", "w")
    daemon = subprocess.Popen(["sse-monitor", "run", "--config", str(work / "config.yaml"), "--listen",
                               f"127.0.0.1:{args.port}", "--log-format", "json"], stdout=log, stderr=subprocess.STDOUT)
    samples = []
    started = time.monotonic()
    try:
        while time.monotonic() - started < args.minutes * 60:
            time.sleep(10)
            if daemon.poll() is not None:
                raise SystemExit(f"the daemon exited with {daemon.returncode}")
            samples.append((round(time.monotonic() - started), rss_kib(daemon.pid)))
            print(f"{samples[-1][0]:5d} s  RSS {samples[-1][1] / 1024:.1f} MiB", flush=True)
        text = httpx.get(f"http://127.0.0.1:{args.port}/metrics", timeout=10).text
    finally:
        daemon.terminate()
        code = daemon.wait(15)
        sim.terminate()
        sim.wait(15)
    runs, skipped = {}, 0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "sse_probe_runs_total" and s.value:
                key = f"{s.labels['outcome']}/{s.labels['reason']}"
                runs[key] = runs.get(key, 0) + s.value
            if s.name == "sse_monitor_skipped_runs_total":
                skipped += s.value
    events = [json.loads(line) for line in (work / "daemon.log").read_text().splitlines() if line.startswith("{")]
    errors = [e for e in events if e.get("level") in ("error", "critical")]
    after_2min = [kib for t, kib in samples if t >= 120]
    out = {
        "minutes": args.minutes, "targets": args.targets, "exit_code": code,
        "runs": runs, "total_runs": sum(runs.values()), "skipped_runs": skipped, "error_log_lines": len(errors),
        "rss_mib_at_2min": round(after_2min[0] / 1024, 1) if after_2min else None,
        "rss_mib_end": round(samples[-1][1] / 1024, 1) if samples else None,
        "rss_mib_max_after_2min": round(max(after_2min) / 1024, 1) if after_2min else None,
        "rss_samples": samples, "python": platform.python_version(), "cpu": os.cpu_count(),
    }
    (ROOT / "bench" / "soak-results.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "rss_samples"}, indent=2))


if __name__ == "__main__":
    main()
