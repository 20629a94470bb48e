"""Builds sse-monitor's Grafana dashboards from code; the JSON files beside this script are its committed output.

    python dashboards/generate.py          rewrite dashboards/*.json
    python dashboards/generate.py --check  exit 1 if a committed file differs from what this script builds

Every query here reads only metrics that monitor/metrics.py exports (tests/test_dashboards.py proves it).
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import (
    bargauge,
    heatmap,
    prometheus,
    stat,
    statetimeline,
    table,
    timeseries,
)
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import heatmap as hm
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

HERE = Path(__file__).resolve().parent
if __name__ == "__main__":  # run as a script: make the project importable from a plain checkout too
    sys.path.insert(0, str(HERE.parent))

from monitor.chaincheck import LATE as CHAIN_LATE
from monitor.daemon import LAG_BOUND_SECONDS
from monitor.result import DEFAULT_TTFT_THRESHOLD

# The generated JSON depends on the SDK's defaults: the committed files are built with exactly this release
# (its Grafana 11.6 schema). Other releases (the versions carry an epoch, so ">=" would pick older schemas) differ.
SDK_VERSION = "1769699379!11.6.0"

OVERVIEW_UID = "sse-monitor-overview"
TARGET_UID = "sse-monitor-target"
FILES = {OVERVIEW_UID: HERE / "sse-monitor-overview.json", TARGET_UID: HERE / "sse-monitor-target.json"}
TAG = "sse-monitor"
MONITOR_URL = "http://localhost:9108"  # where docker-compose.yml publishes the daemon

# The seeds' numbers: TTFT p95 under 1.5 s is the SLO, a first token after 2 s alerts. Proxies drop a stream after
# their idle timeout (60 s by default: nginx proxy_read_timeout, AWS ALB; each target configures its own), and
# heartbeats must come at least every half of it.
TTFT_SLO_P95 = 1.5
TTFT_ALERT = DEFAULT_TTFT_THRESHOLD
HEARTBEAT_SHARE = 0.5
# The SLOs' burn-rate alerts (config/prometheus/rules/sse-monitor-slo.rules.yml): page above 14.4 times the budget
# rate over 1 h (and 5 m), ticket above 6 over 6 h (and 30 m). The objectives themselves are not repeated here: the
# panels read them from the rules' series sse:slo_objective:ratio / sse:slo_error_budget:ratio.
FAST_BURN = 14.4
SLOW_BURN = 6
# Probes run once per interval (60 s by default): a window holding fewer than a handful of runs is noise.
QUANTILE_MIN_INTERVAL = "5m"

DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
DASHED = cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED)
GRAFANA_DS = dm.DataSourceRef(type_val="grafana", uid="-- Grafana --")

OUTCOME_COLORS = {"completed": "green", "ended_early": "orange", "failed": "red"}
# the resumption check's outcomes (monitor/result.py RESUME_OUTCOMES): only `resumed` is right
RESUME_COLORS = {"resumed": "green", "refused": "red", "restarted": "orange", "gap": "orange", "duplicate": "orange",
                 "no_ids": "purple"}
RESUME_HELP = (
    "Resumption checks (targets with `resume:` configured): after some token events the probe drops the connection "
    "and reconnects with the last event id, as a client does when a proxy cuts its stream. resumed: the stream "
    "continued right after that id; refused: the reconnect got no stream; restarted: from the first event again; "
    "gap: events skipped; duplicate: events sent twice; no_ids: no event ids to resume from. Anything but resumed "
    "raises SSEProbeResumeBroken (a ticket). No data: no target has a resumption check."
)

WARNINGS_HELP = (
    "Warnings the last finished run raised, per target (only raised ones are drawn).\n\n"
    "- **buffering_suspected**: the body arrived in a few large bursts: a proxy buffers the stream "
    "(nginx `proxy_buffering off`, `X-Accel-Buffering: no`).\n"
    "- **compressed_stream**: `Content-Encoding` on the event stream: gzip holds events back (`gzip off`).\n"
    "- **content_length_on_stream**: a streamed response carried `Content-Length`.\n"
    "- **content_type_not_event_stream**: the response was not `text/event-stream`.\n"
    "- **event_loop_lag**: the first token arrived while nothing in sse-monitor could read (kernel clock), or its "
    "event loop was late while the probe ran (user clock): its TTFT is discounted.\n"
    "- **stream_throttled**: the stream kept sse-monitor busy; its reading was paused (TCP back-pressure) so the "
    "other targets' timings stay exact.\n"
    "- **resume_not_checked**: the target has a resumption check, but the stream ended properly before the token "
    "event after which the connection is dropped (`resume.after_events` too high for this stream)."
)


# ---- small builders ---------------------------------------------------------------------------------------------


def le(bound: float) -> str:
    """A bucket bound as the `le` label value the Python client exports (2.0 -> "2.0")."""
    return repr(float(bound))


def query(expr: str, legend: str = "", ref: str = "A", *, instant: bool = False, fmt: PromQueryFormat | None = None) -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DS)
    if legend:
        q = q.legend_format(legend)
    if instant:
        q = q.instant()
    if fmt is not None:
        q = q.format(fmt)
    return q


def quantile(q: float, metric: str, selector: str, by: str = "le") -> str:
    return f"histogram_quantile({q}, sum by ({by}) (rate({metric}_bucket{{{selector}}}[$__rate_interval])))"


def steps(*pairs: tuple[float | None, str]) -> db.ThresholdsConfig:
    return db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps([dm.Threshold(value, color) for value, color in pairs])


def mapping(values: dict[str, tuple[str, str]], nan: tuple[str, str] | None = None) -> list[dm.ValueMapping]:
    """Value -> (text, color) mappings, optionally one for NaN."""
    out: list[dm.ValueMapping] = []
    if values:
        out.append(dm.ValueMap({k: dm.ValueMappingResult(text=t, color=c, index=i) for i, (k, (t, c)) in enumerate(values.items())}))
    if nan is not None:
        result = dm.ValueMappingResult(text=nan[0], color=nan[1], index=len(values))
        out.append(dm.SpecialValueMap(dm.DashboardSpecialValueMapOptions(match=dm.SpecialValueMatch.NA_N, result=result)))
    return out


HEALTHY = mapping({"1": ("healthy", "green"), "0": ("alert condition", "red")})


def prop(name: str, value: object) -> dm.DynamicConfigValue:
    """One field property of an override."""
    return dm.DynamicConfigValue(id_val=name, value=value)


def fixed_color(color: str) -> dm.DynamicConfigValue:
    return prop("color", {"mode": "fixed", "fixedColor": color})


def reference_line(color: str | None = None) -> list[dm.DynamicConfigValue]:
    """Override properties that draw a series as a dashed, unfilled reference line."""
    dashed = [prop("custom.lineStyle", {"fill": "dash", "dash": [10, 10]}), prop("custom.fillOpacity", 0)]
    return ([fixed_color(color)] if color else []) + dashed


def drill_down_url(target: str) -> str:
    """The per-target dashboard for `target` (a Grafana link template), same datasource and time range."""
    return f"/d/{TARGET_UID}?var-datasource=${{datasource}}&var-target={target}&${{__url_time_range}}"


def drill_down_link() -> db.DashboardLink:
    """A data link from a series labelled with a target to that target's dashboard."""
    return db.DashboardLink("Open ${__field.labels.target}").url(drill_down_url("${__field.labels.target}"))


