"""Real reverse proxies between the probe and the simulator: the seeds' proxy failures, and what sse-monitor says.

nginx, Apache (mod_proxy_http) and Caddy from Debian's packages run the reference configs shipped in
config/proxies/ — the very files, with only their {{PLACEHOLDERS}} (ports) filled in — each in the foreground from
its own temp directory, on loopback. Every case probes through the proxy with `sse-monitor probe --json`, most of
them next to the same stream probed directly, and two of them through the daemon's /metrics as well.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import probe_json
from servers import DaemonProcess, Proxy, start_apache, start_caddy, start_nginx, wait_until

CHAT = "/v1/chat/completions"
STREAM = "tokens=20&rate=10"  # first token after 0.2 s (the simulator's default), then 20 tokens at 10/s: 2.1 s
PAUSED = "tokens=4&rate=10&pause_after=2&pause=8"  # 8 s of silence after the 2nd token: past a 5 s proxy_read_timeout
TTFT_TOLERANCE = 0.050  # a proxy that streams adds well under this to the first token


# ---- the proxies ----------------------------------------------------------------------------------------------------


SERVERS = {"nginx": start_nginx, "apache": start_apache, "caddy": start_caddy}


@pytest.fixture
def proxy(simulator, tmp_path) -> Iterator[Callable[[str, str], Proxy]]:
    """`proxy(server, config)`: that server running config/proxies/<config> in front of the simulator."""
    started: list[Proxy] = []
    upstream = simulator.removeprefix("http://")

    def start(server: str, config: str) -> Proxy:
        workdir = tmp_path / f"{server}-{len(started)}"
        workdir.mkdir()
        started.append(SERVERS[server](config, upstream, workdir))
        return started[-1]

    yield start
    for p in started:
        p.stop()


# ---- probing --------------------------------------------------------------------------------------------------------


def probe_all(*probes: tuple[str, ...]) -> list[dict]:
    """Several `sse-monitor probe --json --trace URL ARGS...` at once; each result with its exit status in `_exit`."""

    def one(url: str, *args: str) -> dict:
        status, result = probe_json(url, "--trace", *args)
        return {**result, "_exit": status}

    with ThreadPoolExecutor(len(probes)) as pool:
        return list(pool.map(lambda p: one(*p), probes))


def hold_spread(result: dict) -> float:
    """How much longer the path held one event than another: max - min of (arrival - `sim_sent`) over the events.

    Arrival (the probe's clock) and send time (the simulator's monotonic clock) differ by a constant, so the
    spread is free of it: ~0 when every event is forwarded as it is sent, the stream's length when all wait for
    the end."""
    holds = []
    for entry in result["trace"]:
        if entry["kind"] == "event" and entry["data"].startswith("{"):
            holds.append(entry["t"] - json.loads(entry["data"])["sim_sent"])
    assert len(holds) >= 2, result["trace"]
    return max(holds) - min(holds)


def show(result: dict) -> str:
    keys = ("_exit", "outcome", "reason", "detail", "ttft_seconds", "headers_seconds", "duration_seconds", "token_events",
            "comments", "reads", "bytes", "max_gap_seconds", "max_silence_seconds", "warnings", "alerts", "response_headers")
    return json.dumps({k: result.get(k) for k in keys})


def assert_streams_like_the_origin(via: dict, direct: dict, proxy: Proxy) -> None:
    """A proxy that streams: the same healthy result as the origin, TTFT within the tolerance, no event held."""
    context = f"\nvia {proxy.name}: {show(via)}\ndirect: {show(direct)}\n{proxy.logs()}"
    assert (direct["_exit"], direct["outcome"], direct["alerts"], direct["warnings"]) == (0, "completed", [], []), context
    assert (via["_exit"], via["outcome"], via["reason"]) == (0, "completed", "ok"), context
    assert via["alerts"] == [] and via["warnings"] == [], context
    assert via["token_events"] == direct["token_events"] == 20, context
    assert abs(via["ttft_seconds"] - direct["ttft_seconds"]) <= TTFT_TOLERANCE, context
    assert via["reads"] >= 20, context  # every token came in a read of its own, as it was sent
    assert hold_spread(via) < TTFT_TOLERANCE, context
    assert "content-encoding" not in via["response_headers"], context


# ---- nginx ----------------------------------------------------------------------------------------------------------


def test_nginx_recommended_sse_location_streams_like_the_origin(simulator, proxy):
    nginx = proxy("nginx", "nginx-sse.conf")
    via, direct = probe_all((nginx.url + CHAT + "?" + STREAM,), (simulator + CHAT + "?" + STREAM,))
    assert_streams_like_the_origin(via, direct, nginx)
    assert via["response_headers"]["server"].startswith("nginx")  # it did go through nginx, with this config
    assert via["response_headers"]["x-accel-buffering"] == "no"


def test_nginx_defaults_deliver_the_stream_in_a_burst_at_the_end(simulator, proxy):
    # "Events delayed by 4-8KB": HTTP/1.0 to the upstream and proxy_buffering on hold events (and the response
    # headers) until a 4 KB buffer fills or the stream ends. The 2.1 s stream outlasts a 1 s threshold.
    nginx = proxy("nginx", "nginx-default-buffered.conf")
    args = ("--ttft-threshold", "1")
    via, direct = probe_all((nginx.url + CHAT + "?" + STREAM, *args), (simulator + CHAT + "?" + STREAM, *args))
    context = f"\nvia nginx: {show(via)}\ndirect: {show(direct)}\n{nginx.logs()}"
    assert (direct["outcome"], direct["alerts"], direct["warnings"]) == ("completed", [], []), context
    assert direct["ttft_seconds"] < 0.5, context
    # every event arrives, intact and in order: only the timing is wrong
    assert (via["outcome"], via["reason"], via["token_events"]) == ("completed", "ok", 20), context
    assert via["ttft_seconds"] > 1.5, context
    assert via["reads"] <= 3, context  # one or two bursts, not 20 reads
    assert hold_spread(via) > 1.5, context  # the first events waited ~2 s longer than the last
    assert "buffering_suspected" in via["warnings"], context
    assert (via["_exit"], via["alerts"]) == (1, ["SSEProbeTTFTHigh"]), context


def test_nginx_gzip_on_event_streams_is_a_compressed_stream(simulator, proxy):
    # "Compressed/garbled events": gzip with text/event-stream in gzip_types. With proxy_buffering off nginx flushes
    # the gzip stream after every upstream read, so events stay on time: the stream is compressed, not buffered.
    nginx = proxy("nginx", "nginx-gzip.conf")
    via, direct = probe_all((nginx.url + CHAT + "?" + STREAM,), (simulator + CHAT + "?" + STREAM,))
    context = f"\nvia nginx: {show(via)}\ndirect: {show(direct)}\n{nginx.logs()}"
    assert via["response_headers"].get("content-encoding") == "gzip", context
    assert via["bytes"] < direct["bytes"] / 2, context  # it really is compressed on the wire
    assert via["warnings"] == ["compressed_stream"], context  # decoded and counted, and not taken for buffering
    assert (via["_exit"], via["outcome"], via["token_events"], via["alerts"]) == (0, "completed", 20, []), context
    assert abs(via["ttft_seconds"] - direct["ttft_seconds"]) <= TTFT_TOLERANCE, context
    assert hold_spread(via) < TTFT_TOLERANCE, context


def test_nginx_read_timeout_cuts_a_silent_stream_mid_way(simulator, proxy):
    # "Connection drops after 60s", in 5 s: an 8 s pause without a byte outlasts proxy_read_timeout 5s
    nginx = proxy("nginx", "nginx-short-timeout.conf")
    via, direct = probe_all((nginx.url + CHAT + "?" + PAUSED,), (simulator + CHAT + "?" + PAUSED,))
    context = f"\nvia nginx: {show(via)}\ndirect: {show(direct)}\n{nginx.logs()}"
    assert (direct["outcome"], direct["token_events"], direct["alerts"]) == ("completed", 4, []), context
    assert (via["_exit"], via["outcome"], via["reason"]) == (1, "ended_early", "connection_lost"), context
    assert via["alerts"] == ["SSEProbeStreamEndedEarly"], context
    assert via["token_events"] == 2, context  # cut in the pause, after the 2nd token
    assert 4.9 <= via["max_silence_seconds"] < 6.5, context  # nginx's 5 s, not the 8 s pause
    assert via["duration_seconds"] < 7, context


def test_nginx_read_timeout_is_survived_with_heartbeats(simulator, proxy):
    # the same pause behind the same nginx, with a `: ping` comment every 2 s: nginx never sees 5 s of silence
    nginx = proxy("nginx", "nginx-short-timeout.conf")
    (via,) = probe_all((nginx.url + CHAT + "?" + PAUSED + "&heartbeat=2",))
    context = f"\nvia nginx: {show(via)}\n{nginx.logs()}"
    assert (via["_exit"], via["outcome"], via["reason"]) == (0, "completed", "ok"), context
    assert (via["alerts"], via["warnings"], via["token_events"]) == ([], [], 4), context
    assert via["comments"] >= 3, context
    assert 1.8 <= via["max_silence_seconds"] <= 2.5, context  # the heartbeat period, not the pause
    assert via["max_gap_seconds"] >= 7.9, context  # heartbeats are not tokens: the token gap still shows the pause


# ---- Apache and Caddy -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("server, config", [("apache", "apache-sse.conf"), ("caddy", "Caddyfile")])
def test_apache_and_caddy_as_the_guide_configures_them_stream_like_the_origin(simulator, proxy, server, config):
    p = proxy(server, config)
    via, direct = probe_all((p.url + CHAT + "?" + STREAM,), (simulator + CHAT + "?" + STREAM,))
    assert_streams_like_the_origin(via, direct, p)


# ---- the daemon's view ----------------------------------------------------------------------------------------------


def test_daemon_metrics_show_what_each_nginx_does_to_the_stream(simulator, proxy, tmp_path):
    good = proxy("nginx", "nginx-sse.conf")
    buffered = proxy("nginx", "nginx-default-buffered.conf")
    short = proxy("nginx", "nginx-short-timeout.conf")
    targets = {
        "nginx-sse": good.url + CHAT + "?" + STREAM,
        "nginx-buffered": buffered.url + CHAT + "?" + STREAM,
        "nginx-short-timeout": short.url + CHAT + "?tokens=4&rate=10&pause_after=2&pause=6",
    }
    daemon = DaemonProcess(
        "defaults: {interval: 2s, timeout: 30s, idle_timeout: 20s, ttft_threshold: 1s}\n"
        "scheduler: {jitter: 0s}\n"
        "targets:\n" + "".join(f"  - name: {name}\n    url: \"{url}\"\n" for name, url in targets.items()),
        tmp_path,
    )

    def ran(m: dict, target: str) -> bool:
        runs = sum(v for (name, labels), v in m.items() if name == "sse_probe_runs_total" and ("target", target) in labels)
        # a run while the daemon's own event loop lagged has untrusted timings (and no TTFT alert): wait for another
        return runs >= 1 and m[("sse_probe_warning", frozenset({"target": target, "warning": "event_loop_lag"}.items()))] == 0

    try:
        m = wait_until(lambda: (lambda m: m if all(ran(m, t) for t in targets) else None)(daemon.metrics()), 30,
                       "a clean run of every target")
    finally:
        daemon.stop()

    def v(name: str, target: str, **labels: str) -> float:
        return m[(name, frozenset({"target": target, **labels}.items()))]

    def warnings(target: str) -> set[str]:
        return {dict(labels)["warning"] for (name, labels), value in m.items()
                if name == "sse_probe_warning" and ("target", target) in labels and value == 1}

    def alerts(target: str) -> set[str]:
        return {dict(labels)["alertname"] for (name, labels), value in m.items()
                if name == "sse_probe_alert_condition" and ("target", target) in labels and value == 1}

    context = "\n" + "\n".join(f"{name}{dict(labels)} = {value}" for (name, labels), value in sorted(m.items(), key=str)
                               if name.startswith("sse_probe_") and not name.endswith(("_bucket", "_created")))

    # the recommended location: healthy, quick first token
    assert v("sse_probe_success", "nginx-sse") == 1, context
    assert (warnings("nginx-sse"), alerts("nginx-sse")) == (set(), set()), context
    assert v("sse_probe_runs_total", "nginx-sse", outcome="completed", reason="ok") >= 1, context
    assert v("sse_probe_last_ttft_seconds", "nginx-sse") < 0.5, context

    # nginx's defaults: a complete stream, but buffered, so the first token comes with the last: TTFT high
    assert v("sse_probe_runs_total", "nginx-buffered", outcome="completed", reason="ok") >= 1, context
    assert warnings("nginx-buffered") == {"buffering_suspected"}, context
    assert alerts("nginx-buffered") == {"SSEProbeTTFTHigh"}, context
    assert v("sse_probe_success", "nginx-buffered") == 0, context
    assert v("sse_probe_last_ttft_seconds", "nginx-buffered") > 1.5, context
    assert v("sse_probe_ttft_seconds_bucket", "nginx-buffered", le="1.0") == 0, context
    assert v("sse_probe_ttft_seconds_count", "nginx-buffered") >= 1, context

    # a 6 s silence behind proxy_read_timeout 5s: cut mid-stream
    assert v("sse_probe_runs_total", "nginx-short-timeout", outcome="ended_early", reason="connection_lost") >= 1, context
    assert v("sse_probe_runs_total", "nginx-short-timeout", outcome="completed", reason="ok") == 0, context
    assert alerts("nginx-short-timeout") == {"SSEProbeStreamEndedEarly"}, context
    assert 4.9 <= v("sse_probe_max_silence_seconds", "nginx-short-timeout") < 6.0, context
