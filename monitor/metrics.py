"""Every Prometheus metric sse-monitor exports, declared once, and the one mapping from ProbeResult onto them."""

from __future__ import annotations

import functools
import math
import re
import threading
import time
import typing
import weakref

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
    values,
)
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.utils import floatToGoString

from . import __version__
from .chaincheck import CHAIN_CHECKS
from .history import OPERATIONS as STORAGE_OPERATIONS
from .result import (
    ALERTS,
    CLOCK_USER,
    PAGES,
    REASONS,
    RESUME_OUTCOMES,
    RESUME_RESUMED,
    USAGE_KINDS,
    WARNINGS,
    ProbeResult,
)

# 1.5 s is the seeds' p95 SLO and 2.0 s the alert threshold: both must be bucket bounds.
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
GAP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
DURATION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 1200.0)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
# a slot under scheduler.max_concurrent: a few ms when streams end often, up to a whole stream's length when they don't
WAIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

OUTCOME_REASONS = tuple((outcome, reason) for outcome, reasons in REASONS.items() for reason in reasons)


# -- a target's series, compact ----------------------------------------------------------------------------------------
# Every configured target has 43 series from the start. prometheus_client makes each a full metric object (a dict of a
# dozen attributes) holding a value with a lock of its own per number: 0.6-0.7 KB a counter or gauge, 4.4 KB a
# histogram, ~43 KB a target, four fifths of what a configured target costs the daemon. A target's series are made
# here instead as slotted objects with the same attributes and prometheus_client's own methods (inc, set, observe and
# the samples a scrape reads), in the labelled metric's own table of children: generate_latest, the OpenMetrics writer,
# remove() and render() below read them as they read the library's, and the text is byte for byte the same
# (tests/test_metrics_render.py). Their values have no lock: only the event loop's thread writes a target's series,
# and a scrape's thread reads one float at a time.


class _Value:
    """One number of a series: values.MutexValue without its lock."""

    __slots__ = ("_exemplar", "_value")

    def __init__(self) -> None:
        self._value = 0.0
        self._exemplar: typing.Any = None

    def inc(self, amount: float) -> None:
        self._value += amount

    def set(self, value: float, timestamp: float | None = None) -> None:
        self._value = value

    def set_exemplar(self, exemplar: typing.Any) -> None:
        self._exemplar = exemplar

    def get(self) -> float:
        return self._value

    def get_exemplar(self) -> typing.Any:
        return self._exemplar


class _Series:
    """A labelled metric's child, as prometheus_client's own children answer a scrape."""

    __slots__ = ("_labelnames", "_labelvalues")
    _is_observable = prometheus_metrics.MetricWrapperBase._is_observable
    _raise_if_not_observable = prometheus_metrics.MetricWrapperBase._raise_if_not_observable

    def __init__(self, metric: typing.Any, labelvalues: tuple[str, ...]) -> None:
        self._labelnames = metric._labelnames  # the family's tuple, shared
        self._labelvalues = labelvalues


class _CounterSeries(_Series):
    __slots__ = ("_created", "_value")
    _type = "counter"
    inc = Counter.inc
    _child_samples = _samples = Counter._child_samples

    def __init__(self, metric: typing.Any, labelvalues: tuple[str, ...]) -> None:
        super().__init__(metric, labelvalues)
        self._value = _Value()
        self._created = time.time()


class _GaugeSeries(_Series):
    __slots__ = ("_value",)
    _type = "gauge"
    _is_most_recent = False
    inc, dec, set = Gauge.inc, Gauge.dec, Gauge.set
    _child_samples = _samples = Gauge._child_samples

    def __init__(self, metric: typing.Any, labelvalues: tuple[str, ...]) -> None:
        super().__init__(metric, labelvalues)
        self._value = _Value()


class _HistogramSeries(_Series):
    __slots__ = ("_buckets", "_created", "_sum", "_upper_bounds")
    _type = "histogram"
    observe = Histogram.observe
    _child_samples = _samples = Histogram._child_samples

    def __init__(self, metric: typing.Any, labelvalues: tuple[str, ...]) -> None:
        super().__init__(metric, labelvalues)
        self._upper_bounds = metric._upper_bounds  # the family's list, shared
        self._sum = _Value()
        self._buckets = [_Value() for _ in self._upper_bounds]
        self._created = time.time()


_COMPACT = {Counter: _CounterSeries, Gauge: _GaugeSeries, Histogram: _HistogramSeries}


def series(metric: typing.Any, *labelvalues: str) -> typing.Any:
    """`metric.labels(*labelvalues)`, made compact (above) when this prometheus_client keeps its children as this code
    knows it to (else the library's own child)."""
    compact = _COMPACT.get(type(metric))
    if compact is None or values.ValueClass is not values.MutexValue or len(labelvalues) != len(metric._labelnames):
        return metric.labels(*labelvalues)
    key = tuple(str(v) for v in labelvalues)
    with metric._lock:
        child = metric._metrics.get(key)
        if child is None:
            child = metric._metrics[key] = compact(metric, key)
    return child


