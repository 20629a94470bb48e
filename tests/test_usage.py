"""Where the time went and what probing costs: server-reported timing, token usage and cost, first visible text."""

from __future__ import annotations

import asyncio
import json
import math
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from conftest import ROOT, free_port, probe_json, require_binary, sse_monitor
from servers import DaemonProcess, parse_metrics, running_daemon, start_prometheus, wait_until
from monitor.breakdown import ttft_breakdown
from monitor.dialects import make_dialect
from monitor.metrics import Metrics, render, render_openmetrics
from monitor.probe import StreamRecorder, run_probe
from monitor.result import USAGE_KINDS, Price, ProbeResult, ProbeSpec
from monitor.server_timing import MAX_TIMINGS, MS_HEADERS
from monitor.sse import Event, SSEDecoder
from monitor.timeline import timeline_svg
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
    return ProbeResult(**{"url": "http://127.0.0.1:9/", "dialect": "openai-chat", "outcome": "completed",
                          "reason": "ok", "ttft_seconds": 0.4, "duration_seconds": 1.0, **kw})


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


# ---- token usage and cost -------------------------------------------------------------------------------------------

SAMPLES = Path(__file__).parent / "samples"


def recorded(dialect: str, sample: str, price: Price | None = None) -> ProbeResult:
    """A recorded stream fed to the probe's own recorder, as one body piece after its response headers."""
    spec = ProbeSpec(url="http://127.0.0.1:9/", dialect=dialect, price=price)
    result = ProbeResult(url=spec.url, dialect=dialect)
    recorder = StreamRecorder(spec, make_dialect(spec), result)
    if not recorder.on_body((SAMPLES / sample).read_bytes()):
        recorder.on_eof()
    recorder.finish()
    return result


@pytest.mark.parametrize("dialect, sample, usage", [
    ("openai-chat", "openai_chat.sse", (19, 5, None)),
    ("openai-chat", "openai_chat_reasoning.sse", (19, 40, 36)),
    ("openai-chat", "openai_chat_tools_reasoning.sse", None),  # no usage chunk: include_usage was not honoured
    ("openai-responses", "openai_responses.sse", (12, 4, None)),
    ("openai-responses", "openai_responses_reasoning.sse", (12, 130, 128)),
    ("anthropic", "anthropic.sse", (25, 15, None)),  # message_start's input, message_delta's output
    ("anthropic", "anthropic_thinking.sse", (30, 85, None)),  # thinking is counted in the output, not apart
    ("anthropic", "anthropic_overloaded.sse", (25, 1, None)),  # ended by an error: what it said until then
    ("gemini", "gemini.sse", (9, 9, None)),
    ("gemini", "gemini_thinking.sse", (9, 125, 120)),  # thoughts are output too, counted apart by Gemini
])
def test_usage_is_read_from_each_dialects_stream(dialect, sample, usage):
    r = recorded(dialect, sample)
    expected = None if usage is None else dict(zip(("input_tokens", "output_tokens", "reasoning_tokens"), usage))
    assert r.usage == expected
    assert r.cost is None  # no price


def test_cost_is_input_and_output_tokens_at_the_price_per_million():
    r = recorded("openai-chat", "openai_chat_reasoning.sse", Price(2.0, 8.0, "EUR"))
    assert r.cost == {"amount": pytest.approx((19 * 2.0 + 40 * 8.0) / 1e6), "currency": "EUR"}
    assert recorded("openai-chat", "openai_chat_tools_reasoning.sse", Price(2.0, 8.0)).cost is None  # no usage


@pytest.mark.parametrize("dialect", list(TIMING))
def test_each_dialect_probe_reports_usage_and_cost_and_caps_the_answer(simulator, dialect):
    # the simulator stops at the request's output cap, as a model does: 30 tokens asked, 7 allowed
    status, r = probe_json(url(simulator, dialect, tokens=30, ttft=0, rate=1000), *dialect_args(dialect),
                           "--price", "1.5,6,USD", "--max-output-tokens", "7")
    assert (status, r["outcome"]) == (0, "completed")
    if dialect == "generic":  # no usage in the stream, no cap in the request
        assert (r["token_events"], r["usage"], r["cost"]) == (30, None, None)
        return
    assert r["token_events"] == 7
    assert r["usage"] == {"input_tokens": 10, "output_tokens": 7, "reasoning_tokens": None}
    assert r["cost"] == {"amount": pytest.approx((10 * 1.5 + 7 * 6) / 1e6), "currency": "USD"}


