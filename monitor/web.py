"""The daemon's HTTP endpoints: /metrics, /-/healthy, /-/ready, /-/reload (with --web.enable-lifecycle), and a landing
page per target. TLS and basic auth (--web.config.file) wrap the whole app: see monitor/webconfig.py."""

from __future__ import annotations

import asyncio
import html
import time
from collections.abc import Mapping
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .metrics import render
from .report import summary
from .result import ProbeResult

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}}.bad{{color:#b00}}.ok{{color:#070}}
pre{{background:#f6f6f6;padding:1em}}</style></head><body>{body}</body></html>"""


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def _ago(timestamp: float) -> str:
    return f"{max(0.0, time.time() - timestamp):.0f} s ago"


class Monitor(Protocol):
    """What the web layer needs of the running monitor (the daemon), and nothing more."""

    metrics: Any  # .registry: the CollectorRegistry /metrics renders
    targets: Mapping[str, Any]  # name -> TargetConfig (.dialect, .interval)
    last_results: Mapping[str, ProbeResult]
    probe_endpoint: Any  # .handle(request): the /probe handler
    enable_lifecycle: bool
    shard: Any  # str(shard): "K/N", this replica's share of the targets

    @property
    def ready(self) -> bool: ...

    def reload(self) -> list[str]: ...


def create_app(daemon: Monitor) -> Starlette:
    async def metrics(request: Request) -> Response:
        # rendering is CPU work: off the loop that times the streams
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

    async def landing(request: Request) -> Response:
        rows = []
        for name, target in daemon.targets.items():
            r = daemon.last_results.get(name)
            if r is None:
                cells = [f"<td colspan=5>no finished run yet (every {target.interval:g} s)</td>"]
            else:
                css = "bad" if r.alerts else "ok"
                cells = [
                    f"<td class={css}>{html.escape(r.outcome)} ({html.escape(r.reason)})</td>",
                    f"<td>{_seconds(r.ttft_seconds)}</td><td>{_seconds(r.duration_seconds)}</td>",
                    f"<td>{html.escape(', '.join(r.alerts + r.warnings) or '-')}</td>",
                    f"<td>{_ago(r.started_at + r.duration_seconds)}</td>",
                ]
            link = f'<a href="targets/{html.escape(name)}">{html.escape(name)}</a>'
            rows.append(f"<tr><td>{link}</td><td>{html.escape(target.dialect)}</td>{''.join(cells)}</tr>")
        body = (
            f"<h1>sse-monitor</h1><p>shard {html.escape(str(daemon.shard))} · <a href='metrics'>metrics</a> · "
            "<a href='api/v1/targets'>JSON</a></p>"
            "<table><tr><th>target</th><th>dialect</th><th>last outcome</th><th>TTFT</th><th>duration</th>"
            f"<th>alerts and warnings</th><th>when</th></tr>{''.join(rows)}</table>"
        )
        return HTMLResponse(PAGE.format(title="sse-monitor", body=body))

    async def target_page(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in daemon.targets:
            return PlainTextResponse(f"no target named {name!r}\n", status_code=404)
        r = daemon.last_results.get(name)
        text = summary(r) + f"\nfinished {_ago(r.started_at + r.duration_seconds)}" if r else "no finished run yet"
        body = f"<h1>{html.escape(name)}</h1><p><a href='..'>all targets</a></p><pre>{html.escape(text)}</pre>"
        return HTMLResponse(PAGE.format(title=f"sse-monitor: {html.escape(name)}", body=body))

    async def targets_json(request: Request) -> Response:
        out = {}
        for name in daemon.targets:
            r = daemon.last_results.get(name)
            out[name] = r.to_dict() if r else None
        return JSONResponse(out, headers={"X-SSE-Monitor-Shard": str(daemon.shard)})  # which share of the targets

    return Starlette(
        routes=[
            Route("/", landing),
            Route("/targets/{name}", target_page),
            Route("/api/v1/targets", targets_json),
            Route("/metrics", metrics),
            Route("/probe", daemon.probe_endpoint.handle),
            Route("/-/healthy", healthy),
            Route("/-/ready", ready),
            Route("/-/reload", reload, methods=["POST", "PUT"]),
        ]
    )
