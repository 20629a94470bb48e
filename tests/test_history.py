"""The daemon's history: the newest server.history results per target, on the pages (run table, timeline, sparkline,
outcome strip) and in the JSON API; hostile endpoint strings escaped; a reload resizing it keeps the newest runs."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from array import array


from servers import running_daemon
from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.history import MAX_STORED_TIMES, History
from monitor.result import COMPLETED, ProbeResult

TOKEN_TICK = re.compile(r'<line class="token(?: burst)?" data-count="(\d+)"')  # timeline.py's token ticks (per pixel)


def config(targets: dict[str, str], history: int = 3, extra: str = "") -> str:
    """Targets on a 1 h interval (the scheduler stays out of the way: the tests run them)."""
    lines = [f"server: {{history: {history}}}\n", "scheduler: {jitter: 0s}\n", "targets:\n"]
    for name, url in targets.items():
        lines.append(f"  - {{name: {name}, url: \"{url}\", interval: 1h, timeout: 20s, idle_timeout: 10s{extra}}}\n")
    return "".join(lines)


def run_numbers(history: list[dict]) -> list[int]:
    return [entry["run"] for entry in history]


def test_the_newest_runs_are_kept_and_shown(simulator, tmp_path):
    url = f"{simulator}/v1/chat/completions?ttft=0.05&tokens=7&rate=200"

    async def scenario():
        async with running_daemon(config({"chat": url, "other": url}), tmp_path) as (daemon, client):
            for _ in range(5):
                await daemon._run_target("chat")
            await daemon._run_target("other")
            total = daemon.history.last_run("chat")
            history = (await client.get("/api/v1/targets/chat/history")).json()
            page = (await client.get("/targets/chat")).text
            older = (await client.get(f"/targets/chat?run={history[-1]['run']}")).text
            gone = await client.get("/targets/chat?run=1")
            landing = (await client.get("/")).text
            last = (await client.get("/api/v1/targets")).json()
            missing = await client.get("/api/v1/targets/nope/history")
            return total, history, page, older, gone, landing, last, missing

    total, history, page, older, gone, landing, last, missing = asyncio.run(scenario())
    assert total >= 5
    assert run_numbers(history) == [total, total - 1, total - 2]  # the newest three, newest first
    assert [h["started_at"] for h in history] == sorted((h["started_at"] for h in history), reverse=True)
    assert all(h["outcome"] == COMPLETED and h["token_events"] == 7 for h in history)
    assert "token_times" not in history[0] and "trace" not in history[0]
    assert last["chat"]["started_at"] == history[0]["started_at"]  # /api/v1/targets keeps its shape: the last result
    assert missing.status_code == 404

    rows = re.findall(r"<a href='\?run=(\d+)'>", page)
    assert [int(n) for n in rows] == run_numbers(history)  # three rows, each linking to its run's timeline
    svg = page[page.index("<div class=timeline>"):]
    svg = svg[:svg.index("</svg>")]
    assert svg.count("<svg") == 1 and sum(map(int, TOKEN_TICK.findall(svg))) == history[0]["token_events"] == 7
    assert f"run {history[-1]['run']}," in older and "<div class=timeline><svg" in older
    assert gone.status_code == 404  # run 1 is no longer kept

    assert landing.count("<td class=sparkline><svg") == 2  # one per target
    assert landing.count("<td class=outcomes><svg") == 2


class HostileServer:
    """A raw socket server: /500 answers HTTP 500 with a JSON error body carrying a script; any other path answers an
    event stream whose Server header and error event carry markup."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length:\s*(\d+)", head)
                while length and len(body) < int(length.group(1)):
                    body += conn.recv(65536)
                if head.split(b" ")[1].startswith(b"/500"):
                    payload = b'{"error": {"message": "<script>alert(1)</script>"}}'
                    conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(payload), payload))
                else:
                    stream = b"data: one\n\ndata: two\n\nevent: error\ndata: <script>alert(2)</script>\n\n"
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                 b"Server: <img src=x onerror=alert(3)>\r\nConnection: close\r\n\r\n" + stream)

    def close(self) -> None:
        self.sock.close()


