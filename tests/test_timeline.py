"""Pictures of probes: the timeline SVG of real probe results, the --html page (escaped, secrets redacted, shown by a
real headless browser), the sparkline and outcome strip, and the live progress line on a real pseudo-terminal."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import ROOT, require_binary
from monitor.probe import run_probe
from monitor.result import ProbeResult, ProbeSpec
from monitor.timeline import mini_outcome_strip_svg, mini_sparkline_svg, timeline_svg
from servers import run_on_pty

CHAT = "/v1/chat/completions"
SVG = "{http://www.w3.org/2000/svg}"


def probe(url: str, **spec) -> ProbeResult:
    return asyncio.run(run_probe(ProbeSpec(url=url, **spec)))


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # well-formed XML, or this raises


def with_class(root: ET.Element, name: str) -> list[ET.Element]:
    return [el for el in root.iter() if name in (el.get("class") or "").split()]


def counted(root: ET.Element, name: str) -> int:
    return sum(int(el.get("data-count")) for el in with_class(root, name))


def x_of(root: ET.Element, t: float) -> float:
    x0, x1, t_end = float(root.get("data-x0")), float(root.get("data-x1")), float(root.get("data-t-end"))
    return x0 + t / t_end * (x1 - x0)


# ---- the timeline of real probe results ----------------------------------------------------------------------------

CASES = {
    "paced": "ttft=0.3&tokens=20&rate=20",
    "buffered": "headers_delay=0.6&content_length=1&tokens=40",
    "heartbeats": "heartbeat=0.2&pause_after=3&pause=1&tokens=8&rate=20",
    "cut": "drop_after=3",
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_timeline_draws_every_token_and_comment_and_marks_ttft_on_the_axis_scale(simulator, case):
    r = probe(f"{simulator}{CHAT}?{CASES[case]}")
    svg = timeline_svg(r, proxy_idle_timeout=0.5)
    root = parse(svg)
    assert root.get("class") == "timeline"
    assert counted(root, "token") == r.token_events > 0
    assert counted(root, "comment") == r.comments
    (ttft,) = with_class(root, "ttft")
    assert float(ttft.get("data-t")) == pytest.approx(r.ttft_seconds, abs=1e-6)
    line = ttft.find(f"{SVG}line")
    assert float(line.get("x1")) == pytest.approx(x_of(root, r.ttft_seconds), abs=0.01)
    assert f"{r.ttft_seconds:.3f} s" in ttft.find(f"{SVG}title").text  # exact time on hover
    (threshold,) = with_class(root, "ttft-threshold")
    assert float(threshold.get("data-t")) == r.ttft_threshold
    for name in ("headers", "first-byte", "first-event"):
        (mark,) = with_class(root, name)
        assert mark.find(f"{SVG}title").text.endswith(" s")
    (end,) = with_class(root, "end")
    assert (end.get("data-outcome"), end.get("data-reason")) == (r.outcome, r.reason)
    assert f"end-{r.outcome}" in end.get("class")
    assert len(with_class(root, "longest")) == 1
    assert with_class(root, "proxy-idle")

    if case == "buffered":  # one read carried every event: one tall tick with its count
        bursts = with_class(root, "burst")
        assert bursts and max(int(b.get("data-count")) for b in bursts) >= 4
        assert any(el.text == f"×{r.token_events}" for el in with_class(root, "burst-count"))
        (longest,) = with_class(root, "longest")
        assert float(longest.get("data-seconds")) == pytest.approx(r.first_byte_seconds, abs=1e-3)  # the held-back wait
    if case == "heartbeats":
        assert r.comments > 0 and with_class(root, "comment")
        assert "exceeded" not in with_class(root, "proxy-idle")[0].get("class")  # heartbeats keep the proxy quiet
    if case == "cut":
        assert r.outcome == "ended_early"
        assert f"ended early: {r.reason}" in "".join(end.itertext())
    if case == "paced":
        assert r.outcome == "completed" and "completed" in "".join(end.itertext())
        assert counted(root, "token") == len(with_class(root, "token"))  # 20 tokens 50 ms apart: one tick each


def test_a_long_silence_past_the_proxy_budget_is_flagged(simulator):
    r = probe(f"{simulator}{CHAT}?tokens=4&rate=50&pause_after=2&pause=1")
    root = parse(timeline_svg(r, proxy_idle_timeout=0.5))
    (budget,) = with_class(root, "proxy-idle")
    assert "exceeded" in budget.get("class")
    (longest,) = with_class(root, "longest")
    assert float(longest.get("data-seconds")) == pytest.approx(1.0, abs=0.15)


def test_a_five_thousand_event_stream_stays_small_and_is_aggregated(simulator):
    r = probe(f"{simulator}{CHAT}?tokens=5000&rate=5000", max_output_tokens=5000)
    assert r.token_events == 5000
    svg = timeline_svg(r)
    assert len(svg.encode()) < 200_000
    root = parse(svg)
    ticks = with_class(root, "token")
    assert counted(root, "token") == 5000
    assert len(ticks) <= 900  # at most one tick per pixel column
    assert any(int(t.get("data-count")) > 1 for t in ticks)
    assert all(re.search(r"^\d+ token events (at|from) ", t.find(f"{SVG}title").text)
               for t in ticks if int(t.get("data-count")) > 1)


def test_a_failed_probe_without_a_response_still_draws():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens
    r = probe(f"http://127.0.0.1:{port}{CHAT}")
    root = parse(timeline_svg(r))
    assert r.outcome == "failed"
    (end,) = with_class(root, "end")
    assert "end-failed" in end.get("class")
    assert not with_class(root, "ttft") and counted(root, "token") == 0


def test_sparkline_and_outcome_strip():
    root = parse(mini_sparkline_svg([0.4, 0.5, None, 2.5, 0.3], threshold=2.0))
    assert root.get("data-runs") == "5" and "last 0.300 s" in root.find("title").text
    (line,) = with_class(root, "line")
    assert line.get("d").count("M") == 2  # the run without a token breaks the line
    (marks,) = with_class(root, "over")  # one mark over the threshold (2.5), one for the run without a token
    assert marks.get("d").count("M") == 2
    assert with_class(root, "threshold")
    many = [0.3] * 100
    many[57] = 3.0
    root = parse(mini_sparkline_svg(many, threshold=2.0))
    assert root.get("data-runs") == "100" and with_class(root, "line")[0].get("d").count(" ") < 2 * 31  # 30 columns
    assert with_class(root, "over")[0].get("d").count("M") == 1  # the spike is not averaged away
    parse(mini_sparkline_svg([]))
    parse(mini_sparkline_svg([None]))

    root = parse(mini_outcome_strip_svg(["completed", "ended_early", "failed", "<x>"]))
    cells = root.findall("rect")
    assert [c.get("fill") for c in cells[:3]] == ["#2e9d4f", "#e8891c", "#d23b3b"]
    assert all(c.find("title").text for c in cells)
    assert "&lt;x&gt;" in mini_outcome_strip_svg(["<x>"])  # escaped in the text
    flapping = parse(mini_outcome_strip_svg(["completed", "failed"] * 50))
    assert len(flapping.findall("rect")) == 1 and flapping.find("rect").get("fill") == "#d23b3b"  # each column's worst
    assert "(some)" in flapping.find("rect/title").text


# ---- the --html page -----------------------------------------------------------------------------------------------

HOSTILE = "<script>alert(1)</script> \"double\" 'single' & ampersand"


def hostile_server() -> tuple[socket.socket, threading.Thread]:
    """A tiny raw SSE server: hostile text in a token, a comment, a response header and the error event that ends it."""
    server = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            token = json.dumps({"choices": [{"delta": {"content": HOSTILE}}]})
            error = json.dumps({"error": {"type": "<img src=x onerror=alert(2)>", "message": HOSTILE}})
            body = f": {HOSTILE}\n\ndata: {token}\n\ndata: {token}\n\ndata: {error}\n\n".encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                         b"server: <script>alert(3)</script>\"&\r\n"
                         b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body) + body)
            time.sleep(0.1)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return server, thread


def write_hostile_page(path: Path) -> subprocess.CompletedProcess:
    server, thread = hostile_server()
    with server:
        port = server.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "monitor.cli", "probe", f"http://127.0.0.1:{port}{CHAT}?api_key=SUPERSECRET1",
             "-H", "Authorization: Bearer SUPERSECRET2", "--html", str(path)],
            capture_output=True, text=True, timeout=60, cwd=ROOT)
        thread.join(5)
    return proc


def test_the_html_page_escapes_everything_from_the_endpoint_and_keeps_secrets_out(tmp_path):
    page = tmp_path / "probe.html"
    proc = write_hostile_page(page)
    assert proc.returncode == 1, proc.stderr
    assert "ended_early (error_event)" in proc.stdout
    assert "trace" not in proc.stdout  # --html traces for the page, not for the terminal
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert "<script" not in html.lower() and "<img" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in html  # the response header
    assert "&lt;img src=x onerror=alert(2)&gt;" in html  # the error message, in the summary and the timeline
    assert "&amp; ampersand" in html and "&quot;double&quot;" in html
    assert "SUPERSECRET" not in html and "Authorization" not in html
    assert html.count('class="timeline"') == 1
    for section in ("Summary", "Timeline", "Response headers", "Event trace"):
        assert f"<h2>{section}</h2>" in html
    assert re.search(r"<link|<iframe|src=\"http|href=\"http|@import", html) is None  # self-contained
    # the trace holds every event and the comment; data travels escaped
    assert html.count('<tr class="event">') == 3 and html.count('<tr class="comment">') == 1


def test_the_html_page_of_a_simulator_stream(simulator, tmp_path):
    page = tmp_path / "probe.html"
    proc = subprocess.run([sys.executable, "-m", "monitor.cli", "probe", "--json", f"{simulator}{CHAT}?tokens=5",
                           "--html", str(page)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "trace" not in json.loads(proc.stdout)
    html = page.read_text()
    assert html.count('<tr class="event">') >= 5 and "completed (ok)" in html


def test_an_unwritable_html_path_is_a_usage_error(simulator, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "monitor.cli", "probe", f"{simulator}{CHAT}?tokens=1",
                           "--html", str(tmp_path / "no" / "such" / "dir.html")], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 2 and "--html: cannot write" in proc.stderr


def test_a_real_headless_browser_renders_the_page_without_errors(simulator, tmp_path):
    chromium = require_binary("chromium", "chromium-browser", "google-chrome")
    pages = {"hostile": tmp_path / "hostile.html", "heartbeats": tmp_path / "heartbeats.html"}
    assert write_hostile_page(pages["hostile"]).returncode == 1
    proc = subprocess.run([sys.executable, "-m", "monitor.cli", "probe",
                           f"{simulator}{CHAT}?{CASES['heartbeats']}", "--html", str(pages["heartbeats"])],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
            f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    for name, page in pages.items():
        png = tmp_path / f"{name}.png"
        shot = subprocess.run([*base, f"--screenshot={png}", "--window-size=1200,900", page.as_uri()],
                              capture_output=True, text=True, timeout=120)
        assert png.exists(), shot.stderr[-2000:]
        data = png.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000  # a real, non-blank rendering
        dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
        assert dom.returncode == 0, dom.stderr[-2000:]
        assert "<svg" in dom.stdout and 'class="timeline"' in dom.stdout
        assert "<script" not in dom.stdout.lower()  # hostile text stayed text
        for log in (shot.stderr, dom.stderr):
            assert not re.search(r"Uncaught|CONSOLE\(\d+\)|:CONSOLE", log), log[-2000:]
        if name == "hostile":
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom.stdout


# ---- the live progress line -----------------------------------------------------------------------------------------

def test_the_live_progress_line_on_a_terminal(simulator):
    status, stdout, tty = run_on_pty("probe", f"{simulator}{CHAT}?ttft=0.3&tokens=20&rate=10&heartbeat=0.3")
    assert status == 0 and "OK: healthy" in stdout
    assert "TTFT 0.3" in tty and " events (" in tty and "longest silence" in tty
    updates = tty.count("\r\x1b[K")
    assert 5 <= updates <= 50  # ~2.3 s at most ~10 a second, one line rewritten in place
    assert "\n" not in tty  # one line, never scrolled
    assert tty.endswith("\r\x1b[K")  # cleared at the end


def test_no_progress_line_with_json_or_without_a_terminal(simulator):
    status, stdout, tty = run_on_pty("probe", "--json", f"{simulator}{CHAT}?tokens=5&rate=20")
    assert status == 0 and json.loads(stdout)["token_events"] == 5
    assert tty == ""
    proc = subprocess.run([sys.executable, "-m", "monitor.cli", "probe", f"{simulator}{CHAT}?tokens=5&rate=20"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0 and proc.stderr == ""
