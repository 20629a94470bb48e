"""The Grafana dashboards: the committed JSON is the generator's output, and every query reads what the daemon exports."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from array import array
from functools import cache
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from conftest import ROOT, require_binary
from monitor.metrics import TTFT_BUCKETS, Metrics
from monitor.result import DEFAULT_PROXY_IDLE_TIMEOUT, DEFAULT_TTFT_THRESHOLD, ProbeResult

DASHBOARDS = ROOT / "dashboards"
PROVISIONING = ROOT / "config" / "grafana" / "provisioning"
# series Prometheus makes itself: alert states from rules, and the scrape's own health
PROMETHEUS_SERIES = {"ALERTS": {"alertname", "alertstate"}, "up": set()}
TARGET_LABELS = {"job", "instance"}  # added by Prometheus to every scraped series
RULE_FILES = sorted((ROOT / "config" / "prometheus" / "rules").glob("*.rules.yml"))


def load_generator():
    spec = importlib.util.spec_from_file_location("sse_monitor_dashboards", DASHBOARDS / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generator():
    return load_generator()


def committed() -> dict[str, dict]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out += panel.get("panels", [])
    return out


def exprs(dashboard: dict) -> list[tuple[str, str]]:
    """(where, PromQL) of every query in a dashboard: panels, annotations and template variables."""
    out = [(p["title"], t["expr"]) for p in panels(dashboard) for t in p.get("targets", [])]
    out += [(f"annotation {a['name']}", a["expr"]) for a in dashboard["annotations"]["list"] if a.get("expr")]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            inner = re.fullmatch(r"label_values\((.+),\s*\w+\)", variable["query"])
            assert inner, f"variable {variable['name']}: expected label_values(SELECTOR, LABEL), got {variable['query']!r}"
            out.append((f"variable {variable['name']}", inner.group(1)))
    return out


def all_exprs() -> list[tuple[str, str]]:
    return [(f"{name}: {where}", expr) for name, dash in committed().items() for where, expr in exprs(dash)]


# ---- what the daemon exports ------------------------------------------------------------------------------------


SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"), "info": ("_info",)}


@cache
def exported() -> dict[str, dict[str, set[str]]]:
    """Every series name the daemon's registry exposes, each with its label names and the values seen."""
    # with a region (SSE_MONITOR_REGION), as a multi-region setup runs it: every series may carry `region`
    metrics = Metrics(region="eu-west")
    metrics.add_target("demo", interval=60, ttft_threshold=DEFAULT_TTFT_THRESHOLD, proxy_idle_timeout=DEFAULT_PROXY_IDLE_TIMEOUT)
    result = ProbeResult(
        url="http://127.0.0.1/v1/chat/completions", dialect="openai-chat", outcome="completed", reason="ok",
        started_at=1_700_000_000.0, headers_seconds=0.2, first_byte_seconds=0.3, ttft_seconds=0.4,
        duration_seconds=3.0, max_silence_seconds=0.5, token_times=array("d", [0.4, 0.5, 0.7]),
    )
    metrics.observe("demo", result)
    metrics.lag.observe(0.001)
    # a labelled metric has no series before its first use (e.g. pushes to an Alertmanager): take its declaration
    declared = {m._name: set(m._labelnames) for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)}
    out: dict[str, dict[str, set[str]]] = {}
    for family in metrics.registry.collect():
        for suffix in SUFFIXES.get(family.type, ("",)):
            out[family.name + suffix] = {label: set() for label in declared.get(family.name, ())}
        for sample in family.samples:
            labels = out.setdefault(sample.name, {})
            for name, value in sample.labels.items():
                labels.setdefault(name, set()).add(value)
    return out


@cache
def recorded() -> dict[str, set[str]]:
    """Series the shipped recording rules make (the SLOs), each with its label names: its `sum by` and its `labels`."""
    out: dict[str, set[str]] = {}
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    by = {label.strip() for m in re.finditer(r"\bby\s*\(([^)]*)\)", rule["expr"]) for label in m.group(1).split(",")}
                    out.setdefault(rule["record"], set()).update((by - {""}) | set(rule.get("labels", {})))
    return out