def test_what_endpoints_send_is_escaped(tmp_path):
    server = HostileServer()
    text = (
        "server: {history: 3}\nscheduler: {jitter: 0s}\ntargets:\n"
        f"  - {{name: five, url: \"{server.url}/500?key=sekrit\", interval: 1h, timeout: 10s, idle_timeout: 5s,"
        " headers: {Authorization: \"Bearer sk-history-secret\"}}\n"
        f"  - {{name: events, url: \"{server.url}/sse\", interval: 1h, timeout: 10s, idle_timeout: 5s,"
        " dialect: generic, error_event: error}\n"
    )

    async def scenario():
        async with running_daemon(text, tmp_path) as (daemon, client):
            await daemon._run_target("five")
            await daemon._run_target("events")
            pages = [(await client.get(p)).text for p in ("/", "/targets/five", "/targets/five?run=1", "/targets/events")]
            history = (await client.get("/api/v1/targets/five/history")).json()
            return daemon.last_results, pages, history

    try:
        results, pages, history = asyncio.run(scenario())
    finally:
        server.close()
    assert "alert(1)" in results["five"].detail and results["events"].reason == "error_event"
    assert "alert(2)" in results["events"].detail
    assert results["events"].response_headers["server"] == "<img src=x onerror=alert(3)>"
    for page in pages:
        assert "<script>alert" not in page and "<img src=x" not in page
        assert "sk-history-secret" not in page and "Authorization" not in page and "sekrit" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[1]
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in pages[3] and "&lt;img src=x onerror=alert(3)&gt;" in pages[3]
    assert "sk-history-secret" not in str(history) and "sekrit" not in str(history) and "<script>alert(1)</script>" in history[0]["detail"]


def test_a_reload_resizes_the_history_keeping_the_newest(simulator, tmp_path):
    url = f"{simulator}/v1/chat/completions?ttft=0.01&tokens=3&rate=500"

    async def scenario():
        async with running_daemon(config({"chat": url}, history=3), tmp_path) as (daemon, client):
            for _ in range(5):
                await daemon._run_target("chat")
            before = run_numbers((await client.get("/api/v1/targets/chat/history")).json())
            (tmp_path / "c.yaml").write_text(config({"chat": url}, history=2))
            assert daemon.reload() == []
            shrunk = run_numbers((await client.get("/api/v1/targets/chat/history")).json())
            (tmp_path / "c.yaml").write_text(config({"chat": url}, history=4))
            assert daemon.reload() == []
            for _ in range(3):
                await daemon._run_target("chat")
            grown = run_numbers((await client.get("/api/v1/targets/chat/history")).json())
            rows = re.findall(r"<a href='\?run=(\d+)'>", (await client.get("/targets/chat")).text)
            return daemon.history.last_run("chat"), before, shrunk, grown, rows

    total, before, shrunk, grown, rows = asyncio.run(scenario())
    assert shrunk == before[:2]  # the newest two of the three
    assert grown == [total, total - 1, total - 2, total - 3] and [int(r) for r in rows] == grown


def test_long_streams_are_stored_with_a_bounded_sample_of_their_arrival_times(tmp_path):
    """Disk: a stored run keeps at most MAX_STORED_TIMES arrival times per array (evenly spaced, first and last kept);
    the last result in memory keeps them all, and its trace; history never keeps a trace."""
    path = tmp_path / "c.yaml"
    path.write_text(config({"t": "http://127.0.0.1:9/x"}, history=10))
    daemon = Daemon(load_config(path, {}), listen="127.0.0.1:0", data_dir=str(tmp_path / "data"))
    daemon.history.start()
    try:
        for _ in range(2):
            times = array("d", (0.1 + k * 0.001 for k in range(20_000)))
            result = ProbeResult(url="http://127.0.0.1:9/x", dialect="openai-chat", outcome=COMPLETED, reason="ok",
                                 started_at=time.time(), token_times=times, comment_times=array("d", times[:50]),
                                 token_events=20_000,
                                 trace=[{"t": 0.0, "kind": "event", "type": "x", "data": "y"}])
            daemon.record("t", result)
    finally:
        daemon.history.stop()  # everything queued is written
    reopened = History(daemon.history.path, per_target=10, retention=3600)
    reopened.start()
    try:
        runs = reopened.runs("t")
    finally:
        reopened.stop()
    last = daemon.last_results["t"]
    assert [r.run for r in runs] == [2, 1] and last.trace is not None and len(last.token_times) == 20_000
    stored = runs[0].result
    assert stored.trace is None and runs[0].thinned and runs[0].token_times_total == 20_000
    assert len(stored.token_times) == MAX_STORED_TIMES and len(stored.comment_times) == 50
    assert stored.token_times[0] == 0.1 and abs(stored.token_times[-1] - (0.1 + 19_999 * 0.001)) < 1e-6
    assert stored.token_events == 20_000 and stored.outcome == COMPLETED