def test_probe_text_output_names_tokens_and_cost(simulator):
    proc = sse_monitor("probe", url(simulator, "anthropic", tokens=3, ttft=0), "--dialect", "anthropic",
                       "--price", "0.8,4,EUR")
    assert "  tokens       10 input, 3 output, cost 0.00002 EUR" in proc.stdout.splitlines()


def test_token_and_cost_counters_add_up_each_run():
    metrics = Metrics()
    metrics.add_target("a", 60.0, 2.0, 60.0)
    sample = metrics.registry.get_sample_value
    assert [sample("sse_probe_tokens_total", {"target": "a", "kind": k}) for k in USAGE_KINDS] == [0, 0, 0]
    usage = {"input_tokens": 10, "output_tokens": 40, "reasoning_tokens": 36}
    for _ in range(2):
        metrics.observe("a", result(usage=usage, cost={"amount": 0.25, "currency": "USD"}))
    metrics.observe("a", result(usage={"input_tokens": 10, "output_tokens": None, "reasoning_tokens": None}))
    assert [sample("sse_probe_tokens_total", {"target": "a", "kind": k}) for k in USAGE_KINDS] == [30, 80, 72]
    assert sample("sse_probe_cost_total", {"target": "a", "currency": "USD"}) == 0.5
    assert render(metrics.registry) == generate_latest(metrics.registry)
    metrics.remove_target("a")
    text = generate_latest(metrics.registry)
    assert b"sse_probe_tokens_total{" not in text and b"sse_probe_cost_total{" not in text


def test_check_config_estimates_runs_tokens_and_cost_per_day(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(
        "defaults:\n  price: {input_per_million: 0.15, output_per_million: 0.60}\n"
        "targets:\n"
        "  - {name: chat, url: 'http://127.0.0.1:9/', interval: 1m}\n"
        "  - {name: claude, url: 'http://127.0.0.1:9/', dialect: anthropic, interval: 5m, max_output_tokens: 300,\n"
        "     price: {input_per_million: 0.8, output_per_million: 4, currency: EUR}}\n"
        "  - {name: feed, url: 'http://127.0.0.1:9/', dialect: generic, interval: 10m}\n")
    proc = sse_monitor("check-config", str(config))
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()[1:]]
    # 1,440 runs a day at most 1,024 output tokens: 1,474,560 tokens, 0.88 USD at 0.60 a million
    assert rows[1] == ["chat", "1,440", "at", "most", "1,474,560", "at", "most", "0.88", "USD"]
    assert rows[2] == ["claude", "288", "at", "most", "86,400", "at", "most", "0.35", "EUR"]
    assert rows[3] == ["feed", "144", "unknown", "(no", "cap)", "unknown", "(no", "cap)"]
    assert " ".join(rows[4]).startswith("total 1,872 1,560,960 + unknown at most 0.35 EUR + 0.88 USD")


# ---- first visible text ---------------------------------------------------------------------------------------------


def token_kinds(dialect: str, sample: str) -> str:
    """Each token event of a recorded stream: R for reasoning (thinking), T for the visible answer."""
    classify = make_dialect(ProbeSpec(url="http://h", dialect=dialect)).classify
    verdicts = [classify(item) for item in SSEDecoder().feed((SAMPLES / sample).read_bytes()) if isinstance(item, Event)]
    return "".join("R" if v.reasoning else "T" for v in verdicts if v.token)


