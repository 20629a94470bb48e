"""The daemon's HTTP endpoints: /metrics, /-/healthy, /-/ready, /-/reload (with --web.enable-lifecycle), the landing
page (sparklines, outcome strips, alerts firing), a page per target (its runs, a stream timeline) and the JSON API.
Everything an endpoint sent (details, header values, event data) is escaped; request headers are never shown. TLS and basic auth (--web.config.file) wrap the whole app: see monitor/webconfig.py."""

from __future__ import annotations

import asyncio
import html
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_CONTENT_TYPE
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .metrics import render, render_openmetrics
from .report import money, summary
from .result import ProbeResult
from .history import Run, RunSummary
from .timeline import mini_outcome_strip_svg, mini_sparkline_svg, timeline_svg

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}}.bad{{color:#b00}}.ok{{color:#070}}
pre{{background:#f6f6f6;padding:1em}}.now{{font-weight:bold}}</style></head><body>{body}</body></html>"""


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def _ago(timestamp: float) -> str:
    return f"{max(0.0, time.time() - timestamp):.0f} s ago"


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(timestamp)) + "Z"


class Monitor(Protocol):
    """What the web layer needs of the running monitor (the daemon), and nothing more."""

    metrics: Any  # .registry: the CollectorRegistry /metrics renders
    targets: Mapping[str, Any]  # name -> TargetConfig (.dialect, .interval)
    last_results: Mapping[str, ProbeResult]
    history: Any  # monitor.history.History: .recent(name) in memory; .summaries/.run/.runs read the file (blocking)
    probe_endpoint: Any  # .handle(request): the /probe handler
    enable_lifecycle: bool
    shard: Any  # str(shard): "K/N", this replica's share of the targets
    chains: Any  # .checks: name -> ChainCheckConfig; .reports: name -> the last ChainReport

    @property
    def ready(self) -> bool: ...

    def reload(self) -> list[str]: ...

    def firing(self) -> Mapping[str, list[str]]: ...  # per target, the alerts the Alertmanager pusher holds as firing


def _firing(result: ProbeResult, pushed: Sequence[str]) -> str:
    """The alert conditions of the last run, and what the Alertmanager pusher holds as firing (after fire_after)."""
    names = sorted(set(result.alerts) | set(pushed))
    if not names:
        return "-"
    return ", ".join(f"<span class='bad{' now' if n in pushed else ''}'>{html.escape(n)}</span>" for n in names)


def _spend_per_day(r: ProbeResult, interval: float) -> str:
    """Tokens and cost a day at the target's interval, at the last run's usage; '-' when it reported none."""
    if r.usage is None:
        return "-"
    per_day = 86400.0 / interval
    text = f"{((r.usage['input_tokens'] or 0) + (r.usage['output_tokens'] or 0)) * per_day:,.0f} tokens"
    if r.cost is not None:
        text += f", {money(r.cost['amount'] * per_day)} {html.escape(r.cost['currency'])}"
    return text


def _wants_openmetrics(accept: str) -> bool:
    """The scraper accepts OpenMetrics (as prometheus_client's choose_encoder decides; Prometheus asks for it first by
    default)."""
    return any(part.split(";")[0].strip() == "application/openmetrics-text" for part in accept.split(","))


def _runs_table(runs: Sequence[RunSummary], chosen: int) -> str:
    """The target's kept runs, newest first, each linking to its timeline."""
    rows = []
    for r in runs:
        css = "bad" if r.alerts else "ok"
        mark = " class=now" if r.run == chosen else ""
        rows.append(
            f"<tr{mark}><td><a href='?run={r.run}'>{r.run}</a></td><td>{_when(r.started_at)}</td>"
            f"<td class={css}>{html.escape(r.outcome)} ({html.escape(r.reason)})</td>"
            f"<td>{_seconds(r.ttft_seconds)}</td><td>{_seconds(r.duration_seconds)}</td><td>{r.events}</td>"
            f"<td>{html.escape(', '.join(r.warnings) or '-')}</td><td>{html.escape(', '.join(r.alerts) or '-')}</td>"
            "</tr>"
        )
    return (
        f"<h2>recent runs ({len(runs)} kept)</h2><table class=runs><tr><th>run</th><th>started</th><th>outcome</th>"
        "<th>TTFT</th><th>duration</th><th>events</th><th>warnings</th><th>alerts</th></tr>"
        f"{''.join(rows)}</table>"
    )


def _chains_table(chains: Any) -> str:
    """The scheduled chain checks on the landing page: each check of the checklist, passed or not, with its finding
    on hover; empty when none is configured."""
    if not chains.checks:
        return ""
    rows = []
    for name, check in chains.checks.items():
        report = chains.reports.get(name)
        if report is None:
            cells = f"<td colspan=3>not checked yet (every {check.interval:g} s)</td>"
        elif not report.reachable:
            cells = f"<td class=bad colspan=2>{html.escape(report.problem)}</td><td>{_ago(report.started_at)}</td>"
        else:
            marks = " ".join(
                f"<span class={'ok' if c.ok else 'bad' if c.ok is False else ''} title=\"{html.escape(c.finding)}\">"
                f"{html.escape(c.name)}</span>" for c in report.checks)
            idle = report.idle.seconds if report.idle else None
            cells = (f"<td class={'ok' if report.ok else 'bad'}>{'passes' if report.ok else 'fails'}</td>"
                     f"<td>{marks} · idle timeout {'none found' if idle is None else _seconds(idle)}</td>"
                     f"<td>{_ago(report.started_at + report.duration_seconds)}</td>")
        rows.append(f"<tr><td>{html.escape(name)}</td>{cells}</tr>")
    return ("<h2>proxy chains</h2><p><a href='api/v1/chain-checks'>JSON</a></p><table><tr><th>chain</th>"
            f"<th>checklist</th><th>checks</th><th>when</th></tr>{''.join(rows)}</table>")


def create_app(daemon: Monitor) -> Starlette:
    async def metrics(request: Request) -> Response:
        # rendering is CPU work: off the loop that times the streams
        if _wants_openmetrics(request.headers.get("accept", "")):  # with the exemplars naming each run
            body = await asyncio.to_thread(render_openmetrics, daemon.metrics.registry)
            return Response(body, media_type=OPENMETRICS_CONTENT_TYPE)
        body = await asyncio.to_thread(render, daemon.metrics.registry)  # generate_latest's bytes, faster
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def healthy(request: Request) -> Response:
        return PlainTextResponse("Healthy\n")

    async def ready(request: Request) -> Response:
        if daemon.ready:
            return PlainTextResponse("Ready\n")
        return PlainTextResponse("Not ready\n", status_code=503)

    async def reload(request: Request) -> Response:
        if not daemon.enable_lifecycle:  # as Prometheus answers without --web.enable-lifecycle; SIGHUP still reloads
            return PlainTextResponse("Lifecycle API is not enabled.\n", status_code=403)
        errors = daemon.reload()
        if errors:
            return PlainTextResponse("failed to reload config:\n" + "\n".join(errors) + "\n", status_code=400)
        return PlainTextResponse("config reloaded\n")

    pictures: dict[str, tuple[tuple, str, str]] = {}  # per target: (its newest run, threshold), sparkline, strip

    def landing_pictures(name: str, target: Any, r: ProbeResult) -> tuple[str, str]:
        """A target's sparkline and outcome strip, drawn again only when it has a new run."""
        key = (daemon.history.last_run(name), target.expect.ttft_threshold)
        cached = pictures.get(name)
        if cached is None or cached[0] != key:
            recent = daemon.history.recent(name)
            sparkline = mini_sparkline_svg(recent.ttft_list() if recent else [r.ttft_seconds],
                                           threshold=target.expect.ttft_threshold)
            cached = pictures[name] = (key, sparkline, mini_outcome_strip_svg(recent.outcome_list() if recent
                                                                              else [r.outcome]))
        return cached[1], cached[2]

    def landing_row(name: str, target: Any, pushed: list[str]) -> str:
        r = daemon.last_results.get(name)
        link = f'<td><a href="targets/{html.escape(name)}">{html.escape(name)}</a></td><td>{html.escape(target.dialect)}</td>'
        if r is None:
            return f"<tr>{link}<td colspan=9>no finished run yet (every {target.interval:g} s)</td></tr>"
        sparkline, strip = landing_pictures(name, target, r)
        return (
            f"<tr>{link}<td class={'bad' if r.alerts else 'ok'}>{html.escape(r.outcome)} ({html.escape(r.reason)})</td>"
            f"<td>{_seconds(r.ttft_seconds)}</td><td class=sparkline>{sparkline}</td>"
            f"<td>{_seconds(r.duration_seconds)}</td><td class=outcomes>{strip}</td>"
            f"<td class=firing>{_firing(r, pushed)}</td><td>{html.escape(', '.join(r.warnings) or '-')}</td>"
            f"<td class=spend>{_spend_per_day(r, target.interval)}</td><td>{_ago(r.started_at + r.duration_seconds)}</td></tr>"
        )

    def landing_page() -> str:
        """Every target, those with an alert condition or a firing alert first: one glance shows what is broken.
        ~1 KB a target (compact pictures; the target's page has the detail)."""
        failing, rest = [], []
        firing = daemon.firing()
        for name, target in daemon.targets.items():
            r = daemon.last_results.get(name)
            pushed = firing.get(name, [])
            (failing if pushed or (r is not None and r.alerts) else rest).append(landing_row(name, target, pushed))
        for name in pictures.keys() - daemon.targets.keys():  # targets a reload removed
            del pictures[name]
        header = ("<tr><th>target</th><th>dialect</th><th>last outcome</th><th>TTFT</th><th>recent TTFT</th>"
                  "<th>duration</th><th>recent outcomes</th><th>alerts now firing</th><th>warnings</th><th>per day</th>"
                  "<th>when</th></tr>")
        tables = [f"<h2 class=bad>failing ({len(failing)})</h2><table>{header}{''.join(failing)}</table>"] if failing else []
        tables.append(f"<h2>{'healthy or not run yet' if failing else 'targets'} ({len(rest)})</h2>"
                      f"<table>{header}{''.join(rest)}</table>")
        return PAGE.format(title="sse-monitor", body=(
            f"<h1>sse-monitor</h1><p>{len(daemon.targets)} targets · {len(failing)} failing · shard "
            f"{html.escape(str(daemon.shard))} · <a href='metrics'>metrics</a> · <a href='api/v1/targets'>JSON</a></p>"
            f"{''.join(tables)}{_chains_table(daemon.chains)}"))

    async def landing(request: Request) -> Response:
        return HTMLResponse(landing_page())

    async def target_page(request: Request) -> Response:
        name = request.path_params["name"]
        target = daemon.targets.get(name)
        if target is None:
            return PlainTextResponse(f"no target named {name!r}\n", status_code=404)
        runs = await asyncio.to_thread(daemon.history.summaries, name)  # only the rows the table shows
        wanted = request.query_params.get("run")
        number = runs[0].run if runs else None
        if wanted is not None:
            number = int(wanted) if wanted.isdigit() and any(str(r.run) == wanted for r in runs) else None
            if number is None:
                return PlainTextResponse(f"no run {wanted!r} of {name!r} is kept\n", status_code=404)
        chosen: Run | None = None if number is None else await asyncio.to_thread(daemon.history.run, name, number)
        if number is not None and chosen is None:
            return PlainTextResponse(f"run {number} of {name!r} cannot be read from the history file (see the "
                                     "log)\n", status_code=500)
        title = html.escape(name)
        parts = [f"<h1>{title}</h1><p><a href='..'>all targets</a> · "
                 f"<a href='../api/v1/targets/{title}/history'>JSON history</a></p>"]
        if chosen is None:
            parts.append("<p>no finished run yet</p>")
        else:
            r = chosen.result
            latest = chosen.run == runs[0].run
            parts.append(f"<h2>run {chosen.run}{' (the last)' if latest else ''}, {_when(r.started_at)}</h2>")
            text = summary(r) + f"\nfinished {_ago(r.started_at + r.duration_seconds)}"
            parts.append(f"<pre>{html.escape(text)}</pre>")
            parts.append(f"<div class=timeline>{timeline_svg(r, proxy_idle_timeout=target.proxy_idle_timeout)}</div>")
            if chosen.thinned:
                parts.append(f"<p>long stream: the timeline shows {len(r.token_times)} of its "
                             f"{chosen.token_times_total} token arrivals, evenly spaced</p>")
            parts.append(_runs_table(runs, chosen.run))
        return HTMLResponse(PAGE.format(title=f"sse-monitor: {title}", body="".join(parts)))

    async def history_json(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in daemon.targets:
            return JSONResponse({"error": f"no target named {name!r}"}, status_code=404)
        runs = await asyncio.to_thread(daemon.history.runs, name)
        out = [{"run": run.run, **run.result.to_dict()} for run in runs]
        return JSONResponse(out, headers={"X-SSE-Monitor-Shard": str(daemon.shard)})

    async def targets_json(request: Request) -> Response:
        out = {}
        for name in daemon.targets:
            r = daemon.last_results.get(name)
            out[name] = r.to_dict() if r else None
        return JSONResponse(out, headers={"X-SSE-Monitor-Shard": str(daemon.shard)})  # which share of the targets

    async def chains_json(request: Request) -> Response:
        reports = daemon.chains.reports
        out = {name: reports[name].to_dict() if name in reports else None for name in daemon.chains.checks}
        return JSONResponse(out, headers={"X-SSE-Monitor-Shard": str(daemon.shard)})

    return Starlette(
        routes=[
            Route("/", landing),
            Route("/api/v1/chain-checks", chains_json),
            Route("/targets/{name}", target_page),
            Route("/api/v1/targets", targets_json),
            Route("/api/v1/targets/{name}/history", history_json),
            Route("/metrics", metrics),
            Route("/probe", daemon.probe_endpoint.handle),
            Route("/-/healthy", healthy),
            Route("/-/ready", ready),
            Route("/-/reload", reload, methods=["POST", "PUT"]),
        ]
    )