def test_the_daemons_pages_render_in_a_real_headless_browser(simulator, tmp_path):
    """The landing page and a target page of a real daemon, opened by Debian's chromium: no console errors, the
    pictures are in the DOM, the token ticks add up to the run's token events, and a screenshot is taken."""
    import re
    import subprocess

    from conftest import require_binary
    from servers import DaemonProcess, wait_until

    chromium = require_binary("chromium", "chromium-browser", "google-chrome")
    config = ("scheduler: {jitter: 0s}\ntargets:\n"
              f"  - name: paced\n    interval: 2s\n    url: \"{simulator}/v1/chat/completions?ttft=0.3&tokens=12&rate=40\"\n")
    daemon = DaemonProcess(config, tmp_path)
    try:
        wait_until(lambda: daemon.runs("paced") >= 2, 20, "two runs")
        tokens = daemon.get("/api/v1/targets").json()["paced"]["token_events"]
        base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
                f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
        for path, picture in (("/", 'class="sparkline'), ("/targets/paced", 'class="timeline"')):
            png = tmp_path / ((path.strip("/").replace("/", "-") or "landing") + ".png")
            shot = subprocess.run([*base, f"--screenshot={png}", "--window-size=1200,900", daemon.url + path],
                                  capture_output=True, text=True, timeout=120)
            assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 10_000, shot.stderr[-2000:]
            dom = subprocess.run([*base, "--dump-dom", daemon.url + path], capture_output=True, text=True, timeout=120)
            assert picture in dom.stdout, dom.stdout[:2000]
            for log in (shot.stderr, dom.stderr):
                assert not re.search(r"Uncaught|CONSOLE\(\d+\)|:CONSOLE", log), log[-2000:]
            if path != "/":
                ticks = re.findall(r'<line class="token[^"]*"[^>]*data-count="(\d+)"', dom.stdout)
                assert sum(map(int, ticks)) == tokens  # every run of this target carries 12 tokens
    finally:
        daemon.stop()


def test_the_landing_page_at_1000_targets_stays_under_1_mb_and_shows_every_failing_target_first(tmp_path):
    """A fleet's landing page: 1,000 targets with full sparklines and outcome strips, 37 of them failing (some
    flapping, the worst case of the strip) — at most 1 MB, with every failing target in the table at the top."""
    names = [f"target-{i:04d}" for i in range(1000)]
    failing = set(names[::27])
    text = ("server: {history: 100}\nstorage: {path: ':memory:'}\nscheduler: {jitter: 0s}\ntargets:\n"
            + "".join(f"  - {{name: {n}, url: 'http://127.0.0.1:9/v1/chat/completions', interval: 24h}}\n"
                      for n in names))

    def run(i: int, name: str) -> ProbeResult:
        bad = name in failing and i % 3 != 0
        return ProbeResult(url="http://127.0.0.1:9/", dialect="openai-chat", outcome="ended_early" if bad else COMPLETED,
                           reason="connection_lost" if bad else "ok", started_at=time.time(), headers_seconds=0.1,
                           ttft_seconds=0.3 + (i % 7) * 0.05 + (2.0 if bad else 0.0), duration_seconds=3.5,
                           alerts=["SSEProbeStreamEndedEarly"] if bad else [])

    async def scenario():
        async with running_daemon(text, tmp_path) as (daemon, client):
            for i in range(40):  # past the sparkline's 30 columns: the page is as large as it gets
                for name in names:
                    daemon.record(name, run(i if name not in failing else i + 1, name))
            page = (await client.get("/")).text
            return page

    page = asyncio.run(scenario())
    size = len(page.encode())
    assert size <= 1_000_000, f"{size} bytes"
    top, rest = page.split("healthy or not run yet", 1)
    assert all(f'href="targets/{n}"' in top for n in failing)
    assert not any(f'href="targets/{n}"' in top for n in set(names) - failing)
    assert rest.count("<td class=sparkline><svg") == 1000 - len(failing)
    assert f"1000 targets · {len(failing)} failing" in page