class Metrics:
    """The exported series. Each configured target's series exist from the start, at zero."""

    def __init__(self, registry: CollectorRegistry | None = None, region: str | None = None) -> None:
        self.registry = registry = registry if registry is not None else CollectorRegistry()
        # with a region, every target's series carries it (fixed for the process: label names cannot change)
        self.region = region
        self._r: tuple[str, ...] = (region,) if region else ()
        t = ("target", "region") if region else ("target",)
        self.ttft = Histogram("sse_probe_ttft_seconds", "Time from request start to the first token event.", t, buckets=TTFT_BUCKETS, registry=registry)
        self.first_text = Histogram("sse_probe_first_text_seconds", "Time from request start to the first token of the visible answer (after any reasoning/thinking tokens, which TTFT counts).", t, buckets=TTFT_BUCKETS, registry=registry)
        self.first_byte = Histogram("sse_probe_first_byte_seconds", "Time from request start to the first body byte.", t, buckets=TTFT_BUCKETS, registry=registry)
        self.gap = Histogram("sse_probe_inter_event_gap_seconds", "Gaps between consecutive token events.", t, buckets=GAP_BUCKETS, registry=registry)
        self.duration = Histogram("sse_probe_stream_duration_seconds", "Time from request start to the end of the stream.", t, buckets=DURATION_BUCKETS, registry=registry)
        self.runs = Counter("sse_probe_runs", "Finished probe runs by outcome and reason.", (*t, "outcome", "reason"), registry=registry)
        self.success = Gauge("sse_probe_success", "1 if the last finished run raised no critical alert condition (a page), else 0.", t, registry=registry)
        self.last_run = Gauge("sse_probe_last_run_timestamp_seconds", "When the last run of the target finished (unix time).", t, registry=registry)
        self.last_ttft = Gauge("sse_probe_last_ttft_seconds", "TTFT of the last finished run; NaN when no token came.", t, registry=registry)
        self.max_silence = Gauge("sse_probe_max_silence_seconds", "Longest time without any byte in the last finished run.", t, registry=registry)
        self.warning = Gauge("sse_probe_warning", "1 if the last finished run raised this warning.", (*t, "warning"), registry=registry)
        self.alert = Gauge("sse_probe_alert_condition", "1 if the alert condition held for the last finished run.", (*t, "alertname"), registry=registry)
        # the resumption check: series only for targets that have one configured (resume:)
        self.resume_runs = Counter("sse_probe_resume", "Resumption checks by outcome: resumed, refused, restarted, gap, duplicate, no_ids.", (*t, "outcome"), registry=registry)
        self.resume_ok = Gauge("sse_probe_resume_ok", "1 if the last run's resumption check resumed right after the last event id, 0 if not; NaN when the run did not get to check.", t, registry=registry)
        self.threshold = Gauge("sse_probe_ttft_threshold_seconds", "The configured TTFT alert threshold.", t, registry=registry)
        self.interval = Gauge("sse_probe_interval_seconds", "The configured probe interval.", t, registry=registry)
        self.proxy_idle = Gauge("sse_probe_proxy_idle_timeout_seconds", "The configured idle timeout of the proxies on the path.", t, registry=registry)
        self.skipped = Counter("sse_monitor_skipped_runs", "Runs not started because the previous run of the target was still going.", t, registry=registry)
        self.lag = Histogram("sse_monitor_event_loop_lag_seconds", "How late the daemon's event loop woke up for a timer.", buckets=LAG_BUCKETS, registry=registry)
        self.lagged_probes = Counter("sse_monitor_lagged_probes", "Probes flagged because the event loop lagged while they ran.", t, registry=registry)
        self.probe_waits = Counter("sse_monitor_probe_waits", "Runs that had to wait for a free slot under scheduler.max_concurrent.", t, registry=registry)
        # no target label: the wait measures the monitor's capacity, not the target; the counter says who waited
        self.probe_wait = Histogram("sse_monitor_probe_wait_seconds", "Time from a run being due to its slot under scheduler.max_concurrent; 0 when one was free.", buckets=WAIT_BUCKETS, registry=registry)
        self._resume_targets: set[str] = set()
        # what the server reported of its own time (timing headers): a series per name the target's last run sent
        self.server_timing = Gauge("sse_probe_server_timing_seconds", "What the server reported of its own time in the last run's response headers (openai-processing-ms, Server-Timing, x-litellm-*, x-envoy-upstream-service-time, TGI's x-*-time), by header name.", (*t, "name"), registry=registry)
        self._timing_names: dict[str, set[str]] = {}
        # what probing costs: the tokens the streams reported, and their price where the target has one (price:)
        self.tokens = Counter("sse_probe_tokens", "Tokens the probe's streams reported using, by kind: input, output (reasoning included), reasoning.", (*t, "kind"), registry=registry)
        self.cost = Counter("sse_probe_cost", "What the reported tokens cost at the target's configured price, in the currency's units.", (*t, "currency"), registry=registry)
        self._currencies: dict[str, set[str]] = {}
        self._series: dict[str, _TargetSeries] = {}  # per target: the series every probe updates (observe)
        self.user_clock = Counter("sse_monitor_probes_user_clock", "Finished probes timed at least partly on the process's clock, without kernel receive timestamps.", t, registry=registry)
        self.reload_ok = Gauge("sse_monitor_config_last_reload_successful", "1 if the last configuration (re)load succeeded.", registry=registry)
        self.reload_time = Gauge("sse_monitor_config_last_reload_success_timestamp_seconds", "When the configuration was last loaded successfully.", registry=registry)
        self.targets = Gauge("sse_monitor_targets", "Configured targets.", registry=registry)
        self.in_flight = Gauge("sse_monitor_probes_in_flight", "Probes running now.", registry=registry)
        self.probe_requests = Counter("sse_monitor_probe_requests", "/probe requests by module and how they ended: success, failure (the probe ran; the stream raised an alert condition), denied (403), bad_request (400), overloaded (503).", ("module", "result"), registry=registry)
        self.alertmanager_sends = Counter("sse_monitor_alertmanager_sends", "Pushes to Alertmanager by result.", ("alertmanager", "result"), registry=registry)
        self.alerts_firing = Gauge("sse_monitor_alerts_firing", "Alerts the daemon pushes as firing now.", registry=registry)
        # run history (monitor/history.py): the file every finished run is written to
        self.storage_up = Gauge("sse_monitor_storage_up", "1 if the run-history file is open and being written, 0 while a fault keeps it from use (probing goes on).", registry=registry)
        self.storage_errors = Counter("sse_monitor_storage_errors", "Run-history faults by operation: open, write, read, retention; dropped counts runs lost after waiting too long for a broken file.", ("operation",), registry=registry)
        self.storage_bytes = Gauge("sse_monitor_storage_bytes", "Size of the run-history file with its write-ahead log.", registry=registry)
        for operation in STORAGE_OPERATIONS:
            self.storage_errors.labels(operation)
        Info("sse_monitor_build", "sse-monitor build information.", registry=registry).info({"version": __version__})
        # scheduled chain checks (chain_checks:): what the last check of each chain found; see monitor/chaincheck.py
        c = ("chain", "region") if region else ("chain",)
        self.chain_ok = Gauge("sse_chain_check_ok", "1 if the last chain check reached the canary and no check of the checklist failed, else 0.", c, registry=registry)
        self.chain_passed = Gauge("sse_chain_check_passed", "1 if this check of the checklist passed in the last chain check, 0 if it failed; absent while inconclusive.", (*c, "check"), registry=registry)
        self.chain_reachable = Gauge("sse_chain_canary_reachable", "1 if the last chain check reached an sse-monitor canary through the chain.", c, registry=registry)
        self.chain_idle = Gauge("sse_chain_idle_timeout_seconds", "The shortest silence the chain cuts; +Inf when none up to sse_chain_idle_timeout_searched_seconds was cut.", c, registry=registry)
        self.chain_idle_searched = Gauge("sse_chain_idle_timeout_searched_seconds", "The longest silence the last check tried (max_idle).", c, registry=registry)
        self.chain_buffered = Gauge("sse_chain_buffered_bytes", "The most bytes the chain held back at once (as the canary wrote them); 0 when it streams.", c, registry=registry)
        self.chain_buffered_time = Gauge("sse_chain_buffered_seconds", "The longest the chain held an event back.", c, registry=registry)
        self.chain_compressed = Gauge("sse_chain_compressed", "1 if the chain adds a Content-Encoding to an event stream.", c, registry=registry)
        self.chain_heartbeat_delay = Gauge("sse_chain_heartbeat_delay_seconds", "How late comment lines (heartbeats) came out, p90; +Inf when none did.", c, registry=registry)
        self.chain_length_cap = Gauge("sse_chain_stream_length_cap_seconds", "When a busy stream (heartbeats every second) is cut; +Inf when not up to the duration tried.", c, registry=registry)
        self.chain_expected = Gauge("sse_chain_expected_duration_seconds", "The configured longest stream (expected_duration): timeouts should be twice this.", c, registry=registry)
        self.chain_last_run = Gauge("sse_chain_check_last_run_timestamp_seconds", "When the last chain check finished (unix time).", c, registry=registry)
        self.chain_took = Gauge("sse_chain_check_duration_seconds", "How long the last chain check took.", c, registry=registry)

    # -- targets --------------------------------------------------------------------------------------------------

    def add_target(self, name: str, interval: float, ttft_threshold: float, proxy_idle_timeout: float,
                   resume: bool = False) -> None:
        """Create every series of a new target at zero, so rules and dashboards see it before its first run."""
        for histogram in (self.ttft, self.first_text, self.first_byte, self.gap, self.duration):
            series(histogram, name, *self._r)
        for outcome, reason in OUTCOME_REASONS:
            series(self.runs, name, *self._r, outcome, reason)
        for warning in WARNINGS:
            series(self.warning, name, *self._r, warning).set(0)
        for alertname in ALERTS:
            series(self.alert, name, *self._r, alertname).set(0)
        for counter in (self.skipped, self.lagged_probes, self.probe_waits, self.user_clock):
            series(counter, name, *self._r)
        for kind in USAGE_KINDS:
            series(self.tokens, name, *self._r, kind)
        self.configure_target(name, interval, ttft_threshold, proxy_idle_timeout, resume)
        # success, last run, last TTFT and max silence have no honest value before the first run: no series yet

    def configure_target(self, name: str, interval: float, ttft_threshold: float, proxy_idle_timeout: float,
                         resume: bool = False) -> None:
        """The configuration gauges; a changed target keeps its last run's results (a reload never resolves a page).
        A resumption check switched on gets its series (the counters at zero), switched off loses them."""
        series(self.threshold, name, *self._r).set(ttft_threshold)
        series(self.interval, name, *self._r).set(interval)
        series(self.proxy_idle, name, *self._r).set(proxy_idle_timeout)
        if resume and name not in self._resume_targets:
            self._resume_targets.add(name)
            for outcome in RESUME_OUTCOMES:
                series(self.resume_runs, name, *self._r, outcome)
            # sse_probe_resume_ok: no honest value before the first check
        elif not resume and name in self._resume_targets:
            self._remove_resume(name)

    def _remove_resume(self, name: str) -> None:
        self._resume_targets.discard(name)
        for outcome in RESUME_OUTCOMES:
            _remove(self.resume_runs, name, *self._r, outcome)
        _remove(self.resume_ok, name, *self._r)

    def remove_target(self, name: str) -> None:
        self._series.pop(name, None)

        single = (self.ttft, self.first_text, self.first_byte, self.gap, self.duration, self.success, self.last_run, self.last_ttft,
                  self.max_silence, self.threshold, self.interval, self.proxy_idle, self.skipped, self.lagged_probes,
                  self.probe_waits, self.user_clock)
        for metric in single:
            _remove(metric, name, *self._r)
        for outcome, reason in OUTCOME_REASONS:
            _remove(self.runs, name, *self._r, outcome, reason)
        for warning in WARNINGS:
            _remove(self.warning, name, *self._r, warning)
        for alertname in ALERTS:
            _remove(self.alert, name, *self._r, alertname)
        self._remove_resume(name)
        self._set_server_timing(name, {})
        for kind in USAGE_KINDS:
            _remove(self.tokens, name, *self._r, kind)
        for currency in self._currencies.pop(name, ()):
            _remove(self.cost, name, *self._r, currency)

    # -- chain checks -----------------------------------------------------------------------------------------------

    def add_chain(self, name: str, expected_duration: float) -> None:
        """A configured chain: its expected duration now; its findings once its first check has run."""
        self.chain_expected.labels(name, *self._r).set(expected_duration)

    def remove_chain(self, name: str) -> None:
        for metric in (self.chain_ok, self.chain_reachable, self.chain_idle, self.chain_idle_searched,
                       self.chain_buffered, self.chain_buffered_time, self.chain_compressed, self.chain_heartbeat_delay,
                       self.chain_length_cap, self.chain_last_run, self.chain_took, self.chain_expected):
            _remove(metric, name, *self._r)
        for check in CHAIN_CHECKS:
            _remove(self.chain_passed, name, *self._r, check)

    def observe_chain(self, name: str, report: typing.Any, finished_at: float) -> None:
        """Record one finished chain check (a chaincheck.ChainReport). An unreachable canary leaves every finding
        NaN: no stale measurement stays behind to look current."""
        r = self._r
        self.chain_ok.labels(name, *r).set(1 if report.ok else 0)
        self.chain_reachable.labels(name, *r).set(1 if report.reachable else 0)
        self.chain_last_run.labels(name, *r).set(finished_at)
        self.chain_took.labels(name, *r).set(report.duration_seconds)
        verdicts = {c.name: c.ok for c in report.checks}
        for check in CHAIN_CHECKS:
            ok = verdicts.get(check)
            if ok is None:
                _remove(self.chain_passed, name, *r, check)
            else:
                self.chain_passed.labels(name, *r, check).set(1 if ok else 0)
        idle, held, length, beats = report.idle, report.buffering, report.length, report.heartbeats
        found = {
            self.chain_idle: None if idle is None else (math.inf if idle.seconds is None else idle.seconds),
            self.chain_idle_searched: None if idle is None else idle.searched_up_to,
            self.chain_buffered: None if held is None else (held.held_bytes if held.buffered else 0),
            self.chain_buffered_time: None if held is None else held.held_seconds,
            self.chain_compressed: None if not report.reachable else (1 if report.content_encoding else 0),
            self.chain_heartbeat_delay: None if not beats else (math.inf if beats["late_p90_seconds"] is None
                                                                  else beats["late_p90_seconds"]),
            self.chain_length_cap: None if not length else (math.inf if length["cap_seconds"] is None
                                                              else length["cap_seconds"]),
        }
        for metric, value in found.items():
            metric.labels(name, *r).set(math.nan if value is None else value)

    def count(self, counter: Counter, target: str) -> None:
        """One more on a per-target counter of the daemon's (skipped, lagged, waited)."""
        series(counter, target, *self._r).inc()

    # -- results --------------------------------------------------------------------------------------------------

    def observe(self, target: str, result: ProbeResult, run: int | None = None) -> None:
        """Record one finished probe. With its `run` number (the history's), the TTFT, first-text and duration
        observations carry an exemplar naming it (shown in the OpenMetrics exposition only)."""
        target_series = self._series.get(target)
        if target_series is None:
            target_series = self._series[target] = _TargetSeries(self, target)
        exemplar = {"target": target, "run": str(run)} if run is not None else None
        if result.ttft_seconds is not None:
            target_series.ttft.observe(result.ttft_seconds, exemplar)
        if result.first_text_seconds is not None:
            target_series.first_text.observe(result.first_text_seconds, exemplar)
        if result.first_byte_seconds is not None:
            target_series.first_byte.observe(result.first_byte_seconds)
        gap = target_series.gap
        for value in result.token_gaps():
            gap.observe(value)
        target_series.duration.observe(result.duration_seconds, exemplar)
        runs = target_series.runs.get((result.outcome, result.reason))
        if runs is None:
            runs = target_series.runs[result.outcome, result.reason] = series(self.runs, target, *self._r,
                                                                              result.outcome, result.reason)
        runs.inc()
        if result.clock == CLOCK_USER:
            target_series.user_clock.inc()
        target_series.success.set(0 if any(a in PAGES for a in result.alerts) else 1)
        target_series.last_run.set(result.started_at + result.duration_seconds)
        target_series.last_ttft.set(math.nan if result.ttft_seconds is None else result.ttft_seconds)
        target_series.max_silence.set(result.max_silence_seconds or 0.0)
        for warning, child in target_series.warnings:
            child.set(1 if warning in result.warnings else 0)
        for alertname, child in target_series.alerts:
            child.set(1 if alertname in result.alerts else 0)
        self._set_server_timing(target, result.server_timing)
        self._count_usage(target, result)
        resume = result.resume
        if resume is not None and target in self._resume_targets:
            if resume.outcome is None:
                series(self.resume_ok, target, *self._r).set(math.nan)
            else:
                series(self.resume_runs, target, *self._r, resume.outcome).inc()
                series(self.resume_ok, target, *self._r).set(1 if resume.outcome == RESUME_RESUMED else 0)

    def _count_usage(self, target: str, result: ProbeResult) -> None:
        """The run's reported tokens and their cost. A currency's series starts with the first priced run (the
        configuration's prices are not known here)."""
        for kind in USAGE_KINDS:
            count = result.usage.get(f"{kind}_tokens") if result.usage else None
            if count:
                series(self.tokens, target, *self._r, kind).inc(count)
        if result.cost is not None:
            currency = result.cost["currency"]
            self._currencies.setdefault(target, set()).add(currency)
            series(self.cost, target, *self._r, currency).inc(result.cost["amount"])

    def _set_server_timing(self, target: str, timing: dict[str, float]) -> None:
        """The last run's server-reported timings; a name the last run did not send loses its series."""
        for name in self._timing_names.get(target, set()) - timing.keys():
            _remove(self.server_timing, target, *self._r, name)
        for name, seconds in timing.items():
            series(self.server_timing, target, *self._r, name).set(seconds)
        if timing:
            self._timing_names[target] = set(timing)
        else:
            self._timing_names.pop(target, None)


