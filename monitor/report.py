"""Rendering a ProbeResult for people (a terminal, a CI log) and for machines (one JSON object)."""

from __future__ import annotations

import json

from .breakdown import describe, ttft_breakdown
from .result import ProbeResult, ResumeResult


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def _size(n: int) -> str:
    return f"{n} B" if n < 1024 else f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MiB"


def summary(result: ProbeResult) -> str:
    r = result
    status = f"HTTP {r.status_code}" if r.status_code is not None else "no response"
    lines = [
        f"{r.dialect} {r.url}",
        f"  outcome      {r.outcome} ({r.reason}), {status}",
    ]
    if r.detail:
        lines.append(f"  why          {r.detail}")
    lines += [
        f"  TTFT         {_s(r.ttft_seconds)}  (threshold {r.ttft_threshold:g} s)  first text {_s(r.first_text_seconds)}",
        f"  first byte   {_s(r.first_byte_seconds)}  first event {_s(r.first_event_seconds)}  headers {_s(r.headers_seconds)}",
        f"  duration     {_s(r.duration_seconds)}  {r.token_events} token events, {r.events} events, "
        f"{r.comments} comments, {_size(r.bytes)} in {r.reads} reads",
        f"  max gap      {_s(r.max_gap_seconds)}  max silence {_s(r.max_silence_seconds)}",
        *breakdown_lines(r),
        *_usage_lines(r),
        *_resume_lines(r.resume),
        f"  warnings     {', '.join(r.warnings) or 'none'}",
        f"  alerts       {', '.join(r.alerts) or 'none'}",
    ]
    if r.response_headers:
        shown = ", ".join(f"{k}: {v}" for k, v in r.response_headers.items())
        lines.insert(2, f"  headers      {shown}")
    if r.server_timing or r.request_id:
        lines.insert(3 if r.response_headers else 2, f"  server       {_server(r)}")
    if r.trace is not None:
        lines.append(f"  trace        {len(r.trace)} entries (seconds since the request started)")
        for entry in r.trace:
            what = ":" if entry["kind"] == "comment" else entry["type"]
            data = entry["data"] if len(entry["data"]) <= 80 else entry["data"][:77] + "..."
            lines.append(f"    {entry['t']:9.3f}  {what:<28} {data}")
    lines.append("ALERT: " + ", ".join(r.alerts) if r.alerts else "OK: healthy")
    return "\n".join(lines)


def breakdown_lines(r: ProbeResult) -> list[str]:
    """Where the wait for the first token went, one part a line (see breakdown.py)."""
    parts = ttft_breakdown(r)
    width = max(len(part.label) for part in parts)
    heads = ["  TTFT parts   "] + ["               "] * (len(parts) - 1)
    return [f"{head}{part.label:<{width}}  {describe(part)}" for head, part in zip(heads, parts)]


def _server(r: ProbeResult) -> str:
    """What the server reported: its request id, then each timing it gave."""
    said = [f"request id {r.request_id}"] if r.request_id else []
    said += [f"{name} {_s(seconds)}" for name, seconds in r.server_timing.items()]
    return ", ".join(said)


def _usage_lines(r: ProbeResult) -> list[str]:
    """The tokens the stream reported and what they cost; nothing when it reported none."""
    if r.usage is None:
        return []
    counts = [f"{_count(r.usage[f'{kind}_tokens'])} {kind}" for kind in ("input", "output")]
    if r.usage["reasoning_tokens"] is not None:
        counts[-1] += f" ({r.usage['reasoning_tokens']} reasoning)"
    cost = f", cost {money(r.cost['amount'])} {r.cost['currency']}" if r.cost is not None else ""
    return [f"  tokens       {', '.join(counts)}{cost}"]


def money(amount: float) -> str:
    """An amount to the millionth of the currency (a run costs fractions of a cent): 0.00002, 1.5."""
    return f"{amount:.6f}".rstrip("0").rstrip(".") if amount else "0"


def _count(value: int | None) -> str:
    return "?" if value is None else str(value)


def _resume_lines(resume: ResumeResult | None) -> list[str]:
    """The resumption check: its outcome and why, then (when it reconnected) the counts and the reconnect's TTFT."""
    if resume is None:
        return []
    lines = [f"  resume       {resume.outcome or 'not checked'}: {resume.detail}"]
    if resume.reconnect_seconds is not None:
        status = f"HTTP {resume.status_code}" if resume.status_code is not None else "no response"
        line = (f"               dropped after {resume.events_before} token events, reconnected at "
                f"{_s(resume.reconnect_seconds)} ({status})")
        if resume.ttft_seconds is not None:
            line += f", then {resume.events_after} token events, the first after {_s(resume.ttft_seconds)}"
        lines.append(line)
    return lines


def to_json(result: ProbeResult) -> str:
    out = result.to_dict()
    for key, value in out.items():
        if isinstance(value, float) and key != "started_at":
            out[key] = round(value, 6)
    if out.get("resume"):
        out["resume"] = {k: round(v, 6) if isinstance(v, float) else v for k, v in out["resume"].items()}
    return json.dumps(out, ensure_ascii=False)
