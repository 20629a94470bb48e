"""`/probe?target=URL&module=NAME`: one probe on request, answered with that probe's metrics, blackbox_exporter-style.

Prometheus owns the target list (service discovery, relabelling, the Prometheus Operator's `Probe`) and each scrape
runs one probe with a named module. Not an open proxy: a module reaches only its `allowed_targets` (anything else
gets 403 and no request is made), and concurrent probes are bounded (past the bound: 503 at once, never a queue).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from .config import ModuleConfig, is_probe_url
from .probe import run_probe
from .report import summary
from .result import ALERTS, CLOCK_KERNEL, PAGES, RESUME_RESUMED, WARNINGS, ProbeResult

DEFAULT_MAX_CONCURRENT_PROBES = 50
SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
TIMEOUT_OFFSET = 0.5  # seconds left for the answer when Prometheus says how long it waits (blackbox's default)
MIN_TIMEOUT = 0.1

# (metric name, help, the result's field) for the times and counts a probe reports
_TIMES = (
    ("probe_sse_ttft_seconds", "Time from the request to the first token event.", "ttft_seconds"),
    ("probe_sse_first_byte_seconds", "Time from the request to the first body byte.", "first_byte_seconds"),
    ("probe_sse_first_event_seconds", "Time from the request to the first event of any kind.", "first_event_seconds"),
    ("probe_sse_headers_seconds", "Time from the request to the response headers.", "headers_seconds"),
    ("probe_sse_stream_duration_seconds", "Time from the request to the end of the stream.", "duration_seconds"),
    ("probe_sse_max_gap_seconds", "Longest gap between two token events.", "max_gap_seconds"),
    ("probe_sse_max_silence_seconds", "Longest time without a byte, from the request.", "max_silence_seconds"),
    ("probe_sse_connect_seconds", "How long the TCP connect took.", "connect_seconds"),
    ("probe_sse_tls_seconds", "How long the TLS handshake took.", "tls_seconds"),
)
_COUNTS = (
    ("probe_sse_events", "Events in the stream, of every kind.", "events"),
    ("probe_sse_token_events", "Token events in the stream.", "token_events"),
    ("probe_sse_comments", "Comment lines (heartbeats) in the stream.", "comments"),
    ("probe_sse_bytes", "Body bytes as received.", "bytes"),
)


def result_metrics(result: ProbeResult, seconds: float) -> bytes:
    """One probe's metrics in the text format: blackbox's probe_success and probe_duration_seconds, and the SSE
    gauges. A moment that never came (no token, no TLS) has no sample."""
    registry = CollectorRegistry(auto_describe=False)

    def gauge(name: str, doc: str, value: float | None, labels: Mapping[str, str] | None = None) -> None:
        if value is None:
            return
        g = Gauge(name, doc, tuple(labels or ()), registry=registry)
        (g.labels(**labels) if labels else g).set(value)

    gauge("probe_success", "Whether the probe succeeded: the stream raised no critical alert condition (a page).",
          float(not any(alert in PAGES for alert in result.alerts)))
    gauge("probe_duration_seconds", "How long the probe took, in seconds.", seconds)
    gauge("probe_http_status_code", "Response HTTP status code.", result.status_code)
    for name, doc, field in _TIMES:
        gauge(name, doc, getattr(result, field))
    for name, doc, field in _COUNTS:
        gauge(name, doc, getattr(result, field))
    gauge("probe_sse_ttft_threshold_seconds", "The module's TTFT alert threshold.", result.ttft_threshold)
    gauge("probe_sse_kernel_clock", "1 if every arrival time is a kernel receive timestamp.",
          float(result.clock == CLOCK_KERNEL))
    resume = result.resume
    if resume is not None and resume.outcome is not None:  # the module has a resumption check, and it happened
        gauge("probe_sse_resume_ok", "1 if the stream resumed right after the last event id, else 0.",
              float(resume.outcome == RESUME_RESUMED))
    outcome = Gauge("probe_sse_outcome", "How the stream ended: 1 for its outcome and reason.", ("outcome", "reason"),
                    registry=registry)
    outcome.labels(result.outcome, result.reason).set(1)
    warning = Gauge("probe_sse_warning", "Warnings the stream raised (0/1).", ("warning",), registry=registry)
    for name in WARNINGS:
        warning.labels(name).set(float(name in result.warnings))
    condition = Gauge("probe_sse_alert_condition", "Alert conditions the stream raised (0/1).", ("alertname",),
                      registry=registry)
    for name in ALERTS:
        condition.labels(name).set(float(name in result.alerts))
    return generate_latest(registry)


@dataclasses.dataclass
class ProbeEndpoint:
    """The /probe handler. `modules` gives the running configuration's modules (a reload swaps them whole);
    `count(module, result)` counts each request by how it ended."""

    modules: Callable[[], Mapping[str, ModuleConfig]]
    count: Callable[[str, str], None]
    max_concurrent: int = DEFAULT_MAX_CONCURRENT_PROBES
    running: int = 0

    async def handle(self, request: Request) -> Response:
        params = request.query_params
        target, module_name = params.get("target"), params.get("module")
        if not target:
            return self._refuse("", "bad_request", 400, "missing parameter 'target' (the URL to probe)")
        if not module_name:
            return self._refuse("", "bad_request", 400, "missing parameter 'module'")
        modules = self.modules()
        module = modules.get(module_name)
        if module is None:
            known = ", ".join(sorted(modules)) or "none are configured"
            return self._refuse("", "bad_request", 400, f"unknown module {module_name!r} (modules: {known})")
        if not is_probe_url(target):
            return self._refuse(module_name, "bad_request", 400,
                                "parameter 'target' must be an http or https URL with a host and no user info")
        if not module.allows(target):
            return self._refuse(module_name, "denied", 403,
                                f"module {module_name!r} may not probe this target (see its allowed_targets)")
        if self.running >= self.max_concurrent:
            return self._refuse(module_name, "overloaded", 503,
                                f"{self.running} probes are running, the most at once: try again later")
        debug = params.get("debug", "").lower() in ("true", "1", "yes")
        spec = module.to_spec(trace=debug, url=target)
        timeout = _scrape_timeout(request.headers.get(SCRAPE_TIMEOUT_HEADER))
        if timeout is not None and timeout < spec.timeout:
            spec = dataclasses.replace(spec, timeout=timeout, idle_timeout=min(spec.idle_timeout, timeout))
        self.running += 1
        started = time.perf_counter()
        try:
            result = await run_probe(spec)
        finally:
            self.running -= 1
        seconds = time.perf_counter() - started
        self.count(module_name, "success" if result.healthy else "failure")
        body = result_metrics(result, seconds)
        if debug:
            return PlainTextResponse(_debug_text(result, body))
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    def _refuse(self, module: str, why: str, status: int, message: str) -> Response:
        self.count(module, why)
        return PlainTextResponse(message + "\n", status_code=status)


def _scrape_timeout(header: str | None) -> float | None:
    """How long the probe may take when Prometheus says how long it waits for the answer."""
    if not header:
        return None
    try:
        seconds = float(header)
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds <= 0:
        return None
    return max(MIN_TIMEOUT, seconds - TIMEOUT_OFFSET)


def _debug_text(result: ProbeResult, metrics: bytes) -> str:
    """`debug=true`, for a person: the summary with every event and its arrival time, then the metrics."""
    return f"{summary(result)}\n\nMetrics that would have been returned:\n{metrics.decode()}"
