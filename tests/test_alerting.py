"""Direct push to Alertmanager: the pusher's contract on loopback, then end to end with the real Alertmanager."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

import pytest

from monitor.alerting import AlertmanagerPusher
from monitor.config import AlertmanagerConfig, TargetConfig
from monitor.result import ProbeResult, alert_conditions
from servers import DaemonProcess, RecordingServer, start_alertmanager, tempdir, wait_until

TARGET = TargetConfig(name="api", url="http://127.0.0.1:1/v1/chat/completions", labels={"team": "llm"})


def result(ttft: float | None = 0.2, outcome: str = "completed", reason: str = "ok") -> ProbeResult:
    r = ProbeResult(url=TARGET.url, dialect="openai-chat", outcome=outcome, reason=reason, ttft_seconds=ttft,
                    headers_seconds=0.01, duration_seconds=4.0, events=10, token_events=8)
    r.alerts = alert_conditions(r)
    return r


SLOW = result(ttft=3.1)
GOOD = result()


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


async def with_pusher(urls, scenario, **config):
    pusher = AlertmanagerPusher(AlertmanagerConfig(urls=urls, **config), lambda: "http://monitor.example:9108")
    await pusher.start()
    try:
        return await scenario(pusher)
    finally:
        await pusher.stop(flush_seconds=0.5)


def pushed(server: RecordingServer, alertname: str = "SSEProbeTTFTHigh") -> list[tuple[float, dict]]:
    return [(t, a) for t, a in server.alerts() if a["labels"]["alertname"] == alertname]


def test_a_bad_run_pushes_a_well_formed_alert_at_once():
    am = RecordingServer()

    async def scenario(pusher):
        pusher.observe(TARGET, SLOW)
        await asyncio.sleep(0.3)

    try:
        asyncio.run(with_pusher([am.url], scenario, labels={"env": "prod"}))
        assert am.posts and am.posts[0][1] == "/api/v2/alerts"
        _, alert = pushed(am)[0]
        assert alert["labels"] == {"alertname": "SSEProbeTTFTHigh", "target": "api", "severity": "critical",
                                   "team": "llm", "env": "prod"}
        assert "3.10 s" in alert["annotations"]["summary"] and "2 s threshold" in alert["annotations"]["summary"]
        assert "TTFT 3.100 s" in alert["annotations"]["description"]
        assert alert["annotations"]["runbook_url"].endswith("/SSEProbeTTFTHigh.md")
        assert alert["generatorURL"] == "http://monitor.example:9108/targets/api"
        now = datetime.now(timezone.utc)
        assert parse(alert["startsAt"]) < now < parse(alert["endsAt"])  # firing: endsAt ahead of now
        assert not pushed(am, "SSEProbeStreamEndedEarly")  # only the conditions that hold
    finally:
        am.close()


def test_damping_fires_after_n_bad_runs_and_resolves_after_m_good_ones():
    am = RecordingServer()

    async def scenario(pusher):
        pusher.observe(TARGET, SLOW)
        await asyncio.sleep(0.2)
        after_one = len(pushed(am))
        pusher.observe(TARGET, SLOW)
        await asyncio.sleep(0.2)
        after_two = len(pushed(am))
        pusher.observe(TARGET, GOOD)
        await asyncio.sleep(0.2)
        still_firing = pushed(am)[-1][1]
        pusher.observe(TARGET, GOOD)
        await asyncio.sleep(0.2)
        return after_one, after_two, still_firing

    try:
        after_one, after_two, still_firing = asyncio.run(
            with_pusher([am.url], scenario, fire_after=2, resolve_after=2, resend_interval=60))
        assert after_one == 0 and after_two == 1
        assert parse(still_firing["endsAt"]) > datetime.now(timezone.utc)  # one good run is not enough
        _, resolved = pushed(am)[-1]
        assert parse(resolved["endsAt"]) <= datetime.now(timezone.utc)
        assert resolved["startsAt"] == pushed(am)[0][1]["startsAt"]
    finally:
        am.close()


def test_firing_alerts_are_resent_at_a_steady_interval_with_ends_at_moving_ahead():
    am = RecordingServer()

    async def scenario(pusher):
        pusher.observe(TARGET, SLOW)
        await asyncio.sleep(1.1)

    try:
        asyncio.run(with_pusher([am.url], scenario, resend_interval=0.3))
        sends = pushed(am)
        assert 3 <= len(sends) <= 6
        ends = [parse(a["endsAt"]) for _, a in sends]
        assert ends == sorted(ends) and ends[-1] > ends[0]
        assert len({a["startsAt"] for _, a in sends}) == 1
    finally:
        am.close()


def test_every_alertmanager_gets_every_alert_and_a_down_one_gets_the_resolution_when_back():
    healthy, sick = RecordingServer(), RecordingServer()
    sick.fail = True

    async def scenario(pusher):
        pusher.observe(TARGET, SLOW)
        await asyncio.sleep(0.3)
        pusher.observe(TARGET, GOOD)  # resolved while `sick` is down
        await asyncio.sleep(0.5)
        sick.fail = False
        await asyncio.sleep(2.5)  # backoff: 0.5, 1, 2 s

    try:
        asyncio.run(with_pusher([healthy.url, sick.url], scenario, resend_interval=5))
        assert [parse(a["endsAt"]) > parse(a["startsAt"]) for _, a in pushed(healthy)]
        resolutions = [a for _, a in pushed(sick) if parse(a["endsAt"]) <= datetime.now(timezone.utc)]
        assert resolutions, "the resolution must reach the Alertmanager that was down"
        # the healthy one was not held up by the sick one
        assert pushed(healthy)[0][0] - min(t for t, _, _ in healthy.posts) < 0.1
    finally:
        healthy.close()
        sick.close()


def test_observing_never_waits_for_a_hanging_alertmanager():
    async def scenario(pusher):
        started = time.perf_counter()
        for _ in range(100):
            pusher.observe(TARGET, SLOW)
            pusher.observe(TARGET, GOOD)
        return time.perf_counter() - started

    # nothing listens on port 9: sends fail in the background, and observe() never waits for them
    elapsed = asyncio.run(with_pusher(["http://127.0.0.1:9"], scenario, timeout=30))
    assert elapsed < 0.5


def test_removing_a_target_resolves_its_firing_alerts():
    am = RecordingServer()

    async def scenario(pusher):
        pusher.observe(TARGET, SLOW)
        await asyncio.sleep(0.2)
        pusher.forget_target("api")
        await asyncio.sleep(0.2)

    try:
        asyncio.run(with_pusher([am.url], scenario))
        assert parse(pushed(am)[-1][1]["endsAt"]) <= datetime.now(timezone.utc)
    finally:
        am.close()


# ---- end to end: daemon -> real Alertmanager -> webhook ----------------------------------------------------------

AM_CONFIG = """route:
  receiver: webhook
  group_by: [alertname, target]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: webhook
    webhook_configs:
      - url: {webhook}/hook
        send_resolved: true
