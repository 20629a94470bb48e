"""Every Prometheus metric sse-monitor exports, declared once, and the one mapping from ProbeResult onto them."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from . import __version__
from .result import ALERTS, REASONS, WARNINGS, ProbeResult

# 1.5 s is the seeds' p95 SLO and 2.0 s the alert threshold: both must be bucket bounds.
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
GAP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
DURATION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 1200.0)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

OUTCOME_REASONS = tuple((outcome, reason) for outcome, reasons in REASONS.items() for reason in reasons)


class Metrics:
    """The exported series. Each configured target's series exist from the start, at zero."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry = registry if registry is not None else CollectorRegistry()
        t = ("target",)
        self.ttft = Histogram("sse_probe_ttft_seconds", "Time from request start to the first token event.", t, buckets=TTFT_BUCKETS, registry=registry)
        self.first_byte = Histogram("sse_probe_first_byte_seconds", "Time from request start to the first body byte.", t, buckets=TTFT_BUCKETS, registry=registry)
        self.gap = Histogram("sse_probe_inter_event_gap_seconds", "Gaps between consecutive token events.", t, buckets=GAP_BUCKETS, registry=registry)
        self.duration = Histogram("sse_probe_stream_duration_seconds", "Time from request start to the end of the stream.", t, buckets=DURATION_BUCKETS, registry=registry)
        self.runs = Counter("sse_probe_runs", "Finished probe runs by outcome and reason.", ("target", "outcome", "reason"), registry=registry)
        self.success = Gauge("sse_probe_success", "1 if the last finished run raised no alert condition, else 0.", t, registry=registry)
        self.last_run = Gauge("sse_probe_last_run_timestamp_seconds", "When the last run of the target finished (unix time).", t, registry=registry)
        self.last_ttft = Gauge("sse_probe_last_ttft_seconds", "TTFT of the last finished run; NaN when no token came.", t, registry=registry)
        self.max_silence = Gauge("sse_probe_max_silence_seconds", "Longest time without any byte in the last finished run.", t, registry=registry)
        self.warning = Gauge("sse_probe_warning", "1 if the last finished run raised this warning.", ("target", "warning"), registry=registry)
        self.alert = Gauge("sse_probe_alert_condition", "1 if the alert condition held for the last finished run.", ("target", "alertname"), registry=registry)
        self.threshold = Gauge("sse_probe_ttft_threshold_seconds", "The configured TTFT alert threshold.", t, registry=registry)
        self.interval = Gauge("sse_probe_interval_seconds", "The configured probe interval.", t, registry=registry)
        self.proxy_idle = Gauge("sse_probe_proxy_idle_timeout_seconds", "The configured idle timeout of the proxies on the path.", t, registry=registry)
        self.skipped = Counter("sse_monitor_skipped_runs", "Runs not started because the previous run of the target was still going.", t, registry=registry)
        self.lag = Histogram("sse_monitor_event_loop_lag_seconds", "How late the daemon's event loop woke up for a timer.", buckets=LAG_BUCKETS, registry=registry)
        self.lagged_probes = Counter("sse_monitor_lagged_probes", "Probes flagged because the event loop lagged while they ran.", t, registry=registry)
        self.reload_ok = Gauge("sse_monitor_config_last_reload_successful", "1 if the last configuration (re)load succeeded.", registry=registry)
        self.reload_time = Gauge("sse_monitor_config_last_reload_success_timestamp_seconds", "When the configuration was last loaded successfully.", registry=registry)
        self.targets = Gauge("sse_monitor_targets", "Configured targets.", registry=registry)
        self.in_flight = Gauge("sse_monitor_probes_in_flight", "Probes running now.", registry=registry)
        self.alertmanager_sends = Counter("sse_monitor_alertmanager_sends", "Pushes to Alertmanager by result.", ("alertmanager", "result"), registry=registry)
        self.alerts_firing = Gauge("sse_monitor_alerts_firing", "Alerts the daemon pushes as firing now.", registry=registry)
        Info("sse_monitor_build", "sse-monitor build information.", registry=registry).info({"version": __version__})

    # -- targets --------------------------------------------------------------------------------------------------

    def add_target(self, name: str, interval: float, ttft_threshold: float, proxy_idle_timeout: float) -> None:
        """Create every series of a new target at zero, so rules and dashboards see it before its first run."""
        for histogram in (self.ttft, self.first_byte, self.gap, self.duration):
            histogram.labels(name)
        for outcome, reason in OUTCOME_REASONS:
            self.runs.labels(name, outcome, reason)
        for warning in WARNINGS:
            self.warning.labels(name, warning).set(0)
        for alertname in ALERTS:
            self.alert.labels(name, alertname).set(0)
        self.skipped.labels(name)
        self.lagged_probes.labels(name)
        self.configure_target(name, interval, ttft_threshold, proxy_idle_timeout)
        # success, last run, last TTFT and max silence have no honest value before the first run: no series yet

    def configure_target(self, name: str, interval: float, ttft_threshold: float, proxy_idle_timeout: float) -> None:
        """The configuration gauges; a changed target keeps its last run's results (a reload never resolves a page)."""
        self.threshold.labels(name).set(ttft_threshold)
        self.interval.labels(name).set(interval)
        self.proxy_idle.labels(name).set(proxy_idle_timeout)

    def remove_target(self, name: str) -> None:

        single = (self.ttft, self.first_byte, self.gap, self.duration, self.success, self.last_run, self.last_ttft,
                  self.max_silence, self.threshold, self.interval, self.proxy_idle, self.skipped, self.lagged_probes)
        for metric in single:
            _remove(metric, name)
        for outcome, reason in OUTCOME_REASONS:
            _remove(self.runs, name, outcome, reason)
        for warning in WARNINGS:
            _remove(self.warning, name, warning)
        for alertname in ALERTS:
            _remove(self.alert, name, alertname)

    # -- results --------------------------------------------------------------------------------------------------

    def observe(self, target: str, result: ProbeResult) -> None:
        """Record one finished probe."""

        if result.ttft_seconds is not None:
            self.ttft.labels(target).observe(result.ttft_seconds)
        if result.first_byte_seconds is not None:
            self.first_byte.labels(target).observe(result.first_byte_seconds)
        gap = self.gap.labels(target)
        for value in result.token_gaps():
            gap.observe(value)
        self.duration.labels(target).observe(result.duration_seconds)
        self.runs.labels(target, result.outcome, result.reason).inc()
        self.success.labels(target).set(0 if result.alerts else 1)
        self.last_run.labels(target).set(result.started_at + result.duration_seconds)
        self.last_ttft.labels(target).set(math.nan if result.ttft_seconds is None else result.ttft_seconds)
        self.max_silence.labels(target).set(result.max_silence_seconds or 0.0)
        for warning in WARNINGS:
            self.warning.labels(target, warning).set(1 if warning in result.warnings else 0)
        for alertname in ALERTS:
            self.alert.labels(target, alertname).set(1 if alertname in result.alerts else 0)


def _remove(metric, *labels: str) -> None:
    try:
        metric.remove(*labels)
    except KeyError:
        pass
