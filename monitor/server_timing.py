"""What the server says of its own time and of the request: timing response headers in seconds, and its request id."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# Headers whose value is a number of milliseconds: OpenAI and Azure OpenAI, LiteLLM proxy, Envoy-based gateways, TGI.
MS_HEADERS = (
    "openai-processing-ms",
    "x-litellm-response-duration-ms",
    "x-litellm-overhead-duration-ms",
    "x-envoy-upstream-service-time",
    "x-queue-time",
    "x-inference-time",
    "x-time-per-token",
    "x-compute-time",
)
# Of these, the first found says how much of the wait from the request to the response headers the server itself spent
# (the TTFT breakdown's server part); Server-Timing entries have no agreed meaning, so none of them is used so.
SERVER_PART_HEADERS = ("openai-processing-ms", "x-envoy-upstream-service-time", "x-litellm-response-duration-ms")
SERVER_TIMING = "server-timing"  # W3C: `name;dur=ms;desc="..."` entries, comma-separated, kept as server-timing:NAME
REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-goog-request-id", "cf-ray")  # the first found is kept
MAX_TIMINGS = 16  # names kept per response: a hostile endpoint cannot make unbounded series
MAX_REQUEST_ID = 128  # characters of a request id kept
MAX_SHOWN = 100  # characters of an ignored header value quoted in the trace
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token: a Server-Timing metric name
_ENTRIES = re.compile(r'(?:[^,"]|"(?:[^"\\]|\\.)*")+')  # comma-separated, commas inside quoted strings kept


@dataclass
class ServerReport:
    """The server's own account, from one response's headers."""

    timing: dict[str, float] = field(default_factory=dict)  # name (lower-cased) -> seconds
    request_id: str | None = None
    ignored: list[str] = field(default_factory=list)  # malformed or over-the-cap values, for the trace


def read_server_report(headers: Mapping[str, str], server_timing: list[str] | None = None) -> ServerReport:
    """The timing headers and request id of a response. `headers` is looked up by lower-case name; `server_timing`
    lists every Server-Timing header value (a response may send several; default: the one in `headers`)."""
    report = ServerReport()
    for name in MS_HEADERS:
        value = headers.get(name)
        if value is not None:
            _keep(report, name, _milliseconds(value), f"{name}: {value}")
    if server_timing is None:
        server_timing = [headers[SERVER_TIMING]] if SERVER_TIMING in headers else []
    for value in server_timing:
        for entry in _ENTRIES.findall(value):
            _server_timing_entry(report, entry.strip())
    report.request_id = _request_id(report, headers)
    return report


def _keep(report: ServerReport, name: str, seconds: float | None, raw: str) -> None:
    if seconds is None:
        report.ignored.append(f"malformed {_shown(raw)}")
    elif name in report.timing:
        pass  # the first of a repeated name stands
    elif len(report.timing) >= MAX_TIMINGS:
        report.ignored.append(f"over {MAX_TIMINGS} timings: {_shown(raw)}")
    else:
        report.timing[name] = seconds


def _server_timing_entry(report: ServerReport, entry: str) -> None:
    """One `name;dur=12.5;desc="..."` entry. An entry without `dur` says nothing of time: skipped, not malformed."""
    if not entry:
        return
    name, *params = (part.strip() for part in entry.split(";"))
    raw = f"{SERVER_TIMING}: {entry}"
    if not _TOKEN.fullmatch(name):
        report.ignored.append(f"malformed {_shown(raw)}")
        return
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "dur":
            _keep(report, f"{SERVER_TIMING}:{name.lower()}", _milliseconds(value.strip().strip('"')), raw)
            return


def _milliseconds(value: str) -> float | None:
    """A finite, non-negative number of milliseconds as seconds; None when it is not one."""
    try:
        ms = float(value.strip())
    except ValueError:
        return None
    return ms / 1000 if math.isfinite(ms) and ms >= 0 else None


def _request_id(report: ServerReport, headers: Mapping[str, str]) -> str | None:
    for name in REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value is None:
            continue
        value = value.strip()
        if value and value.isascii() and value.isprintable():
            return value[:MAX_REQUEST_ID]
        report.ignored.append(f"malformed {_shown(f'{name}: {value}')}")
    return None


def _shown(text: str) -> str:
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN - 3] + "..."
