"""The dashboards' shared parts: thresholds from the rules and defaults, query helpers, panel builders, shared panels."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import heatmap, prometheus, stat, statetimeline, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import heatmap as hm
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from monitor.result import DEFAULT_TTFT_THRESHOLD

OVERVIEW_UID = "sse-monitor-overview"
TARGET_UID = "sse-monitor-target"
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



# ---- panels both dashboards show ----------------------------------------------------------------------------------

EXEMPLARS_NOTE = ("Dots: exemplars, one per run (Prometheus with --enable-feature=exemplar-storage); a dot's `run` "
                  "links to that run's timeline and TTFT breakdown on the daemon ($monitor).")


def resume_checks(selector: str, by: str, legend_format: str) -> timeseries.Panel:
    """Resumption checks per window by outcome, each outcome in its colour."""
    expr = f"sum by ({by}) (increase(sse_probe_resume_total{{{selector}}}[$__rate_interval])) > 0"
    panel = bars("Resumption checks", RESUME_HELP, query(expr, legend_format))
    for outcome, color in RESUME_COLORS.items():
        panel = panel.override_by_regexp(f"(.*: )?{outcome}", [fixed_color(color)])
    return panel



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
