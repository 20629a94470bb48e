"""/probe, blackbox-style: one probe per request with a module, answered with its metrics; not an open proxy."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Callable

import httpx
import pytest
import yaml
from conftest import ROOT, make_pki
from servers import DaemonProcess, parse_metrics, prometheus_query, running_daemon, start_prometheus, wait_until

from monitor.daemon import Daemon

CHAT = "/v1/chat/completions"
SECRET = "sk-probe-secret-4711"


def module_config(simulator: str, extra: str = "") -> str:
    return (
        "server: {max_concurrent_probes: 2}\n"
        "modules:\n"
        "  chat:\n"
        "    dialect: openai-chat\n"
        f"    headers: {{Authorization: \"Bearer {SECRET}\"}}\n"
        "    timeout: 30s\n"
        "    idle_timeout: 20s\n"
        f"    allowed_targets: [\"{simulator}/v1/\"]\n"
        "  closed: {dialect: openai-chat}\n"  # no allowed_targets: /probe cannot use it
        + extra
    )


class CountingOrigin:
    """A socket that counts the connections made to it (and answers none)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


def requests_counted(daemon: Daemon) -> Callable[[str, str], float | None]:
    def sample(module: str, result: str) -> float | None:
        return daemon.metrics.registry.get_sample_value(
            "sse_monitor_probe_requests_total", {"module": module, "result": result}
        )
    return sample


def test_a_probe_answers_with_its_own_metrics(simulator, tmp_path):
    async def scenario():
        async with running_daemon(module_config(simulator), tmp_path) as (daemon, client):
            target = f"{simulator}{CHAT}?ttft=0.3&tokens=5&rate=50"
            ok = await client.get("/probe", params={"module": "chat", "target": target})
            slow = await client.get("/probe", params={"module": "chat", "target": f"{simulator}{CHAT}?ttft=2.2&tokens=1"})
            return ok, slow, requests_counted(daemon)

    ok, slow, counted = asyncio.run(scenario())
    assert ok.status_code == 200 and ok.headers["content-type"].startswith("text/plain; version=")
    m = parse_metrics(ok.text)
    assert m[("probe_success", frozenset())] == 1
    assert 0.3 <= m[("probe_sse_ttft_seconds", frozenset())] < 0.35
    assert m[("probe_sse_token_events", frozenset())] == 5
    assert m[("probe_sse_outcome", frozenset({("outcome", "completed"), ("reason", "ok")}))] == 1
    assert m[("probe_sse_kernel_clock", frozenset())] == 1
    assert 0.3 < m[("probe_duration_seconds", frozenset())] < 1
    assert SECRET not in ok.text
    s = parse_metrics(slow.text)
    assert s[("probe_success", frozenset())] == 0
    assert s[("probe_sse_alert_condition", frozenset({("alertname", "SSEProbeTTFTHigh")}))] == 1
    assert (counted("chat", "success"), counted("chat", "failure")) == (1, 1)


def test_debug_shows_what_happened_without_the_modules_secrets(simulator, tmp_path):
    async def scenario():
        async with running_daemon(module_config(simulator), tmp_path) as (_, client):
            return await client.get("/probe", params={
                "module": "chat", "debug": "true", "target": f"{simulator}{CHAT}?ttft=0.1&tokens=2&rate=50"})

    r = asyncio.run(scenario())
    assert r.status_code == 200
    assert "outcome      completed (ok), HTTP 200" in r.text and "probe_sse_ttft_seconds" in r.text
    assert "trace        6 entries" in r.text and "[DONE]" in r.text  # every event, with its arrival time
    assert SECRET not in r.text


