"""`sse-monitor probe` against `sse-monitor simulate` over loopback: every outcome, reason, alert and exit status."""

from __future__ import annotations

import socket
import threading

import pytest

from conftest import free_port, probe_json, sse_monitor

PATHS = {
    "openai-chat": "/v1/chat/completions",
    "openai-responses": "/v1/responses",
    "anthropic": "/v1/messages",
    "gemini": "/v1beta/models/sim-1:streamGenerateContent",
    "generic": "/v1/stream",
}
GENERIC = ["--terminal-event", "done", "--error-event", "error"]


def url(base: str, dialect: str, **params) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{base}{PATHS[dialect]}" + (f"?{query}" if query else "")


def dialect_args(dialect: str) -> list[str]:
    return ["--dialect", dialect, *(GENERIC if dialect == "generic" else [])]


@pytest.mark.parametrize("dialect", list(PATHS))
def test_healthy_stream_completes_with_exact_counts_and_exit_0(simulator, dialect):
    status, r = probe_json(url(simulator, dialect, ttft=0.1, tokens=8, rate=50), *dialect_args(dialect))
    assert (status, r["outcome"], r["reason"], r["alerts"]) == (0, "completed", "ok", [])
    assert r["status_code"] == 200 and r["token_events"] == 8
    assert r["warnings"] == []
    assert 0.1 <= r["ttft_seconds"] < 0.5
    assert r["first_byte_seconds"] <= r["first_event_seconds"] <= r["ttft_seconds"] <= r["duration_seconds"]
    # 8 tokens at 50/s: 7 gaps of 20 ms
    assert 0.015 < r["max_gap_seconds"] < 0.1
    assert r["response_headers"]["content-type"].startswith("text/event-stream")


def test_role_only_first_chunk_is_an_event_but_not_the_first_token(simulator):
    _, r = probe_json(url(simulator, "openai-chat", ttft=0.4, tokens=2))
    assert r["first_event_seconds"] < 0.2  # the role chunk comes at once
    assert r["ttft_seconds"] >= 0.4


@pytest.mark.parametrize("delay", [0.3, 1.0])
def test_ttft_is_within_10ms_of_the_first_token_delay(simulator, delay):
    # best of three, so one scheduling hiccup on a busy CI machine does not decide; the bias is what matters
    errors = []
    for _ in range(3):
        _, r = probe_json(url(simulator, "openai-chat", ttft=delay, tokens=2, rate=100))
        errors.append(r["ttft_seconds"] - delay)
    # The simulator starts its delay at its loop's time (uvloop: whole milliseconds, cached per iteration), which can
    # lie up to 1 ms before the request really arrived; the probe's clock starts when the request is sent.
    assert min(errors) >= -0.001, "TTFT must never read shorter than the real delay"
    assert min(errors) <= 0.010, f"TTFT errors {errors}"


def test_slow_first_token_raises_ttft_alert_and_exit_1(simulator):
    status, r = probe_json(url(simulator, "anthropic", ttft=1.2, tokens=2), "--dialect", "anthropic", "--ttft-threshold", "1")
    assert (status, r["outcome"], r["alerts"]) == (1, "completed", ["SSEProbeTTFTHigh"])
    assert r["ttft_seconds"] > 1.2


def test_no_token_within_threshold_is_ttft_high_even_without_a_token(simulator):
    status, r = probe_json(url(simulator, "openai-chat", ttft=5), "--ttft-threshold", "0.5", "--timeout", "1.5", "--idle-timeout", "1")
    assert status == 1 and r["ttft_seconds"] is None
    assert "SSEProbeTTFTHigh" in r["alerts"]


@pytest.mark.parametrize("dialect", list(PATHS))
def test_missing_terminal_event_is_ended_early(simulator, dialect):
    status, r = probe_json(url(simulator, dialect, ttft=0.05, tokens=3, rate=100, no_terminal=1), *dialect_args(dialect))
    assert (status, r["outcome"], r["reason"]) == (1, "ended_early", "no_terminal_event")
    assert r["alerts"] == ["SSEProbeStreamEndedEarly"] and r["token_events"] == 3