def known_series() -> dict[str, set[str]]:
    """Series name -> the label names a query may use on it."""
    ours = {name: set(labels) | TARGET_LABELS for name, labels in exported().items()}
    all_ours = set().union(*ours.values())
    theirs = {name: labels | TARGET_LABELS | (all_ours if name == "ALERTS" else set()) for name, labels in PROMETHEUS_SERIES.items()}
    return ours | theirs | recorded()


# ---- a small PromQL reader: enough to find metric names, label matchers and groupings ---------------------------

STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
SELECTOR = re.compile(r'(?<![\w:])([A-Za-z_:][\w:]*)\s*\{((?:[^}"]|"(?:[^"\\]|\\.)*")*)\}')
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
IDENTIFIER = re.compile(r"(?<![\w.:$])([A-Za-z_:][\w:]*)(\s*\()?")
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "inf", "nan", "atan2"}


def metric_names(expr: str) -> set[str]:
    text = STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = GROUPING.sub(" ", text)
    return {m.group(1) for m in IDENTIFIER.finditer(text) if not m.group(2) and m.group(1).lower() not in KEYWORDS}


def matchers(expr: str) -> list[tuple[str, str, str, str]]:
    """(metric, label, operator, value) of every label matcher."""
    return [(m.group(1), *lm.groups()) for m in SELECTOR.finditer(expr) for lm in MATCHER.finditer(m.group(2))]


def grouping_labels(expr: str) -> set[str]:
    return {label.strip() for m in GROUPING.finditer(expr) for label in m.group(1).split(",") if label.strip()}


def test_the_promql_reader_finds_metrics_matchers_and_groupings():
    expr = (
        'histogram_quantile(0.95, sum by (target, le) (rate(a_bucket{target=~"$target", le="2.0"}[$__rate_interval]))) '
        "/ on (job) group_left (version) b_info * 1e-3 > bool 0 or max_over_time(c[5m] offset 1m) unless d{x!=\"}\"}"
    )
    assert metric_names(expr) == {"a_bucket", "b_info", "c", "d"}
    assert matchers(expr) == [("a_bucket", "target", "=~", "$target"), ("a_bucket", "le", "=", "2.0"), ("d", "x", "!=", "}")]
    assert grouping_labels(expr) == {"target", "le", "job", "version"}


# ---- the committed JSON ---------------------------------------------------------------------------------------------


def test_committed_dashboards_are_exactly_what_the_generator_builds(generator):
    from importlib import metadata

    installed = metadata.version("grafana-foundation-sdk")
    assert installed == generator.SDK_VERSION, (
        f"grafana-foundation-sdk {installed} is installed, the dashboards are built with {generator.SDK_VERSION}"
    )
    for path, text in generator.rendered().items():
        assert path.read_text() == text, f"{path.name} is stale: run python dashboards/generate.py"
    assert {p.name for p in generator.rendered()} == set(committed()), "a JSON file in dashboards/ that the generator does not write"


