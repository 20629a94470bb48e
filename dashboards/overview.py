"""The overview dashboard: every target at a glance, the SLOs, the proxy chains and the daemon itself."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import bargauge, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from dashboards.panels import (
    DASHED,
    DS,
    EXEMPLARS_NOTE,
    FAST_BURN,
    HEALTHY,
    OUTCOME_COLORS,
    OVERVIEW_UID,
    QUANTILE_MIN_INTERVAL,
    SLOW_BURN,
    TTFT_ALERT,
    TTFT_SLO_P95,
    WARNINGS_HELP,
    bars,
    base_dashboard,
    drill_down_link,
    drill_down_url,
    fixed_color,
    graph,
    job_variable,
    le,
    legend,
    mapping,
    prop,
    quantile,
    query,
    reference_line,
    resume_checks,
    silence_share,
    silence_steps,
    single_stat,
    skipped_and_lagged,
    states,
    steps,
    target_variable,
    ttft_steps,
    with_exemplars,
    with_threshold_lines,
)
from monitor.chaincheck import LATE as CHAIN_LATE
from monitor.daemon import LAG_BOUND_SECONDS

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
            "timeout search short of twice `expected_duration`, or the canary was not reached). docs/proxy-chains.md "
            "says what each trial does.",
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