def test_generic_without_terminal_marker_completes_on_clean_eof(simulator):
    status, r = probe_json(url(simulator, "generic", ttft=0.05, tokens=3, rate=100, no_terminal=1), "--dialect", "generic")
    assert (status, r["outcome"]) == (0, "completed")


@pytest.mark.parametrize("dialect", list(PATHS))
def test_connection_dropped_mid_stream_is_connection_lost(simulator, dialect):
    status, r = probe_json(url(simulator, dialect, ttft=0.05, tokens=10, rate=100, drop_after=3), *dialect_args(dialect))
    assert (status, r["outcome"], r["reason"]) == (1, "ended_early", "connection_lost")
    assert r["token_events"] == 3 and "SSEProbeStreamEndedEarly" in r["alerts"]


@pytest.mark.parametrize("dialect", list(PATHS))
def test_error_event_mid_stream_is_ended_early_with_the_api_message(simulator, dialect):
    status, r = probe_json(url(simulator, dialect, ttft=0.05, tokens=10, rate=100, error_after=2), *dialect_args(dialect))
    assert (status, r["outcome"], r["reason"]) == (1, "ended_early", "error_event")
    assert r["token_events"] == 2
    assert r["detail"].startswith("error event:") and len(r["detail"]) > len("error event: ")


def test_pause_longer_than_idle_timeout_is_idle_timeout(simulator):
    status, r = probe_json(url(simulator, "openai-chat", ttft=0.05, tokens=5, rate=100, pause_after=2, pause=3), "--idle-timeout", "0.8")
    assert (status, r["outcome"], r["reason"]) == (1, "ended_early", "idle_timeout")
    assert r["token_events"] == 2
    assert 0.8 <= r["max_silence_seconds"] < 1.2


def test_heartbeats_keep_a_paused_stream_alive_and_bound_the_silence(simulator):
    status, r = probe_json(
        url(simulator, "openai-chat", ttft=0.05, tokens=4, rate=100, pause_after=2, pause=1.5, heartbeat=0.25),
        "--idle-timeout", "0.8",
    )
    assert (status, r["outcome"]) == (0, "completed")
    assert r["comments"] >= 4
    assert r["max_silence_seconds"] < 0.4
    assert r["max_gap_seconds"] >= 1.5  # token gaps still show the pause: heartbeats are not tokens


def test_waiting_for_held_response_headers_counts_as_silence(simulator):
    # a buffering proxy may hold the headers with the body: the client hears nothing from the request on
    _, r = probe_json(url(simulator, "openai-chat", headers_delay=0.6, ttft=0, tokens=3, rate=100))
    assert r["outcome"] == "completed"
    assert 0.6 <= r["max_silence_seconds"] < 0.8


def test_stream_shorter_than_expected_is_too_short(simulator):
    status, r = probe_json(url(simulator, "openai-chat", ttft=0.05, tokens=3, rate=100), "--min-duration", "5")
    assert (status, r["outcome"], r["reason"]) == (1, "ended_early", "too_short")


def test_fewer_events_than_expected_is_too_few_events(simulator):
    status, r = probe_json(url(simulator, "openai-chat", ttft=0.05, tokens=3, rate=100), "--min-events", "10")
    assert (status, r["outcome"], r["reason"]) == (1, "ended_early", "too_few_events")


def test_refused_connection_is_connect_error(simulator):
    status, r = probe_json(f"http://127.0.0.1:{free_port()}/v1/chat/completions")
    assert (status, r["outcome"], r["reason"], r["alerts"]) == (1, "failed", "connect_error", ["SSEProbeFailed"])
    assert r["status_code"] is None and r["ttft_seconds"] is None


def test_https_to_a_plain_http_port_is_tls_error(simulator):
    status, r = probe_json(simulator.replace("http://", "https://") + "/v1/chat/completions")
    assert (status, r["outcome"], r["reason"]) == (1, "failed", "tls_error")


