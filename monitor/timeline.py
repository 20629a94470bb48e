"""Pictures of probes as server-rendered inline SVG: no scripts, no external assets, everything from the endpoint
escaped. Used by `sse-monitor probe --html` and by the daemon's pages.

- `timeline_svg(result)`: one probe on a time axis from the request (0) to its end: marks for headers, first byte,
  first event and TTFT (with the threshold), a tick per token event and per heartbeat/comment (aggregated per pixel
  column on long streams), silences shaded (the longest highlighted, against the proxy idle budget when given),
  bursts (several events in one read) as taller ticks with a count, and the end marked by how it ended.
  Below it, the TTFT breakdown (breakdown.py): a band of segments from the request to the first token (and on to the
  first visible text), the server's reported part darker.
- `mini_sparkline_svg(values)`: the landing page's TTFT sparkline over runs (at most 30 columns, each at its slowest),
  with the threshold line; a column over it, or with a run without a token, is marked in red.
- `mini_outcome_strip_svg(outcomes)`: the landing page's outcome strip, each column coloured by its worst outcome.

Stable hooks for tests and pages: class="token"/"comment" ticks carry data-count (the sum is the number of events
drawn), marks carry data-t (seconds), the timeline's root carries its axis scale: x = data-x0 + t / data-t-end *
(data-x1 - data-x0).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from .breakdown import describe, ttft_breakdown
from .result import COMPLETED, ENDED_EARLY, FAILED, ProbeResult

SVG_NS = "http://www.w3.org/2000/svg"

OUTCOME_COLOURS = {COMPLETED: "#2e9d4f", ENDED_EARLY: "#e8891c", FAILED: "#d23b3b"}
UNKNOWN_COLOUR = "#9aa0a6"
TOKEN_COLOUR = "#2f6fd6"
COMMENT_COLOUR = "#8a5cc7"
SILENCE_COLOUR = "#d9dde3"
LONGEST_COLOUR = "#f5c542"
TTFT_COLOUR = "#0b7a75"
THRESHOLD_COLOUR = "#d23b3b"
MARK_COLOUR = "#5f6368"


def esc(value: object) -> str:
    """Escape text or an attribute value (quotes included), for SVG and HTML alike."""
    return html.escape(str(value), quote=True)


def _n(x: float) -> str:
    """A coordinate, short."""
    return f"{x:.2f}".rstrip("0").rstrip(".") if x == x else "0"


def _s(t: float) -> str:
    return f"{t:.3f} s"


def _nice_step(span: float, target: int = 8) -> float:
    raw = span / max(target, 1)
    if raw <= 0:
        return 1.0
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _columns(times: Sequence[float], x_of) -> dict[int, list[float]]:
    """Arrival times grouped per pixel column (times are in arrival order, so each column's list is sorted)."""
    cols: dict[int, list[float]] = {}
    for t in times:
        cols.setdefault(int(x_of(t)), []).append(t)
    return cols


def _longest_equal_run(ts: list[float]) -> int:
    best = run = 1
    for i in range(1, len(ts)):
        run = run + 1 if ts[i] == ts[i - 1] else 1
        best = max(best, run)
    return best if ts else 0


def _end_label(result: ProbeResult) -> str:
    if result.outcome == COMPLETED:
        return "completed"
    if result.outcome == ENDED_EARLY:
        return f"ended early: {result.reason}"
    if result.outcome == FAILED:
        return f"failed: {result.reason}"
    return f"{result.outcome}: {result.reason}"


def timeline_svg(result: ProbeResult, *, proxy_idle_timeout: float | None = None, width: int = 900) -> str:
    """One probe on a time axis, as an inline <svg> element (see the module's docstring)."""
    r = result
    width = max(int(width), 200)
    height = 182  # the stream above the axis, the TTFT breakdown band below its labels
    x0, x1 = 12.0, width - 12.0
    axis_y = 96.0
    tokens = list(r.token_times)
    comments = list(r.comment_times)
    marks_t = [t for t in (r.headers_seconds, r.first_byte_seconds, r.first_event_seconds, r.ttft_seconds) if t is not None]
    last_arrival = max([*marks_t, tokens[-1] if tokens else 0.0, comments[-1] if comments else 0.0, 0.0])
    end = max(r.duration_seconds or 0.0, last_arrival)
    t_end = end if end > 0 else 1.0
    scale = (x1 - x0) / t_end

    def x_of(t: float) -> float:
        return x0 + min(max(t, 0.0), t_end) * scale

    out: list[str] = []
    add = out.append
    summary = (f"{r.dialect} {r.url}: {_end_label(r)}, TTFT {_s(r.ttft_seconds) if r.ttft_seconds is not None else 'none'}, "
               f"{r.token_events} token events, {r.comments} comments in {_s(end)}")
    add(f'<svg xmlns="{SVG_NS}" class="timeline" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="system-ui, sans-serif" font-size="11" '
        f'data-x0="{_n(x0)}" data-x1="{_n(x1)}" data-t-end="{t_end:.6f}" data-outcome="{esc(r.outcome)}" '
        f'data-reason="{esc(r.reason)}">')
    add(f"<title>{esc(summary)}</title>")
    add(f'<rect class="background" x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>')

    # -- silences: from the request to the first byte, between consecutive arrivals, from the last one to the end --
    arrivals = sorted({*tokens, *comments, *([r.first_byte_seconds] if r.first_byte_seconds is not None else [])})
    gaps: list[tuple[float, float]] = []
    previous = 0.0
    for t in arrivals:
        if t > previous:
            gaps.append((previous, t))
        previous = t
    if end > previous:
        gaps.append((previous, end))
    longest = max(gaps, key=lambda g: g[1] - g[0], default=None)
    # shade only notable silences (at least 4 px wide and a fifth of the longest): their number stays bounded by the
    # width, and a dense stream does not turn grey from end to end
    min_seconds = max(4.0 / scale, 0.2 * (longest[1] - longest[0]) if longest else 0.0)
    add('<g class="silences">')
    for a, b in gaps:
        if b - a < min_seconds and (a, b) != longest:
            continue
        is_longest = (a, b) == longest
        cls = "silence longest" if is_longest else "silence"
        fill = LONGEST_COLOUR if is_longest else SILENCE_COLOUR
        what = "from the request to the first byte" if a == 0.0 and r.first_byte_seconds is not None and b == r.first_byte_seconds else f"{_s(a)} to {_s(b)}"
        label = f"{'longest ' if is_longest else ''}silence {_s(b - a)}: {what}"
        add(f'<rect class="{cls}" data-start="{a:.6f}" data-end="{b:.6f}" data-seconds="{b - a:.6f}" '
            f'x="{_n(x_of(a))}" y="30" width="{_n(max((b - a) * scale, 1.0))}" height="{_n(axis_y - 30)}" '
            f'fill="{fill}" fill-opacity="{0.75 if is_longest else 0.55}"><title>{esc(label)}</title></rect>')
    add("</g>")

    # -- the proxy idle budget, laid from the start of the longest silence --
    if proxy_idle_timeout and proxy_idle_timeout > 0:
        start = longest[0] if longest else 0.0
        silence = (longest[1] - longest[0]) if longest else 0.0
        over = silence >= proxy_idle_timeout
        bw = min(proxy_idle_timeout * scale, x1 - x_of(start))
        share = silence / proxy_idle_timeout * 100
        label = (f"proxy idle timeout {proxy_idle_timeout:g} s from {_s(start)}: the longest silence ({_s(silence)}) "
                 f"is {share:.0f} % of it" + (" — a proxy would have cut the stream" if over else ""))
        colour = THRESHOLD_COLOUR if over else "#7a8591"
        add(f'<g class="proxy-idle{" exceeded" if over else ""}" data-seconds="{proxy_idle_timeout:g}" data-start="{start:.6f}">'
            f'<title>{esc(label)}</title>'
            f'<rect x="{_n(x_of(start))}" y="24" width="{_n(max(bw, 1.0))}" height="4" fill="{colour}"/>'
            f'<text x="{_n(x_of(start) + 2)}" y="21" fill="{colour}" font-size="10">proxy idle {proxy_idle_timeout:g} s'
            f'{" (exceeded)" if over else ""}</text></g>')

    # -- axis --
    add(f'<g class="axis"><line x1="{_n(x0)}" y1="{_n(axis_y)}" x2="{_n(x1)}" y2="{_n(axis_y)}" stroke="#3c4043"/>')
    step = _nice_step(t_end)
    k = 0
    while k * step <= t_end + 1e-9 and k < 50:
        t = k * step
        tx = x_of(t)
        if step >= 1:
            label = f"{t:g} s"
        elif step >= 0.01:
            label = f"{t:.{max(0, -math.floor(math.log10(step)))}f} s"
        else:  # short spans in milliseconds
            label = f"{t * 1000:.{max(0, -math.floor(math.log10(step * 1000)))}f} ms"
        anchor = "start" if k == 0 else "end" if tx > x1 - 20 else "middle"
        add(f'<line x1="{_n(tx)}" y1="{_n(axis_y + 18)}" x2="{_n(tx)}" y2="{_n(axis_y + 22)}" stroke="#3c4043"/>'
            f'<text class="axis-label" x="{_n(tx)}" y="{_n(axis_y + 34)}" text-anchor="{anchor}" fill="#3c4043">{esc(label)}</text>')
        k += 1
    add("</g>")

    # -- marks: headers, first byte, first event, TTFT and its threshold --
    add('<g class="marks">')
    for cls, name, t, letter, ly in (
        ("headers", "response headers", r.headers_seconds, "H", 40),
        ("first-byte", "first byte", r.first_byte_seconds, "B", 50),
        ("first-event", "first event", r.first_event_seconds, "E", 60),
    ):
        if t is None:
            continue
        mx = x_of(t)
        add(f'<g class="mark {cls}" data-t="{t:.6f}"><title>{esc(name)} at {_s(t)}</title>'
            f'<line x1="{_n(mx)}" y1="34" x2="{_n(mx)}" y2="{_n(axis_y)}" stroke="{MARK_COLOUR}" stroke-dasharray="2 2"/>'
            f'<text x="{_n(mx - 2)}" y="{ly}" text-anchor="end" fill="{MARK_COLOUR}" font-size="9">{letter}</text></g>')
    threshold = r.ttft_threshold
    if threshold is not None and threshold > 0:
        inside = threshold <= t_end
        tx = x_of(threshold) if inside else x1
        label = f"TTFT threshold {threshold:g} s" + ("" if inside else " (beyond the end →)")
        add(f'<g class="ttft-threshold" data-t="{threshold:.6f}"><title>{esc(label)}</title>'
            f'<line x1="{_n(tx)}" y1="14" x2="{_n(tx)}" y2="{_n(axis_y + 16)}" stroke="{THRESHOLD_COLOUR}" '
            f'stroke-width="1.5" stroke-dasharray="{"5 3" if inside else "1 3"}"/>'
            f'<text x="{_n(tx - 3)}" y="12" text-anchor="end" fill="{THRESHOLD_COLOUR}" font-size="10">{esc(label)}</text></g>')
    if r.ttft_seconds is not None:
        tx = x_of(r.ttft_seconds)
        over = r.ttft_seconds > threshold
        colour = THRESHOLD_COLOUR if over else TTFT_COLOUR
        anchor = "end" if tx > x1 - 90 else "start"
        dx = -3 if anchor == "end" else 3
        add(f'<g class="ttft{" over" if over else ""}" data-t="{r.ttft_seconds:.6f}" data-x="{_n(tx)}">'
            f'<title>TTFT (first token) at {_s(r.ttft_seconds)}, threshold {threshold:g} s</title>'
            f'<line x1="{_n(tx)}" y1="26" x2="{_n(tx)}" y2="{_n(axis_y + 16)}" stroke="{colour}" stroke-width="2"/>'
            f'<text x="{_n(tx + dx)}" y="{_n(axis_y + 14)}" text-anchor="{anchor}" fill="{colour}" font-weight="600">'
            f"TTFT {esc(_s(r.ttft_seconds))}</text></g>")
    add("</g>")

    # -- the end, by how it ended --
    colour = OUTCOME_COLOURS.get(r.outcome, UNKNOWN_COLOUR)
    ex = x_of(end)
    label = _end_label(r)
    title = f"{label} at {_s(end)}" + (f": {r.detail}" if r.detail else "")
    symbol = ("✓" if r.outcome == COMPLETED else "✕" if r.outcome == FAILED else "!")
    add(f'<g class="end end-{esc(r.outcome)}" data-t="{end:.6f}" data-outcome="{esc(r.outcome)}" data-reason="{esc(r.reason)}">'
        f"<title>{esc(title)}</title>"
        f'<line x1="{_n(ex)}" y1="30" x2="{_n(ex)}" y2="{_n(axis_y + 16)}" stroke="{colour}" stroke-width="3"/>'
        f'<circle cx="{_n(ex)}" cy="{_n(axis_y)}" r="5" fill="{colour}"/>'
        f'<text x="{_n(ex - 4)}" y="{_n(axis_y + 48)}" text-anchor="end" fill="{colour}" font-weight="600">'
        f"{esc(symbol)} {esc(label)} at {esc(_s(end))}</text></g>")
    _breakdown_band(r, x_of, add, axis_y + 58)
    # -- token ticks (above the axis) and comment ticks (below), one per pixel column --
    def ticks(times: list[float], cls: str, noun: str, colour: str, up: bool) -> None:
        add(f'<g class="{cls}s">')
        last_label_x = -1e9
        for col, ts in sorted(_columns(times, x_of).items()):
            count = len(ts)
            burst = _longest_equal_run(ts)
            h = (18.0 + min(40.0, 8.0 * math.log2(count))) if up else (8.0 + min(8.0, 3.0 * math.log2(count)))
            tx = col + 0.5
            y1, y2 = (axis_y - h, axis_y) if up else (axis_y + 1, axis_y + 1 + h)
            if count == 1:
                title = f"{noun} at {_s(ts[0])}"
            else:
                span = f"at {_s(ts[0])}" if ts[0] == ts[-1] else f"from {_s(ts[0])} to {_s(ts[-1])}"
                title = f"{count} {noun}s {span}" + (f" ({burst} in one read)" if burst > 1 else "")
            classes = cls + (" burst" if burst > 1 else "")
            add(f'<line class="{classes}" data-count="{count}" data-t="{ts[0]:.6f}" x1="{_n(tx)}" y1="{_n(y1)}" '
                f'x2="{_n(tx)}" y2="{_n(y2)}" stroke="{colour}" stroke-width="{2.5 if burst > 1 else 1.2}">'
                f"<title>{esc(title)}</title></line>")
            if up and burst > 1 and tx - last_label_x >= 34:
                add(f'<text class="burst-count" x="{_n(min(tx, x1 - 8))}" y="{_n(y1 - 3)}" text-anchor="middle" '
                    f'fill="{colour}" font-size="10" font-weight="600">×{count}</text>')
                last_label_x = tx
        add("</g>")

    ticks(tokens, "token", "token event", TOKEN_COLOUR, True)
    ticks(comments, "comment", "heartbeat/comment", COMMENT_COLOUR, False)

    add("</svg>")
    return "".join(out)


BREAKDOWN_COLOURS = {
    "request_to_headers": "#9fb8e8",
    "headers_to_first_event": "#c9b3e6",
    "first_event_to_first_token": "#8fd1c9",
    "first_token_to_first_text": "#f2c38b",
}
SERVER_COLOUR = "#3d6fb8"


def _breakdown_band(r: ProbeResult, x_of, add, y: float) -> None:
    """The TTFT breakdown as a band of segments on the time axis (the server's reported part hatched darker, drawn
    ending at the headers); connect and TLS, before time zero, and every unknown part named in the band's label."""
    parts = ttft_breakdown(r)
    said = "; ".join(f"{p.label} {describe(p)}" for p in parts)
    add(f'<g class="breakdown"><title>{esc("where the wait went: " + said)}</title>')
    for p in parts:
        if p.start is None or p.end is None:
            continue
        x, w = x_of(p.start), max(x_of(p.end) - x_of(p.start), 1.0)
        add(f'<rect class="part" data-part="{p.name}" data-start="{p.start:.6f}" data-seconds="{p.seconds:.6f}" '
            f'x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="8" fill="{BREAKDOWN_COLOURS[p.name]}">'
            f"<title>{esc(f'{p.label}: {describe(p)}')}</title></rect>")
        if p.server_seconds is not None:
            sx = max(x_of(p.end - p.server_seconds), x)
            add(f'<rect class="part server" data-part="server" data-seconds="{p.server_seconds:.6f}" x="{_n(sx)}" '
                f'y="{_n(y + 2)}" width="{_n(max(x + w - sx, 1.0))}" height="4" fill="{SERVER_COLOUR}">'
                f"<title>{esc(f'the server says it spent {_s(p.server_seconds)} ({p.server_header})')}</title></rect>")
    before = "before the request: " + ", ".join(f"{p.label} {describe(p)}" for p in parts[:2])
    unknown = [p.label for p in parts[2:] if p.seconds is None]
    label = before + (f" · unknown: {', '.join(unknown)}" if unknown else "")
    add(f'<text class="breakdown-label" x="12" y="{_n(y + 22)}" fill="{MARK_COLOUR}" font-size="10">{esc(label)}</text>')
    add("</g>")


def mini_sparkline_svg(values: Sequence[float | None], *, threshold: float | None = None, points: int = 30,
                       width: int = 120, height: int = 20) -> str:
    """The landing page's TTFT sparkline: a few hundred bytes whatever the history. Runs are grouped into at most
    `points` columns, each drawn at its slowest TTFT (a spike is never averaged away); a column over the threshold gets
    a red dot, one where a run had no token a red mark at the base. Exact values are on the target's page."""
    n = len(values)
    columns: list[tuple[float | None, bool]] = []  # (slowest TTFT, a run without token) per column
    for c in range(min(n, points)):
        group = values[c * n // min(n, points):(c + 1) * n // min(n, points)]
        present = [v for v in group if v is not None]
        columns.append((max(present) if present else None, len(present) < len(group)))
    top = max([v for v, _ in columns if v is not None] + [threshold or 0.0, 0.0]) * 1.1 or 1.0
    step = (width - 4) / (len(columns) - 1) if len(columns) > 1 else 0.0
    last = next((v for v in reversed(values) if v is not None), None)
    title = f"TTFT over {n} runs" + (f", last {_s(last)}" if last is not None else "") + \
            (f", threshold {threshold:g} s" if threshold is not None else "")
    out = [f'<svg class="sparkline mini" width="{width}" height="{height}" data-runs="{n}"><title>{esc(title)}</title>']
    y = lambda v: round(height - 2 - v / top * (height - 4))  # noqa: E731
    if threshold is not None:
        out.append(f'<path class="threshold" d="M0 {y(threshold)}H{width}" stroke="{THRESHOLD_COLOUR}" '
                   'stroke-dasharray="3 2"/>')
    line, marks = [], []
    for i, (v, missing) in enumerate(columns):
        x = round(2 + i * step) if len(columns) > 1 else width // 2
        if v is not None:
            line.append(f"{' ' if line and columns[i - 1][0] is not None else 'M'}{x} {y(v)}")  # implicit lineto
            if threshold is not None and v > threshold:
                marks.append(f"M{x} {y(v)}h0")
        if missing:
            marks.append(f"M{x - 2} {height}l4 -4")
    if line:
        out.append(f'<path class="line" d="{"".join(line)}" fill="none" stroke="{TOKEN_COLOUR}"/>')
    if marks:
        out.append(f'<path class="over" d="{"".join(marks)}" stroke="{THRESHOLD_COLOUR}" stroke-width="3" '
                   'stroke-linecap="round"/>')
    out.append("</svg>")
    return "".join(out)


def mini_outcome_strip_svg(outcomes: Sequence[str], *, columns: int = 30, width: int = 120, height: int = 8) -> str:
    """The landing page's outcome strip: runs grouped into at most `columns` columns, each coloured by the worst
    outcome in it (failed, then ended early); neighbouring columns of one colour share a cell, with its title."""
    n = len(outcomes)
    cols = min(n, columns)
    cells: list[tuple[str, bool]] = []  # (the worst outcome, whether other outcomes are in the column too)
    for c in range(cols):
        group = set(outcomes[c * n // cols:(c + 1) * n // cols])
        worst = next((o for o in (FAILED, ENDED_EARLY) if o in group), min(group))
        cells.append((worst, len(group) > 1))
    out = [f'<svg class="outcome-strip mini" width="{width}" height="{height}" data-runs="{n}">']
    start = 0
    for c in range(1, cols + 1):
        if c == cols or cells[c][0] != cells[start][0]:
            worst, mixed = cells[start][0], any(m for _, m in cells[start:c])
            first, last = start * n // cols + 1, c * n // cols
            runs = f"run {first}" if first == last else f"runs {first}-{last}"
            out.append(f'<rect x="{_n(start * width / cols)}" width="{_n((c - start) * width / cols)}" '
                       f'height="{height}" fill="{OUTCOME_COLOURS.get(worst, UNKNOWN_COLOUR)}"><title>{runs}: '
                       f'{esc(worst)}{" (some)" if mixed else ""}</title></rect>')
            start = c
    out.append("</svg>")
    return "".join(out)
