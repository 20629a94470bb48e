"""`sse-monitor chain-check` through chains of real proxies in front of a real `sse-monitor canary`.

nginx, HAProxy, Apache and Caddy from Debian's packages run the configs shipped in config/proxies/ (placeholders
filled in; where a case needs a shorter timeout, the one line changed is shown in the test). The canary and the
check run as the commands users run. Every check asks for streams expected to last a few seconds, so that the
searches end in seconds too.
"""

from __future__ import annotations

import json
import re
import selectors
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import ROOT, sse_monitor
from servers import DaemonProcess, Proxy, run_on_pty, running_canary, start_apache, start_caddy, start_haproxy, start_nginx, wait_until

SERVERS = {"nginx": start_nginx, "apache": start_apache, "caddy": start_caddy, "haproxy": start_haproxy}
QUICK = ("--expected-duration", "2", "--max-idle", "4")  # timeouts must be 4 s or more; silences tried up to 4 s
PATH = "/v1/sse-canary"  # under /v1/, where the shipped configs route streams


@pytest.fixture(scope="module")
def canary() -> Iterator[str]:
    with running_canary() as where:
        yield where


@pytest.fixture
def chain(canary, tmp_path) -> Iterator[Callable[..., Proxy]]:
    """`chain((server, config), ...)`: proxies in front of the canary, the first one being the one clients reach;
    returns it. A config may be given as (server, config, edit) with edit(text) -> text."""
    started: list[Proxy] = []

    def build(*hops: tuple) -> Proxy:
        upstream = canary
        for n, (server, config, *edit) in enumerate(reversed(hops)):
            workdir = tmp_path / f"{len(started)}-{server}"
            workdir.mkdir()
            proxy = SERVERS[server](config, upstream, workdir, *edit)
            started.append(proxy)
            upstream = f"127.0.0.1:{proxy.port}"
        return started[-1]

    yield build
    for p in started:
        p.stop()


def chain_check(url: str, *args: str, timeout: float = 120) -> tuple[int, dict]:
    proc = sse_monitor("chain-check", "--json", url, *args, timeout=timeout)
    assert proc.stdout.strip(), f"no output (exit {proc.returncode}); stderr: {proc.stderr}"
    return proc.returncode, json.loads(proc.stdout)


def checks(report: dict) -> dict[str, bool | None]:
    return {c["name"]: c["ok"] for c in report["checks"]}


def all_at_once(*jobs: Callable[[], tuple[int, dict]]) -> list[tuple[int, dict]]:
    with ThreadPoolExecutor(len(jobs)) as pool:
        return [f.result() for f in [pool.submit(job) for job in jobs]]


# ---- idle timeouts ----------------------------------------------------------------------------------------------------


def test_the_shortest_idle_timeout_of_a_chain_is_found_wherever_the_hop_is(chain):
    # clients reach nginx (proxy_read_timeout 5s), which reaches HAProxy (timeout server 3s), which reaches the canary
    front = chain(("nginx", "nginx-short-timeout.conf"), ("haproxy", "haproxy-short-timeout.cfg"))
    nginx_alone = chain(("nginx", "nginx-short-timeout.conf"))
    haproxy_alone = chain(("haproxy", "haproxy-short-timeout.cfg"))
    apache = chain(("apache", "apache-sse.conf", lambda text: text.replace("ProxyTimeout 300", "ProxyTimeout 6")))
    caddy = chain(("caddy", "Caddyfile", lambda text: text.replace(  # the upstream's read timeout, 3 s
        "\t\t\tflush_interval -1\n", "\t\t\tflush_interval -1\n\t\t\ttransport http {\n\t\t\t\tread_timeout 3s\n\t\t\t}\n")))
    args = ("--expected-duration", "3", "--max-idle", "8")
    (status, both), (_, nginx), (_, haproxy), (_, apache), (_, caddy) = all_at_once(
        *(lambda p=p: chain_check(p.url + PATH, *args) for p in (front, nginx_alone, haproxy_alone, apache, caddy)))

    # nginx, HAProxy and Apache close the connection mid-body (no end of the chunked body); Caddy ends the body
    # properly, so the cut looks like a clean end of the stream: only the missing last event tells
    for report, timeout, cut in ((both, 3.0, "closed"), (nginx, 5.0, "closed"), (haproxy, 3.0, "closed"),
                                 (apache, 6.0, "closed"), (caddy, 3.0, "clean_close")):
        idle = report["idle_timeout"]
        assert idle["seconds"] == pytest.approx(timeout, abs=max(0.05 * timeout, 0.1)), idle
        assert idle["low_seconds"] < timeout <= idle["high_seconds"], idle
        assert idle["high_seconds"] - idle["low_seconds"] <= 1.0, idle  # to within 5 % or 1 s
        assert idle["cut"] == cut, idle
    assert status == 1 and checks(both)["idle_timeout"] is False  # 3 s < twice the expected 3 s
    assert checks(both)["buffering"] and checks(both)["heartbeats"] and checks(both)["compression"]
    interval = next(c for c in both["checks"] if c["name"] == "heartbeat_interval")
    assert interval["ok"] and "1.5" in interval["finding"], interval  # below half of 3 s


