"""Direct push of alert conditions to Alertmanager's v2 API: damping, steady resends, resolutions never lost."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import structlog

from .config import AlertmanagerConfig, TargetConfig
from .redact import redact_url
from .result import (
    ALERT_ENDED_EARLY,
    ALERT_FAILED,
    ALERT_RESUME_BROKEN,
    ALERT_TTFT_HIGH,
    ALERTS,
    WARNING_EVENT_LOOP_LAG,
    ProbeResult,
)

log = structlog.get_logger("sse_monitor.alerting")

SEVERITY = {ALERT_TTFT_HIGH: "critical", ALERT_ENDED_EARLY: "critical", ALERT_FAILED: "critical",
            ALERT_RESUME_BROKEN: "warning"}  # critical pages, warning makes a ticket (config/alertmanager)
DEFAULT_RUNBOOK_BASE = "https://github.com/sse-monitor/sse-monitor/blob/main/docs/runbook"
ENDS_AT_FACTOR = 4  # a firing alert's endsAt is this many resend intervals ahead: it survives a lost resend or two
MIN_BACKOFF = 0.5

Key = tuple[str, str]  # (alertname, target)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _s(value: float | None) -> str:
    return "none" if value is None else f"{value:.3f} s"


def describe(alertname: str, target: str, result: ProbeResult) -> tuple[str, str]:
    """The alert's summary (one sentence) and description (the measured values)."""
    if alertname == ALERT_TTFT_HIGH:
        summary = (
            f"First token from {target} took {result.ttft_seconds:.2f} s, over the {result.ttft_threshold:g} s threshold."
            if result.ttft_seconds is not None
            else f"No token from {target} within the {result.ttft_threshold:g} s threshold."
        )
    elif alertname == ALERT_ENDED_EARLY:
        summary = f"The stream from {target} ended early ({result.reason})."
    elif alertname == ALERT_RESUME_BROKEN:
        outcome = result.resume.outcome if result.resume is not None else None
        summary = f"The stream from {target} does not resume after a dropped connection ({outcome})."
    else:
        summary = f"The probe of {target} failed ({result.reason})."
    description = (
        f"outcome {result.outcome} ({result.reason}); TTFT {_s(result.ttft_seconds)}; "
        f"duration {_s(result.duration_seconds)}; {result.token_events} token events of {result.events} events; "
        f"longest silence {_s(result.max_silence_seconds)}"
        + (f"; HTTP {result.status_code}" if result.status_code is not None else "")
        + (f"; warnings: {', '.join(result.warnings)}" if result.warnings else "")
        + (f". {result.detail}" if result.detail else "")
    )
    if alertname == ALERT_RESUME_BROKEN and result.resume is not None:
        resume = result.resume
        description = (f"resumption check: {resume.outcome}; {resume.detail}; {resume.events_before} token events "
                       f"before the drop, {resume.events_after} after the reconnect"
                       + (f"; reconnect HTTP {resume.status_code}" if resume.status_code is not None else "")
                       + f". The stream: {description}")
    return summary, description


@dataclass
class AlertState:
    """One (alertname, target): its streaks, and what Alertmanager should be told."""

    alertname: str
    target: str
    bad_streak: int = 0
    good_streak: int = 0
    streak_started: datetime | None = None
    firing: bool = False
    starts_at: datetime | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    generator_url: str = ""

    def payload(self, ends_at: datetime) -> dict[str, Any]:
        assert self.starts_at is not None
        return {
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": _iso(self.starts_at),
            "endsAt": _iso(ends_at),
            "generatorURL": self.generator_url,
        }


