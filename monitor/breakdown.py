"""Where a probe's time to first token went, part by part: connect, TLS, request to headers (with the part the server
says it spent), headers to first event, first event to first token, and the thinking before the first visible text.
No number is invented: a part whose moments were not both seen is unknown (None)."""

from __future__ import annotations

from dataclasses import dataclass

from .result import ProbeResult
from .server_timing import SERVER_PART_HEADERS


@dataclass(frozen=True)
class Part:
    """One part of the wait. `start`/`end` are on the result's time axis (seconds from the request) for the parts
    after the request went out; None for connect and TLS, which come before it."""

    name: str  # a stable key: connect, tls, request_to_headers, headers_to_first_event, first_event_to_first_token,
    # first_token_to_first_text
    label: str
    seconds: float | None  # None: unknown
    start: float | None = None
    end: float | None = None
    server_seconds: float | None = None  # request_to_headers only: what a server header says it spent of it
    server_header: str | None = None  # ... and which header said so
    applies: bool = True  # False: not part of this kind of request (TLS on http://)


def _between(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else end - start


def ttft_breakdown(r: ProbeResult) -> list[Part]:
    """The parts of a fresh client's wait for the first token, and after it for the first visible text when a model
    thought first (only then)."""
    tls = r.url.lower().startswith("https:")
    header = next((name for name in SERVER_PART_HEADERS if name in r.server_timing), None)
    parts = [
        Part("connect", "connect", r.connect_seconds),
        Part("tls", "TLS", r.tls_seconds if tls else None, applies=tls),
        Part("request_to_headers", "request sent → response headers", r.headers_seconds, 0.0, r.headers_seconds,
             server_seconds=r.server_timing.get(header) if header else None, server_header=header),
        Part("headers_to_first_event", "headers → first event", _between(r.headers_seconds, r.first_event_seconds),
             r.headers_seconds, r.first_event_seconds),
        Part("first_event_to_first_token", "first event → first token", _between(r.first_event_seconds,
             r.ttft_seconds), r.first_event_seconds, r.ttft_seconds),
    ]
    thought = _between(r.ttft_seconds, r.first_text_seconds)
    if thought:
        parts.append(Part("first_token_to_first_text", "first token → first text (thinking)", thought, r.ttft_seconds,
                          r.first_text_seconds))
    return parts


def describe(part: Part) -> str:
    """One part as text: '0.412 s', 'unknown', 'no TLS (http)'; request → headers with the server's share."""
    if not part.applies:
        return "none (plain http)"
    if part.seconds is None:
        return "unknown"
    text = f"{part.seconds:.3f} s"
    if part.server_seconds is not None:
        rest = part.seconds - part.server_seconds
        text += f" (the server says {part.server_seconds:.3f} s: {part.server_header}"
        text += f"; {rest:.3f} s elsewhere)" if rest >= 0 else ", more than the client saw)"
    return text
