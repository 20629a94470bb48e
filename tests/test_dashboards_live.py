"""Every dashboard query and every alert rule, sent to a real Prometheus scraping the real daemon: each parses and
returns data. The targets are chosen so that every condition the panels and rules look for really happens."""

from __future__ import annotations

import re

import httpx
import yaml

from conftest import ROOT, free_port, require_binary
from dashboards.generate import all_queries
from servers import DaemonProcess, RecordingServer, running_canary, start_nginx, start_prometheus, wait_until

RULE_FILES = sorted((ROOT / "config/prometheus/rules").glob("*.rules.yml"))
CHAT = "/v1/chat/completions"

# name -> (simulator query, extra target settings): one target for each thing a panel or a rule shows
TARGETS = {
    "healthy": ("ttft=0.2&tokens=5&rate=50", ""),
    "slow": ("ttft=2.2&tokens=2&rate=50", ""),  # SSEProbeTTFTHigh
    "cut": ("ttft=0.1&tokens=10&rate=50&drop_after=2", ""),  # SSEProbeStreamEndedEarly
    "failing": ("status=503", ""),  # SSEProbeFailed
    "buffered": ("headers_delay=0.8&content_length=1&tokens=10", ""),  # held, then one burst: buffering_suspected
    "gzipped": ("ttft=0.1&tokens=5&rate=50&gzip=1", ""),  # compressed_stream
    "silent": ("ttft=0.1&tokens=3&rate=50&pause_after=1&pause=1.5", "    proxy_idle_timeout: 2s\n"),  # silence > 1 s
    "never-ends": ("ttft=0.1&endless=1&rate=5", "    timeout: 120s\n"),  # stale, in flight, skipped runs
    # SSEProbeResumeBroken: the resumed stream skips two events
    "unresumable": ("ids=1&ttft=0.1&tokens=6&rate=50&resume_fault=gap", "    resume: {after_events: 3}\n"),
}


def daemon_config(simulator: str, alertmanager: str, chain: str) -> str:
    targets = "".join(
        f"  - name: {name}\n    url: \"{simulator}{CHAT}?{query}\"\n{extra}" for name, (query, extra) in TARGETS.items()
    )
    return (
        "defaults: {interval: 1s, timeout: 30s, idle_timeout: 10s, ttft_threshold: 2s}\n"
        # 4 slots for 8 targets, one of them never ending: runs wait for a slot (sse_monitor_probe_waits_total)
        f"scheduler: {{jitter: 0s, max_concurrent: 4}}\nalertmanager: {{urls: [\"{alertmanager}\"], resend_interval: 5s}}\n"
        f"targets:\n{targets}"
        # SSEChainIdleTimeoutTooShort, SSEChainCheckFailed: nginx's proxy_read_timeout 5s is less than twice 3 s; the
        # first check comes within the interval, spread by name (this one: ~0.4 s), and takes ~11 s
        f"chain_checks:\n  - {{name: timeout-5s, url: \"{chain}\", interval: 10s, expected_duration: 3s, max_idle: 8s}}\n"
    )


def rule_exprs() -> list[tuple[str, str]]:
    """(name, expression) of every alerting and recording rule of the shipped rule files."""
    groups = [group for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]]
    return [(rule.get("alert") or rule["record"], rule["expr"]) for group in groups for rule in group["rules"]
            if rule.get("alert") not in NEEDS_SEVERAL_REGIONS]


# one daemon is one region: "fails in some regions but not in most" cannot happen here (promtool tests it with three:
# tests/prometheus/regions.test.yml)
NEEDS_SEVERAL_REGIONS = ("SSEProbeFailingInSomeRegions",)


def rules_for_test(path) -> str:
    """A shipped rule file as it is, except that a group's own `interval:` (the 30-day SLIs: 5m) becomes the test's 1 s,
    so that the recorded series the dashboards read exist within the test's minute."""
    return re.sub(r"^(\s+interval:) \S+$", r"\1 1s", path.read_text(), flags=re.MULTILINE)