"""

INTERVAL = 2.0


def daemon_config(simulator: str, am_url: str, slow_query: str, cut_query: str) -> str:
    return f"""defaults: {{interval: {INTERVAL}s, timeout: 30s, idle_timeout: 10s, ttft_threshold: 2s}}
scheduler: {{jitter: 0s}}
alertmanager: {{urls: ["{am_url}"], resend_interval: 2s}}
targets:
  - name: slow
    url: "{simulator}/v1/chat/completions?{slow_query}"
  - name: cut
    url: "{simulator}/v1/chat/completions?{cut_query}"
"""


@pytest.fixture
def alert_stack(simulator, tmp_path):
    webhook = RecordingServer()
    am = start_alertmanager(AM_CONFIG.format(webhook=webhook.url), tempdir("am-"))
    daemons = []

    def daemon(slow_query: str, cut_query: str) -> DaemonProcess:
        d = DaemonProcess(daemon_config(simulator, am.url, slow_query, cut_query), tmp_path,
                          args=["--web.enable-lifecycle"])
        daemons.append(d)
        return d

    yield webhook, am, daemon
    for d in daemons:
        d.stop()
    am.close()
    webhook.close()


def test_direct_push_pages_slow_ttft_and_early_end_within_one_interval_plus_5s_then_resolves(simulator, alert_stack):
    webhook, am, daemon = alert_stack
    healthy = "ttft=0.1&tokens=3&rate=50"
    d = daemon(healthy, healthy)
    wait_until(lambda: d.runs("slow") >= 1 and d.runs("cut") >= 1, 15, "healthy first runs")
    assert not webhook.posts

    d.config_path.write_text(daemon_config(simulator, am.url, "ttft=3&tokens=3&rate=50", "ttft=0.1&tokens=10&rate=50&drop_after=3"))
    fault = time.monotonic()
    assert d.reload_via_http().status_code == 200
    fired = wait_until(lambda: webhook.notifications("SSEProbeTTFTHigh", "slow", "firing"), 20, "TTFT page")
    cut = wait_until(lambda: webhook.notifications("SSEProbeStreamEndedEarly", "cut", "firing"), 20, "early-end page")
    ttft_delay, cut_delay = fired[0] - fault, cut[0] - fault
    print(f"\nfault -> webhook through direct push: SSEProbeTTFTHigh {ttft_delay:.2f} s, "
          f"SSEProbeStreamEndedEarly {cut_delay:.2f} s (interval {INTERVAL:g} s)")
    assert ttft_delay <= INTERVAL + 5 and cut_delay <= INTERVAL + 5

    d.config_path.write_text(daemon_config(simulator, am.url, healthy, healthy))
    assert d.reload_via_http().status_code == 200
    wait_until(lambda: webhook.notifications("SSEProbeTTFTHigh", "slow", "resolved"), 20, "TTFT resolution")
    wait_until(lambda: webhook.notifications("SSEProbeStreamEndedEarly", "cut", "resolved"), 20, "early-end resolution")


def test_alert_fired_while_alertmanager_was_down_is_delivered_and_its_resolution_survives_a_restart(simulator, alert_stack):
    webhook, am, daemon = alert_stack
    am.stop()  # down before the fault
    healthy = "ttft=0.1&tokens=3&rate=50"
    d = daemon(healthy, "ttft=0.1&tokens=10&rate=50&drop_after=3")
    wait_until(lambda: d.sample("sse_monitor_alertmanager_sends_total", alertmanager=am.url, result="failure"), 20,
               "failed pushes while Alertmanager is down")
    am.start()
    wait_until(lambda: webhook.notifications("SSEProbeStreamEndedEarly", "cut", "firing"), 20,
               "the alert delivered once Alertmanager is back")
    am.stop()  # restarted while the alert fires; the resolution comes while it is down
    d.config_path.write_text(daemon_config(simulator, am.url, healthy, healthy))
    assert d.reload_via_http().status_code == 200
    wait_until(lambda: d.runs("cut") and d.sample("sse_probe_alert_condition", target="cut",
                                                  alertname="SSEProbeStreamEndedEarly") == 0, 15, "recovery")
    time.sleep(1)
    am.start()
    wait_until(lambda: webhook.notifications("SSEProbeStreamEndedEarly", "cut", "resolved"), 25,
               "the resolution delivered after the restart")