def test_a_target_outside_the_modules_list_gets_403_and_no_request(simulator, tmp_path):
    origin = CountingOrigin()

    async def scenario():
        async with running_daemon(module_config(simulator), tmp_path) as (daemon, client):
            answers = [
                await client.get("/probe", params={"module": "chat", "target": origin.url + CHAT}),
                await client.get("/probe", params={"module": "closed", "target": f"{simulator}{CHAT}"}),
                # a prefix is compared by scheme, host, port and path: none of these is under it
                await client.get("/probe", params={"module": "chat", "target": simulator.replace("127.0.0.1", "localhost") + CHAT}),
                await client.get("/probe", params={"module": "chat", "target": f"{simulator}/v10/x"}),
            ]
            return answers, requests_counted(daemon)

    try:
        answers, counted = asyncio.run(scenario())
        time.sleep(0.3)
        assert origin.accepted == 0
    finally:
        origin.close()
    assert [a.status_code for a in answers] == [403, 403, 403, 403]
    assert "may not probe this target" in answers[0].text
    assert (counted("chat", "denied"), counted("closed", "denied")) == (3, 1)


def test_bad_requests_get_400_saying_what_is_wrong(simulator, tmp_path):
    async def scenario():
        async with running_daemon(module_config(simulator), tmp_path) as (daemon, client):
            cases = [
                {"module": "chat"},
                {"target": f"{simulator}{CHAT}"},
                {"module": "nope", "target": f"{simulator}{CHAT}"},
                {"module": "chat", "target": "ftp://127.0.0.1/v1/x"},
                {"module": "chat", "target": "not a url"},
                {"module": "chat", "target": f"http://user:pw@127.0.0.1:1{CHAT}"},
            ]
            return [await client.get("/probe", params=p) for p in cases], requests_counted(daemon)

    answers, counted = asyncio.run(scenario())
    assert [a.status_code for a in answers] == [400] * 6
    assert answers[0].text == "missing parameter 'target' (the URL to probe)\n"
    assert answers[1].text == "missing parameter 'module'\n"
    assert answers[2].text == "unknown module 'nope' (modules: chat, closed)\n"
    assert "must be an http or https URL" in answers[3].text
    assert counted("", "bad_request") == 3 and counted("chat", "bad_request") == 3


def test_past_the_bound_a_probe_is_refused_at_once_not_queued(simulator, tmp_path):
    async def scenario():
        async with running_daemon(module_config(simulator), tmp_path) as (daemon, client):
            slow = {"module": "chat", "target": f"{simulator}{CHAT}?ttft=1.5&tokens=1"}
            running_probes = [asyncio.create_task(client.get("/probe", params=slow)) for _ in range(2)]
            await asyncio.sleep(0.5)
            started = time.perf_counter()
            refused = await client.get("/probe", params=slow)
            waited = time.perf_counter() - started
            return refused, waited, await asyncio.gather(*running_probes), requests_counted(daemon)

    refused, waited, others, counted = asyncio.run(scenario())
    assert refused.status_code == 503 and waited < 0.5
    assert [o.status_code for o in others] == [200, 200]
    assert counted("chat", "overloaded") == 1


def test_prometheus_scrape_timeout_bounds_the_probe(simulator, tmp_path):
    async def scenario():
        async with running_daemon(module_config(simulator), tmp_path) as (_, client):
            started = time.perf_counter()
            r = await client.get("/probe", params={"module": "chat", "target": f"{simulator}{CHAT}?ttft=5&tokens=1"},
                                 headers={"X-Prometheus-Scrape-Timeout-Seconds": "1.5"})
            return r, time.perf_counter() - started

    r, took = asyncio.run(scenario())
    m = parse_metrics(r.text)
    assert took < 1.5  # answered before Prometheus would give up (1.5 s - the 0.5 s offset)
    assert m[("probe_success", frozenset())] == 0
    assert m[("probe_sse_outcome", frozenset({("outcome", "failed"), ("reason", "timeout")}))] == 1