@pytest.mark.parametrize("dialect, sample, kinds", [
    ("openai-chat", "openai_chat.sse", "TTT"),
    ("openai-chat", "openai_chat_reasoning.sse", "RRTT"),
    ("openai-chat", "openai_chat_tools_reasoning.sse", "RTT"),  # a tool call's arguments are the answer
    ("openai-responses", "openai_responses_reasoning.sse", "RRTT"),
    ("anthropic", "anthropic_thinking.sse", "RRTT"),  # thinking and signature deltas; the text names neither's type
    ("anthropic", "anthropic.sse", "TT"),
    ("gemini", "gemini_thinking.sse", "RTT"),  # a part with thought: true
    ("gemini", "gemini.sse", "TTT"),
])
def test_reasoning_tokens_are_told_from_the_visible_answer(dialect, sample, kinds):
    assert token_kinds(dialect, sample) == kinds


@pytest.mark.parametrize("dialect", list(TIMING))
def test_first_text_comes_after_the_thinking_that_ttft_counts(simulator, dialect):
    # 4 thinking tokens then 4 of answer, 20 a second: the answer starts 0.2 s after the first (thinking) token
    status, r = probe_json(url(simulator, dialect, tokens=8, thinking=4, ttft=0.05, rate=20), *dialect_args(dialect))
    assert (status, r["outcome"], r["token_events"]) == (0, "completed", 8)
    if dialect == "generic":  # no reasoning in a generic stream: every token is answer
        assert r["first_text_seconds"] == r["ttft_seconds"]
        return
    assert r["first_text_seconds"] - r["ttft_seconds"] >= 0.19
    if dialect != "anthropic":  # Anthropic does not count thinking apart
        assert r["usage"]["reasoning_tokens"] == 4


def test_first_text_is_ttft_for_a_model_that_does_not_think(simulator):
    _, r = probe_json(url(simulator, "openai-chat", tokens=3, ttft=0.05))
    assert r["first_text_seconds"] == r["ttft_seconds"] is not None


def test_first_text_histogram_has_the_ttft_buckets_and_goes_with_the_target():
    metrics = Metrics()
    metrics.add_target("a", 60.0, 2.0, 60.0)
    sample = metrics.registry.get_sample_value
    assert sample("sse_probe_first_text_seconds_count", {"target": "a"}) == 0
    metrics.observe("a", result(first_text_seconds=1.7))
    metrics.observe("a", result())  # no visible text came
    assert sample("sse_probe_first_text_seconds_count", {"target": "a"}) == 1
    assert sample("sse_probe_first_text_seconds_bucket", {"target": "a", "le": "1.5"}) == 0
    assert sample("sse_probe_first_text_seconds_bucket", {"target": "a", "le": "2.0"}) == 1
    metrics.remove_target("a")
    assert b"sse_probe_first_text_seconds_count{" not in generate_latest(metrics.registry)


# ---- the TTFT breakdown ---------------------------------------------------------------------------------------------


def probe_result(url_: str, **spec) -> ProbeResult:
    return asyncio.run(run_probe(ProbeSpec(url=url_, **spec)))


def test_the_breakdown_parts_add_up_to_what_a_fresh_client_waited(simulator):
    r = probe_result(url(simulator, "openai-chat", tokens=8, thinking=3, ttft=0.3, rate=20, headers_delay=0.1,
                         server_timing=1))
    parts = {p.name: p for p in ttft_breakdown(r)}
    assert list(parts) == ["connect", "tls", "request_to_headers", "headers_to_first_event",
                           "first_event_to_first_token", "first_token_to_first_text"]
    assert not parts["tls"].applies and parts["tls"].seconds is None  # plain http: no TLS, not an unknown one
    after_request = ("request_to_headers", "headers_to_first_event", "first_event_to_first_token")
    assert sum(parts[name].seconds for name in after_request) == pytest.approx(r.ttft_seconds)
    assert parts["first_token_to_first_text"].seconds == pytest.approx(r.first_text_seconds - r.ttft_seconds)
    assert parts["first_token_to_first_text"].seconds >= 0.14  # 3 thinking tokens at 20 a second
    assert (parts["request_to_headers"].server_seconds, parts["request_to_headers"].server_header) == (
        0.1, "openai-processing-ms")
    assert parts["request_to_headers"].seconds >= 0.1


