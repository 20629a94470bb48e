"""`sse-monitor demo`, the README's first command: the built-in targets and chain check give real results quickly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from conftest import ROOT, free_port
from servers import wait_until


def start_demo(port: int, workdir: Path) -> subprocess.Popen:
    """`sse-monitor demo` as a new user starts it: in their own directory, history in ./data."""
    env = {k: v for k, v in os.environ.items() if k != "SSE_MONITOR_DATA_DIR"}
    return subprocess.Popen([sys.executable, "-m", "monitor.cli", "demo", "--listen", f"127.0.0.1:{port}",
                             "--log-format", "json"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=workdir, env={**env, "PYTHONPATH": str(ROOT)})


def test_the_demo_shows_each_kind_of_trouble_and_checks_its_canary_then_stops_on_sigterm_and_keeps_its_history(tmp_path):
    port = free_port()
    proc = start_demo(port, tmp_path)
    base = f"http://127.0.0.1:{port}"

    def get(path: str) -> dict:
        try:
            return httpx.get(base + path, timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return {}

    try:
        targets = wait_until(lambda: (t := get("/api/v1/targets")) and all(t.values()) and t, 40,
                             "a finished run of every built-in target")
        seen = {name: (r["outcome"], r["reason"], r["alerts"]) for name, r in targets.items()}
        assert seen == {
            "healthy": ("completed", "ok", []),
            "slow-first-token": ("completed", "ok", ["SSEProbeTTFTHigh"]),
            "cut-mid-stream": ("ended_early", "connection_lost", ["SSEProbeStreamEndedEarly"]),
            "no-terminal-event": ("ended_early", "no_terminal_event", ["SSEProbeStreamEndedEarly"]),
        }
        healthy = targets["healthy"]  # a thinking model behind a gateway that reports its time: where it went, and cost
        assert healthy["first_text_seconds"] > healthy["ttft_seconds"] and healthy["cost"]["currency"] == "USD"
        page = httpx.get(base + "/targets/healthy", timeout=5).text
        assert "the server says 0.150 s: openai-processing-ms" in page and "cost 0.0000" in page
        chains = wait_until(lambda: (c := get("/api/v1/chain-checks")).get("direct-to-canary") and c, 40,
                            "the chain check of the embedded canary")
        report = chains["direct-to-canary"]
        assert report["ok"] and all(c["ok"] for c in report["checks"]), report["checks"]
        assert "proxy chains" in httpx.get(base + "/", timeout=5).text
        before = [run["run"] for run in get("/api/v1/targets/healthy/history")]
    finally:
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=15)
    assert status == 0 and (tmp_path / "data" / "sse-monitor.db").exists()

    proc = start_demo(port, tmp_path)  # started again: the history of the first run is still there, numbering goes on
    try:
        after = wait_until(lambda: (h := get("/api/v1/targets/healthy/history")) and h[0]["run"] > max(before) and h,
                           40, "a run of the restarted demo")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    assert set(before) <= {run["run"] for run in after}