class _TargetSeries:
    """A target's series that every finished probe updates, looked up once (a lookup is a lock, a tuple and a dict
    lookup each time: ~15 a probe)."""

    __slots__ = ("alerts", "duration", "first_byte", "first_text", "gap", "last_run", "last_ttft", "max_silence", "runs",
                 "success", "ttft", "user_clock", "warnings")

    def __init__(self, m: Metrics, target: str) -> None:
        labels = (target, *m._r)
        self.ttft, self.first_text, self.first_byte, self.gap, self.duration = (
            series(h, *labels) for h in (m.ttft, m.first_text, m.first_byte, m.gap, m.duration))
        self.user_clock, self.success, self.last_run, self.last_ttft, self.max_silence = (
            series(g, *labels) for g in (m.user_clock, m.success, m.last_run, m.last_ttft, m.max_silence))
        self.warnings = [(w, series(m.warning, *labels, w)) for w in WARNINGS]
        self.alerts = [(a, series(m.alert, *labels, a)) for a in ALERTS]
        self.runs: dict[tuple[str, str], typing.Any] = {}


def _remove(metric, *labels: str) -> None:
    try:
        metric.remove(*labels)
    except KeyError:
        pass


# -- the /metrics body -------------------------------------------------------------------------------------------------


def render_openmetrics(registry: CollectorRegistry) -> bytes:
    """The registry in the OpenMetrics text format, exemplars included, for scrapers that ask for it (Prometheus does
    by default): `openmetrics.exposition.generate_latest(registry)`, byte for byte, written as render() writes the
    text format (the same cached series texts; created lines inline, a bucket's exemplar after its value)."""
    return _render(registry, _family_openmetrics, openmetrics_latest, _openmetrics_body, _EOF)