def ttft_steps() -> db.ThresholdsConfig:
    return steps((None, "green"), (TTFT_SLO_P95, "yellow"), (TTFT_ALERT, "red"))


def legend(*calcs: str) -> cb.VizLegendOptions:
    mode = cm.LegendDisplayMode.TABLE if calcs else cm.LegendDisplayMode.LIST
    return cb.VizLegendOptions().display_mode(mode).placement(cm.LegendPlacement.BOTTOM).show_legend(True).calcs(list(calcs))


def graph(title: str, description: str, unit: str, *queries: prometheus.Dataquery) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .targets(list(queries))
        .line_width(1)
        .fill_opacity(10)
        .show_points(cm.VisibilityMode.NEVER)
        .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING))
        .legend(legend())
    )


def bars(title: str, description: str, *queries: prometheus.Dataquery) -> timeseries.Panel:
    """Stacked bars of run counts per window."""
    return (
        graph(title, description, "short", *queries)
        .draw_style(cm.GraphDrawStyle.BARS)
        .fill_opacity(80)
        .stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL))
        .min(0)
        .decimals(0)
    )


def with_threshold_lines(panel: timeseries.Panel, *pairs: tuple[float | None, str]) -> timeseries.Panel:
    """Thresholds drawn as dashed lines across the graph."""
    return panel.thresholds(steps(*pairs)).thresholds_style(DASHED)


def single_stat(title: str, description: str, unit: str, q: prometheus.Dataquery) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .with_target(q)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .text_mode(cm.BigValueTextMode.AUTO)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .height(4)
        .span(4)
    )


def states(title: str, description: str, q: prometheus.Dataquery, mappings: list[dm.ValueMapping]) -> statetimeline.Panel:
    return (
        statetimeline.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .with_target(q)
        .mappings(mappings)
        .show_value(cm.VisibilityMode.NEVER)
        .merge_values(True)
        .row_height(0.8)
        .fill_opacity(80)
        .line_width(0)
        .legend(cb.VizLegendOptions().show_legend(False).display_mode(cm.LegendDisplayMode.LIST).placement(cm.LegendPlacement.BOTTOM))
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.FIXED).fixed_color("transparent"))
    )


def bucket_heatmap(title: str, description: str, metric: str, selector: str) -> heatmap.Panel:
    """A histogram's buckets over time: each cell counts the probes (or gaps) that fell in it per window."""
    expr = f"sum by (le) (increase({metric}_bucket{{{selector}}}[$__rate_interval]))"
    return (
        heatmap.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .with_target(query(expr, "{{le}}", fmt=PromQueryFormat.HEATMAP))
        .calculate(False)
        .y_axis(heatmap.YAxisConfig().unit("s").axis_placement(cm.AxisPlacement.LEFT))
        .cell_values(heatmap.CellValues().unit("short").decimals(0))
        .color(heatmap.HeatmapColorOptions().mode(hm.HeatmapColorMode.SCHEME).scheme("Oranges").fill("dark-orange").scale(hm.HeatmapColorScale.EXPONENTIAL).exponent(0.5).steps(64))
        .filter_values(heatmap.FilterValueRange().le(1e-9))
        .show_legend()
        .mode(cm.TooltipDisplayMode.SINGLE)
        .show_y_histogram()
    )


def monitor_variable() -> db.TextBoxVariable:
    """The sse-monitor daemon's base URL as the browser reaches it: where an exemplar's run page lives."""
    return (
        db.TextBoxVariable("monitor")
        .label("sse-monitor URL")
        .description("The daemon's base URL as your browser reaches it (docker compose: " + MONITOR_URL + "): "
                     "exemplars on the TTFT graphs link to its page of the run they name")
        .default_value(MONITOR_URL)
        .current(dm.VariableOption(text=MONITOR_URL, value=MONITOR_URL))
    )


def run_link() -> list[dm.DynamicConfigValue]:
    """Override properties of an exemplar's `run` field: a link to that run's page (timeline, breakdown) on the
    daemon. Exemplars carry `target` and `run` (monitor/metrics.py); Grafana shows them on hover."""
    url = "${monitor}/targets/${__data.fields.target}?run=${__value.raw}"
    return [prop("links", [{"title": "Run ${__value.raw} of ${__data.fields.target}: timeline", "url": url,
                            "targetBlank": True}])]


def with_exemplars(panel: timeseries.Panel) -> timeseries.Panel:
    """Exemplars (one dot per run) on the panel's TTFT quantiles, each dot linking to its run."""
    return panel.override_by_name("run", run_link())


def datasource_variable() -> db.DatasourceVariable:
    return db.DatasourceVariable("datasource").label("Data source").type("prometheus").current(dm.VariableOption(text="Prometheus", value="prometheus"))


