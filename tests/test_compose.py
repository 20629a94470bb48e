"""docker-compose.yml, checked statically (no Docker engine here): it parses, every mount exists, every host it
names is a service, and the configs it mounts are the very files the native integration tests run."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from conftest import ROOT
from monitor.config import load_config

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
TESTS = Path(__file__).parent


def mounts(service: str) -> dict[str, Path]:
    """container path -> host path of each bind mount (named volumes are not bind mounts)."""
    out = {}
    for volume in SERVICES[service].get("volumes", []):
        host, container = volume.split(":")[:2]
        if host.startswith((".", "/")):
            out[container] = (ROOT / host).resolve()
    return out


def test_the_run_history_is_on_a_named_volume_at_the_images_data_directory():
    named = {v.split(":")[1]: v.split(":")[0] for v in SERVICES["sse-monitor"]["volumes"] if not v.startswith((".", "/"))}
    assert named["/var/lib/sse-monitor"] in COMPOSE["volumes"]  # declared, so `docker compose down` keeps it
    assert "SSE_MONITOR_DATA_DIR=/var/lib/sse-monitor" in (ROOT / "Dockerfile").read_text()


def test_the_whole_system_is_there():
    assert {"sse-monitor", "simulator", "nginx-sse", "nginx-buffered", "prometheus", "alertmanager", "grafana"} <= set(SERVICES)
    for name, service in SERVICES.items():
        for dependency in service.get("depends_on", []):
            assert dependency in SERVICES, f"{name} depends on unknown service {dependency}"
        if "build" in service:
            assert (ROOT / service["build"] / "Dockerfile").is_file()


def test_every_bind_mount_exists():
    for name in SERVICES:
        for container, host in mounts(name).items():
            assert host.exists(), f"{name}: {host} (mounted at {container}) does not exist"


def test_nginx_services_run_the_proxy_configs_the_proxy_tests_run_with_every_placeholder_filled():
    proxy_tests = (TESTS / "test_proxies.py").read_text()
    for name, config in (("nginx-sse", "nginx-sse.conf"), ("nginx-buffered", "nginx-default-buffered.conf")):
        command = " ".join(SERVICES[name]["command"])
        assert f"/etc/sse-proxies/{config}" in command
        assert mounts(name)["/etc/sse-proxies"] == (ROOT / "config/proxies").resolve()
        assert config in proxy_tests, f"{config} is mounted but not run by tests/test_proxies.py"
        placeholders = set(re.findall(r"{{(\w+)}}", (ROOT / "config/proxies" / config).read_text()))
        filled = set(re.findall(r"s/{{(\w+)}}/", command))
        assert placeholders == filled, f"{name}: placeholders {placeholders}, filled {filled}"
        assert "s/{{UPSTREAM}}/simulator:8900/" in command and "exec nginx" in command


def test_prometheus_runs_the_shipped_config_and_rules_and_reaches_the_daemon_and_alertmanager():
    assert mounts("prometheus")["/etc/prometheus"] == (ROOT / "config/prometheus").resolve()
    assert "--config.file=/etc/prometheus/prometheus.yml" in SERVICES["prometheus"]["command"]
    assert "config/prometheus" in (TESTS / "test_prometheus_rules.py").read_text()
    prom = yaml.safe_load((ROOT / "config/prometheus/prometheus.yml").read_text())
    scrape = [t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert "sse-monitor:9108" in scrape
    managers = [t for am in prom["alerting"]["alertmanagers"] for sc in am["static_configs"] for t in sc["targets"]]
    assert managers == ["alertmanager:9093"]
    assert all(host.split(":")[0] in SERVICES for host in scrape + managers)


def test_alertmanager_runs_the_shipped_config():
    assert mounts("alertmanager")["/etc/alertmanager/alertmanager.yml"] == (ROOT / "config/alertmanager/alertmanager.yml").resolve()
    assert "config/alertmanager/alertmanager.yml" in (TESTS / "test_prometheus_rules.py").read_text()


def test_the_daemon_config_is_valid_and_probes_services_of_the_stack():
    mounted = mounts("sse-monitor")["/etc/sse-monitor/config.yaml"]
    config = load_config(mounted, environ={})
    assert config.server.port == 9108 and "9108:9108" in SERVICES["sse-monitor"]["ports"]
    assert "EXPOSE 9108" in (ROOT / "Dockerfile").read_text()
    assert "/etc/sse-monitor/config.yaml" in (ROOT / "Dockerfile").read_text()
    hosts = {urlsplit(t.url).hostname for t in config.targets} | {urlsplit(u).hostname for u in config.alertmanager.urls}
    assert hosts <= set(SERVICES), hosts - set(SERVICES)
    assert {"nginx-sse", "nginx-buffered", "simulator", "alertmanager"} <= hosts


def test_grafana_is_provisioned_with_the_generated_dashboards_and_the_prometheus_service():
    grafana = mounts("grafana")
    assert grafana["/etc/grafana/provisioning"] == (ROOT / "config/grafana/provisioning").resolve()
    assert grafana["/etc/grafana/dashboards/sse-monitor"] == (ROOT / "dashboards").resolve()
    provider = yaml.safe_load((ROOT / "config/grafana/provisioning/dashboards/sse-monitor.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/etc/grafana/dashboards/sse-monitor"
    datasource = yaml.safe_load((ROOT / "config/grafana/provisioning/datasources/prometheus.yaml").read_text())
    assert urlsplit(datasource["datasources"][0]["url"]).hostname in SERVICES
    home = SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (ROOT / "dashboards" / Path(home).name).is_file()


def test_the_daemon_runs_the_mounted_config_with_http_reload_on_and_shows_how_to_add_a_web_config():
    from monitor.cli import build_parser

    command = SERVICES["sse-monitor"]["command"]
    args = build_parser().parse_args(command)
    assert args.func.__name__ == "cmd_run"
    assert args.config in mounts("sse-monitor")  # the file it reads is the one mounted
    assert args.web_enable_lifecycle, "POST /-/reload is refused without --web.enable-lifecycle"
    # the commented variant: a web config in a mounted directory, the same options plus --web.config.file
    text = (ROOT / "docker-compose.yml").read_text()
    service = text[text.index("  sse-monitor:"):text.index("  simulator:")]
    commented = re.search(r"# (command: \[.*?\])", service.replace("\n    #           ", " "), re.S)
    variant = yaml.safe_load(commented.group(1))["command"]
    web = build_parser().parse_args(variant)
    assert web.web_enable_lifecycle and web.config == args.config
    volume = re.search(r"# - (\./[^:]+):(/etc/sse-monitor/web):ro", service)
    assert volume and web.web_config_file.startswith(volume.group(2) + "/")
    assert (ROOT / "config/web-config.example.yml").is_file()
