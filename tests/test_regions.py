"""Regions: a daemon's region labels every target series and every pushed alert; several regions' pushes make one
notification per target in a real Alertmanager. (The quorum rules: tests/prometheus/regions.test.yml.)"""

from __future__ import annotations

import time

from prometheus_client import generate_latest
from servers import DaemonProcess, RecordingServer, parse_metrics, start_alertmanager, tempdir, wait_until

from monitor.metrics import Metrics, render
from monitor.result import ProbeResult

CHAT = "/v1/chat/completions"
REGIONS = ("eu-west", "us-east", "ap-south")

AM_CONFIG = """route:
  receiver: webhook
  group_by: [alertname, target]
  group_wait: 10s  # the three daemons start one after another: their first pushes fall in one group
  group_interval: 1m
  repeat_interval: 1h
receivers:
  - name: webhook
    webhook_configs:
      - url: {webhook}/hook
"""


def test_every_target_series_carries_the_region_and_renders_as_prometheus_client_does():
    metrics = Metrics(region="eu-west")
    metrics.add_target("chat", 60.0, 2.0, 60.0)
    result = ProbeResult(url="http://x/", dialect="openai-chat", outcome="completed", reason="ok", ttft_seconds=0.4,
                         duration_seconds=1.0)
    metrics.observe("chat", result)
    metrics.count(metrics.skipped, "chat")
    text = render(metrics.registry)
    assert text == generate_latest(metrics.registry)
    samples = parse_metrics(text.decode())
    per_target = [labels for (name, labels) in samples if ("target", "chat") in labels]
    assert per_target and all(("region", "eu-west") in labels for labels in per_target)
    assert samples[("sse_probe_runs_total", frozenset({("target", "chat"), ("region", "eu-west"),
                                                      ("outcome", "completed"), ("reason", "ok")}))] == 1
    metrics.remove_target("chat")
    assert "chat" not in render(metrics.registry).decode()


def test_three_regions_pushing_the_same_failure_make_one_notification(simulator, tmp_path):
    webhook = RecordingServer()
    am = start_alertmanager(AM_CONFIG.format(webhook=webhook.url), tempdir("am-"))
    config = (f"defaults: {{interval: 2s}}\nscheduler: {{jitter: 0s}}\n"
              f"alertmanager: {{urls: [\"{am.url}\"], resend_interval: 2s}}\n"
              f"targets:\n  - name: down\n    url: \"{simulator}{CHAT}?status=503\"\n")
    daemons = []
    try:
        for region in REGIONS:
            workdir = tmp_path / region
            workdir.mkdir()
            daemons.append(DaemonProcess(config, workdir, env={"SSE_MONITOR_REGION": region}))
        for d, region in zip(daemons, REGIONS, strict=True):
            wait_until(lambda d=d: d.runs("down") >= 1, 20, "a run in every region")
            assert d.sample("sse_probe_success", target="down", region=region) == 0
        wait_until(lambda: len({a["labels"]["region"] for _, a in webhook.alerts("SSEProbeFailed")}) == 3, 30,
                   "the three regions' alerts at the webhook")
        time.sleep(3)  # a second notification would come now (group_interval is a minute, nothing new is pushed)
    finally:
        for d in daemons:
            d.stop()
        am.close()
    notifications = [body for _, path, body in webhook.posts if path == "/hook"]
    ours = [n for n in notifications if n["groupLabels"] == {"alertname": "SSEProbeFailed", "target": "down"}]
    assert len(ours) == 1, [n["groupLabels"] for n in notifications]
    assert sorted(a["labels"]["region"] for a in ours[0]["alerts"]) == sorted(REGIONS)
    webhook.close()