def target_variable(*, multi: bool) -> db.QueryVariable:
    variable = (
        db.QueryVariable("target")
        .label("Target")
        .datasource(DS)
        .query("label_values(sse_probe_runs_total, target)")
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(multi)
        .include_all(multi)
    )
    if multi:
        # ".*" rather than a list of names: also keeps series without a target label, e.g. daemon-wide alerts
        variable = variable.all_value(".*").current(dm.VariableOption(text=["All"], value=["$__all"]))
    return variable


def job_variable() -> db.QueryVariable:
    return (
        db.QueryVariable("job")
        .label("Daemon job")
        .description("Prometheus scrape jobs that scrape an sse-monitor daemon")
        .datasource(DS)
        .query("label_values(sse_monitor_build_info, job)")
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dm.VariableOption(text=["All"], value=["$__all"]))
    )


def base_dashboard(uid: str, title: str, description: str) -> db.Dashboard:
    return (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG])
        .editable()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .time("now-3h", "now")
        .refresh("1m")
        .timezone("browser")
        .link(db.DashboardLink("sse-monitor").type(dm.DashboardLinkType.DASHBOARDS).tags([TAG]).as_dropdown(False).include_vars(True).keep_time(True))
        .annotation(
            db.AnnotationQuery()
            .name("Annotations & Alerts")
            .datasource(GRAFANA_DS)
            .enable(True)
            .hide(True)
            .icon_color("rgba(0, 211, 255, 1)")
            .type("dashboard")
            .built_in(1)
        )
        .annotation(
            db.AnnotationQuery()
            .name("Config loads")
            .datasource(DS)
            .enable(True)
            .hide(False)
            .icon_color("blue")
            .expr("changes(sse_monitor_config_last_reload_success_timestamp_seconds[$__rate_interval]) > 0")
        )
        .with_variable(datasource_variable())
        .with_variable(monitor_variable())
    )


def silence_share(selector: str) -> str:
    """The last run's longest silence as a share of the target's proxy idle timeout (1 = the proxy hangs up)."""
    return f"max by (target) (sse_probe_max_silence_seconds{{{selector}}} / sse_probe_proxy_idle_timeout_seconds{{{selector}}})"


def silence_steps() -> db.ThresholdsConfig:
    return steps((None, "green"), (HEARTBEAT_SHARE, "yellow"), (1.0, "red"))


# ---- overview -----------------------------------------------------------------------------------------------------

T = 'target=~"$target"'
J = 'job=~"$job"'


def targets_table() -> table.Panel:
    runs = "sse_probe_runs_total"
    colored = prop("custom.cellOptions", {"type": "color-background", "mode": "basic"})
    ttft = [prop("unit", "s"), prop("thresholds", ttft_steps().build()), colored]
    columns = [  # header, instant query, field properties
        ("Last TTFT", f"max by (target) (sse_probe_last_ttft_seconds{{{T}}})", [*ttft, prop("mappings", mapping({}, nan=("no token", "red")))]),
        ("Last run", f"max by (target) (sse_probe_success{{{T}}})", [prop("mappings", HEALTHY), colored]),
        ("Finished", f"max by (target) (sse_probe_last_run_timestamp_seconds{{{T}}}) * 1000", [prop("unit", "dateTimeFromNow")]),
        ("TTFT p95 (range)", f"histogram_quantile(0.95, sum by (target, le) (increase(sse_probe_ttft_seconds_bucket{{{T}}}[$__range])))", ttft),
        (
            "Completed (range)",
            f'sum by (target) (increase({runs}{{{T}, outcome="completed"}}[$__range])) / sum by (target) (increase({runs}{{{T}}}[$__range]))',
            [prop("unit", "percentunit"), prop("decimals", 1)],
        ),
        ("Longest silence / idle timeout", silence_share(T), [prop("unit", "percentunit"), prop("thresholds", silence_steps().build()), colored]),
    ]
    refs = [chr(ord("A") + i) for i in range(len(columns))]
    headers = {f"Value #{ref}": header for ref, (header, _, _) in zip(refs, columns)}
    organize = {
        "excludeByName": {"Time": True},
        "indexByName": {"target": 0, **{name: i + 1 for i, name in enumerate(headers)}},
        "renameByName": {"target": "Target", **headers},
    }
    link = {"title": "Open ${__value.text}", "url": drill_down_url("${__value.text}")}
    panel = (
        table.Panel()
        .title("Targets")
        .description("One row per target: its last finished run and the selected time range. Click a target for its drill-down dashboard.")
        .datasource(DS)
        .targets([query(expr, ref=ref, instant=True, fmt=PromQueryFormat.TABLE) for ref, (_, expr, _) in zip(refs, columns)])
        .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(dm.DataTransformerConfig(id_val="organize", options=organize))
        .sort_by([cb.TableSortByFieldState().display_name("Target")])
        .cell_height(cm.TableCellHeight.SM)
        .override_by_name("Target", [prop("links", [link])])
    )
    for header, _, properties in columns:
        panel = panel.override_by_name(header, properties)
    return panel.height(8).span(24)


def burn_rate(window: str, selector: str) -> str:
    """How many times faster than the objective allows each target spends its error budgets (1 = in exactly 30 days)."""
    return f"(1 - target:sse_probe_sli:ratio_{window}{{{selector}}}) / on (slo) group_left () sse:slo_error_budget:ratio"


def error_budget_left() -> bargauge.Panel:
    expr = f"1 - {burn_rate('rate30d', T)}"
    return (
        bargauge.Panel()
        .title("Error budget left (30 days)")
        .description(
            "Per target and SLO, the share of the 30-day error budget not yet spent: 100 % = no probe missed the "
            "objective, 0 % = exactly as many misses as the objective allows, below 0 = the objective is missed. "
            "ttft: probes with a first token within 1.5 s; completed: probes that completed. The objectives and "
            "the recorded SLIs come from the Prometheus rules (sse-monitor-slo.rules.yml, sse:slo_objective:ratio); "
            "no data means those rules are not loaded. Prometheus keeps 15 days by default: with less data, this "
            "is the budget over what is kept."
        )
        .datasource(DS)
        .with_target(query(expr, "{{target}} {{slo}}", instant=True))
        .unit("percentunit")
        .decimals(1)
        .min(0)
        .max(1)
        .thresholds(steps((None, "red"), (0, "orange"), (0.25, "green")))
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .orientation(cm.VizOrientation.HORIZONTAL)
        .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
        .height(8)
        .span(8)
    )