class _Receiver:
    """One Alertmanager: its own retry schedule and its own queue of resolutions not yet delivered."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.shown = redact_url(self.url)
        self.resolutions: dict[Key, dict[str, Any]] = {}
        self.failures = 0
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


class AlertmanagerPusher:
    """Turns probe results into alerts and pushes them to every configured Alertmanager (never load-balanced)."""

    def __init__(self, config: AlertmanagerConfig, base_url: Callable[[], str], on_send: Callable[[str, bool], None] | None = None,
                 region: str | None = None) -> None:
        self.config = config
        self.region = region  # where this monitor probes from: a `region` label on every alert it pushes
        self.base_url = base_url  # the daemon's external URL, for generatorURL
        self.on_send = on_send or (lambda url, ok: None)
        self.states: dict[Key, AlertState] = {}
        self.receivers: dict[str, _Receiver] = {}
        self._client: httpx.AsyncClient | None = None
        self._running = False

    # -- fed by the daemon (synchronous and cheap: never blocks a probe) -----------------------------------------------

    def observe(self, target: TargetConfig, result: ProbeResult) -> None:
        lagged = WARNING_EVENT_LOOP_LAG in result.warnings
        for alertname in ALERTS:
            if alertname == ALERT_TTFT_HIGH and lagged:
                continue  # timings taken while the monitor was late prove nothing either way
            if alertname == ALERT_RESUME_BROKEN and (result.resume is None or result.resume.outcome is None):
                continue  # no resumption check in this run (none configured, or the stream ended before its drop)
            key = (alertname, target.name)
            state = self.states.get(key) or self.states.setdefault(key, AlertState(alertname, target.name))
            if alertname in result.alerts:
                self._bad(state, target, result)
            else:
                self._good(state)

    def forget_target(self, name: str) -> None:
        """A target removed from the config: resolve whatever it had firing."""
        for key in [k for k in self.states if k[1] == name]:
            state = self.states.pop(key)
            if state.firing:
                self._resolve(state)

    def reconfigure(self, config: AlertmanagerConfig) -> None:
        self.config = config
        if self._running:
            self._sync_receivers()

    # -- state machine ------------------------------------------------------------------------------------------------

    def _bad(self, state: AlertState, target: TargetConfig, result: ProbeResult) -> None:
        now = _now()
        if state.bad_streak == 0:
            state.streak_started = now - timedelta(seconds=result.duration_seconds)
        state.bad_streak += 1
        state.good_streak = 0
        self._label(state, target, result)
        if not state.firing and state.bad_streak >= self.config.fire_after:
            state.firing = True
            state.starts_at = state.streak_started
            for receiver in self.receivers.values():
                receiver.resolutions.pop((state.alertname, state.target), None)  # firing again supersedes it
            log.warning("alert_firing", alertname=state.alertname, target=state.target, summary=state.annotations["summary"])
            self._wake_all()

    def _good(self, state: AlertState) -> None:
        state.good_streak += 1
        state.bad_streak = 0
        if state.firing and state.good_streak >= self.config.resolve_after:
            self._resolve(state)

    def _resolve(self, state: AlertState) -> None:
        state.firing = False
        resolution = state.payload(ends_at=_now())
        for receiver in self.receivers.values():
            receiver.resolutions[(state.alertname, state.target)] = resolution
        log.info("alert_resolved", alertname=state.alertname, target=state.target)
        self._wake_all()

    def _label(self, state: AlertState, target: TargetConfig, result: ProbeResult) -> None:
        summary, description = describe(state.alertname, target.name, result)
        runbook = (self.config.runbook_base_url or DEFAULT_RUNBOOK_BASE).rstrip("/")
        state.labels = {
            **self.config.labels,
            **target.labels,
            "alertname": state.alertname,
            "target": target.name,
            "severity": SEVERITY[state.alertname],
            **({"region": self.region} if self.region else {}),
        }
        state.annotations = {
            "summary": summary,
            "description": description,
            "runbook_url": f"{runbook}/{state.alertname}.md",
        }
        state.generator_url = f"{self.base_url().rstrip('/')}/targets/{target.name}"

    def firing(self) -> list[AlertState]:
        return [s for s in self.states.values() if s.firing]

    # -- sending ------------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.config.timeout, trust_env=False)
        self._running = True
        self._sync_receivers()

    async def stop(self, flush_seconds: float = 2.0) -> None:
        """Stop; first give undelivered resolutions one short last chance."""
        self._running = False
        pending = [r for r in self.receivers.values() if r.resolutions]
        if pending:
            await asyncio.wait([asyncio.create_task(self._send(r)) for r in pending], timeout=flush_seconds)
        for receiver in self.receivers.values():
            if receiver.task is not None:
                receiver.task.cancel()
        await asyncio.gather(*(r.task for r in self.receivers.values() if r.task), return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    def _sync_receivers(self) -> None:
        wanted = [u.rstrip("/") for u in self.config.urls]
        for url in list(self.receivers):
            if url not in wanted:
                task = self.receivers.pop(url).task
                if task is not None:
                    task.cancel()
        for url in wanted:
            if url not in self.receivers:
                receiver = self.receivers[url] = _Receiver(url)
                receiver.task = asyncio.create_task(self._loop(receiver))

    def _wake_all(self) -> None:
        for receiver in self.receivers.values():
            receiver.wake.set()

    async def _loop(self, receiver: _Receiver) -> None:
        """Send now when something changed, else every resend interval; back off while the Alertmanager is down."""
        delay = 0.0
        while True:
            try:
                await asyncio.wait_for(receiver.wake.wait(), timeout=delay)
            except TimeoutError:
                pass
            receiver.wake.clear()
            ok = await self._send(receiver)
            if ok:
                delay = self.config.resend_interval
            else:
                delay = min(self.config.resend_interval, MIN_BACKOFF * 2 ** min(receiver.failures, 10))
                await asyncio.sleep(delay)  # even a new alert waits out the backoff: no hammering a sick Alertmanager
                delay = 0.0

    async def _send(self, receiver: _Receiver) -> bool:
        ends_at = _now() + timedelta(seconds=ENDS_AT_FACTOR * self.config.resend_interval)
        resolutions = dict(receiver.resolutions)
        alerts = [s.payload(ends_at) for s in self.firing()] + list(resolutions.values())
        if not alerts:
            return True
        try:
            response = await self._client.post(receiver.url + "/api/v2/alerts", json=alerts)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            receiver.failures += 1
            self.on_send(receiver.shown, False)
            log.warning("alertmanager_send_failed", alertmanager=receiver.shown, alerts=len(alerts),
                        failures=receiver.failures, error=str(exc) or type(exc).__name__)
            return False
        for key, sent in resolutions.items():
            if receiver.resolutions.get(key) is sent:  # not superseded while we were sending
                del receiver.resolutions[key]
        receiver.failures = 0
        self.on_send(receiver.shown, True)
        return True
