"""The shipped Prometheus rules and configs: promtool and amtool accept them, every alert is unit-tested both ways."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from conftest import ROOT, require_binary

RULES = ROOT / "config/prometheus/rules/sse-monitor.rules.yml"
PROMETHEUS_CONFIG = ROOT / "config/prometheus/prometheus.yml"
ALERTMANAGER_CONFIG = ROOT / "config/alertmanager/alertmanager.yml"
RULE_TESTS = sorted((ROOT / "tests/prometheus").glob("*.test.yml"))
RUNBOOK_BASE = "https://github.com/sse-monitor/sse-monitor/blob/main/docs/runbook/"
PROBE_PAGES = ("SSEProbeTTFTHigh", "SSEProbeStreamEndedEarly", "SSEProbeFailed")  # the daemon's alert conditions


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=False, capture_output=True, text=True, cwd=ROOT, timeout=60)


def alerts() -> dict[str, dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def rule_test_cases() -> list[dict]:
    cases = []
    for path in RULE_TESTS:
        for group in yaml.safe_load(path.read_text())["tests"]:
            cases += group.get("alert_rule_test", [])
    return cases


# ---- promtool and amtool ----------------------------------------------------------------------------------------------


def test_rules_pass_promtool_check_with_every_lint_and_no_warning():
    promtool = require_binary("promtool")
    check = run(promtool, "check", "rules", "--lint=all", "--lint-fatal", str(RULES))
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in check.stdout
    assert not check.stderr.strip()
    assert "warning" not in check.stdout.lower()


def test_promtool_unit_tests_of_the_rules_pass():
    promtool = require_binary("promtool")
    assert RULE_TESTS, "no tests/prometheus/*.test.yml"
    result = run(promtool, "test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_shipped_prometheus_config_passes_promtool_check_and_loads_the_rules():
    promtool = require_binary("promtool")
    check = run(promtool, "check", "config", str(PROMETHEUS_CONFIG))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 1 rule files found" in check.stdout  # rule files are resolved relative to the config
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    loaded = {p for pattern in config["rule_files"] for p in PROMETHEUS_CONFIG.parent.glob(pattern)}
    assert RULES in loaded
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "sse-monitor"]
    assert job["static_configs"] == [{"targets": ["sse-monitor:9108"]}]
    assert config["global"]["scrape_interval"] == "15s"
    assert config["alerting"]["alertmanagers"][0]["static_configs"] == [{"targets": ["alertmanager:9093"]}]


def test_shipped_alertmanager_config_passes_amtool_check():
    amtool = require_binary("amtool")
    check = run(amtool, "check-config", str(ALERTMANAGER_CONFIG))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS" in check.stdout


@pytest.mark.parametrize("name", sorted(alerts()))
def test_critical_alerts_go_to_the_pager_and_warnings_to_the_ticket_receiver(name):
    amtool = require_binary("amtool")
    severity = alerts()[name]["labels"]["severity"]
    routed = run(amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}",
                 f"alertname={name}", f"severity={severity}", "target=openai-slow")
    assert routed.returncode == 0, routed.stdout + routed.stderr
    assert routed.stdout.split() == [{"critical": "pager", "warning": "ticket"}[severity]]


# ---- conventions (monitoring mixins) ---------------------------------------------------------------------------------


def test_the_three_probe_pages_and_the_monitor_alerts_exist():
    names = set(alerts())
    assert set(PROBE_PAGES) | {"SSEMonitorDown", "SSEProbeStale", "SSEProbeBufferingSuspected",
                               "SSEProbeCompressedStream", "SSEProbeSilenceNearIdleTimeout"} == names
    for name in PROBE_PAGES:  # the daemon's own conditions, so both alert paths page under one name
        assert f'alertname="{name}"' in alerts()[name]["expr"]


@pytest.mark.parametrize("name", sorted(alerts()))
def test_every_alert_follows_the_mixin_conventions_and_has_a_runbook(name):
    rule = alerts()[name]
    assert re.fullmatch(r"SSE(Probe|Monitor)[A-Z][A-Za-z]+", name)
    assert rule["labels"]["severity"] in ("critical", "warning")
    summary = rule["annotations"]["summary"]
    assert "\n" not in summary and summary.endswith(".") and summary.count(". ") == 0, "one sentence"
    assert "{{" in rule["annotations"]["description"], "the description is a template with the measured values"
    assert rule["annotations"]["runbook_url"] == f"{RUNBOOK_BASE}{name}.md"
    runbook = ROOT / "docs/runbook" / f"{name}.md"
    assert runbook.is_file(), f"{runbook} is missing"
    assert runbook.read_text().startswith(f"# {name}\n")
    if rule["labels"]["severity"] == "critical":
        assert rule.get("for"), "a page never fires on a single evaluation"


@pytest.mark.parametrize("name", sorted(alerts()))
def test_every_alert_has_promtool_cases_where_it_fires_and_where_it_must_not(name):
    cases = [c for c in rule_test_cases() if c["alertname"] == name]
    firing = [c for c in cases if c.get("exp_alerts")]
    assert firing, f"no promtool case where {name} fires"
    assert [c for c in cases if not c.get("exp_alerts")], f"no promtool case where {name} must not fire"
    # the templates are tested too: the rendered description of at least one firing alert is pinned
    assert any(a.get("exp_annotations", {}).get("description") for c in firing for a in c["exp_alerts"])