def burn_rates() -> timeseries.Panel:
    panel = graph(
        "Error budget burn rate (1 h)",
        "Per target and SLO: the share of probes that missed the objective over the last hour, divided by the "
        f"share the objective allows. 1 spends the budget in exactly 30 days. Dashed: {SLOW_BURN:g} (yellow; the "
        f"ticket fires above it over 6 h and 30 m) and {FAST_BURN:g} (red; the page fires above it over 1 h and 5 m). "
        "A gap: no probe in the window, or for ttft, no probe that got a token.",
        "suffix:×",
        query(burn_rate("rate1h", T), "{{target}} {{slo}}"),
    )
    panel = with_threshold_lines(panel, (None, "green"), (SLOW_BURN, "yellow"), (FAST_BURN, "red"))
    return panel.min(0).legend(legend("mean", "max", "lastNotNull")).data_links([drill_down_link()]).height(8).span(16)


EXEMPLARS_NOTE = ("Dots: exemplars, one per run (Prometheus with --enable-feature=exemplar-storage); a dot's `run` "
                  "links to that run's timeline and TTFT breakdown on the daemon ($monitor).")


def ttft_quantiles_overview() -> timeseries.Panel:
    queries = [
        query(quantile(q, "sse_probe_ttft_seconds", T, by="target, le"), f"{{{{target}}}} p{int(q * 100)}", ref)
        for q, ref in ((0.5, "A"), (0.95, "B"), (0.99, "C"))
    ]
    queries[1] = queries[1].exemplar(True)  # one dot per run, once: on the p95
    panel = graph(
        "TTFT p50 / p95 / p99 per target",
        f"Time from request start to the first token, by target. Dashed lines: the {TTFT_SLO_P95:g} s p95 SLO (yellow) "
        f"and the {TTFT_ALERT:g} s alert threshold (red). Both are histogram bucket bounds, so the lines are exact; "
        "between bounds the quantiles are interpolated. Windows are at least " + QUANTILE_MIN_INTERVAL + " (a handful of runs). "
        + EXEMPLARS_NOTE,
        "s",
        *queries,
    )
    panel = with_exemplars(panel.thresholds(ttft_steps()).thresholds_style(DASHED))
    return panel.interval(QUANTILE_MIN_INTERVAL).min(0).legend(legend("mean", "max", "lastNotNull")).data_links([drill_down_link()]).height(10).span(16)


def share_over_alert() -> timeseries.Panel:
    ttft = "sse_probe_ttft_seconds"
    expr = (
        f'1 - (sum by (target) (rate({ttft}_bucket{{{T}, le="{le(TTFT_ALERT)}"}}[$__rate_interval]))'
        f" / sum by (target) (rate({ttft}_count{{{T}}}[$__rate_interval])))"
    )
    panel = graph(
        f"Probes with TTFT over {TTFT_ALERT:g} s",
        f"Share of runs whose first token came after {TTFT_ALERT:g} s (runs with no token at all are not counted here: "
        "see the outcomes). Above the dashed 5 % line the p95 itself is over the alert threshold.",
        "percentunit",
        query(expr, "{{target}}"),
    )
    panel = with_threshold_lines(panel, (None, "green"), (0.05, "red"))
    return panel.interval(QUANTILE_MIN_INTERVAL).min(0).max(1).data_links([drill_down_link()]).height(10).span(8)


def outcomes_overview() -> timeseries.Panel:
    expr = f"sum by (outcome) (increase(sse_probe_runs_total{{{T}}}[$__rate_interval]))"
    panel = bars(
        "Probe outcomes",
        "Finished runs of the selected targets per window: completed, ended_early (the stream stopped before its "
        "end: cut, idle, error event, too short) or failed (no usable stream at all).",
        query(expr, "{{outcome}}"),
    )
    for outcome, color in OUTCOME_COLORS.items():
        panel = panel.override_by_name(outcome, [fixed_color(color)])
    return panel.height(9).span(8)


def reasons(outcome: str, title: str, description: str) -> timeseries.Panel:
    expr = f'sum by (target, reason) (increase(sse_probe_runs_total{{{T}, outcome="{outcome}"}}[$__rate_interval])) > 0'
    return bars(title, description, query(expr, "{{target}}: {{reason}}")).data_links([drill_down_link()]).height(9).span(8)


def resume_checks(selector: str, by: str, legend_format: str) -> timeseries.Panel:
    """Resumption checks per window by outcome, each outcome in its colour."""
    expr = f"sum by ({by}) (increase(sse_probe_resume_total{{{selector}}}[$__rate_interval])) > 0"
    panel = bars("Resumption checks", RESUME_HELP, query(expr, legend_format))
    for outcome, color in RESUME_COLORS.items():
        panel = panel.override_by_regexp(f"(.*: )?{outcome}", [fixed_color(color)])
    return panel


def warnings_overview() -> statetimeline.Panel:
    expr = f"max by (target, warning) (sse_probe_warning{{{T}}}) > 0"
    return states("Warnings", WARNINGS_HELP, query(expr, "{{target}}: {{warning}}"), mapping({"1": ("raised", "orange")})).height(8).span(8)


def alert_conditions_overview() -> statetimeline.Panel:
    expr = f"max by (target, alertname) (sse_probe_alert_condition{{{T}}}) > 0"
    return states(
        "Alert conditions (last run)",
        "The alert conditions the daemon saw in each target's last finished run, before any `for:` delay. "
        "SSEProbeTTFTHigh: first token after the target's threshold; SSEProbeStreamEndedEarly; SSEProbeFailed; "
        "SSEProbeResumeBroken (a ticket: the resumption check did not resume right after the last event id).",
        query(expr, "{{target}}: {{alertname}}"),
        mapping({"1": ("holds", "red")}),
    ).height(8).span(8)


