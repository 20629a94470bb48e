"""The shipped Prometheus rules and configs: promtool and amtool accept them, every alert is unit-tested both ways."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, require_binary

RULES = ROOT / "config/prometheus/rules/sse-monitor.rules.yml"
SLO_RULES = ROOT / "config/prometheus/rules/sse-monitor-slo.rules.yml"
REGION_RULES = ROOT / "config/prometheus/rules/sse-monitor-regions.rules.yml"
CHAIN_RULES = ROOT / "config/prometheus/rules/sse-monitor-chain.rules.yml"
RULE_FILES = sorted((ROOT / "config/prometheus/rules").glob("*.rules.yml"))
PROMETHEUS_CONFIG = ROOT / "config/prometheus/prometheus.yml"
ALERTMANAGER_CONFIG = ROOT / "config/alertmanager/alertmanager.yml"
RULE_TESTS = sorted((ROOT / "tests/prometheus").glob("*.test.yml"))
RUNBOOK_BASE = "https://github.com/sse-monitor/sse-monitor/blob/main/docs/runbook/"
PROBE_PAGES = ("SSEProbeTTFTHigh", "SSEProbeStreamEndedEarly", "SSEProbeFailed")  # the daemon's alert conditions
# (alert, slo, severity, long window, short window, burn-rate factor): the SRE workbook's pairs for a 30-day period
SLO_ALERTS = (
    ("SSEProbeTTFTBudgetFastBurn", "ttft", "critical", "1h", "5m", 14.4),
    ("SSEProbeTTFTBudgetSlowBurn", "ttft", "warning", "6h", "30m", 6),
    ("SSEProbeCompletionBudgetFastBurn", "completed", "critical", "1h", "5m", 14.4),
    ("SSEProbeCompletionBudgetSlowBurn", "completed", "warning", "6h", "30m", 6),
)
OBJECTIVES = {"ttft": 0.95, "completed": 0.99}  # the seeds' numbers, the shipped defaults


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=False, capture_output=True, text=True, cwd=ROOT, timeout=60)


def rules(path: Path | None = None) -> list[dict]:
    """Every rule of one shipped rule file, or of all of them."""
    paths = [path] if path else RULE_FILES
    return [rule for p in paths for group in yaml.safe_load(p.read_text())["groups"] for rule in group["rules"]]


def alerts(path: Path | None = None) -> dict[str, dict]:
    return {rule["alert"]: rule for rule in rules(path) if "alert" in rule}


def records() -> list[dict]:
    return [rule for rule in rules() if "record" in rule]


def rule_test_cases() -> list[dict]:
    cases = []
    for path in RULE_TESTS:
        for group in yaml.safe_load(path.read_text())["tests"]:
            cases += group.get("alert_rule_test", [])
    return cases


# ---- promtool and amtool ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_rules_pass_promtool_check_with_every_lint_and_no_warning(path):
    promtool = require_binary("promtool")
    check = run(promtool, "check", "rules", "--lint=all", "--lint-fatal", str(path))
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(rules(path))} rules found" in check.stdout
    assert not check.stderr.strip()
    assert "warning" not in check.stdout.lower()


def test_the_shipped_rule_files_are_the_four_expected():
    assert RULE_FILES == sorted([RULES, SLO_RULES, REGION_RULES, CHAIN_RULES])
    assert set(alerts(CHAIN_RULES)) == {"SSEChainIdleTimeoutTooShort", "SSEChainCheckFailed"}


def test_the_region_quorum_lives_in_one_place():
    rules = yaml.safe_load(REGION_RULES.read_text())["groups"][0]["rules"]
    (quorum,) = [r for r in rules if r.get("record") == "sse:region_quorum:ratio"]
    assert quorum["expr"] == "vector(0.5)"
    for rule in rules:
        assert "0.5" not in rule["expr"] or rule is quorum
    assert set(alerts(REGION_RULES)) == {"SSEProbeFailingInMostRegions", "SSEProbeFailingInSomeRegions"}


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
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in check.stdout  # resolved relative to the config
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    loaded = {p for pattern in config["rule_files"] for p in PROMETHEUS_CONFIG.parent.glob(pattern)}
    assert set(RULE_FILES) <= loaded
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
    names = set(alerts(RULES))
    assert set(PROBE_PAGES) | {"SSEMonitorDown", "SSEProbeStale", "SSEProbeBufferingSuspected",
                               "SSEProbeCompressedStream", "SSEProbeSilenceNearIdleTimeout",
                               "SSEProbeResumeBroken"} == names
    for name in PROBE_PAGES:  # the daemon's own conditions, so both alert paths page under one name
        assert f'alertname="{name}"' in alerts()[name]["expr"]


def test_the_resume_ticket_has_the_severity_the_daemon_pushes_and_reads_the_resume_gauge():
    from monitor.alerting import SEVERITY
    from monitor.result import ALERT_RESUME_BROKEN, PAGES

    rule = alerts(RULES)[ALERT_RESUME_BROKEN]
    assert rule["labels"]["severity"] == SEVERITY[ALERT_RESUME_BROKEN] == "warning"  # both paths: a ticket
    assert ALERT_RESUME_BROKEN not in PAGES
    assert rule["expr"].strip() == "sse_probe_resume_ok == 0"  # NaN (no check in the run) never matches
    assert {name: SEVERITY[name] for name in PAGES} == {name: alerts(RULES)[name]["labels"]["severity"] for name in PAGES}


def test_the_slo_alerts_exist_in_their_own_file():
    assert set(alerts(SLO_RULES)) == {name for name, *_ in SLO_ALERTS}
    assert not set(alerts(RULES)) & set(alerts(SLO_RULES))


@pytest.mark.parametrize("name", sorted(alerts()))
def test_every_alert_follows_the_mixin_conventions_and_has_a_runbook(name):
    rule = alerts()[name]
    assert re.fullmatch(r"SSE(Probe|Monitor|Chain)[A-Z][A-Za-z]+", name)
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


# ---- SLOs ------------------------------------------------------------------------------------------------------------

RECORD_NAME = re.compile(r"[a-z_]+:[a-z_]+:[a-z0-9_]+")  # level:metric:operations


def test_recording_rules_follow_the_level_metric_operations_convention():
    assert records()
    for rule in records():
        assert RECORD_NAME.fullmatch(rule["record"]), rule["record"]
        level = rule["record"].split(":")[0]
        if level == "target":  # aggregated per target: nothing else may survive (per region first, at most)
            assert len(re.findall(r"\bby \(", rule["expr"])) == len(
                re.findall(r"\bby \(target(, region)?\)", rule["expr"])), rule
            assert re.search(r"\b(sum|count) by \(target\)", rule["expr"]) or "target:" in rule["expr"], rule
        window = re.fullmatch(r".*_rate(\w+)", rule["record"])
        if window:  # the window in the name is the window of every rate in the expression
            assert set(re.findall(r"\[(\w+)\]", rule["expr"])) == {window.group(1)}, rule


def test_the_objectives_are_set_in_one_place_with_the_seeds_numbers():
    objectives = [rule for rule in records() if rule["record"] == "sse:slo_objective:ratio"]
    assert {rule["labels"]["slo"]: float(re.fullmatch(r"vector\(([\d.]+)\)", rule["expr"].split("#")[0].strip()).group(1))
            for rule in objectives} == OBJECTIVES
    assert len(objectives) == len(OBJECTIVES)
    # nothing else spells an objective or its budget out: every other rule reads the series
    for rule in rules():
        if rule not in objectives:
            assert not re.search(r"0\.9[59]\b|\b0\.0[15]\b|\b9[59] ?%|\b[15] ?%", rule["expr"]), rule
    budget = [rule for rule in records() if rule["record"] == "sse:slo_error_budget:ratio"]
    assert [rule["expr"].strip() for rule in budget] == ["1 - sse:slo_objective:ratio"]


def test_every_sli_window_is_recorded_for_both_slos():
    recorded = {(rule["record"], rule["labels"]["slo"]) for rule in records() if rule["record"].startswith("target:sse_probe_sli:")}
    windows = {w for _, _, _, long, short, _ in SLO_ALERTS for w in (long, short)} | {"30d"}
    assert recorded == {(f"target:sse_probe_sli:ratio_rate{w}", slo) for w in windows for slo in OBJECTIVES}
    for rule in records():
        if rule["record"].startswith("target:sse_probe_sli:"):
            if rule["labels"]["slo"] == "ttft":  # the 1.5 s bucket: a bound of the histogram, the seeds' SLO
                assert 'sse_probe_ttft_seconds_bucket{le="1.5"}' in rule["expr"] and "sse_probe_ttft_seconds_count" in rule["expr"]
            else:
                assert 'sse_probe_runs_total{outcome="completed"}' in rule["expr"]


@pytest.mark.parametrize("name, slo, severity, long, short, factor", SLO_ALERTS)
def test_slo_alerts_are_multi_window_multi_burn_rate(name, slo, severity, long, short, factor):
    rule = alerts()[name]
    assert rule["labels"]["severity"] == severity
    budget = "/ on (slo) group_left () sse:slo_error_budget:ratio"
    expected = (f'(1 - target:sse_probe_sli:ratio_rate{long}{{slo="{slo}"}}) {budget} > {factor:g}\n'
                f"and\n"
                f'(1 - target:sse_probe_sli:ratio_rate{short}{{slo="{slo}"}}) {budget} > {factor:g}\n')
    assert rule["expr"] == expected