_EOF = "# EOF\n"


def _openmetrics_body(collector: typing.Any) -> str:
    """prometheus_client's OpenMetrics text of one collector, without the closing # EOF."""
    return openmetrics_latest(collector).decode("utf-8").removesuffix(_EOF)


def _family_openmetrics(metric: typing.Any, with_created: bool) -> str | None:
    """The OpenMetrics exposition of one labelled Counter, Gauge or Histogram; None for anything else (and for a
    counter with exemplars, which this project never gives one)."""
    kind = type(metric)
    if kind not in (Counter, Gauge, Histogram) or not metric._is_parent():
        return None
    if not _LEGACY_METRIC_NAME.fullmatch(metric._name) or not all(
            _LEGACY_LABEL_NAME.fullmatch(n) for n in metric._labelnames):
        return None
    if values.ValueClass is not values.MutexValue:  # pragma: no cover - multiprocess mode
        return None
    with metric._lock:
        children = metric._metrics.copy()
    kids = list(children.values())
    if kind is Gauge and any(child._child_samples.__func__ is not _GAUGE_SAMPLES for child in kids):
        return None
    if kind is Counter and any(child._value._exemplar is not None for child in kids):
        return None
    family = _family(metric, children)
    created = with_created and kind is not Gauge
    if created:
        _check_created(metric, family, kids)
    text = _FloatText()
    lines = [_om_header(metric)]
    for i, (series, child) in enumerate(zip(family.series, kids, strict=True)):
        if not i % YIELD_CHECK:
            _offer_gil()
        if kind is Histogram:
            lines.append(_om_histogram_text(series, child, text))
        else:
            value = child._value._value
            lines.append(series[1] + ("-0.0\n" if value == 0 and math.copysign(1.0, value) < 0 else text(value)))
        if created:
            lines.append(series[-1])
    return "".join(lines)


