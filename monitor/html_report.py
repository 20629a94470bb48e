"""One probe as a self-contained HTML page (`sse-monitor probe --html FILE`): inline CSS, no scripts, no external
assets; everything that came from the endpoint is escaped. The daemon's pages can reuse `STYLE` and
`result_section`; `html_page` wraps one section into a whole document."""

from __future__ import annotations

from .report import summary
from .result import COMPLETED, FAILED, ProbeResult
from .timeline import esc, timeline_svg

MAX_TRACE_DATA = 2000  # characters of one event's data shown in the trace table

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem; color: #202124; background: #fff; }
h1 { font-size: 1.25rem; margin: 0 0 .25rem 0; word-break: break-all; }
h2 { font-size: 1.05rem; margin: 1.5rem 0 .5rem 0; }
.badge { display: inline-block; padding: .1rem .5rem; border-radius: .6rem; color: #fff; font-size: .85rem; font-weight: 600; }
.badge.completed { background: #2e9d4f; } .badge.ended_early { background: #e8891c; } .badge.failed { background: #d23b3b; }
pre.summary { background: #f6f8fa; border: 1px solid #e1e4e8; padding: .75rem; overflow-x: auto; font-size: .85rem; }
.timeline-box { overflow-x: auto; border: 1px solid #e1e4e8; padding: .25rem; }
table { border-collapse: collapse; font-size: .85rem; }
th, td { border: 1px solid #e1e4e8; padding: .2rem .5rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.t { font-variant-numeric: tabular-nums; text-align: right; white-space: nowrap; }
td.data { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; white-space: pre-wrap; word-break: break-all; }
tr.comment td { color: #8a5cc7; }
.muted { color: #5f6368; font-size: .85rem; }
"""


def _badge(result: ProbeResult) -> str:
    word = "completed" if result.outcome == COMPLETED else "failed" if result.outcome == FAILED else "ended early"
    return f'<span class="badge {esc(result.outcome)}">{esc(word)} ({esc(result.reason)})</span>'


def _headers_table(result: ProbeResult) -> str:
    if not result.response_headers:
        return '<p class="muted">no response headers</p>'
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in result.response_headers.items())
    return f'<table class="response-headers">{rows}</table>'


def _trace_table(result: ProbeResult) -> str:
    if result.trace is None:
        return '<p class="muted">no trace (run with --trace)</p>'
    if not result.trace:
        return '<p class="muted">no event or comment arrived</p>'
    rows = []
    for entry in result.trace:
        data = str(entry.get("data") or "")
        if len(data) > MAX_TRACE_DATA:
            data = data[:MAX_TRACE_DATA] + f"… ({len(data) - MAX_TRACE_DATA} more characters)"
        kind = entry.get("kind", "event")
        what = ":" if kind == "comment" else (entry.get("type") or "message")
        event_id = entry.get("id")
        rows.append(f'<tr class="{esc(kind)}"><td class="t">{float(entry.get("t", 0.0)):.3f}</td><td>{esc(what)}</td>'
                    f'<td>{esc(event_id) if event_id is not None else ""}</td><td class="data">{esc(data)}</td></tr>')
    return ('<table class="trace"><thead><tr><th>t (s)</th><th>event</th><th>id</th><th>data</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def result_section(result: ProbeResult, *, proxy_idle_timeout: float | None = None, width: int = 900) -> str:
    """One probe as an HTML fragment: summary, timeline, response headers and (when traced) the event trace."""
    text = summary(_untraced(result))
    return (
        f'<section class="probe-result" data-outcome="{esc(result.outcome)}">'
        f"<h1>{esc(result.dialect)} {esc(result.url)}</h1>"
        f"<p>{_badge(result)}</p>"
        f'<h2>Summary</h2><pre class="summary">{esc(text)}</pre>'
        f'<h2>Timeline</h2><div class="timeline-box">{timeline_svg(result, proxy_idle_timeout=proxy_idle_timeout, width=width)}</div>'
        '<p class="muted">times in seconds from the request; blue ticks above the axis: token events (taller, with a '
        "count: several in one read); purple ticks below: heartbeats/comments; grey: silences, yellow: the longest; "
        "the band at the bottom: where the wait for the first token went (request to headers, the server's reported "
        "part darker; headers to first event; first event to first token; thinking to the first text); "
        "hover for exact times.</p>"
        f"<h2>Response headers</h2>{_headers_table(result)}"
        f"<h2>Event trace</h2>{_trace_table(result)}"
        "</section>"
    )


def html_page(result: ProbeResult, *, proxy_idle_timeout: float | None = None) -> str:
    """A whole self-contained HTML document for one probe."""
    title = f"sse-monitor probe: {result.outcome} — {result.url}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>"
        f"<body>{result_section(result, proxy_idle_timeout=proxy_idle_timeout)}</body></html>\n"
    )


def _untraced(result: ProbeResult) -> ProbeResult:
    import dataclasses

    return dataclasses.replace(result, trace=None) if result.trace is not None else result
