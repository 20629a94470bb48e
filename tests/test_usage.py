"""Where the time went and what probing costs: server-reported timing, token usage and cost, first visible text."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from prometheus_client import generate_latest

from conftest import probe_json
from monitor.metrics import Metrics, render
from monitor.result import ProbeResult
from monitor.server_timing import MAX_TIMINGS, MS_HEADERS
from test_probe_e2e import dialect_args, url

# what each simulated API sends with server_timing=1: its timing header's name and its request id header
TIMING = {
    "openai-chat": "openai-processing-ms",
    "openai-responses": "openai-processing-ms",
    "anthropic": "x-envoy-upstream-service-time",
    "gemini": "server-timing:gfet4t7",
    "generic": "server-timing:app",
}


def with_headers(base: str, headers: dict[str, str], **params) -> str:
    return url(base, "openai-chat", tokens=2, ttft=0, **params) + "&response_headers=" + quote(json.dumps(headers))


@pytest.mark.parametrize("dialect", list(TIMING))
def test_each_apis_timing_header_and_request_id_reach_the_json(simulator, dialect):
    status, r = probe_json(url(simulator, dialect, server_timing=1, headers_delay=0.25, tokens=2, ttft=0),
                           *dialect_args(dialect))
    assert (status, r["outcome"]) == (0, "completed")
    assert r["server_timing"] == {TIMING[dialect]: 0.25}
    assert r["request_id"].startswith("req_sim_")
    assert r["headers_seconds"] >= 0.25  # the client saw at least what the server says it spent


def test_every_millisecond_header_and_each_server_timing_entry_is_kept_by_name_in_seconds(simulator):
    headers = {name: str(10 * (i + 1)) for i, name in enumerate(MS_HEADERS)}
    headers["Server-Timing"] = 'db;dur=12.5;desc="a, b", cache;desc=hit, Total;dur=40'
    headers["cf-ray"] = "8f1e2d-AMS"
    _, r = probe_json(with_headers(simulator, headers))
    expected = {name: 0.01 * (i + 1) for i, name in enumerate(MS_HEADERS)}
    expected |= {"server-timing:db": 0.0125, "server-timing:total": 0.04}  # `cache` has no dur: no time to keep
    assert r["server_timing"] == pytest.approx(expected)
    assert r["request_id"] == "8f1e2d-AMS"


def test_the_first_request_id_header_found_wins(simulator):
    _, r = probe_json(with_headers(simulator, {"cf-ray": "ray", "request-id": "second", "x-request-id": "first"}))
    assert r["request_id"] == "first"


def test_malformed_timing_values_are_ignored_with_a_warning_in_the_trace_never_a_failed_probe(simulator):
    headers = {"openai-processing-ms": "fast", "x-queue-time": "-3", "x-inference-time": "nan",
               "server-timing": "bad name;dur=3, ok;dur=abc, fine;dur=7", "x-envoy-upstream-service-time": "15"}
    status, r = probe_json(with_headers(simulator, headers), "--trace")
    assert (status, r["outcome"], r["warnings"]) == (0, "completed", [])
    assert r["server_timing"] == {"x-envoy-upstream-service-time": 0.015, "server-timing:fine": 0.007}
    ignored = [e["data"] for e in r["trace"] if e["kind"] == "warning"]
    assert len(ignored) == 5 and all(e.startswith("ignored malformed ") for e in ignored)
    assert "openai-processing-ms: fast" in ignored[0]


def test_a_response_with_no_timing_headers_has_an_empty_server_timing_and_no_request_id(simulator):
    _, r = probe_json(url(simulator, "openai-chat", tokens=2, ttft=0))
    assert (r["server_timing"], r["request_id"]) == ({}, None)


def test_an_endpoint_sending_many_server_timing_names_gets_only_the_first_sixteen_kept(simulator):
    entries = ", ".join(f"m{i};dur={i}" for i in range(40))
    _, r = probe_json(with_headers(simulator, {"server-timing": entries}))
    assert list(r["server_timing"]) == [f"server-timing:m{i}" for i in range(MAX_TIMINGS)]


def result(**kw) -> ProbeResult:
    return ProbeResult(url="http://127.0.0.1:9/", dialect="openai-chat", outcome="completed", reason="ok",
                       ttft_seconds=0.4, duration_seconds=1.0, **kw)


def test_server_timing_series_exist_only_for_names_the_last_run_sent_and_go_with_the_target():
    metrics = Metrics()
    metrics.add_target("a", 60.0, 2.0, 60.0)
    sample = metrics.registry.get_sample_value
    metrics.observe("a", result(server_timing={"openai-processing-ms": 0.8, "server-timing:db": 0.1}))
    assert sample("sse_probe_server_timing_seconds", {"target": "a", "name": "openai-processing-ms"}) == 0.8
    metrics.observe("a", result(server_timing={"openai-processing-ms": 0.5}))
    assert sample("sse_probe_server_timing_seconds", {"target": "a", "name": "openai-processing-ms"}) == 0.5
    assert sample("sse_probe_server_timing_seconds", {"target": "a", "name": "server-timing:db"}) is None
    assert render(metrics.registry) == generate_latest(metrics.registry)
    metrics.remove_target("a")
    assert b"sse_probe_server_timing_seconds{" not in generate_latest(metrics.registry)