def query(prom_url: str, expr: str) -> tuple[str | None, list]:
    """(error, result) of an instant query."""
    body = httpx.get(prom_url + "/api/v1/query", params={"query": expr}, timeout=10).json()
    if body["status"] != "success":
        return f"{body.get('errorType')}: {body.get('error')}", []
    return None, body["data"]["result"]


def empty(prom_url: str, expr: str) -> bool:
    error, result = query(prom_url, expr)
    assert error is None, f"{expr!r} does not parse or evaluate: {error}"
    return not result


def test_every_dashboard_query_and_alert_rule_returns_data_from_the_real_daemon(simulator, tmp_path):
    with running_canary() as canary:
        nginx_dir = tmp_path / "nginx"
        nginx_dir.mkdir()
        nginx = start_nginx("nginx-short-timeout.conf", canary, nginx_dir)
        try:
            every_query_and_rule_returns_data(simulator, f"{nginx.url}/v1/sse-canary", tmp_path)
        finally:
            nginx.stop()


def every_query_and_rule_returns_data(simulator: str, chain: str, tmp_path) -> None:
    require_binary("prometheus")  # before the daemon starts: a skip after it would leave it running
    alertmanager = RecordingServer()
    # with a region (SSE_MONITOR_REGION), as a multi-region setup runs: every series carries it, the region rules see it
    daemon = DaemonProcess(daemon_config(simulator, alertmanager.url, chain), tmp_path, args=["--web.enable-lifecycle"],
                           env={"SSE_MONITOR_REGION": "eu-west"})
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    for path in RULE_FILES:
        (rules_dir / path.name).write_text(rules_for_test(path))
    dead = free_port()  # a second instance of the job that is down: what SSEMonitorDown looks for
    prom = start_prometheus(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{rules_dir}/*.yml']\n"
        "scrape_configs:\n  - job_name: sse-monitor\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{daemon.port}', '127.0.0.1:{dead}']}}]\n",
        tmp_path,
    )
    try:
        checks = [(f"panel {title!r}", expr) for title, expr in all_queries()]
        checks += [(f"rule {name}", expr) for name, expr in rule_exprs()]
        assert len(checks) > 40 and len([c for c in checks if c[0].startswith("rule")]) >= 8

        def missing() -> list[tuple[str, str]]:
            return [(what, expr) for what, expr in checks if empty(prom.url, expr)]

        # a reload, for the "config loads" annotation (after Prometheus has seen the first load)
        wait_until(lambda: not empty(prom.url, "sse_monitor_config_last_reload_success_timestamp_seconds"), 20, "a scrape")
        assert daemon.reload_via_http().status_code == 200
        # the slow target needs a couple of runs, the rate windows a few scrapes, the stale rule three intervals
        # counters that stay zero here: nothing outside the daemon can make it unable to read, and the kernel stamps
        zero_here = ("sse_monitor_lagged_probes_total", "sse_monitor_probes_user_clock_total")

        def stays_zero(expr: str) -> bool:
            return any(name in expr for name in zero_here)

        try:
            wait_until(lambda: all(stays_zero(expr) for _, expr in missing()), 60, "data for every query")
        except AssertionError:
            pass
        still = missing()
        for what, expr in still:
            # a trailing "> 0" only hides zeros; the series underneath must be there
            base = re.sub(r"\s*>\s*0\s*$", "", expr)
            assert base != expr, f"{what} returned no data: {expr}"
            assert not empty(prom.url, base), f"{what} returned no data, even without its '> 0' filter: {base}"
            assert stays_zero(expr), f"{what} returned no data: {expr}"
        rules = httpx.get(prom.url + "/api/v1/rules", timeout=10).json()["data"]["groups"]
        assert all(r["health"] == "ok" for g in rules for r in g["rules"]), rules
    finally:
        prom.close()
        daemon.stop()
        alertmanager.close()