def test_a_buffering_hop_that_times_out_loses_what_it_held(chain):
    # nginx's buffering defaults with proxy_read_timeout shortened to 3s: the silent stream's first event sits in
    # nginx's buffer; when the timeout fires nginx sends the response headers and closes, the event never delivered
    def shorten(text: str) -> str:
        return text.replace("proxy_pass http://", "proxy_read_timeout 3s;\n            proxy_pass http://", 1)

    front = chain(("nginx", "nginx-default-buffered.conf", shorten))
    status, report = chain_check(front.url + PATH, "--expected-duration", "3", "--max-idle", "8")
    idle = report["idle_timeout"]
    assert idle["cut"] == "closed", idle
    assert idle["seconds"] == pytest.approx(3.0, abs=0.15), idle  # timed from the request: nothing came through
    assert report["buffering"]["buffered"] and status == 1


# ---- buffering and compression ----------------------------------------------------------------------------------------


def test_nginx_buffering_defaults_hold_kilobytes_and_the_apps_header_turns_them_off(chain):
    front = chain(("nginx", "nginx-default-buffered.conf"))
    status, report = chain_check(front.url + PATH, *QUICK)
    held = report["buffering"]
    # proxy_buffer_size 4k (one memory page here): events come out 4 KiB at a time, up to ~0.5 s late at 8 KiB/s
    assert held["buffered"] and 3 * 1024 <= held["held_bytes"] <= 9 * 1024, held
    assert 0.25 <= held["held_seconds"] <= 1.5, held
    assert not held["whole_response"]
    assert not report["buffering_with_x_accel_buffering_no"]["buffered"]  # nginx honours the app's header
    hb = report["heartbeats"]
    assert not hb["real_time"] and hb["held_seconds"] > 1.0, hb  # tiny comments wait for the buffer: the end
    assert status == 1
    verdict = checks(report)
    assert verdict["buffering"] is False and verdict["heartbeats"] is False and verdict["heartbeat_interval"] is False
    assert verdict["compression"] and verdict["idle_timeout"]


def test_a_buffer_larger_than_the_stream_holds_the_whole_response(chain):
    def big_buffers(text: str) -> str:  # 64 KiB buffers: more than the trial's ~44 KiB
        return text.replace("proxy_pass http://", "proxy_buffer_size 64k;\n            proxy_buffers 4 64k;\n"
                            "            proxy_busy_buffers_size 128k;\n            proxy_pass http://", 1)

    front = chain(("nginx", "nginx-default-buffered.conf", big_buffers))
    status, report = chain_check(front.url + PATH, *QUICK)
    held = report["buffering"]
    assert held["whole_response"] and held["held_bytes"] >= 40 * 1024, held
    assert held["first_event_seconds"] >= 4.5  # the trial writes for 4.95 s
    finding = next(c["finding"] for c in report["checks"] if c["name"] == "buffering")
    assert "the whole response" in finding and status == 1


def test_haproxy_without_http_no_delay_holds_every_event_for_a_fifth_of_a_second(chain):
    def default_delay(text: str) -> str:
        return text.replace("    option http-no-delay\n", "")

    front = chain(("haproxy", "haproxy-sse.cfg", default_delay))
    status, report = chain_check(front.url + PATH, *QUICK)
    held, hb = report["buffering"], report["heartbeats"]
    assert held["buffered"] and 0.15 <= held["late_p90_seconds"] <= 0.3, held  # HAProxy 2.6 here: ~0.21 s
    assert not hb["real_time"] and 0.15 <= hb["late_p90_seconds"] <= 0.3, hb
    assert status == 1 and checks(report)["buffering"] is False


