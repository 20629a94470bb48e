"""The per-target dashboard: one target's runs, timings, outcomes and alert conditions."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import stat, statetimeline, timeseries
from grafana_foundation_sdk.models import common as cm

from dashboards.panels import (
    EXEMPLARS_NOTE,
    HEALTHY,
    HEARTBEAT_SHARE,
    OUTCOME_COLORS,
    QUANTILE_MIN_INTERVAL,
    TARGET_UID,
    TTFT_SLO_P95,
    WARNINGS_HELP,
    bars,
    base_dashboard,
    bucket_heatmap,
    fixed_color,
    graph,
    legend,
    mapping,
    quantile,
    query,
    reference_line,
    resume_checks,
    silence_share,
    silence_steps,
    single_stat,
    skipped_and_lagged,
    states,
    target_variable,
    ttft_steps,
    with_exemplars,
    with_threshold_lines,
)

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