@pytest.mark.integration
def test_a_blackbox_style_scrape_config_works_unchanged_with_real_prometheus(simulator, tmp_path):
    """config/prometheus/probe-scrape.yml, with its two addresses pointed here, scraped by a real Prometheus."""
    from monitor.serving import AppServer  # noqa: F401 - the daemon's own server, below

    scrape = yaml.safe_load((ROOT / "config/prometheus/probe-scrape.yml").read_text())
    job = scrape["scrape_configs"][0]
    targets = [f"{simulator}{CHAT}?ttft=0.2&tokens=3&rate=50", f"{simulator}{CHAT}?status=503"]

    async def scenario():
        config = module_config(simulator).replace("  chat:\n", "  openai-chat:\n")
        async with running_daemon(config, tmp_path) as (daemon, _):
            job["static_configs"] = [{"targets": targets}]
            job["relabel_configs"][-1]["replacement"] = daemon.base_url.removeprefix("http://")
            job["scrape_interval"], job["scrape_timeout"] = "1s", "1s"
            prom = start_prometheus(yaml.safe_dump({"scrape_configs": [job]}), tmp_path)
            try:
                def ttfts() -> list[dict]:
                    return prometheus_query(prom, "probe_sse_ttft_seconds")
                await asyncio.to_thread(
                    wait_until, lambda: ttfts() and len(prometheus_query(prom, "probe_success")) == 2, 30,
                    "both targets scraped through the relabelling")
                return ttfts(), prometheus_query(prom, "probe_success"), prometheus_query(
                    prom, 'probe_sse_outcome{reason="http_status"}')
            finally:
                prom.close()

    ttft, success, failed = asyncio.run(scenario())
    assert [s["metric"]["instance"] for s in ttft] == [targets[0]]  # the probed URL is the instance
    assert 0.195 <= float(ttft[0]["value"][1]) < 0.3  # uvloop's clock is whole ms: the origin may be ~1 ms early
    assert {s["metric"]["instance"]: s["value"][1] for s in success} == {targets[0]: "1", targets[1]: "0"}
    assert [s["metric"]["instance"] for s in failed] == [targets[1]]


@pytest.mark.integration
def test_prometheus_scrapes_probe_over_tls_with_basic_auth(simulator, tmp_path):
    """The same job behind the exporter-toolkit web config: https and basic auth, as a blackbox user has them."""
    import bcrypt

    pki = make_pki(tmp_path)
    password = "scrape-pw-1"
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {pki['server.crt']}\n  key_file: {pki['server.key']}\n"
                   f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    config = module_config(simulator).replace("  chat:\n", "  openai-chat:\n")
    trust = ssl.create_default_context(cafile=str(pki["server.crt"]))
    daemon = DaemonProcess(config, tmp_path, args=("--web.config.file", str(web)), scheme="https",
                           client={"verify": trust, "auth": ("prometheus", password)})
    target = f"{simulator}{CHAT}?ttft=0.2&tokens=3&rate=50"
    try:
        refused = httpx.get(daemon.url + "/probe", params={"module": "openai-chat", "target": target},
                            verify=trust, auth=("prometheus", "wrong"), timeout=10)
        assert refused.status_code == 401
        job = yaml.safe_load((ROOT / "config/prometheus/probe-scrape.yml").read_text())["scrape_configs"][0]
        job["static_configs"] = [{"targets": [target]}]
        job["relabel_configs"][-1]["replacement"] = f"127.0.0.1:{daemon.port}"
        job.update(scrape_interval="1s", scrape_timeout="1s", scheme="https",
                   tls_config={"ca_file": str(pki["server.crt"])},
                   basic_auth={"username": "prometheus", "password": password})
        prom = start_prometheus(yaml.safe_dump({"scrape_configs": [job]}), tmp_path)
        try:
            found = wait_until(lambda: prometheus_query(prom, "probe_sse_ttft_seconds"), 30, "a probe over TLS")
        finally:
            prom.close()
        assert found[0]["metric"]["instance"] == target and 0.195 <= float(found[0]["value"][1]) < 0.3
        counted = parse_metrics(daemon.metrics_text())
        assert counted[("sse_monitor_probe_requests_total", frozenset({("module", "openai-chat"), ("result", "success")}))] >= 1
        assert ("sse_monitor_probe_requests_total", frozenset({("module", "openai-chat"), ("result", "denied")})) not in counted
    finally:
        daemon.stop()
