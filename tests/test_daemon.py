"""The daemon as users run it: scheduled probes against the simulator, scraped over HTTP, reloaded, stopped."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time

import httpx
import pytest

from conftest import require_binary, sse_monitor
from monitor.scheduler import ProbeScheduler, first_run_offset
from servers import DaemonProcess, prometheus_query, start_prometheus, wait_until

SECRET = "sk-daemon-secret-0123456789"
LIFECYCLE = ["--web.enable-lifecycle"]  # POST /-/reload is answered only with it, as in Prometheus


def target(name: str, base: str, query: str, interval: str = "1s", dialect: str = "openai-chat", extra: str = "") -> str:
    paths = {"openai-chat": "/v1/chat/completions", "anthropic": "/v1/messages"}
    return (
        f"  - name: {name}\n    dialect: {dialect}\n    interval: {interval}\n"
        f"    url: \"{base}{paths[dialect]}?{query}\"\n{extra}"
    )


def config(*targets: str, jitter: str = "0s", max_concurrent: int = 50) -> str:
    return (
        "defaults: {timeout: 30s, idle_timeout: 10s, ttft_threshold: 1s}\n"
        f"scheduler: {{jitter: {jitter}, max_concurrent: {max_concurrent}}}\n"
        "targets:\n" + "".join(targets)
    )


@pytest.fixture
def daemon_factory(tmp_path):
    started: list[DaemonProcess] = []

    def start(config_text: str, **kw) -> DaemonProcess:
        daemon = DaemonProcess(config_text, tmp_path, **kw)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


def test_series_of_every_configured_target_exist_before_its_first_run(simulator, daemon_factory):
    d = daemon_factory(config(target("later", simulator, "tokens=2", interval="1h")))
    m = d.metrics()
    assert m[("sse_probe_runs_total", frozenset({"target": "later", "outcome": "completed", "reason": "ok"}.items()))] == 0
    assert m[("sse_probe_runs_total", frozenset({"target": "later", "outcome": "failed", "reason": "connect_error"}.items()))] == 0
    assert m[("sse_probe_ttft_seconds_count", frozenset({"target": "later"}.items()))] == 0
    assert m[("sse_probe_warning", frozenset({"target": "later", "warning": "buffering_suspected"}.items()))] == 0
    assert m[("sse_monitor_skipped_runs_total", frozenset({"target": "later"}.items()))] == 0
    assert m[("sse_monitor_probe_waits_total", frozenset({"target": "later"}.items()))] == 0
    assert m[("sse_monitor_probes_user_clock_total", frozenset({"target": "later"}.items()))] == 0
    assert m[("sse_monitor_probe_wait_seconds_count", frozenset())] == 0
    assert m[("sse_monitor_targets", frozenset())] == 1
    assert m[("sse_monitor_config_last_reload_successful", frozenset())] == 1


def test_scraped_histograms_count_every_run_with_slo_buckets(simulator, daemon_factory):
    d = daemon_factory(config(
        target("healthy", simulator, "ttft=0.3&tokens=5&rate=50"),
        target("cut", simulator, "ttft=0.05&tokens=10&rate=50&drop_after=3"),
    ))
    wait_until(lambda: d.runs("healthy") >= 3 and d.runs("cut") >= 3, 20, "three runs of each target")
    m = d.metrics()
    t = lambda **kw: frozenset({"target": "healthy", **kw}.items())  # noqa: E731
    runs = m[("sse_probe_runs_total", t(outcome="completed", reason="ok"))]
    count = m[("sse_probe_ttft_seconds_count", t())]
    assert count >= 3 and abs(count - runs) <= 1  # a scrape may fall between the two updates of one run
    # every TTFT was ~0.3 s: all under the 1.5 s SLO bucket and the 2 s threshold, none under 0.25 s
    assert m[("sse_probe_ttft_seconds_bucket", t(le="1.5"))] == count
    assert m[("sse_probe_ttft_seconds_bucket", t(le="2.0"))] == count
    assert m[("sse_probe_ttft_seconds_bucket", t(le="0.25"))] == 0
    assert 0.3 <= m[("sse_probe_ttft_seconds_sum", t())] / count < 0.35
    assert ("sse_probe_ttft_seconds_bucket", t(le="120.0")) in m  # buckets reach past 60 s
    assert ("sse_probe_stream_duration_seconds_bucket", t(le="600.0")) in m
    # 4 gaps of 20 ms per run
    assert m[("sse_probe_inter_event_gap_seconds_count", t())] >= 4 * 3
    assert m[("sse_probe_success", t())] == 1
    assert time.time() - m[("sse_probe_last_run_timestamp_seconds", t())] < 5
    c = lambda **kw: frozenset({"target": "cut", **kw}.items())  # noqa: E731
    assert m[("sse_probe_runs_total", c(outcome="ended_early", reason="connection_lost"))] >= 3
    assert m[("sse_probe_success", c())] == 0
    assert m[("sse_probe_alert_condition", c(alertname="SSEProbeStreamEndedEarly"))] == 1


def test_metrics_pass_promtool_check(simulator, daemon_factory):
    promtool = require_binary("promtool")
    d = daemon_factory(config(target("a", simulator, "ttft=0.05&tokens=3&rate=50")))
    wait_until(lambda: d.runs("a") >= 1, 15, "a run")
    check = subprocess.run([promtool, "check", "metrics"], input=d.metrics_text(), capture_output=True, text=True)
    assert check.returncode == 0 and not (check.stdout + check.stderr).strip(), check.stdout + check.stderr


def test_a_run_still_streaming_when_the_next_is_due_is_skipped_and_counted(simulator, daemon_factory):
    # a 2.5 s stream on a 1 s interval: never two at once, the missed starts counted
    d = daemon_factory(config(target("long", simulator, "ttft=0.05&tokens=50&rate=20")))
    wait_until(lambda: d.sample("sse_monitor_skipped_runs_total", target="long") >= 2, 15, "skips")
    assert d.sample("sse_monitor_probes_in_flight") <= 1
    assert any(e.get("event") == "probe_skipped" and e.get("target") == "long" for e in d.log_events())


def test_one_json_log_line_per_finished_probe_and_no_secret_anywhere(simulator, daemon_factory):
    extra = "    headers: {Authorization: \"Bearer ${TEST_API_KEY}\", x-api-key: \"${TEST_API_KEY}\"}\n"
    d = daemon_factory(config(target("keyed", simulator, "ttft=0.05&tokens=3&rate=50", extra=extra)),
                       env={"TEST_API_KEY": SECRET})
    wait_until(lambda: d.runs("keyed") >= 2, 15, "two runs")
    finished = [e for e in d.log_events() if e.get("event") == "probe_finished"]
    assert len(finished) >= 2
    e = finished[0]
    assert (e["target"], e["outcome"], e["reason"], e["token_events"]) == ("keyed", "completed", "ok", 3)
    assert isinstance(e["ttft_seconds"], float) and isinstance(e["duration_seconds"], float)
    assert e["level"] == "info" and "timestamp" in e
    pages = [d.logs(), d.metrics_text(), httpx.get(d.url + "/").text, httpx.get(d.url + "/targets/keyed").text,
             httpx.get(d.url + "/api/v1/targets").text]
    for text in pages:
        assert SECRET not in text


def test_landing_page_lists_each_target_with_its_last_result(simulator, daemon_factory):
    d = daemon_factory(config(
        target("fine", simulator, "ttft=0.05&tokens=3&rate=50"),
        target("broken", simulator, "status=503"),
        target("waiting", simulator, "tokens=3", interval="1h"),
    ))
    wait_until(lambda: d.runs("fine") >= 1 and d.runs("broken") >= 1, 15, "first runs")
    page = httpx.get(d.url + "/").text
    assert "completed (ok)" in page and "failed (http_status)" in page and "no finished run yet" in page
    detail = httpx.get(d.url + "/targets/broken").text
    assert "HTTP 503" in detail and "SSEProbeFailed" in detail
    assert httpx.get(d.url + "/targets/nope").status_code == 404
    api = httpx.get(d.url + "/api/v1/targets").json()
    assert api["fine"]["outcome"] == "completed" and api["waiting"] is None
    assert httpx.get(d.url + "/-/healthy").status_code == 200


def test_reload_adds_changes_and_removes_targets_without_disturbing_the_others(simulator, daemon_factory):
    d = daemon_factory(config(
        target("stays", simulator, "ttft=0.05&tokens=3&rate=50"),
        target("goes", simulator, "ttft=0.05&tokens=3&rate=50"),
        target("changes", simulator, "ttft=0.05&tokens=3&rate=50"),
    ), args=LIFECYCLE)
    wait_until(lambda: all(d.runs(n) >= 1 for n in ("stays", "goes", "changes")), 15, "first runs")
    before = d.runs("stays")
    d.config_path.write_text(config(
        target("stays", simulator, "ttft=0.05&tokens=3&rate=50"),
        target("changes", simulator, "status=500"),
        target("new", simulator, "ttft=0.05&tokens=3&rate=50"),
    ))
    response = d.reload_via_http()
    assert response.status_code == 200, response.text
    wait_until(lambda: d.runs("new") >= 1, 15, "the new target's first run")
    wait_until(lambda: d.sample("sse_probe_runs_total", target="changes", outcome="failed", reason="http_status"), 15,
               "the changed target to use its new URL")
    m = d.metrics()
    assert not any(("target", "goes") in labels for _, labels in m), "a removed target's series must be dropped"
    assert d.runs("stays") >= before  # its history is kept
    assert m[("sse_monitor_targets", frozenset())] == 3
    reloaded = [e for e in d.log_events() if e.get("event") == "config_reloaded"]
    assert reloaded and reloaded[-1]["targets"] == 3


def test_reload_of_a_changed_target_keeps_its_last_alert_conditions(simulator, daemon_factory):
    d = daemon_factory(config(target("slow", simulator, "ttft=1.2&tokens=2&rate=50", interval="2s")), args=LIFECYCLE)
    wait_until(lambda: d.sample("sse_probe_alert_condition", target="slow", alertname="SSEProbeTTFTHigh") == 1, 15,
               "the TTFT condition")
    d.config_path.write_text(config(target("slow", simulator, "ttft=1.2&tokens=2&rate=50", interval="2s",
                                           extra="    headers: {X-Team: llm}\n")))
    assert d.reload_via_http().status_code == 200
    # a config edit is not a recovery: the page must not resolve until a good run says so
    assert d.sample("sse_probe_alert_condition", target="slow", alertname="SSEProbeTTFTHigh") == 1
    assert d.sample("sse_probe_success", target="slow") == 0


def test_invalid_reload_keeps_the_running_config_and_says_why(simulator, daemon_factory):
    d = daemon_factory(config(target("keep", simulator, "ttft=0.05&tokens=3&rate=50")), args=LIFECYCLE)
    d.config_path.write_text("targets:\n  - name: keep\n    url: not-a-url\n    interval: soon\n")
    response = d.reload_via_http()
    assert response.status_code == 400
    assert "targets[0].interval" in response.text and "targets[0].url" in response.text
    assert d.sample("sse_monitor_config_last_reload_successful") == 0
    assert d.sample("sse_monitor_targets") == 1
    runs = d.runs("keep")
    wait_until(lambda: d.runs("keep") > runs, 10, "the old config to keep probing")
    failed = [e for e in d.log_events() if e.get("event") == "config_reload_failed"]
    assert failed and any("targets[0].interval" in m for m in failed[-1]["errors"])
    # a good file again, this time by SIGHUP
    d.config_path.write_text(config(target("keep", simulator, "ttft=0.05&tokens=3&rate=50"),
                                    target("second", simulator, "ttft=0.05&tokens=3&rate=50")))
    d.signal(signal.SIGHUP)
    wait_until(lambda: d.sample("sse_monitor_targets") == 2, 10, "SIGHUP reload")
    assert d.sample("sse_monitor_config_last_reload_successful") == 1


def test_http_reload_is_refused_without_the_lifecycle_flag_and_sighup_still_reloads(simulator, daemon_factory):
    d = daemon_factory(config(target("one", simulator, "tokens=2", interval="1h")))
    d.config_path.write_text(config(target("one", simulator, "tokens=2", interval="1h"),
                                    target("two", simulator, "tokens=2", interval="1h")))
    for method in ("POST", "PUT"):
        response = httpx.request(method, d.url + "/-/reload", timeout=10)
        # what Prometheus answers without --web.enable-lifecycle
        assert (response.status_code, response.text) == (403, "Lifecycle API is not enabled.\n")
    assert d.sample("sse_monitor_targets") == 1  # nothing was reloaded
    assert not [e for e in d.log_events() if e.get("event") == "config_reloaded"]
    d.signal(signal.SIGHUP)
    wait_until(lambda: d.sample("sse_monitor_targets") == 2, 10, "SIGHUP reload")


def test_sigterm_with_streams_in_flight_exits_0_within_10_s_recording_nothing_invented(simulator, daemon_factory):
    d = daemon_factory(config(target("long", simulator, "ttft=0.05&tokens=2000&rate=20")))
    wait_until(lambda: d.sample("sse_monitor_probes_in_flight") >= 1, 15, "a stream in flight")
    started = time.monotonic()
    d.signal(signal.SIGTERM)
    code = d.proc.wait(timeout=12)
    elapsed = time.monotonic() - started
    assert code == 0 and elapsed < 10, f"exit {code} after {elapsed:.1f} s"
    events = d.log_events()
    assert not [e for e in events if e.get("event") == "probe_finished" and e.get("target") == "long"]
    stopped = [e for e in events if e.get("event") == "stopped"]
    assert stopped and stopped[0]["cancelled_probes"] >= 1


def test_global_cap_limits_concurrent_streams(simulator, daemon_factory):
    d = daemon_factory(config(*(target(f"t{i}", simulator, "ttft=0.05&tokens=20&rate=20") for i in range(3)),
                              max_concurrent=1))
    seen = set()
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        seen.add(d.sample("sse_monitor_probes_in_flight"))
        time.sleep(0.1)
    assert seen == {0, 1} or seen == {1}
    assert sum(d.runs(f"t{i}") for i in range(3)) >= 3  # they take turns: ~1 s each


def test_runs_waiting_for_a_slot_under_the_cap_are_counted_and_their_wait_observed(simulator, daemon_factory):
    # two ~1 s streams on 1 s intervals and one slot: each run finds the other's stream open and waits for it
    d = daemon_factory(config(target("a", simulator, "ttft=0.05&tokens=20&rate=20"),
                              target("b", simulator, "ttft=0.05&tokens=20&rate=20"), max_concurrent=1))
    waits = lambda m: sum(m[("sse_monitor_probe_waits_total", frozenset({"target": n}.items()))] for n in "ab")  # noqa: E731
    runs = lambda m: sum(v for (n, _), v in m.items() if n == "sse_probe_runs_total")  # noqa: E731

    def enough():
        scraped = d.metrics()
        return scraped if waits(scraped) >= 3 and runs(scraped) >= 2 else None

    m = wait_until(enough, 20, "runs waiting for the slot")
    count = m[("sse_monitor_probe_wait_seconds_count", frozenset())]
    no_wait = m[("sse_monitor_probe_wait_seconds_bucket", frozenset({"le": "0.001"}.items()))]
    # every run that got the slot is observed, at once (as 0) or after its wait; a run counted as waiting may still be
    # waiting, and the histogram is read after sse_probe_runs_total
    assert count >= runs(m)
    assert count - no_wait >= 1 and m[("sse_monitor_probe_wait_seconds_sum", frozenset())] > 0.001
    assert count - no_wait <= waits(m) + 1  # (+1: a scrape reads the counter a moment before the histogram)
    assert m[("sse_monitor_probe_wait_seconds_bucket", frozenset({"le": "60.0"}.items()))] == count
    assert m[("sse_monitor_probes_in_flight", frozenset())] <= 1


def test_the_wait_for_a_slot_is_measured_from_when_the_run_was_due(tmp_path, monkeypatch):
    from monitor import daemon as daemon_module
    from monitor.config import load_config
    from monitor.daemon import Daemon
    from monitor.result import ProbeResult

    async def slow_probe(spec):
        await asyncio.sleep(0.3)
        return ProbeResult(url=spec.url, dialect=spec.dialect, outcome="completed", reason="ok", clock="kernel")

    monkeypatch.setattr(daemon_module, "run_probe", slow_probe)
    path = tmp_path / "c.yaml"
    path.write_text(config(target("first", "http://127.0.0.1:9", "x=1", interval="1h"),
                           target("second", "http://127.0.0.1:9", "x=1", interval="1h"), max_concurrent=1))

    async def scenario():
        daemon = Daemon(load_config(path, {}), listen="127.0.0.1:0")
        await asyncio.gather(daemon._run_target("first"), daemon._run_target("second"))
        return daemon

    registry = asyncio.run(scenario()).metrics.registry
    sample = registry.get_sample_value
    assert sample("sse_monitor_probe_waits_total", {"target": "first"}) == 0
    assert sample("sse_monitor_probe_waits_total", {"target": "second"}) == 1
    assert sample("sse_monitor_probe_wait_seconds_count") == 2  # both runs: one at once, one after the other's probe
    assert sample("sse_monitor_probe_wait_seconds_bucket", {"le": "0.001"}) == 1
    assert 0.29 <= sample("sse_monitor_probe_wait_seconds_sum") < 0.5
    assert sample("sse_monitor_probe_wait_seconds_bucket", {"le": "0.25"}) == 1
    assert sample("sse_monitor_probe_wait_seconds_bucket", {"le": "0.5"}) == 2
    assert sample("sse_monitor_probes_user_clock_total", {"target": "first"}) == 0  # both timed on the kernel's clock


def test_probes_timed_on_the_user_clock_are_counted_per_target():
    from monitor.metrics import Metrics
    from monitor.result import CLOCK_KERNEL, CLOCK_USER, ProbeResult

    metrics = Metrics()
    for name in ("k", "u"):
        metrics.add_target(name, 60.0, 2.0, 60.0)
    sample = metrics.registry.get_sample_value
    assert sample("sse_monitor_probes_user_clock_total", {"target": "u"}) == 0  # exists before the first run

    def result(clock: str, outcome: str = "completed", reason: str = "ok") -> ProbeResult:
        return ProbeResult(url="http://127.0.0.1:9/", dialect="openai-chat", outcome=outcome, reason=reason,
                           duration_seconds=1.0, clock=clock)

    metrics.observe("k", result(CLOCK_KERNEL))
    metrics.observe("k", result(CLOCK_KERNEL, "ended_early", "connection_lost"))
    metrics.observe("u", result(CLOCK_USER))
    metrics.observe("u", result(CLOCK_USER, "failed", "too_many_bytes"))
    metrics.observe("u", result(CLOCK_KERNEL))
    assert sample("sse_monitor_probes_user_clock_total", {"target": "k"}) == 0
    assert sample("sse_monitor_probes_user_clock_total", {"target": "u"}) == 2
    assert sample("sse_probe_runs_total", {"target": "u", "outcome": "failed", "reason": "too_many_bytes"}) == 1
    metrics.remove_target("u")
    assert sample("sse_monitor_probes_user_clock_total", {"target": "u"}) is None
    assert sample("sse_monitor_probe_waits_total", {"target": "u"}) is None


def _probe_while_the_monitor_is_stuck(simulator, tmp_path, stuck) -> "Daemon":
    """One run of a target whose first token comes after 1.2 s (threshold 1 s) while `stuck()` holds the loop from
    0.5 s after the start, i.e. while its first token arrives."""
    from monitor.config import load_config
    from monitor.daemon import Daemon

    path = tmp_path / "c.yaml"
    path.write_text(config(target("t", simulator, "ttft=1.2&tokens=2&rate=50", interval="1h")))

    async def scenario():
        daemon = Daemon(load_config(path), listen="127.0.0.1:0")
        runner = asyncio.create_task(daemon.run())
        await asyncio.sleep(0.3)
        probe = asyncio.create_task(daemon._run_target("t"))
        await asyncio.sleep(0.5)
        stuck()
        await probe
        daemon.request_stop()
        await runner
        return daemon

    return asyncio.run(scenario())


def _blocking_sleep() -> None:
    time.sleep(0.9)  # the loop is stuck; other threads run


def _holding_the_interpreter() -> None:
    end = time.perf_counter() + 0.9
    while time.perf_counter() < end:
        sum(range(10**7))  # C code that never lets another thread run: nothing can read a socket meanwhile


def test_a_stuck_event_loop_does_not_delay_the_kernel_clock(simulator, tmp_path):
    daemon = _probe_while_the_monitor_is_stuck(simulator, tmp_path, _blocking_sleep)
    result = daemon.last_results["t"]
    assert (result.clock, result.warnings) == ("kernel", [])
    assert 1.2 <= result.ttft_seconds < 1.25  # the first token's own arrival, not the end of the stall (1.7 s)
    assert "SSEProbeTTFTHigh" in result.alerts  # the endpoint is slow, and that is what is paged
    registry = daemon.metrics.registry
    assert registry.get_sample_value("sse_monitor_lagged_probes_total", {"target": "t"}) == 0
    lag = "sse_monitor_event_loop_lag_seconds"
    assert registry.get_sample_value(f"{lag}_count") > registry.get_sample_value(f"{lag}_bucket", {"le": "0.5"})  # it lagged


def test_a_probe_measured_while_nothing_could_read_is_flagged_not_blamed_on_the_endpoint(simulator, tmp_path):
    daemon = _probe_while_the_monitor_is_stuck(simulator, tmp_path, _holding_the_interpreter)
    result = daemon.last_results["t"]
    assert result.clock == "kernel"
    assert result.ttft_seconds > 1.0  # over the 1 s threshold...
    assert "event_loop_lag" in result.warnings
    assert "SSEProbeTTFTHigh" not in result.alerts  # ...but not paged as a slow endpoint
    assert daemon.metrics.registry.get_sample_value("sse_monitor_lagged_probes_total", {"target": "t"}) == 1


def test_on_the_user_clock_any_loop_lag_flags_the_probe(simulator, tmp_path, monkeypatch):
    from monitor import network

    monkeypatch.setattr(network, "KERNEL_TIMESTAMPS", False)
    daemon = _probe_while_the_monitor_is_stuck(simulator, tmp_path, _blocking_sleep)
    result = daemon.last_results["t"]
    assert result.clock == "user"
    assert "event_loop_lag" in result.warnings
    assert "SSEProbeTTFTHigh" not in result.alerts
    registry = daemon.metrics.registry
    assert registry.get_sample_value("sse_monitor_lagged_probes_total", {"target": "t"}) == 1
    assert registry.get_sample_value("sse_monitor_probes_user_clock_total", {"target": "t"}) == 1


def test_config_errors_at_start_exit_2_naming_file_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("targets:\n  - name: x\n    url: http://127.0.0.1:1/\n    timeout: 5s\n    idle_timeout: 10s\n")
    proc = sse_monitor("run", "--config", str(bad))
    assert proc.returncode == 2
    assert f"{bad}: targets[0]" in proc.stderr and "idle_timeout" in proc.stderr
    check = sse_monitor("check-config", str(bad))
    assert check.returncode == 2 and check.stderr == proc.stderr


def test_real_prometheus_scrapes_the_daemon_and_answers_a_ttft_quantile(simulator, daemon_factory, tmp_path):
    d = daemon_factory(config(target("scraped", simulator, "ttft=0.3&tokens=3&rate=50")))
    prom = start_prometheus(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n  - job_name: sse-monitor\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{d.port}']}}]\n",
        tmp_path,
    )
    try:
        wait_until(lambda: prometheus_query(prom, 'up{job="sse-monitor"} == 1'), 30, "up == 1")
        expr = 'histogram_quantile(0.5, sum by (le) (rate(sse_probe_ttft_seconds_bucket{target="scraped"}[30s])))'
        result = wait_until(
            lambda: [r for r in prometheus_query(prom, expr) if r["value"][1] not in ("NaN", "+Inf")], 40,
            "a TTFT median from Prometheus",
        )
        median = float(result[0]["value"][1])
        assert 0.25 <= median <= 0.5  # the 0.25..0.5 bucket holds every TTFT of ~0.3 s
    finally:
        prom.close()


# ---- the scheduler on its own, with short intervals --------------------------------------------------------------


def test_first_runs_are_spread_over_the_interval_and_stable_per_name():
    offsets = [first_run_offset(f"target-{i}", 60) for i in range(200)]
    assert all(0 <= o < 60 for o in offsets)
    assert first_run_offset("target-1", 60) == first_run_offset("target-1", 60)
    # spread: every 10 s slice of the minute gets some of 200 targets
    assert {int(o // 10) for o in offsets} == set(range(6))


def test_scheduler_never_overlaps_a_target_and_counts_skips():
    async def scenario():
        running, peak, runs, skips = 0, 0, [], []

        async def run(name):
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            runs.append(time.monotonic())
            await asyncio.sleep(0.55)  # longer than the interval
            running -= 1

        scheduler = ProbeScheduler(run, skips.append)
        scheduler.start()
        scheduler.schedule("t", 0.2, first_run_in=0)
        await asyncio.sleep(2.1)
        scheduler.shutdown()
        return peak, runs, skips

    peak, runs, skips = asyncio.run(scenario())
    assert peak == 1
    assert 3 <= len(runs) <= 5
    assert len(skips) >= 4 and set(skips) == {"t"}