def test_non_2xx_is_http_status_with_the_code_and_the_api_message(simulator):
    status, r = probe_json(url(simulator, "openai-chat", status=429))
    assert (status, r["outcome"], r["reason"], r["status_code"]) == (1, "failed", "http_status", 429)
    assert r["alerts"] == ["SSEProbeFailed"]
    assert "429" in r["detail"]


def test_redirect_is_reported_not_followed(simulator):
    status, r = probe_json(url(simulator, "openai-chat", redirect="http://127.0.0.1:9/elsewhere"))
    assert (r["outcome"], r["reason"], r["status_code"]) == ("failed", "http_status", 302)


def test_no_response_headers_in_time_is_timeout(simulator):
    status, r = probe_json(url(simulator, "openai-chat", headers_delay=3), "--idle-timeout", "0.5", "--timeout", "2")
    assert (status, r["outcome"], r["reason"]) == (1, "failed", "timeout")
    assert r["status_code"] is None


def test_endless_stream_is_stopped_by_the_probe_timeout(simulator):
    status, r = probe_json(url(simulator, "openai-chat", ttft=0.05, endless=1, rate=200), "--timeout", "1", "--idle-timeout", "1")
    assert (status, r["outcome"], r["reason"]) == (1, "failed", "timeout")
    assert 0.99 <= r["duration_seconds"] < 1.5
    assert r["token_events"] > 100


def test_2xx_json_body_is_not_event_stream(simulator):
    status, r = probe_json(url(simulator, "openai-chat", content_type="application/json"))
    assert (status, r["outcome"], r["reason"]) == (1, "failed", "not_event_stream")
    assert "content_type_not_event_stream" in r["warnings"]


def test_gzip_stream_is_decoded_and_warned_about(simulator):
    status, r = probe_json(url(simulator, "openai-chat", ttft=0.05, tokens=5, rate=100, gzip=1))
    assert (r["outcome"], r["token_events"]) == ("completed", 5)
    assert "compressed_stream" in r["warnings"]
    assert r["response_headers"]["content-encoding"] == "gzip"


def test_content_length_on_stream_is_warned_about(simulator):
    _, r = probe_json(url(simulator, "openai-chat", tokens=5, content_length=1))
    assert r["outcome"] == "completed"
    assert "content_length_on_stream" in r["warnings"]


@pytest.mark.parametrize("ending", ["crlf", "cr"])
def test_crlf_and_cr_line_endings_decode(simulator, ending):
    status, r = probe_json(url(simulator, "anthropic", ttft=0.05, tokens=4, rate=100, line_ending=ending), "--dialect", "anthropic")
    assert (status, r["outcome"], r["token_events"]) == (0, "completed", 4)


def test_huge_line_ends_the_probe_with_event_too_large(simulator):
    status, r = probe_json(url(simulator, "openai-chat", huge_line=3_000_000))
    assert (status, r["outcome"], r["reason"]) == (1, "failed", "event_too_large")


def test_gzip_bomb_is_stopped_without_inflating_it(simulator):
    # 2 GB of 'a' after inflation: the probe must stop at the 1 MiB line limit, not inflate it all
    status, r = probe_json(url(simulator, "openai-chat", gzip_bomb=2_000_000_000), timeout=30)
    assert (r["outcome"], r["reason"]) == ("failed", "event_too_large")
    assert r["bytes"] < 5_000_000


def test_garbage_bytes_do_not_crash_the_probe(simulator):
    status, r = probe_json(url(simulator, "openai-chat", garbage=50_000))
    assert status == 1 and r["outcome"] in ("ended_early", "failed")
    assert r["events"] == 0


def test_peer_speaking_garbage_instead_of_http_is_protocol_error():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        def answer():
            conn, _ = server.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"\x00\x01garbage that is not HTTP\r\n\r\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        status, r = probe_json(f"http://127.0.0.1:{port}/v1/chat/completions")
        thread.join(5)
    assert (status, r["outcome"], r["reason"]) == (1, "failed", "protocol_error")