def _om_histogram_text(series: tuple, child: typing.Any, text: _FloatText) -> str:
    _, (head, les, tail), count_prefix, sum_prefix, _ = series
    lines = []
    acc = 0.0
    for le, bucket in zip(les, child._buckets, strict=True):
        acc += bucket._value
        exemplar = bucket._exemplar
        lines.append(head + le + tail
                     + (text(acc) if exemplar is None else text(acc)[:-1] + _exemplar_text(exemplar) + "\n"))
    lines.append(count_prefix + text(acc))
    if sum_prefix is not None:
        lines.append(sum_prefix + text(child._sum._value))
    return "".join(lines)


def _exemplar_text(exemplar: typing.Any) -> str:
    """` # {labels} value [timestamp]`, as openmetrics.exposition writes an exemplar."""
    labels = ",".join(f'{k}="{_escape_label_value(v)}"' for k, v in sorted(exemplar.labels.items()))
    stamp = "" if exemplar.timestamp is None else f" {exemplar.timestamp}"
    return f" # {{{labels}}} {floatToGoString(exemplar.value)}{stamp}"


_OM_HEADERS: weakref.WeakKeyDictionary[typing.Any, str] = weakref.WeakKeyDictionary()


def _om_header(metric: typing.Any) -> str:
    """The family's # HELP and # TYPE lines as openmetrics.exposition writes them."""
    header = _OM_HEADERS.get(metric)
    if header is None:

        class Empty:
            def collect(self) -> list[typing.Any]:
                return [metric._get_metric()]

        header = _OM_HEADERS[metric] = _openmetrics_body(Empty())
    return header