def firing_alerts() -> statetimeline.Panel:
    alerts = 'ALERTS{alertname=~"SSE.*", alertstate="%s", ' + T + "}"
    expr = f"max by (alertname, target) ({alerts % 'firing'}) or max by (alertname, target) (0.5 * {alerts % 'pending'})"
    return states(
        "Prometheus alerts (SSE*)",
        "Alerts from Prometheus' rules whose name starts with SSE: pending (yellow) while their `for:` runs, then firing (red).",
        query(expr, "{{alertname}} {{target}}"),
        mapping({"1": ("firing", "red"), "0.5": ("pending", "yellow")}),
    ).height(8).span(8)


CHAIN_BY = "chain, region"  # one row per chain and region (SSE_MONITOR_REGION: one daemon per region checks its own)
# +Inf, as Grafana holds it (a value mapping matches String(value))
INF = "Infinity"
NOT_MEASURED = ("not measured", "text")  # NaN: the last check did not reach the canary


def chain_table() -> table.Panel:
    colored = prop("custom.cellOptions", {"type": "color-background", "mode": "basic"})
    text = prop("custom.cellOptions", {"type": "color-text"})

    def worst(fn: str, metric: str) -> str:
        return f"{fn} by ({CHAIN_BY}) ({metric}{{{J}}})"

    columns = [  # header, instant query, field properties
        (
            "Verdict",
            f"min by ({CHAIN_BY}) (sse_chain_check_ok{{{J}}} + sse_chain_canary_reachable{{{J}}})",
            [prop("mappings", mapping({"2": ("passes", "green"), "1": ("fails", "red"), "0": ("canary not reached", "red")})), colored],
        ),
        ("Idle timeout", worst("min", "sse_chain_idle_timeout_seconds"),
         [prop("unit", "s"), prop("mappings", mapping({INF: ("none found", "green")}, nan=NOT_MEASURED))]),
        ("2× expected stream", f"2 * {worst('max', 'sse_chain_expected_duration_seconds')}", [prop("unit", "s")]),
        ("Buffered", worst("max", "sse_chain_buffered_bytes"),
         [prop("unit", "bytes"), prop("thresholds", steps((None, "green"), (1, "red")).build()),
          prop("mappings", mapping({}, nan=NOT_MEASURED)), text]),
        ("Compressed", worst("max", "sse_chain_compressed"),
         [prop("mappings", mapping({"0": ("no", "green"), "1": ("yes", "red")}, nan=NOT_MEASURED)), text]),
        ("Heartbeat delay (p90)", worst("max", "sse_chain_heartbeat_delay_seconds"),
         [prop("unit", "s"), prop("thresholds", steps((None, "green"), (CHAIN_LATE, "red")).build()),
          prop("mappings", mapping({INF: ("none came through", "red")}, nan=NOT_MEASURED)), text]),
        ("Length cap", worst("min", "sse_chain_stream_length_cap_seconds"),
         [prop("unit", "s"), prop("mappings", mapping({INF: ("none found", "green")}, nan=NOT_MEASURED))]),
        ("Checked", f"{worst('max', 'sse_chain_check_last_run_timestamp_seconds')} * 1000", [prop("unit", "dateTimeFromNow")]),
    ]
    refs = [chr(ord("A") + i) for i in range(len(columns))]
    headers = {f"Value #{ref}": header for ref, (header, _, _) in zip(refs, columns)}
    organize = {
        "excludeByName": {"Time": True},
        "indexByName": {"chain": 0, "region": 1, **{name: i + 2 for i, name in enumerate(headers)}},
        "renameByName": {"chain": "Chain", "region": "Region", **headers},
    }
    panel = (
        table.Panel()
        .title("Chain checks")
        .description(
            "One row per chain (`chain_checks:`; and region): what its last chain check found through the proxy chain "
            "in front of the `sse-monitor canary`. Verdict: passes, fails (a check of the checklist failed: see "
            "Chain checklist; raises SSEChainCheckFailed) or canary not reached (nothing measured). Idle timeout: "
            "the shortest silence the chain cuts, to compare with twice the longest expected stream "
            "(`expected_duration`): below it, SSEChainIdleTimeoutTooShort fires; \"none found\": no silence up to "
            "`max_idle` was cut. Buffered: the most bytes the chain held back at once (0: it streams). Compressed: "
            "a Content-Encoding added to the event stream. Heartbeat delay: how late comment lines came out, p90 "
            f"(red from {CHAIN_LATE * 1000:g} ms). Length cap: when a busy stream was cut (\"none found\": not within "
            "`max_duration`). Checked: when the last check finished (checks run every `interval`, daily by default). "
            "The whole report: the daemon's /api/v1/chain-checks. No data: no chain check configured."
        )
        .datasource(DS)
        .targets([query(expr, ref=ref, instant=True, fmt=PromQueryFormat.TABLE) for ref, (_, expr, _) in zip(refs, columns)])
        .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(dm.DataTransformerConfig(id_val="organize", options=organize))
        .sort_by([cb.TableSortByFieldState().display_name("Chain")])
        .cell_height(cm.TableCellHeight.SM)
    )
    for header, _, properties in columns:
        panel = panel.override_by_name(header, properties)
    return panel.height(6).span(24)


def chain_checklist() -> statetimeline.Panel:
    return (
        states(
            "Chain checklist",
            "Each check of the checklist in each chain's last chain check, over time: buffering (off), compression "
            "(none added), content_length (none on the stream), heartbeats (comment lines pass in real time), "
            "idle_timeout (at least twice `expected_duration`), heartbeat_interval (heartbeats pass, so an interval "
            "below half the timeout works), stream_length (no cap shorter than twice `expected_duration`); and "
            "whether the canary was reached at all. A blank row: inconclusive (e.g. `max_idle` stopped the idle "
            "timeout search short of twice `expected_duration`, or the canary was not reached). README, "
            "\"Measure the chain itself\", says what each trial does.",
            query(f"min by ({CHAIN_BY}, check) (sse_chain_check_passed{{{J}}})", "{{chain}}: {{check}} {{region}}", "A"),
            mapping({"1": ("pass", "green"), "0": ("FAIL", "red")}),
        )
        .with_target(query(f"min by ({CHAIN_BY}) (sse_chain_canary_reachable{{{J}}})", "{{chain}}: canary reached {{region}}", "B"))
        .height(9)
        .span(24)
    )


