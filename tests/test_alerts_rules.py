"""Alerts that page through Prometheus: the real daemon probes the simulator, the real Prometheus evaluates the
SHIPPED rules, the real Alertmanager notifies a webhook receiver on loopback, and the test reads what arrives."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from conftest import ROOT
from servers import DaemonProcess, RecordingServer, ServerProcess, prometheus_query, start_alertmanager, start_prometheus, wait_until

SHIPPED_RULES = ROOT / "config/prometheus/rules/sse-monitor.rules.yml"
SHIPPED_ALERTMANAGER = ROOT / "config/alertmanager/alertmanager.yml"
RUNBOOK_BASE = "https://github.com/sse-monitor/sse-monitor/blob/main/docs/runbook/"
# The only change made to the shipped rules: every `for:` shortened to this, so that a probe every second and a
# scrape and an evaluation every second page within seconds instead of minutes. Expressions, labels and
# annotation templates are the shipped ones.
TEST_FOR = "2s"


def rules_for_test() -> str:
    text = SHIPPED_RULES.read_text()
    shortened, count = re.subn(r"^(\s+for:) \S+$", rf"\1 {TEST_FOR}", text, flags=re.MULTILINE)
    assert count >= 3, "the shipped rules have no `for:` to shorten"
    return shortened


def target(name: str, base: str, query: str, extra: str = "") -> str:
    return f"  - name: {name}\n    url: \"{base}/v1/chat/completions?{query}\"\n{extra}"


def daemon_config(simulator: str, slow_query: str) -> str:
    # no `alertmanager:` section: the daemon pushes nothing itself, whatever arrives came through the rules
    return (
        "defaults: {interval: 1s, timeout: 30s, idle_timeout: 10s}\n"
        "scheduler: {jitter: 0s}\n"
        "targets:\n"
        + target("slow", simulator, slow_query, "    expect: {ttft_threshold: 2s}\n")
        + target("cut", simulator, "ttft=0.05&tokens=10&rate=50&drop_after=3")
        + target("healthy", simulator, "ttft=0.05&tokens=3&rate=50")
    )


@dataclass
class Stack:
    webhook: RecordingServer
    alertmanager: ServerProcess
    daemon: DaemonProcess
    prometheus: ServerProcess
    simulator: str
    started: float  # time.monotonic() when the daemon was ready: its first probes, and the faults, begin

    def wait_for(self, what: str, predicate, timeout: float):
        try:
            return wait_until(predicate, timeout, what, interval=0.05)
        except AssertionError as exc:
            alerts = prometheus_query(self.prometheus, "ALERTS")
            received = [(a["status"], a["labels"]) for _, a in self.webhook.alerts()]
            raise AssertionError(f"{exc}\nPrometheus ALERTS: {alerts}\nwebhook received: {received}\n"
                                 f"prometheus log: {self.prometheus.log_path.read_text()[-2000:]}\n"
                                 f"alertmanager log: {self.alertmanager.log_path.read_text()[-2000:]}") from None


@pytest.fixture
def stack(simulator: str, tmp_path: Path) -> Iterator[Stack]:
    webhook = RecordingServer()
    closers = [webhook.close]
    try:
        alertmanager = start_alertmanager(
            "route:\n"
            "  receiver: webhook\n"
            "  group_by: [alertname, target]\n"
            "  group_wait: 0s\n"
            "  group_interval: 1s\n"
            "  repeat_interval: 1h\n"
            "receivers:\n"
            "  - name: webhook\n"
            f"    webhook_configs: [{{url: '{webhook.url}', send_resolved: true}}]\n",
            tmp_path,
        )
        closers.append(alertmanager.close)
        daemon = DaemonProcess(daemon_config(simulator, "ttft=3&tokens=3&rate=50"), tmp_path,
                               args=["--web.enable-lifecycle"])
        started = time.monotonic()
        closers.append(daemon.stop)
        (tmp_path / "sse-monitor.rules.yml").write_text(rules_for_test())
        prometheus = start_prometheus(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "rule_files: [sse-monitor.rules.yml]\n"
            "alerting:\n"
            f"  alertmanagers: [{{static_configs: [{{targets: ['127.0.0.1:{alertmanager.port}']}}]}}]\n"
            "scrape_configs:\n"
            "  - job_name: sse-monitor\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{daemon.port}']}}]\n",
            tmp_path,
        )
        closers.append(prometheus.close)
        yield Stack(webhook, alertmanager, daemon, prometheus, simulator, started)
    finally:
        for close in reversed(closers):
            close()


def test_slow_first_token_pages_through_the_shipped_rules_and_resolves_when_the_target_recovers(stack):
    instance = f"127.0.0.1:{stack.daemon.port}"
    fired_at, alert = stack.wait_for(
        "SSEProbeTTFTHigh firing at the webhook",
        lambda: stack.webhook.first("SSEProbeTTFTHigh", "firing", target="slow"), 40)
    print(f"\nSSEProbeTTFTHigh: fault (ttft=3 s from the first probe) -> webhook firing: {fired_at - stack.started:.1f} s")
    assert alert["labels"] == {"alertname": "SSEProbeTTFTHigh", "severity": "critical", "target": "slow",
                               "job": "sse-monitor", "instance": instance}
    description = alert["annotations"]["description"]
    assert re.fullmatch(rf"The last probe of slow got its first token after 3(\.\d+)?s; its threshold is 2s\. "
                        rf"Last result in full: http://{re.escape(instance)}/targets/slow", description), description
    assert alert["annotations"]["runbook_url"] == RUNBOOK_BASE + "SSEProbeTTFTHigh.md"

    # the target recovers: its config now asks for a first token after 0.1 s
    stack.daemon.config_path.write_text(daemon_config(stack.simulator, "ttft=0.1&tokens=3&rate=50"))
    reloaded_at = time.monotonic()
    response = stack.daemon.reload_via_http()
    assert response.status_code == 200, response.text
    resolved_at, resolved = stack.wait_for(
        "SSEProbeTTFTHigh resolved at the webhook",
        lambda: stack.webhook.first("SSEProbeTTFTHigh", "resolved", target="slow"), 30)
    print(f"SSEProbeTTFTHigh: recovery (reload with ttft=0.1 s) -> webhook resolved: {resolved_at - reloaded_at:.1f} s")
    assert resolved["labels"] == alert["labels"] and resolved["endsAt"] > resolved["startsAt"]
    # Resolved for the right reason: a good run has finished, and the alert stays resolved after it for longer than
    # a scrape, an evaluation and the `for:` together (a run still in flight at the reload may finish slow and
    # fire it once more; whatever happens, the last word must be "resolved").
    stack.wait_for("a good run of the recovered target",
                   lambda: (stack.daemon.sample("sse_probe_last_ttft_seconds", target="slow") or 99) < 1, 20)
    time.sleep(4)
    last_status = stack.webhook.alerts("SSEProbeTTFTHigh", target="slow")[-1][1]["status"]
    assert last_status == "resolved"

    # the same run of rules must not page for the targets that are fine on this count
    assert not stack.webhook.alerts("SSEProbeTTFTHigh", target="cut")
    assert not stack.webhook.alerts("SSEProbeTTFTHigh", target="healthy")
    assert not [a for _, a in stack.webhook.alerts(target="healthy") if a["labels"]["severity"] == "critical"]


def test_a_stream_cut_mid_way_pages_as_ended_early_naming_the_reason(stack):
    instance = f"127.0.0.1:{stack.daemon.port}"
    fired_at, alert = stack.wait_for(
        "SSEProbeStreamEndedEarly firing at the webhook",
        lambda: stack.webhook.first("SSEProbeStreamEndedEarly", "firing", target="cut"), 40)
    print(f"\nSSEProbeStreamEndedEarly: fault (drop_after=3 from the first probe) -> webhook firing: "
          f"{fired_at - stack.started:.1f} s")
    assert alert["labels"] == {"alertname": "SSEProbeStreamEndedEarly", "severity": "critical", "target": "cut",
                               "job": "sse-monitor", "instance": instance}
    description = alert["annotations"]["description"]
    assert re.search(r"Early ends in the last 15m by reason: connection_lost \(~\d+\)\.", description), description
    assert f"http://{instance}/targets/cut" in description
    assert alert["annotations"]["runbook_url"] == RUNBOOK_BASE + "SSEProbeStreamEndedEarly.md"
    assert not stack.webhook.alerts("SSEProbeStreamEndedEarly", target="slow")
    assert not stack.webhook.alerts("SSEProbeStreamEndedEarly", target="healthy")


# ---- the shipped Alertmanager config -----------------------------------------------------------------------------


def shipped_alertmanager_config(pager: str, ticket: str) -> str:
    """The shipped file with its placeholder receivers pointed at the test's, and its group timings shortened."""
    text = SHIPPED_ALERTMANAGER.read_text()
    for placeholder, url in (("http://pager-webhook:5001/", pager), ("http://ticket-webhook:5002/", ticket)):
        assert placeholder in text
        text = text.replace(placeholder, url)
    text, waits = re.subn(r"^(\s+group_wait:) \S+", r"\1 0s", text, flags=re.MULTILINE)
    text, intervals = re.subn(r"^(\s+group_interval:) \S+", r"\1 1s", text, flags=re.MULTILINE)
    assert waits and intervals
    return text