def render(registry: CollectorRegistry) -> bytes:
    """The registry in the Prometheus text format: `generate_latest(registry)`, byte for byte, several times faster.

    With 1,000 targets the page holds ~125,000 samples. generate_latest builds a Sample tuple and a labels dict for
    each, then sorts and escapes every line's labels; that takes most of a second. Here each labelled Counter, Gauge
    and Histogram family is written straight from its children, whose label text is escaped once and cached; any
    other collector (and any registry this code does not know) goes through generate_latest itself.
    """
    return _render(registry, _family_lines, generate_latest, lambda one: generate_latest(one).decode("utf-8"))


def _render(registry: CollectorRegistry, family: typing.Callable[[typing.Any, bool], str | None],
            whole: typing.Callable[[typing.Any], bytes], one: typing.Callable[[typing.Any], str],
            end: str = "") -> bytes:
    """Each collector's text from `family` (from `one`, the library's writer, for a collector it does not know), then
    `end`; a registry of another prometheus_client layout, or with target info, is written whole by `whole`."""
    try:
        with registry._lock:
            collectors = list(registry._collector_to_names)
            target_info = registry._target_info
    except AttributeError:  # pragma: no cover - another prometheus_client layout: its own renderer
        return whole(registry)
    if target_info:
        return whole(registry)
    out: list[str] = []
    with_created = prometheus_metrics._use_created
    for collector in collectors:
        try:
            lines = family(collector, with_created)
        except (AttributeError, TypeError, KeyError):  # another prometheus_client's internals: its own renderer
            lines = None
        out.append(lines if lines is not None else one(_OneCollector(collector)))
    out.append(end)
    return "".join(out).encode("utf-8")