def test_compression_added_by_apache_mod_deflate_or_nginx_gzip_fails_the_check(chain):
    apache = chain(("apache", "apache-deflate.conf"))
    nginx = chain(("nginx", "nginx-gzip.conf"))
    for status, report in all_at_once(lambda: chain_check(apache.url + PATH, *QUICK),
                                      lambda: chain_check(nginx.url + PATH, *QUICK)):
        assert report["compression"]["content_encoding"] == "gzip", report["compression"]
        assert checks(report)["compression"] is False
        assert status == 1


def test_the_seeds_recommended_proxies_pass_every_check(chain, canary):
    fronts = [chain(("nginx", "nginx-sse.conf")), chain(("caddy", "Caddyfile")),
              chain(("apache", "apache-sse.conf")), chain(("haproxy", "haproxy-sse.cfg"))]
    urls = [f"http://{canary}{PATH}"] + [p.url + PATH for p in fronts]
    for url, (status, report) in zip(urls, all_at_once(*(lambda u=u: chain_check(u, *QUICK) for u in urls))):
        failed = [c for c in report["checks"] if c["ok"] is not True]
        assert status == 0 and report["ok"] and not failed, (url, failed)
        assert report["buffering"]["late_p90_seconds"] < 0.05, (url, report["buffering"])
        assert report["idle_timeout"]["seconds"] is None and report["stream_length"]["cap_seconds"] is None
        assert report["heartbeats"]["received"] == report["heartbeats"]["sent"]


# ---- stream length and how cuts look ----------------------------------------------------------------------------------


class CappingRelay:
    """A TCP relay that resets every connection `cap` seconds after it opened: a hard limit on a stream's total
    time, as some load balancers and API gateways have. None of the proxy packages here has one. One thread with a
    selector does everything (accept, relay, reset), so the reset goes out on time whatever else runs."""

    RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: closing sends a reset

    def __init__(self, upstream: str, cap: float) -> None:
        host, port = upstream.split(":")
        self.upstream, self.cap = (host, int(port)), cap
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.server, selectors.EVENT_READ, None)
        self.open: list[tuple[float, socket.socket, socket.socket]] = []  # (reset at, client, origin)
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            for key, _ in self.selector.select(timeout=0.01):
                if key.data is None:
                    client, _ = self.server.accept()
                    origin = socket.create_connection(self.upstream)
                    self.selector.register(client, selectors.EVENT_READ, origin)
                    self.selector.register(origin, selectors.EVENT_READ, client)
                    self.open.append((time.monotonic() + self.cap, client, origin))
                    continue
                try:
                    data = key.fileobj.recv(65536)
                    if data:
                        key.data.sendall(data)
                        continue
                    key.data.shutdown(socket.SHUT_WR)  # the end of one direction, passed on
                except OSError:
                    pass
                self.selector.unregister(key.fileobj)
            now = time.monotonic()
            for pair in [p for p in self.open if p[0] <= now]:
                self.open.remove(pair)
                for sock in pair[1:]:
                    if sock in self.selector.get_map():
                        self.selector.unregister(sock)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, self.RESET)
                    sock.close()

    def close(self) -> None:
        self.running = False
        self.thread.join(5)
        self.server.close()


def test_a_cap_on_a_streams_total_time_is_found_and_told_from_an_idle_timeout(canary):
    relay = CappingRelay(canary, cap=3.0)
    try:
        status, report = chain_check(relay.url + PATH, "--expected-duration", "3", "--max-idle", "2",
                                     "--max-duration", "6")
    finally:
        relay.close()
    length = report["stream_length"]
    assert length["cap_seconds"] == pytest.approx(3.0, abs=0.2), length
    assert length["cut"] == "reset" and not length["cut_by_idle_timeout"], length
    assert report["idle_timeout"]["seconds"] is None  # silences up to 2 s pass: the cut is not about silence
    assert checks(report)["stream_length"] is False and status == 1


# ---- what it is pointed at ----------------------------------------------------------------------------------------------