def daemon_stats() -> list[stat.Panel]:
    return [
        single_stat("Daemon up", "Prometheus' scrape of each sse-monitor daemon.", "none", query(f"up{{{J}}}", "{{instance}}"))
        .mappings(mapping({"1": ("up", "green"), "0": ("down", "red")})),
        single_stat(
            "Config reload",
            "Whether the last configuration (re)load succeeded. A failed reload keeps the previous configuration running.",
            "none",
            query(f"sse_monitor_config_last_reload_successful{{{J}}}", "{{instance}}"),
        ).mappings(mapping({"1": ("ok", "green"), "0": ("failed: old config kept", "red")})),
        single_stat(
            "Config loaded",
            "When the running configuration was loaded.",
            "dateTimeFromNow",
            query(f"sse_monitor_config_last_reload_success_timestamp_seconds{{{J}}} * 1000", "{{instance}}"),
        ).color_mode(cm.BigValueColorMode.NONE),
        single_stat(
            "Alerts pushed as firing",
            "Alerts the daemon itself pushes to Alertmanager as firing now (when alertmanager.urls is set).",
            "none",
            query(f"sse_monitor_alerts_firing{{{J}}}", "{{instance}}"),
        ).thresholds(steps((None, "green"), (1, "red"))),
    ]


def event_loop_lag() -> timeseries.Panel:
    metric = "sse_monitor_event_loop_lag_seconds"
    panel = graph(
        "Event-loop lag",
        "How late the daemon's event loop woke up for its timers. On the kernel clock (Linux) arrivals keep the "
        "kernel's receive stamps and a late loop does not move them; a probe timed on the user clock while the loop "
        f"was more than {LAG_BOUND_SECONDS * 1000:g} ms late (dashed line) is flagged (warning event_loop_lag, "
        "lagged runs) and its TTFT alert discounted.",
        "s",
        query(quantile(0.5, metric, J, by="instance, le"), "{{instance}} p50", "A"),
        query(quantile(0.99, metric, J, by="instance, le"), "{{instance}} p99", "B"),
    )
    return with_threshold_lines(panel, (None, "green"), (LAG_BOUND_SECONDS, "red")).min(0).height(8).span(8)


def in_flight() -> timeseries.Panel:
    return (
        graph(
            "Probes in flight",
            "Streams open now, against the number of configured targets. In flight near the target count means "
            "streams last about as long as the interval; runs may start being skipped.",
            "short",
            query(f"sse_monitor_probes_in_flight{{{J}}}", "{{instance}} in flight", "A"),
            query(f"sse_monitor_targets{{{J}}}", "{{instance}} targets", "B"),
        )
        .override_by_regexp(".* targets", reference_line())
        .min(0)
        .decimals(0)
        .height(8)
        .span(8)
    )


def skipped_and_lagged(selector: str) -> timeseries.Panel:
    return bars(
        "Skipped, lagged, waiting and user-clock runs",
        "Skipped: a run was due while the previous run of the target was still streaming (stream longer than the "
        "interval). Lagged: the run's TTFT is untrustworthy because the daemon could not read in time. Waited: the "
        "run waited for a slot under scheduler.max_concurrent. User clock: the run was timed without kernel "
        "receive timestamps. No data means none.",
        query(f"sum by (target) (increase(sse_monitor_skipped_runs_total{{{selector}}}[$__rate_interval])) > 0", "{{target}} skipped", "A"),
        query(f"sum by (target) (increase(sse_monitor_lagged_probes_total{{{selector}}}[$__rate_interval])) > 0", "{{target}} lagged", "B"),
        query(f"sum by (target) (increase(sse_monitor_probe_waits_total{{{selector}}}[$__rate_interval])) > 0", "{{target}} waited", "C"),
        query(f"sum by (target) (increase(sse_monitor_probes_user_clock_total{{{selector}}}[$__rate_interval])) > 0", "{{target}} user clock", "D"),
    ).height(8).span(8)


def alertmanager_pushes() -> timeseries.Panel:
    expr = f"sum by (alertmanager, result) (increase(sse_monitor_alertmanager_sends_total{{{J}}}[$__rate_interval]))"
    return (
        bars(
            "Alertmanager pushes",
            "The daemon's own pushes to each Alertmanager, by result. Failures mean alerts may not arrive: check the "
            "URL and the Alertmanager's health. No data: no direct push configured.",
            query(expr, "{{alertmanager}} {{result}}"),
        )
        .override_by_regexp(".* failure", [fixed_color("red")])
        .override_by_regexp(".* success", [fixed_color("green")])
        .height(8)
        .span(12)
    )


def overview() -> db.Dashboard:
    dash = (
        base_dashboard(
            OVERVIEW_UID,
            "sse-monitor / Overview",
            "Every monitored Server-Sent-Events endpoint: time to first token, outcomes, warnings, alerts, and the daemon's own health.",
        )
        .with_variable(target_variable(multi=True))
        .with_variable(job_variable())
        .with_panel(targets_table())
        .with_row(db.Row("SLOs and error budgets"))
        .with_panel(error_budget_left())
        .with_panel(burn_rates())
        .with_row(db.Row("Time to first token"))
        .with_panel(ttft_quantiles_overview())
        .with_panel(share_over_alert())
        .with_row(db.Row("Outcomes"))
        .with_panel(outcomes_overview())
        .with_panel(reasons("ended_early", "Early-end reasons", "Runs whose stream ended before its end, by target and reason. No data means none."))
        .with_panel(reasons("failed", "Failure reasons", "Runs that got no usable stream, by target and reason. No data means none."))
        .with_panel(resume_checks(T, "target, outcome", "{{target}}: {{outcome}}").data_links([drill_down_link()]).height(7).span(24))
        .with_row(db.Row("Warnings and alerts"))
        .with_panel(warnings_overview())
        .with_panel(alert_conditions_overview())
        .with_panel(firing_alerts())
        .with_row(db.Row("Proxy chain"))
        .with_panel(chain_table())
        .with_panel(chain_checklist())
        .with_row(db.Row("sse-monitor daemon"))
    )
    for panel in daemon_stats():
        dash = dash.with_panel(panel.span(6))
    return (
        dash.with_panel(event_loop_lag().span(12))
        .with_panel(in_flight().span(12))
        .with_panel(skipped_and_lagged(T).span(12))
        .with_panel(alertmanager_pushes())
    )