def test_credentials_never_reach_the_output(simulator):
    secret = "sk-test-0123456789abcdef"
    target = url(simulator, "gemini", ttft=0.05, tokens=2, rate=100, status=401) + f"&key={secret}"
    proc = sse_monitor("probe", "--json", "--dialect", "gemini", "-H", f"Authorization: Bearer {secret}",
                       "-H", f"x-goog-api-key: {secret}", target)
    human = sse_monitor("probe", "--dialect", "gemini", "-H", f"x-api-key: {secret}", target)
    assert proc.returncode == 1 and human.returncode == 1
    for out in (proc.stdout, proc.stderr, human.stdout, human.stderr):
        assert secret not in out
    assert "key=%5BREDACTED%5D" in proc.stdout or "key=[REDACTED]" in proc.stdout


def test_trace_lists_events_and_comments_in_arrival_order(simulator):
    _, r = probe_json(url(simulator, "anthropic", ttft=0.3, tokens=3, rate=50, heartbeat=0.1), "--dialect", "anthropic", "--trace")
    trace = r["trace"]
    assert [e["t"] for e in trace] == sorted(e["t"] for e in trace)
    kinds = {e["kind"] for e in trace}
    assert kinds == {"event", "comment"}
    types = [e["type"] for e in trace if e["kind"] == "event"]
    assert types[0] == "message_start" and types[-1] == "message_stop"
    assert types.count("content_block_delta") == 3
    assert all(set(e) == {"t", "kind", "type", "id", "data"} for e in trace)


def test_human_trace_shows_each_event_with_its_time(simulator):
    proc = sse_monitor("probe", "--trace", url(simulator, "openai-chat", ttft=0.2, tokens=2, rate=50))
    lines = proc.stdout.splitlines()
    trace = [line.split() for line in lines if line.startswith("    ") and line.split()[0].replace(".", "").isdigit()]
    assert len(trace) == 6  # role chunk, 2 tokens, finish chunk, usage chunk, [DONE]
    times = [float(t[0]) for t in trace]
    assert times == sorted(times) and times[1] >= 0.2
    assert trace[-1][-1] == "[DONE]"


def test_human_summary_is_short_and_says_what_happened(simulator):
    proc = sse_monitor("probe", url(simulator, "openai-chat", ttft=0.05, tokens=3, rate=100, drop_after=1))
    assert proc.returncode == 1
    assert "ended_early (connection_lost)" in proc.stdout
    assert "ALERT: SSEProbeStreamEndedEarly" in proc.stdout
    assert len(proc.stdout.splitlines()) <= 16  # one screen: the TTFT breakdown takes five of them


@pytest.mark.parametrize(
    "args, message",
    [
        (["-H", "NoColonHere", "http://127.0.0.1:1/"], "-H: expected 'Name: value'"),
        (["--body", "{not json", "http://127.0.0.1:1/"], "--body: expected JSON or @file"),
        (["--body", "@/nonexistent/body.json", "http://127.0.0.1:1/"], "--body: cannot read /nonexistent/body.json"),
        (["ftp://example.com/"], "URL: expected an http:// or https:// URL"),
        (["http://[::1:9/x"], "URL: expected an http:// or https:// URL with a host, got 'http://[::1:9/x'"),
        (["http://127.0.0.1:99999/"], "URL: expected an http:// or https:// URL with a host"),
        (["--timeout", "1", "--idle-timeout", "5", "http://127.0.0.1:1/"], "--idle-timeout (5 s) must not be longer than --timeout (1 s)"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args, message):
    proc = sse_monitor("probe", *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_url_that_cannot_be_parsed_is_a_connect_error_naming_why_not_an_internal_error():
    # the library path (chain checks, /probe modules) gets no CLI check first
    import asyncio

    from monitor.probe import run_probe
    from monitor.result import ProbeSpec

    result = asyncio.run(run_probe(ProbeSpec(url="http://[::1:9/x")))
    assert (result.outcome, result.reason, result.detail) == ("failed", "connect_error",
                                                              "cannot use this URL: Invalid IPv6 URL")