class _OneCollector:
    """One collector, as generate_latest takes a registry."""

    def __init__(self, collector: typing.Any) -> None:
        self.collector = collector

    def collect(self) -> typing.Iterable[typing.Any]:
        return self.collector.collect()


_GAUGE_SAMPLES = Gauge._child_samples
# /metrics renders in a thread beside the event loop, on the same core. Without help the loop's thread waits up to the
# 5 ms switch interval for the GIL whenever an event arrives mid-render; every ~1 ms the renderer hands it over instead
# (time.sleep(0): the GIL and, with Linux's timer slack, ~70 us of the core).
YIELD_SECONDS = 0.001
YIELD_CHECK = 100  # series between two looks at the clock
_LEGACY_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LEGACY_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_HEADERS: weakref.WeakKeyDictionary[typing.Any, str] = weakref.WeakKeyDictionary()
# Per family, per series: the text of its lines but the values, and for a histogram the text it was last given with
# the values it was made of. Only tuples of strings and floats: the garbage collector stops tracking them at once, so a
# first render that builds 36,000 of them does not set off a full collection (which would hold the GIL for ~100 ms).
_TEXTS: weakref.WeakKeyDictionary[typing.Any, dict[tuple[str, ...], tuple]] = weakref.WeakKeyDictionary()
_LAST: weakref.WeakKeyDictionary[typing.Any, dict[tuple[str, ...], tuple[tuple[float, ...], str]]] = (
    weakref.WeakKeyDictionary()
)
_FAMILIES: weakref.WeakKeyDictionary[typing.Any, _Family] = weakref.WeakKeyDictionary()


class _Family:
    """One family's series in the order they were last rendered, so that an unchanged family is walked without a
    lookup per series: their texts, line prefixes, created times and the block of created lines."""

    __slots__ = ("created", "created_block", "keys", "prefixes", "series")

    def __init__(self) -> None:
        self.keys: tuple[tuple[str, ...], ...] | None = None
        self.series: list[tuple] = []
        self.prefixes: list[str] = []
        self.created: list[float] | None = None
        self.created_block = ""


def _family_lines(metric: typing.Any, with_created: bool) -> str | None:
    """The exposition of one labelled Counter, Gauge or Histogram; None for anything else."""
    kind = type(metric)
    if kind not in (Counter, Gauge, Histogram) or not metric._is_parent():
        return None
    name = metric._name
    if not _LEGACY_METRIC_NAME.fullmatch(name) or not all(_LEGACY_LABEL_NAME.fullmatch(n) for n in metric._labelnames):
        return None
    if values.ValueClass is not values.MutexValue:  # pragma: no cover - multiprocess mode
        return None
    with metric._lock:
        children = metric._metrics.copy()  # one dict: no (labels, child) tuple per series for the GC to count
    if kind is Gauge and any(child._child_samples.__func__ is not _GAUGE_SAMPLES for child in children.values()):
        return None  # set_function: a child with samples of its own (checked without vars(), which would give each
        # child a real __dict__ for the garbage collector to walk)
    family = _family(metric, children)
    kids = list(children.values())
    if kind is not Gauge and with_created:
        _check_created(metric, family, kids)
    text = _FloatText()
    known = text.known
    lines = [_header(metric)]
    n = len(kids)
    if kind is Histogram:
        last = _LAST.get(metric)
        if last is None:
            last = _LAST[metric] = {}
        if len(last) > n:
            last = _LAST[metric] = {key: last[key] for key in family.keys if key in last}
        for i, (key, series, child) in enumerate(zip(family.keys, family.series, kids, strict=True)):
            if not i % YIELD_CHECK:
                _offer_gil()
            # what get() returns, read without taking each value's lock (as generate_latest, one value at a time)
            now = [bucket._value for bucket in child._buckets]
            now.append(child._sum._value)
            now = tuple(now)
            before = last.get(key)
            if before is None or before[0] != now:  # most targets did not run since the last scrape: their text stands
                before = last[key] = (now, _histogram_text(series, now, text))
            lines.append(before[1])
    else:
        prefixes = family.prefixes
        for start in range(0, n, YIELD_CHECK):
            _offer_gil()
            end = start + YIELD_CHECK
            part = [child._value._value for child in kids[start:end]]
            if kind is Gauge and any(v == 0 and math.copysign(1.0, v) < 0 for v in part):  # -0.0: key 0.0, not text
                lines.extend([p + ("-0.0\n" if v == 0 and math.copysign(1.0, v) < 0 else text(v))
                              for p, v in zip(prefixes[start:end], part)])
            else:
                lines.extend([p + (known.get(v) or text(v)) for p, v in zip(prefixes[start:end], part)])
    if kind is not Gauge and with_created and n:
        doc = metric._documentation.replace("\\", r"\\").replace("\n", r"\n")
        lines.append(f"# HELP {name}_created {doc}\n# TYPE {name}_created gauge\n")
        lines.append(family.created_block)
    return "".join(lines)


_yielded = threading.local()