def test_a_url_without_a_canary_is_reported_not_measured(simulator):
    status, report = chain_check(simulator + "/v1/stream?tokens=3", *QUICK)
    assert status == 1 and not report["reachable"] and not report["ok"]
    assert "canary" in report["problem"], report["problem"]
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    status, report = chain_check(f"http://127.0.0.1:{port}/", *QUICK)
    assert status == 1 and not report["reachable"] and "connect_error" in report["problem"], report["problem"]


def test_what_the_canary_refuses_to_serve_is_reported_as_not_measured_not_as_a_cut():
    with running_canary("--max-duration", "3") as short:  # the check asks for 5 s trials, 8 s silences, 10 s streams
        status, report = chain_check(f"http://{short}{PATH}", "--expected-duration", "5", "--max-idle", "8")
    verdict = checks(report)
    assert verdict["buffering"] is None and verdict["compression"] is None and verdict["stream_length"] is None
    assert verdict["idle_timeout"] is None and report["idle_timeout"]["seconds"] is None
    assert report["idle_timeout"]["searched_up_to_seconds"] == 2  # 4 and 8 s were refused, not cut
    assert verdict["heartbeats"] and status == 0  # nothing failed: only less is known


@pytest.mark.parametrize("args, message", [
    (("ftp://example.com/",), "http:// or https://"),
    (("http://127.0.0.1:1/", "--max-idle", "-1"), "--max-idle"),
    (("http://127.0.0.1:1/", "--max-idle", "nan"), "--max-idle"),
    (("http://127.0.0.1:1/", "--expected-duration", "inf"), "--expected-duration"),
    (("http://127.0.0.1:1/", "-H", "no colon"), "-H"),
])
def test_usage_errors_exit_2_and_say_what_is_wrong(args, message):
    proc = sse_monitor("chain-check", *args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_the_human_report_names_each_check_with_its_finding(chain):
    front = chain(("nginx", "nginx-default-buffered.conf"))
    proc = sse_monitor("chain-check", front.url + PATH, *QUICK, timeout=60)
    out = proc.stdout
    assert proc.returncode == 1
    assert "FAIL  buffering" in out and "KiB" in out and "-> turn buffering off" in out, out
    assert "PASS  compression" in out and "verdict: fails: buffering" in out, out


def test_secrets_in_headers_stay_out_of_the_report(canary):
    url = f"http://{canary}{PATH}?token=s3cr3t-in-url"
    proc = sse_monitor("chain-check", "--json", url, "-H", "Authorization: Bearer s3cr3t-in-header", *QUICK, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "s3cr3t" not in proc.stdout + proc.stderr


# ---- the daemon: chain checks on a schedule ---------------------------------------------------------------------------


def test_the_daemon_checks_each_chain_on_its_schedule_and_exports_the_findings(chain, canary, tmp_path):
    short = chain(("nginx", "nginx-short-timeout.conf"))  # proxy_read_timeout 5s
    good = chain(("nginx", "nginx-sse.conf"))
    # interval 10s: the first check of a chain comes within its interval, spread by name (these two: ~0.4 s, ~1.6 s)
    config = f"""
chain_checks:
  - name: timeout-5s
    url: {short.url}{PATH}
    interval: 10s
    expected_duration: 3s
    max_idle: 8s
  - name: ok-chain
    url: {good.url}{PATH}
    interval: 10s
    expected_duration: 2s
    max_idle: 4s
    headers: {{Authorization: "Bearer s3cr3t-chain-token"}}
"""
    daemon = DaemonProcess(config, tmp_path)
    try:
        wait_until(lambda: daemon.sample("sse_chain_check_ok", chain="timeout-5s") is not None
                   and daemon.sample("sse_chain_check_ok", chain="ok-chain") is not None, 40, "both chain checks")
        s = daemon.sample
        assert s("sse_chain_idle_timeout_seconds", chain="timeout-5s") == pytest.approx(5.0, abs=0.25)
        assert s("sse_chain_check_ok", chain="timeout-5s") == 0
        assert s("sse_chain_check_passed", chain="timeout-5s", check="idle_timeout") == 0  # 5 s < twice 3 s
        assert s("sse_chain_check_passed", chain="timeout-5s", check="buffering") == 1
        assert s("sse_chain_expected_duration_seconds", chain="timeout-5s") == 3
        assert s("sse_chain_check_ok", chain="ok-chain") == 1
        assert s("sse_chain_idle_timeout_seconds", chain="ok-chain") == float("inf")  # nothing cut up to 4 s
        assert s("sse_chain_idle_timeout_searched_seconds", chain="ok-chain") == 4
        assert s("sse_chain_buffered_bytes", chain="ok-chain") == 0 and s("sse_chain_compressed", chain="ok-chain") == 0
        assert s("sse_chain_heartbeat_delay_seconds", chain="ok-chain") < 0.05
        reports = daemon.get("/api/v1/chain-checks").json()
        assert reports["timeout-5s"]["idle_timeout"]["cut"] == "closed"
        assert {c["name"] for c in reports["ok-chain"]["checks"]} == {
            "buffering", "compression", "content_length", "heartbeats", "idle_timeout", "heartbeat_interval",
            "stream_length"}
        landing = daemon.get("/").text
        assert "proxy chains" in landing and "timeout-5s" in landing and "ok-chain" in landing
        assert "<td class=bad>fails</td>" in landing and "<td class=ok>passes</td>" in landing
        assert re.search(r"idle timeout (4\.9|5\.0|5\.1)\d* s", landing) and "idle timeout none found" in landing
        finished = [e for e in daemon.log_events() if e.get("event") == "chain_check_finished"]
        assert {e["chain"] for e in finished} == {"timeout-5s", "ok-chain"}
        assert "s3cr3t" not in daemon.logs() + daemon.metrics_text() + json.dumps(reports)
    finally:
        daemon.stop()


def test_the_step_under_way_shows_on_a_terminal_and_is_cleared(canary):
    status, stdout, tty = run_on_pty("chain-check", f"http://{canary}{PATH}", *QUICK)
    assert status == 0 and "verdict: the chain passes" in stdout
    assert "reaching the canary" in tty and "idle timeout: silences of 1 to 4 s" in tty, tty
    assert "\n" not in tty and tty.endswith("\r\x1b[K")  # one line rewritten in place, cleared at the end
    status, stdout, tty = run_on_pty("chain-check", "--json", f"http://{canary}{PATH}", *QUICK)
    assert status == 0 and json.loads(stdout)["ok"] and tty == ""


class FloodingFake:
    """A hostile endpoint posing as a canary: the hello event, then events as fast as the socket takes them, without
    end, each with a plausible `t`. A real TCP server on loopback, one thread per connection."""

    HELLO = b'event: canary\ndata: {"canary":"sse-monitor","version":1,"t":0.0}\n\n'

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._flood, args=(conn,), daemon=True).start()

    def _flood(self, conn: socket.socket) -> None:
        event = b'data: {"seq":1,"t":1.0,"pad":"' + b"x" * 60000 + b'"}\n\n'
        chunk = b"%x\r\n%s\r\n" % (len(event) * 16, event * 16)
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                         + b"%x\r\n%s\r\n" % (len(self.HELLO), self.HELLO))
            while True:
                conn.sendall(chunk)
        except OSError:
            conn.close()

    def close(self) -> None:
        self.server.close()


def test_a_flooding_endpoint_posing_as_a_canary_ends_each_trial_at_its_budget():
    fake = FloodingFake()
    try:
        started = time.monotonic()
        # the check as the only child of a small wrapper, whose RUSAGE_CHILDREN is then the check's own peak RSS
        wrapper = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
                   "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(r.returncode)")
        proc = subprocess.run([sys.executable, "-c", wrapper, sys.executable, "-m", "monitor.cli", "chain-check", "--json",
                               fake.url + PATH, *QUICK], capture_output=True, text=True, cwd=ROOT, timeout=120)
        took = time.monotonic() - started
        status, report, peak_kib = proc.returncode, json.loads(proc.stdout), int(proc.stderr.split()[-1])
    finally:
        fake.close()
    assert status == 1 and not report["reachable"] and not report["checks"]  # no verdict from a stream like this
    assert report["problem"].startswith("the endpoint does not behave like an sse-monitor canary: the "), report
    assert "too_many_events" in report["problem"] or "too_many_bytes" in report["problem"], report["problem"]
    assert took < 30, took  # every trial stopped at its byte or event budget, none ran to its time bound
    assert peak_kib < 150 * 1024, peak_kib  # the process stayed small (~80 MB here)