# ---- per target -------------------------------------------------------------------------------------------------

ONE = 'target="$target"'


def last_run_stats() -> list[stat.Panel]:
    return [
        single_stat("Last TTFT", "Time to first token of the last finished run; \"no token\" when none came.", "s",
                    query(f"sse_probe_last_ttft_seconds{{{ONE}}}"))
        .thresholds(ttft_steps())
        .mappings(mapping({}, nan=("no token", "red"))),
        single_stat("Last run", "Healthy when the last finished run raised no critical alert condition (SSEProbeResumeBroken is a ticket: see Alert conditions).", "none", query(f"sse_probe_success{{{ONE}}}"))
        .mappings(HEALTHY),
        single_stat("Finished", "When the last run ended.", "dateTimeFromNow", query(f"sse_probe_last_run_timestamp_seconds{{{ONE}}} * 1000"))
        .color_mode(cm.BigValueColorMode.NONE),
        single_stat("Longest silence", "Longest time without a byte in the last run.", "s", query(f"sse_probe_max_silence_seconds{{{ONE}}}"))
        .color_mode(cm.BigValueColorMode.NONE),
        single_stat(
            "Silence / idle timeout",
            f"The last run's longest silence as a share of the target's proxy idle timeout: from {HEARTBEAT_SHARE:.0%} "
            "heartbeats come too rarely (yellow), at 100 % the proxy hangs up (red).",
            "percentunit",
            query(silence_share(ONE)),
        ).thresholds(silence_steps()),
        single_stat("TTFT threshold", "The target's configured alert threshold.", "s", query(f"sse_probe_ttft_threshold_seconds{{{ONE}}}"))
        .color_mode(cm.BigValueColorMode.NONE),
        single_stat("Proxy idle timeout", "The target's configured proxy idle timeout (proxy_idle_timeout).", "s",
                    query(f"sse_probe_proxy_idle_timeout_seconds{{{ONE}}}"))
        .color_mode(cm.BigValueColorMode.NONE),
        single_stat("Interval", "Time between two runs of the target.", "s", query(f"sse_probe_interval_seconds{{{ONE}}}"))
        .color_mode(cm.BigValueColorMode.NONE),
    ]


def ttft_quantiles_target() -> timeseries.Panel:
    queries = [query(quantile(q, "sse_probe_ttft_seconds", ONE), f"p{int(q * 100)}", ref) for q, ref in ((0.5, "A"), (0.95, "B"), (0.99, "C"))]
    queries[1] = queries[1].exemplar(True)
    queries.append(query(f"sse_probe_ttft_threshold_seconds{{{ONE}}}", "alert threshold", "D"))
    panel = graph(
        "TTFT percentiles",
        f"Time to first token. Dashed yellow: the {TTFT_SLO_P95:g} s p95 SLO; red: the target's configured alert threshold. "
        + EXEMPLARS_NOTE,
        "s",
        *queries,
    )
    panel = with_exemplars(with_threshold_lines(panel, (None, "green"), (TTFT_SLO_P95, "yellow")))
    panel = panel.override_by_name("alert threshold", reference_line("red"))
    return panel.interval(QUANTILE_MIN_INTERVAL).min(0).legend(legend("mean", "max", "lastNotNull")).height(9).span(8)


def first_byte_vs_token() -> timeseries.Panel:
    return (
        graph(
            "First byte vs first token",
            "First body byte against first token event. First byte early but token late: the origin answers (or sends "
            "heartbeats) and the model is slow. Both late together: something holds the whole response back, e.g. a "
            "buffering proxy, or the origin is slow to answer at all.",
            "s",
            query(quantile(0.5, "sse_probe_first_byte_seconds", ONE), "first byte p50", "A"),
            query(quantile(0.5, "sse_probe_ttft_seconds", ONE), "first token p50", "B"),
            query(quantile(0.95, "sse_probe_first_byte_seconds", ONE), "first byte p95", "C"),
            query(quantile(0.95, "sse_probe_ttft_seconds", ONE), "first token p95", "D"),
        )
        .interval(QUANTILE_MIN_INTERVAL)
        .min(0)
        .legend(legend("mean", "max"))
        .height(9)
        .span(8)
    )


def stream_duration() -> timeseries.Panel:
    metric = "sse_probe_stream_duration_seconds"
    mean = f"sum(rate({metric}_sum{{{ONE}}}[$__rate_interval])) / sum(rate({metric}_count{{{ONE}}}[$__rate_interval]))"
    return (
        graph(
            "Stream duration",
            "Time from request start to the end of the stream, whatever ended it. A stream that ends sooner than usual "
            "was likely cut: compare with the outcomes.",
            "s",
            query(mean, "mean", "A"),
            query(quantile(0.95, metric, ONE), "p95", "B"),
        )
        .interval(QUANTILE_MIN_INTERVAL)
        .min(0)
        .height(9)
        .span(12)
    )