def _offer_gil() -> None:
    """Hand the GIL to the event loop's thread if this thread has held it for YIELD_SECONDS."""
    now = time.perf_counter()
    if now - getattr(_yielded, "at", 0.0) >= YIELD_SECONDS:
        time.sleep(0)
        _yielded.at = time.perf_counter()


def _family(metric: typing.Any, children: dict[tuple[str, ...], typing.Any]) -> _Family:
    """The family's cached texts, in the children's order; rebuilt only when the set or order of series changed."""
    family = _FAMILIES.get(metric)
    if family is None:
        family = _FAMILIES[metric] = _Family()
    keys = tuple(children)
    if keys != family.keys:
        texts = _TEXTS.get(metric)
        if texts is None or len(texts) > len(keys):  # first time, or series were removed: forget them
            texts = {key: texts[key] for key in keys if key in texts} if texts else {}
            _TEXTS[metric] = texts
        series = []
        for key, child in children.items():
            entry = texts.get(key)
            if entry is None or entry[0] != getattr(child, "_created", None):  # new, or added again
                entry = texts[key] = _series_text(metric, key, child)
            series.append(entry)
        family.keys, family.series = keys, series
        family.prefixes = [entry[1] for entry in series]
        family.created = None
    return family


def _check_created(metric: typing.Any, family: _Family, kids: list[typing.Any]) -> None:
    """Created times are fixed for a series' life, but a counter's reset renews one: keep the created lines true."""
    created = [child._created for child in kids]
    if created == family.created:
        return
    texts = _TEXTS[metric]
    for i, (key, child) in enumerate(zip(family.keys, kids, strict=True)):
        if family.series[i][0] != created[i]:
            family.series[i] = texts[key] = _series_text(metric, key, child)
    family.prefixes = [entry[1] for entry in family.series]
    family.created = created
    family.created_block = "".join(entry[-1] for entry in family.series)


def _series_text(metric: typing.Any, labelvalues: tuple[str, ...], child: typing.Any) -> tuple:
    """Everything of one series' lines but the values, its labels sorted and escaped as generate_latest does:
    (created, line prefix, created line) or, for a histogram, (created, bucket prefixes, count prefix, sum prefix or
    None, created line). The created time is fixed for a series' life (a counter's reset renews it)."""
    name = metric._name
    pairs = sorted(zip(metric._labelnames, labelvalues, strict=True))
    parts = [f'{n}="{_escape_label_value(v)}"' for n, v in pairs]
    plain = ",".join(parts)
    created = getattr(child, "_created", None)
    created_line = None if created is None else f"{name}_created{{{plain}}} {floatToGoString(created)}\n"
    if type(metric) is not Histogram:
        return created, f"{name}{'_total' if type(metric) is Counter else ''}{{{plain}}} ", created_line
    before = sum(1 for n, _ in pairs if n < "le")
    head = ",".join(parts[:before]) + ("," if before else "")
    tail = ("," if before < len(parts) else "") + ",".join(parts[before:])
    # a bucket's line prefix is made at each render from these three: kept whole, the prefixes were ~1.9 KB a series
    # (9.6 MB at 1,000 targets), composing them costs ~10 ms a scrape
    buckets = (f"{name}_bucket{{{head}", _le_texts(tuple(child._upper_bounds)), f"{tail}}} ")
    sum_prefix = f"{name}_sum{{{plain}}} " if child._upper_bounds[0] >= 0 else None
    return created, buckets, f"{name}_count{{{plain}}} ", sum_prefix, created_line


@functools.lru_cache(maxsize=64)
def _le_texts(bounds: tuple[float, ...]) -> tuple[str, ...]:
    """The `le="..."` label of each bucket, shared by every series with these bounds."""
    return tuple(f'le="{floatToGoString(b)}"' for b in bounds)


def _histogram_text(series: tuple, now: tuple[float, ...], text: _FloatText) -> str:
    _, (head, les, tail), count_prefix, sum_prefix, _ = series
    lines = []
    acc = 0.0
    for le, value in zip(les, now, strict=False):  # now ends with the sum
        acc += value
        lines.append(head + le + tail + text(acc))
    lines.append(count_prefix + text(acc))
    if sum_prefix is not None:
        lines.append(sum_prefix + text(now[-1]))
    return "".join(lines)


def _header(metric: typing.Any) -> str:
    """The family's # HELP and # TYPE lines, as generate_latest writes them (name munging included)."""
    header = _HEADERS.get(metric)
    if header is None:

        class Empty:
            def collect(self) -> list[typing.Any]:
                return [metric._get_metric()]

        header = _HEADERS[metric] = generate_latest(Empty()).decode("utf-8")
    return header


def _escape_label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


class _FloatText:
    """floatToGoString and the line's end, remembered per value for one render (most values repeat: 0.0, 1.0, ...).
    -0.0 is never remembered: it equals 0.0 as a key but reads differently (only a gauge can hold it, and the
    caller writes it itself)."""

    def __init__(self) -> None:
        self.known: dict[float, str] = {0.0: "0.0\n"}

    def __call__(self, value: float) -> str:
        text = self.known.get(value)
        if text is None:
            text = self.known[value] = floatToGoString(value) + "\n"
        return text