def test_probe_text_output_lists_each_part_and_the_servers_share(simulator):
    proc = sse_monitor("probe", url(simulator, "anthropic", tokens=2, ttft=0.2, headers_delay=0.1, server_timing=1),
                       "--dialect", "anthropic")
    lines = proc.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  TTFT parts   connect"))
    labels = [line[15:].split("  ")[0] for line in lines[start:start + 5]]
    assert labels == ["connect", "TLS", "request sent → response headers", "headers → first event",
                      "first event → first token"]
    assert "none (plain http)" in lines[start + 1]
    assert "(the server says 0.100 s: x-envoy-upstream-service-time; " in lines[start + 2]
    assert "  server       request id req_sim_" in proc.stdout


def test_a_probe_that_got_no_response_shows_its_parts_as_unknown_never_as_numbers():
    proc = sse_monitor("probe", f"http://127.0.0.1:{free_port()}/v1/chat/completions")
    lines = proc.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  TTFT parts"))
    assert [line.rstrip().endswith(" unknown") for line in lines[start:start + 5]] == [True, False, True, True, True]


def test_the_timeline_draws_the_breakdown_on_the_time_axis(simulator):
    r = probe_result(url(simulator, "openai-chat", tokens=6, thinking=2, ttft=0.2, rate=20, headers_delay=0.1,
                         server_timing=1))
    root = ET.fromstring(timeline_svg(r))
    ns = {"s": "http://www.w3.org/2000/svg"}
    band = root.find("s:g[@class='breakdown']", ns)
    drawn = {rect.get("data-part"): float(rect.get("data-seconds")) for rect in band.findall("s:rect", ns)}
    assert drawn == pytest.approx({
        "request_to_headers": r.headers_seconds, "server": 0.1,
        "headers_to_first_event": r.first_event_seconds - r.headers_seconds,
        "first_event_to_first_token": r.ttft_seconds - r.first_event_seconds,
        "first_token_to_first_text": r.first_text_seconds - r.ttft_seconds}, abs=1e-6)
    assert band.find("s:text", ns).text.startswith("before the request: connect ")
    failed = ET.fromstring(timeline_svg(ProbeResult(url="https://h/", dialect="openai-chat")))
    label = failed.find("s:g[@class='breakdown']/s:text", ns).text
    assert label == ("before the request: connect unknown, TLS unknown · unknown: request sent → response headers, "
                     "headers → first event, first event → first token")


# ---- the daemon: pages, metrics and log line ------------------------------------------------------------------------


def test_the_daemon_shows_where_the_time_went_and_what_probing_costs(simulator, tmp_path):
    chat = url(simulator, "openai-chat", tokens=6, thinking=2, ttft=0.1, rate=50, headers_delay=0.05, server_timing=1)
    config = ("scheduler: {jitter: 0s}\ntargets:\n"
              f"  - {{name: chat, url: '{chat}', interval: 1m, timeout: 20s, idle_timeout: 10s,\n"
              "     price: {input_per_million: 1, output_per_million: 4}}\n")

    async def scenario():
        async with running_daemon(config, tmp_path) as (daemon, client):
            with capture_logs() as logs:
                for _ in range(2):
                    await daemon._run_target("chat")
            pages = [(await client.get(path)).text for path in ("/", "/targets/chat", "/metrics")]
            return logs, *pages

    logs, landing, page, metrics_text = asyncio.run(scenario())
    finished = [e for e in logs if e["event"] == "probe_finished"]
    assert len(finished) == 2
    e = finished[-1]
    assert e["request_id"].startswith("req_sim_") and e["first_text_seconds"] > e["ttft_seconds"]
    assert e["usage"] == {"input_tokens": 10, "output_tokens": 6, "reasoning_tokens": 2}
    assert e["cost"] == {"amount": pytest.approx(34e-6), "currency": "USD"}
    # two runs of 16 tokens, 34 millionths each, 1,440 runs a day
    assert "<td class=spend>23,040 tokens, 0.04896 USD</td>" in landing
    assert "first text" in page and "TTFT parts" in page and "request id req_sim_" in page
    assert 'class="breakdown"' in page
    m = parse_metrics(metrics_text)
    t = frozenset({"target": "chat"}.items())
    assert m[("sse_probe_tokens_total", t | {("kind", "output")})] == 12
    assert m[("sse_probe_tokens_total", t | {("kind", "reasoning")})] == 4
    assert m[("sse_probe_cost_total", t | {("currency", "USD")})] == pytest.approx(68e-6)
    assert m[("sse_probe_server_timing_seconds", t | {("name", "openai-processing-ms")})] == 0.05
    assert m[("sse_probe_first_text_seconds_count", t)] == 2