def longest_silence() -> timeseries.Panel:
    idle = f"sse_probe_proxy_idle_timeout_seconds{{{ONE}}}"
    return (
        graph(
            "Longest silence vs proxy idle timeout",
            "Longest time without any byte in each run, against the target's proxy idle timeout (red, 60 s unless "
            "configured: nginx proxy_read_timeout, AWS ALB) and half of it (yellow), the longest a stream may go "
            "without a heartbeat (an SSE comment). Near the red line, the stream dies behind such a proxy.",
            "s",
            query(f"max_over_time(sse_probe_max_silence_seconds{{{ONE}}}[$__rate_interval])", "longest silence", "A"),
            query(idle, "proxy idle timeout", "B"),
            query(f"{idle} * {HEARTBEAT_SHARE}", "heartbeat budget", "C"),
        )
        .override_by_name("proxy idle timeout", reference_line("red"))
        .override_by_name("heartbeat budget", reference_line("yellow"))
        .min(0)
        .height(9)
        .span(12)
    )


def outcomes_target() -> timeseries.Panel:
    expr = f"sum by (outcome, reason) (increase(sse_probe_runs_total{{{ONE}}}[$__rate_interval])) > 0"
    panel = bars("Outcomes", "Finished runs per window, by outcome and reason.", query(expr, "{{outcome}}: {{reason}}"))
    for outcome, color in OUTCOME_COLORS.items():
        panel = panel.override_by_regexp(f"{outcome}: .*", [fixed_color(color)])
    return panel.height(8).span(8)


def warnings_target() -> statetimeline.Panel:
    return states(
        "Warnings",
        WARNINGS_HELP.replace(", per target (only raised ones are drawn)", ""),
        query(f"sse_probe_warning{{{ONE}}}", "{{warning}}"),
        mapping({"0": ("no", "green"), "1": ("raised", "orange")}),
    ).height(8).span(8)


def alert_conditions_target() -> statetimeline.Panel:
    return states(
        "Alert conditions",
        "The alert conditions of each finished run, before any `for:` delay.",
        query(f"sse_probe_alert_condition{{{ONE}}}", "{{alertname}}"),
        mapping({"0": ("ok", "green"), "1": ("holds", "red")}),
    ).height(8).span(8)


def target() -> db.Dashboard:
    dash = (
        base_dashboard(
            TARGET_UID,
            "sse-monitor / Target",
            "One monitored endpoint in detail: last results, TTFT and gap distributions, stream duration, "
            "silences against proxy idle timeouts.",
        )
        .with_variable(target_variable(multi=False))
        .with_row(db.Row("Last run"))
    )
    for panel in last_run_stats():
        dash = dash.with_panel(panel.span(3))
    return (
        dash.with_panel(outcomes_target())
        .with_panel(alert_conditions_target())
        .with_panel(warnings_target())
        .with_row(db.Row("Time to first token"))
        .with_panel(bucket_heatmap(
            "TTFT distribution",
            "Time to first token: how many runs fell in each histogram bucket per window.",
            "sse_probe_ttft_seconds", ONE,
        ).height(9).span(8))
        .with_panel(ttft_quantiles_target())
        .with_panel(first_byte_vs_token())
        .with_row(db.Row("Stream"))
        .with_panel(bucket_heatmap(
            "Inter-event gap distribution",
            "Gaps between consecutive token events. Gaps that bunch near zero with rare long ones: the stream arrives "
            "in bursts, typically through a buffering proxy.",
            "sse_probe_inter_event_gap_seconds", ONE,
        ).height(9).span(12))
        .with_panel(longest_silence())
        .with_panel(stream_duration())
        .with_panel(skipped_and_lagged(ONE).height(9).span(12))
        .with_panel(resume_checks(ONE, "outcome", "{{outcome}}").height(9).span(12))
    )


# ---- output -----------------------------------------------------------------------------------------------------


def build(builder: Builder) -> dm.Dashboard:
    """The dashboard model, with panel ids numbered in order."""
    model = builder.build()
    for number, panel in enumerate(model.panels or [], start=1):
        panel.id_val = number
    return model


def render(builder: Builder) -> str:
    return JSONEncoder(sort_keys=True, indent=2).encode(build(builder)) + "\n"


def rendered() -> dict[Path, str]:
    """Each dashboard file and the text this script writes into it."""
    return {FILES[OVERVIEW_UID]: render(overview()), FILES[TARGET_UID]: render(target())}


def _panel_queries(panels: list[dm.Panel | dm.RowPanel]) -> list[tuple[str, str]]:
    out = []
    for panel in panels:
        out += _panel_queries(getattr(panel, "panels", None) or [])
        for q in getattr(panel, "targets", None) or []:
            out.append((panel.title or "", q.expr))
    return out


def all_queries(values: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query in both dashboards, annotations included, with Grafana's variables replaced.

    `values` maps a variable name to a regex (default ".+" for target and job); every matcher on a variable
    becomes a regex matcher on it. $__rate_interval and $__interval become 1m, $__range 1h.
    """
    values = {"target": ".+", "job": ".+", **(values or {})}
    out = []
    for builder in (overview(), target()):
        model = build(builder)
        out += _panel_queries(model.panels or [])
        for annotation in (model.annotations.list_val if model.annotations else None) or []:
            if annotation.expr:
                out.append((f"annotation: {annotation.name}", annotation.expr))
    return [(title, substitute(expr, values)) for title, expr in out]


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replace Grafana's variables in one expression: `values` for the dashboard's own, fixed windows for the rest."""
    for name, value in values.items():
        expr = re.sub(rf'(\w+)\s*=~?\s*"\$\{{?{name}\}}?"', lambda m, value=value: f'{m.group(1)}=~"{value}"', expr)
    for name, value in (("__rate_interval", "1m"), ("__interval", "1m"), ("__range", "1h")):
        expr = re.sub(rf"\$\{{?{name}\}}?", value, expr)
    return expr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed dashboard differs from the generated one")
    args = parser.parse_args(argv)
    installed = metadata.version("grafana-foundation-sdk")
    if installed != SDK_VERSION:
        print(f"grafana-foundation-sdk {installed} is installed; these dashboards are built with {SDK_VERSION}:\n"
              f"  pip install 'grafana-foundation-sdk=={SDK_VERSION}'", file=sys.stderr)
        return 2
    stale = []
    for path, text in rendered().items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(path.name)
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(HERE.parent)}")
    if stale:
        print(f"out of date: {', '.join(stale)}; run: python dashboards/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