def push(alertmanager: ServerProcess, *alerts: dict[str, str]) -> None:
    """Alerts as Prometheus (or the daemon) would send them: firing, labels only."""
    body = [{"labels": labels, "annotations": {"summary": "test"}} for labels in alerts]
    response = httpx.post(alertmanager.url + "/api/v2/alerts", json=body, timeout=5)
    assert response.status_code == 200, response.text


def test_shipped_alertmanager_config_pages_criticals_tickets_warnings_and_a_failed_probe_mutes_its_ttft_page(tmp_path):
    """Criticals page, warnings ticket; a per-probe page mutes its target's TTFT page or SLO fast-burn page."""
    pager, ticket = RecordingServer(), RecordingServer()
    alertmanager = start_alertmanager(shipped_alertmanager_config(pager.url, ticket.url), tmp_path)
    try:
        push(alertmanager, {"alertname": "SSEProbeFailed", "severity": "critical", "target": "a", "instance": "m:9108"})
        wait_until(lambda: pager.first("SSEProbeFailed", "firing", target="a"), 15, "the failed probe's page")
        push(alertmanager,
             {"alertname": "SSEProbeTTFTHigh", "severity": "critical", "target": "a", "instance": "m:9108"},
             {"alertname": "SSEProbeTTFTHigh", "severity": "critical", "target": "b", "instance": "m:9108"},
             {"alertname": "SSEProbeStale", "severity": "warning", "target": "a", "instance": "m:9108"})
        wait_until(lambda: pager.first("SSEProbeTTFTHigh", "firing", target="b"), 15, "the other target's TTFT page")
        wait_until(lambda: ticket.first("SSEProbeStale", "firing", target="a"), 15, "the warning's ticket")
        # the SLO fast-burn pages (per target, no instance): muted where a per-probe page for the target fires
        push(alertmanager,
             {"alertname": "SSEProbeTTFTBudgetFastBurn", "severity": "critical", "target": "b", "slo": "ttft"},
             {"alertname": "SSEProbeCompletionBudgetFastBurn", "severity": "critical", "target": "a", "slo": "completed"},
             {"alertname": "SSEProbeTTFTBudgetFastBurn", "severity": "critical", "target": "c", "slo": "ttft"},
             {"alertname": "SSEProbeTTFTBudgetSlowBurn", "severity": "warning", "target": "b", "slo": "ttft"})
        wait_until(lambda: pager.first("SSEProbeTTFTBudgetFastBurn", "firing", target="c"), 15, "a budget page of its own")
        wait_until(lambda: ticket.first("SSEProbeTTFTBudgetSlowBurn", "firing", target="b"), 15, "the slow burn's ticket")
        time.sleep(2.5)  # two more group intervals: target a's TTFT alert would have been flushed by now
        assert not pager.alerts("SSEProbeTTFTHigh", target="a"), "inhibited by SSEProbeFailed of the same target"
        assert not pager.alerts("SSEProbeTTFTBudgetFastBurn", target="b"), "inhibited by SSEProbeTTFTHigh of target b"
        assert not pager.alerts("SSEProbeCompletionBudgetFastBurn", target="a"), "inhibited by SSEProbeFailed of target a"
        assert not ticket.alerts(severity="critical") and not pager.alerts(severity="warning")
    finally:
        alertmanager.close()
        pager.close()
        ticket.close()