# ---- exemplars ------------------------------------------------------------------------------------------------------


def test_openmetrics_scrapes_get_exemplars_naming_the_run_and_text_scrapes_the_same_bytes_as_before():
    metrics = Metrics()
    metrics.add_target("a", 60.0, 2.0, 60.0)
    metrics.observe("a", result(first_text_seconds=0.9), run=41)
    metrics.observe("a", result(ttft_seconds=2.5, first_text_seconds=2.6), run=42)
    assert render(metrics.registry) == generate_latest(metrics.registry)  # no exemplar in the text format
    text = render_openmetrics(metrics.registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, value, le in (("sse_probe_ttft_seconds", 2.5, "3.0"), ("sse_probe_first_text_seconds", 2.6, "3.0"),
                            ("sse_probe_stream_duration_seconds", 1.0, "1.0")):
        bucket = next(s for s in families[name].samples if s.name.endswith("_bucket") and s.labels["le"] == le)
        assert (bucket.exemplar.labels, bucket.exemplar.value) == ({"target": "a", "run": "42"}, value), name
    assert text.endswith("# EOF\n")


@pytest.mark.parametrize("accept, openmetrics", [
    ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1", True),  # what Prometheus sends by default
    ("text/plain;version=0.0.4", False),
    ("", False),
])
def test_metrics_endpoint_serves_openmetrics_only_to_a_scraper_that_asks(accept, openmetrics, simulator, tmp_path):
    config = f"targets:\n  - {{name: chat, url: '{url(simulator, 'openai-chat', tokens=2, ttft=0)}', interval: 1h}}\n"

    async def scenario():
        async with running_daemon(config, tmp_path) as (daemon, client):
            await daemon._run_target("chat")
            return await client.get("/metrics", headers={"Accept": accept})

    response = asyncio.run(scenario())
    if openmetrics:
        assert response.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
        assert '# {run="1",target="chat"} ' in response.text
    else:
        assert response.headers["content-type"] == CONTENT_TYPE_LATEST  # as before
        # the text format (render(), byte for byte generate_latest: tests/test_metrics_render.py), no exemplar in it
        assert " # {" not in response.text and "# EOF" not in response.text
        assert 'sse_probe_ttft_seconds_count{target="chat"} 1.0\n' in response.text


def test_real_prometheus_stores_exemplars_with_our_run_numbers(simulator, tmp_path):
    require_binary("prometheus")  # before the daemon starts: a skip after it would leave it running
    chat = url(simulator, "openai-chat", tokens=3, ttft=0.05, rate=100)
    daemon = DaemonProcess(f"scheduler: {{jitter: 0s}}\ntargets:\n  - {{name: chat, url: '{chat}', interval: 1s}}\n",
                           tmp_path)
    prom = start_prometheus(
        "global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: sse-monitor\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{daemon.port}']}}]\n", tmp_path, "--enable-feature=exemplar-storage")
    try:
        def exemplars() -> list[dict]:
            now = time.time()
            response = httpx.get(prom.url + "/api/v1/query_exemplars", params={
                "query": 'sse_probe_ttft_seconds_bucket{target="chat"}', "start": now - 300, "end": now}, timeout=5)
            return [e for series in response.json()["data"] for e in series["exemplars"]]

        found = wait_until(lambda: len(exemplars()) >= 3 and exemplars(), 30, "three TTFT exemplars in Prometheus")
        history = {entry["run"]: entry for entry in daemon.get("/api/v1/targets/chat/history").json()}
        for exemplar in found:
            assert exemplar["labels"]["target"] == "chat"
            run = int(exemplar["labels"]["run"])
            if run in history:  # still kept: the exemplar's value is that run's TTFT
                assert float(exemplar["value"]) == pytest.approx(history[run]["ttft_seconds"])
        runs = sorted(int(e["labels"]["run"]) for e in found)
        assert runs == sorted(set(runs)) and runs[0] >= 1  # one exemplar per run, numbered as the history numbers them
        assert any(run in history for run in runs)
    finally:
        prom.close()
        daemon.stop()


def test_grafana_ttft_panels_show_exemplars_linking_to_the_runs_page():
    dashboards = {p.stem: json.loads(p.read_text()) for p in (ROOT / "dashboards").glob("*.json")}
    for name, dash in dashboards.items():
        monitor = next(v for v in dash["templating"]["list"] if v["name"] == "monitor")
        assert monitor["query"] == "http://localhost:9108"  # where docker-compose.yml publishes the daemon
        panels = [p for p in dash["panels"] if "exemplar" in json.dumps(p.get("targets", []))]
        assert panels, name
        for panel in panels:
            assert any("sse_probe_ttft_seconds" in t["expr"] and t.get("exemplar") for t in panel["targets"])
            (override,) = [o for o in panel["fieldConfig"]["overrides"] if o["matcher"]["options"] == "run"]
            (link,) = override["properties"][0]["value"]
            assert link["url"] == "${monitor}/targets/${__data.fields.target}?run=${__value.raw}"


def test_openmetrics_renders_byte_for_byte_as_prometheus_clients_writer(monkeypatch):
    metrics = Metrics()
    for name in ("a", "b"):
        metrics.add_target(name, 60.0, 2.0, 60.0)
    metrics.observe("a", result(first_text_seconds=0.9, server_timing={"x": 0.1}), run=3)
    metrics.observe("b", result(ttft_seconds=None, usage={"input_tokens": 5, "output_tokens": None,
                                                          "reasoning_tokens": None}), run=1)
    registry = CollectorRegistry()
    counter = Counter("c", "A counter\\ with a backslash\nand a newline.", ("target",), registry=registry)
    gauge = Gauge("g", "A gauge.", ("target",), registry=registry)
    histogram = Histogram("h", "A histogram.", ("target", "zz"), buckets=(-1.0, 0.1, 1.0), registry=registry)
    Info("build", "Build.", registry=registry).info({"version": "1"})
    for name in ('quote"d', "back\\slash", "new\nline", "ünïcode", ""):
        counter.labels(name).inc(2.5)
        histogram.labels(name, "z").observe(0.5, {"run": name, "target": "x"})
    for name, value in (("neg-zero", -0.0), ("nan", math.nan), ("inf", math.inf), ("tiny", 1.5e-300)):
        gauge.labels(name).set(value)
    Gauge("f", "Set by a function.", ("target",), registry=registry).labels("a").set_function(lambda: 4.0)
    Counter("e", "A counter with an exemplar.", ("target",), registry=registry).labels("a").inc(1, {"run": "1"})
    for each in (metrics.registry, registry, CollectorRegistry(target_info={"env": "test"}), CollectorRegistry()):
        assert render_openmetrics(each) == openmetrics_latest(each)
    counter.labels('quote"d').reset()  # a new _created: the cached line must not survive it
    assert render_openmetrics(registry) == openmetrics_latest(registry)
    monkeypatch.setattr(prometheus_metrics, "_use_created", False)
    assert render_openmetrics(registry) == openmetrics_latest(registry)
    assert render(registry) == generate_latest(registry)  # the text renderer, sharing its caches, unmoved


def test_the_simulator_refuses_response_headers_that_are_not_a_json_object_of_strings(simulator):
    for bad in ("[1]", '{"x": 1}', '{"bad name": "1"}'):
        response = httpx.get(url(simulator, "openai-chat") + "?response_headers=" + quote(bad), timeout=5)
        assert response.status_code == 400 and "'response_headers'" in response.json()["error"]["message"], bad