def test_generate_check_fails_on_a_stale_dashboard_and_a_plain_run_repairs_it(tmp_path):
    copy = tmp_path / "dashboards"
    copy.mkdir()
    for module in DASHBOARDS.glob("*.py"):  # generate.py and the modules it builds the dashboards with
        shutil.copy(module, copy)
    script = [sys.executable, str(copy / "generate.py")]

    written = subprocess.run(script, capture_output=True, text=True, cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    target = copy / "sse-monitor-target.json"
    fresh = target.read_text()
    assert subprocess.run([*script, "--check"], capture_output=True, text=True, cwd=tmp_path).returncode == 0

    target.write_text(fresh.replace("Longest silence", "Longest quiet"))
    check = subprocess.run([*script, "--check"], capture_output=True, text=True, cwd=tmp_path)
    assert check.returncode == 1
    assert "sse-monitor-target.json" in check.stderr
    assert subprocess.run(script, capture_output=True, text=True, cwd=tmp_path).returncode == 0
    assert target.read_text() == fresh


def test_every_query_reads_only_series_the_daemon_or_prometheus_produces():
    known = known_series()
    for where, expr in all_exprs():
        names = metric_names(expr)
        assert names, f"{where}: found no metric in {expr!r}"
        unknown = names - set(known)
        assert not unknown, f"{where}: {sorted(unknown)} is not exported by monitor/metrics.py nor recorded by the rules: {expr}"


def test_label_matchers_and_groupings_use_labels_the_series_carry():
    known = known_series()
    for where, expr in all_exprs():
        labels_here = set().union(*(known[name] for name in metric_names(expr)))
        for metric, label, op, value in matchers(expr):
            assert label in known[metric], f"{where}: {metric} has no label {label!r}: {expr}"
            if label == "le" and op == "=":
                bounds = exported()[metric]["le"]
                assert value in bounds, f"{where}: {metric} has no bucket le={value!r} (it has {sorted(bounds)})"
        missing = grouping_labels(expr) - labels_here
        assert not missing, f"{where}: groups by {sorted(missing)}, which none of its series carries: {expr}"


def test_outcome_reason_warning_and_alert_values_in_matchers_exist():
    values = {label: set().union(*(labels.get(label, set()) for labels in exported().values())) for label in ("outcome", "reason", "warning", "alertname")}
    for where, expr in all_exprs():
        for metric, label, op, value in matchers(expr):
            if label in values and op == "=":
                assert value in values[label], f"{where}: no {label} {value!r} is ever exported: {expr}"


def test_rates_and_increases_are_taken_over_the_rate_interval():
    for where, expr in all_exprs():
        for function, window in re.findall(r"\b(rate|increase)\([^\[]*\[([^\]]+)\]", expr):
            # instant table cells summarise the whole picked range; graphs use Grafana's scrape-aware window
            assert window in ("$__rate_interval", "$__range"), f"{where}: {function} over {window}: {expr}"


def test_every_panel_and_query_uses_the_datasource_variable():
    for name, dash in committed().items():
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
        for panel in panels(dash):
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, f"{name}: {panel['title']}"
            for t in panel["targets"]:
                assert t["datasource"]["uid"] == "${datasource}", f"{name}: {panel['title']}"


def test_target_variable_lists_targets_before_their_first_run():
    metrics = Metrics()
    metrics.add_target("fresh", interval=60, ttft_threshold=2.0, proxy_idle_timeout=60)
    names = {s.name for family in metrics.registry.collect() for s in family.samples if s.labels.get("target") == "fresh"}
    overview, target = committed()["sse-monitor-overview.json"], committed()["sse-monitor-target.json"]
    for dash, multi in ((overview, True), (target, False)):
        variable = next(v for v in dash["templating"]["list"] if v["name"] == "target")
        metric = re.fullmatch(r"label_values\((\w+), target\)", variable["query"]).group(1)
        assert metric in names, f"{metric} has no series for a target that has not run yet"
        assert variable["multi"] is multi and variable["includeAll"] is multi


def test_panels_filter_on_the_selected_targets():
    target_series = {name for name, labels in (exported() | recorded()).items() if "target" in labels}
    for name, dash in committed().items():
        for where, expr in exprs(dash):
            used = {m for m in metric_names(expr) if m in target_series}
            if used and not where.startswith("variable"):
                filtered = {m for m, label, _, value in matchers(expr) if label == "target" and value == "$target"}
                assert used <= filtered, f"{name}: {where}: {sorted(used - filtered)} not filtered by $target: {expr}"


def test_ttft_graphs_draw_the_slo_and_the_alert_threshold():
    assert DEFAULT_TTFT_THRESHOLD in TTFT_BUCKETS and 1.5 in TTFT_BUCKETS  # exact lines need bucket bounds
    overview = committed()["sse-monitor-overview.json"]
    ttft = next(p for p in panels(overview) if p["title"].startswith("TTFT p50"))
    defaults = ttft["fieldConfig"]["defaults"]
    assert {s["value"] for s in defaults["thresholds"]["steps"]} >= {1.5, DEFAULT_TTFT_THRESHOLD}
    assert defaults["custom"]["thresholdsStyle"]["mode"] != "off"
    assert defaults["unit"] == "s"
    share = next(p for p in panels(overview) if p["title"].startswith("Probes with TTFT over"))
    assert f'le="{DEFAULT_TTFT_THRESHOLD!r}"' in share["targets"][0]["expr"]
    assert share["fieldConfig"]["defaults"]["unit"] == "percentunit"


def test_error_budget_panels_read_the_objectives_from_the_slo_rules(generator):
    overview = committed()["sse-monitor-overview.json"]
    left = next(p for p in panels(overview) if p["title"] == "Error budget left (30 days)")
    burn = next(p for p in panels(overview) if p["title"] == "Error budget burn rate (1 h)")
    for panel, window in ((left, "30d"), (burn, "1h")):
        (target,) = panel["targets"]
        assert f'target:sse_probe_sli:ratio_rate{window}{{target=~"$target"}}' in target["expr"]
        assert "sse:slo_error_budget:ratio" in target["expr"]  # never a number: the objectives live in the rules
        assert not re.search(r"0\.9[59]|0\.0[15]", target["expr"])
    assert left["fieldConfig"]["defaults"]["unit"] == "percentunit"
    assert {s["value"] for s in burn["fieldConfig"]["defaults"]["thresholds"]["steps"]} >= {generator.FAST_BURN, generator.SLOW_BURN}
    # the lines are the alerts' factors
    rules = yaml.safe_load((ROOT / "config/prometheus/rules/sse-monitor-slo.rules.yml").read_text())["groups"]
    factors = {float(f) for g in rules for r in g["rules"] if "alert" in r for f in re.findall(r"> ([\d.]+)\n", r["expr"])}
    assert factors == {generator.FAST_BURN, generator.SLOW_BURN}


def test_longest_silence_is_drawn_against_the_proxy_idle_timeout_and_its_half():
    target = committed()["sse-monitor-target.json"]
    panel = next(p for p in panels(target) if p["title"].startswith("Longest silence vs"))
    queries = [t["expr"] for t in panel["targets"]]
    idle = 'sse_probe_proxy_idle_timeout_seconds{target="$target"}'
    assert any("sse_probe_max_silence_seconds" in q for q in queries)
    assert idle in queries
    assert any(q in (f"{idle} * 0.5", f"{idle} / 2") for q in queries), queries
    assert panel["fieldConfig"]["defaults"]["unit"] == "s"


def test_every_value_panel_has_a_unit():
    for name, dash in committed().items():
        for panel in panels(dash):
            if panel["type"] in ("timeseries", "stat"):
                assert panel["fieldConfig"]["defaults"].get("unit"), f"{name}: {panel['title']} has no unit"
            if panel["type"] == "heatmap":
                assert panel["options"]["yAxis"].get("unit") == "s", f"{name}: {panel['title']}"


def test_links_lead_to_dashboards_that_exist():
    uids = {dash["uid"] for dash in committed().values()}
    assert len(uids) == len(committed())
    text = "".join(path.read_text() for path in DASHBOARDS.glob("*.json"))
    linked = set(re.findall(r"/d/([\w-]+)", text))
    assert linked and linked <= uids, f"links to unknown dashboards: {sorted(linked - uids)}"


# ---- all_queries(): the queries as Prometheus receives them -----------------------------------------------------


def test_all_queries_covers_every_panel_query_with_variables_replaced(generator):
    queries = generator.all_queries()
    panel_and_annotation = [e for e in all_exprs() if ": variable " not in e[0]]
    assert len(queries) == len(panel_and_annotation)
    for title, expr in queries:
        assert "$" not in expr, f"{title}: variable left in {expr!r}"
    assert any('target=~".+"' in expr for _, expr in queries)
    chosen = generator.all_queries({"target": "demo"})
    assert all('target="' not in expr for _, expr in chosen)
    assert any('target=~"demo"' in expr for _, expr in chosen)


@pytest.mark.integration
def test_every_query_is_valid_promql(generator, tmp_path):
    promtool = require_binary("promtool")
    rules = [{"record": f"dashboard:query_{i}", "expr": expr} for i, (_, expr) in enumerate(generator.all_queries())]
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---- Grafana provisioning ---------------------------------------------------------------------------------------


def test_provisioned_datasource_is_the_one_the_dashboards_select():
    config = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yaml").read_text())
    assert config["apiVersion"] == 1
    (source,) = config["datasources"]
    assert source["name"] == "Prometheus" and source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    for name, dash in committed().items():
        variable = next(v for v in dash["templating"]["list"] if v["name"] == "datasource")
        assert variable["current"]["value"] == source["uid"], name


def test_dashboard_provider_loads_json_files_from_a_folder():
    config = yaml.safe_load((PROVISIONING / "dashboards" / "sse-monitor.yaml").read_text())
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert Path(provider["options"]["path"]).is_absolute()
    assert provider["allowUiUpdates"] is False  # edits belong in dashboards/generate.py
