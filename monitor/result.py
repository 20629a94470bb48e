"""The probe's input (ProbeSpec) and its one output (ProbeResult), with every outcome, reason, warning and alert name."""

from __future__ import annotations

import dataclasses
from array import array
from dataclasses import dataclass, field
from typing import Any

# ---- outcomes and reasons -------------------------------------------------------------------------------------------

COMPLETED = "completed"
ENDED_EARLY = "ended_early"
FAILED = "failed"

REASONS: dict[str, tuple[str, ...]] = {
    COMPLETED: ("ok",),
    ENDED_EARLY: (
        "no_terminal_event",  # clean EOF before the dialect's end of stream
        "connection_lost",  # reset, incomplete chunked body, peer vanished mid-stream
        "idle_timeout",  # no byte at all for the idle timeout
        "error_event",  # the stream carried the dialect's error event
        "too_short",  # ended properly, but lasted less than the expected minimum
        "too_few_events",  # ended properly, but carried fewer token events than expected
    ),
    FAILED: (
        "connect_error",
        "tls_error",
        "http_status",  # non-2xx response (status_code is kept)
        "timeout",  # no response in time, or the stream did not end within the probe timeout
        "not_event_stream",  # a 2xx whose body is not an event stream
        "protocol_error",  # the peer did not speak valid HTTP
        "event_too_large",  # a line or an event exceeded the decoder's limit
        "too_many_bytes",  # the stream exceeded its byte budget (max_stream_bytes)
        "too_many_events",  # the stream exceeded its event budget (max_events)
        "internal_error",  # a bug in sse-monitor: reported, never raised
    ),
}
OUTCOMES = tuple(REASONS)

# ---- warnings -------------------------------------------------------------------------------------------------------

WARNING_CONTENT_TYPE = "content_type_not_event_stream"
WARNING_CONTENT_ENCODING = "compressed_stream"
WARNING_CONTENT_LENGTH = "content_length_on_stream"
WARNING_BUFFERING = "buffering_suspected"
WARNING_EVENT_LOOP_LAG = "event_loop_lag"
WARNING_THROTTLED = "stream_throttled"  # the stream kept the monitor busy: its reading was paused (TCP back-pressure)
# a resumption check is configured, but the stream ended properly before its `after_events` token events: nothing
# was dropped, nothing checked (see ResumeResult)
WARNING_RESUME_NOT_CHECKED = "resume_not_checked"
WARNINGS = (
    WARNING_CONTENT_TYPE,
    WARNING_CONTENT_ENCODING,
    WARNING_CONTENT_LENGTH,
    WARNING_BUFFERING,
    WARNING_EVENT_LOOP_LAG,
    WARNING_THROTTLED,
    WARNING_RESUME_NOT_CHECKED,
)

# ---- resumption check (ProbeSpec.resume) ----------------------------------------------------------------------------
# After `after_events` token events the probe drops the connection and reconnects with the last event id seen, as a
# client resumes a stream that died behind a proxy. How the server took it:

RESUME_RESUMED = "resumed"  # the resumed stream continued right after the last id seen
RESUME_REFUSED = "refused"  # the reconnect got no stream: non-2xx, not an event stream, or it failed before any event
RESUME_RESTARTED = "restarted"  # the resumed stream started over: its first id is the first connection's first id
RESUME_GAP = "gap"  # ids after the last one seen were skipped
RESUME_DUPLICATE = "duplicate"  # the last id seen, or an earlier one, came again
RESUME_NO_IDS = "no_ids"  # no event ids to resume from (or, after the reconnect, none to check the continuation by)
RESUME_OUTCOMES = (RESUME_RESUMED, RESUME_REFUSED, RESUME_RESTARTED, RESUME_GAP, RESUME_DUPLICATE, RESUME_NO_IDS)
RESUME_HEADER = "Last-Event-ID"  # what EventSource sends when it reconnects

# ---- clocks ---------------------------------------------------------------------------------------------------------

CLOCK_KERNEL = "kernel"  # every arrival time is the kernel's receive timestamp of the read that carried it
CLOCK_USER = "user"  # at least one arrival time is when the process got to read it (no kernel stamp was available)
CLOCKS = (CLOCK_KERNEL, CLOCK_USER)

# ---- alert conditions -----------------------------------------------------------------------------------------------

ALERT_TTFT_HIGH = "SSEProbeTTFTHigh"
ALERT_ENDED_EARLY = "SSEProbeStreamEndedEarly"
ALERT_FAILED = "SSEProbeFailed"
ALERT_RESUME_BROKEN = "SSEProbeResumeBroken"  # a warning (a ticket): the resumption check's outcome is not `resumed`
ALERTS = (ALERT_TTFT_HIGH, ALERT_ENDED_EARLY, ALERT_FAILED, ALERT_RESUME_BROKEN)
PAGES = (ALERT_TTFT_HIGH, ALERT_ENDED_EARLY, ALERT_FAILED)  # the critical ones: the endpoint is broken for users

DEFAULT_PROMPT = "Write the numbers from 1 to 300, one per line."
DEFAULT_TTFT_THRESHOLD = 2.0
DEFAULT_TIMEOUT = 300.0
DEFAULT_IDLE_TIMEOUT = 90.0
DEFAULT_PROXY_IDLE_TIMEOUT = 60.0  # nginx proxy_read_timeout and AWS ALB idle timeout: the shortest hop, usually
DEFAULT_MAX_EVENT_BYTES = 1024 * 1024
# Budgets per stream. A long LLM answer (32k tokens, ~300 bytes a chunk) is ~10 MB in ~32,000 events: the defaults
# leave room for several times that, and stop an endless or flooding stream before it costs the monitor much.
DEFAULT_MAX_STREAM_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_EVENTS = 200_000
# The answer's token cap sent in every LLM dialect's own body: the default prompt's answer (300 numbers) needs ~600-900
# tokens; a runaway model cannot make a probe cost more than this many output tokens.
DEFAULT_MAX_OUTPUT_TOKENS = 1024
USAGE_KINDS = ("input", "output", "reasoning")  # ProbeResult.usage's keys are KIND_tokens

# Response headers that matter for streaming; only these are reported.
STREAMING_HEADERS = (
    "content-type",
    "content-encoding",
    "content-length",
    "transfer-encoding",
    "cache-control",
    "x-accel-buffering",
    "connection",
    "server",
    "via",
)


@dataclass(frozen=True)
class ResumeSpec:
    """The resumption check: drop the connection after `after_events` token events, reconnect with the last event id
    seen in a `Last-Event-ID` header (`header`) and/or in the query parameter `query_param`, and check that the stream
    continues right after it."""

    after_events: int
    header: bool = True
    query_param: str | None = None


@dataclass(frozen=True)
class Price:
    """What a million tokens cost, input and output (reasoning tokens are output), in `currency`."""

    input_per_million: float
    output_per_million: float
    currency: str = "USD"

    def cost(self, usage: dict[str, int | None] | None) -> dict[str, Any] | None:
        """{"amount", "currency"} of the tokens a run reported; None when it reported none."""
        if usage is None or (usage["input_tokens"] is None and usage["output_tokens"] is None):
            return None
        amount = ((usage["input_tokens"] or 0) * self.input_per_million
                  + (usage["output_tokens"] or 0) * self.output_per_million) / 1_000_000
        return {"amount": amount, "currency": self.currency}


@dataclass(frozen=True)
class ProbeSpec:
    """Everything one probe needs: where, how to ask, and what a healthy stream looks like."""

    url: str
    dialect: str = "openai-chat"
    prompt: str = DEFAULT_PROMPT
    model: str | None = None  # None: the dialect's default model
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None  # explicit request body; replaces the dialect's
    method: str | None = None  # None: the dialect's method
    ttft_threshold: float = DEFAULT_TTFT_THRESHOLD
    min_duration: float | None = None
    min_events: int | None = None
    timeout: float = DEFAULT_TIMEOUT
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    max_stream_bytes: int = DEFAULT_MAX_STREAM_BYTES  # body bytes as received; more ends the probe (too_many_bytes)
    max_events: int = DEFAULT_MAX_EVENTS  # events and comments; more ends the probe (too_many_events)
    # generic dialect only
    heartbeat_events: tuple[str, ...] = ()
    terminal_event: str | None = None
    terminal_data: str | None = None
    error_event: str | None = None  # an event type that ends the stream with an error
    verify_tls: bool = True
    trace: bool = False
    resume: ResumeSpec | None = None  # the resumption check; None: the stream is read once, to its end
    max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS  # the answer's token cap in the dialect's own body
    price: Price | None = None  # what tokens cost: gives the result a cost


@dataclass
class ResumeResult:
    """What the resumption check saw. Ids are the streams' `id:` values as sent (opaque strings); times are seconds
    since the probe started, like the ProbeResult's."""

    outcome: str | None = None  # one of RESUME_OUTCOMES; None: the check did not happen (`detail` says why)
    detail: str = ""  # a human sentence naming the ids
    last_id: str | None = None  # the last event id seen before the drop: what the reconnect sent
    first_id: str | None = None  # the first event id of the first connection
    first_id_after: str | None = None  # the first event id after the reconnect
    events_before: int = 0  # token events before the drop
    events_after: int = 0  # token events after the reconnect
    reconnect_seconds: float | None = None  # when the reconnect's request went out
    ttft_seconds: float | None = None  # from the reconnect's request to its first token event
    status_code: int | None = None  # the reconnect's response status


@dataclass
class ProbeResult:
    """What one probe saw. Times are seconds since the probe started its request, None when the moment never came."""

    url: str
    dialect: str
    outcome: str = FAILED
    reason: str = "internal_error"
    detail: str = ""  # a human sentence on why, for failures and early ends
    status_code: int | None = None
    http_version: str | None = None  # of the response, as the client negotiated it (e.g. HTTP/1.1)
    started_at: float = 0.0  # wall clock (unix seconds) when the request's first bytes were sent: time zero
    connect_seconds: float | None = None  # how long the TCP connect took (before time zero)
    tls_seconds: float | None = None  # how long the TLS handshake took (before time zero; https only)
    headers_seconds: float | None = None
    first_byte_seconds: float | None = None
    first_event_seconds: float | None = None
    ttft_seconds: float | None = None  # the first token event, reasoning (thinking) included
    first_text_seconds: float | None = None  # the first token of the visible answer; TTFT for a model that doesn't think
    duration_seconds: float = 0.0
    events: int = 0  # dispatched events, of every kind
    token_events: int = 0
    comments: int = 0
    bytes: int = 0  # body bytes as received (before any decompression)
    reads: int = 0  # network reads that carried body bytes
    max_gap_seconds: float | None = None  # longest gap between consecutive token events
    max_silence_seconds: float | None = None  # longest time without any byte after the response headers
    ttft_threshold: float = DEFAULT_TTFT_THRESHOLD
    clock: str = CLOCK_USER  # where the arrival times came from: CLOCK_KERNEL or CLOCK_USER
    alerts: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    response_headers: dict[str, str] = field(default_factory=dict)
    # what the server reported of its own time (timing headers, see server_timing.py): name -> seconds
    server_timing: dict[str, float] = field(default_factory=dict)
    request_id: str | None = None  # the id the server gave the request (x-request-id, request-id, ...): for tickets
    # token counts the stream reported ({"input_tokens", "output_tokens", "reasoning_tokens"}, None where it did not
    # say); None when it reported none
    usage: dict[str, int | None] | None = None
    cost: dict[str, Any] | None = None  # {"amount", "currency"} of the usage at the spec's price; None without either
    # arrival time of each token event (bounded; see probe.MAX_TOKEN_TIMES); gaps are derived from it
    token_times: array = field(default_factory=lambda: array("d"), repr=False)
    # arrival time of each comment line (heartbeats), bounded like token_times
    comment_times: array = field(default_factory=lambda: array("d"), repr=False)
    trace: list[dict[str, Any]] | None = None
    resume: ResumeResult | None = None  # the resumption check, when the spec asks for one

    @property
    def healthy(self) -> bool:
        return not self.alerts

    @property
    def reconnected_after(self) -> int | None:
        """With a resumption check that reconnected: how many token events came before the drop."""
        resume = self.resume
        return resume.events_before if resume is not None and resume.reconnect_seconds is not None else None

    def token_gaps(self) -> list[float]:
        """Gaps between consecutive token events, in arrival order; never the one across a resumption check's
        reconnect (our own drop, not the stream's pace: ResumeResult.ttft_seconds measures it)."""
        t = self.token_times
        cut = self.reconnected_after
        return [t[i] - t[i - 1] for i in range(1, len(t)) if i != cut]

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in ("token_times", "comment_times", "trace", "resume")}
        out["resume"] = dataclasses.asdict(self.resume) if self.resume is not None else None
        if self.trace is not None:
            out["trace"] = self.trace
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbeResult:
        """The result `to_dict` described (without its time arrays); keys this version does not know are ignored."""
        known = {f.name for f in dataclasses.fields(cls)} - {"token_times", "comment_times", "resume"}
        result = cls(**{k: v for k, v in data.items() if k in known})
        resume = data.get("resume")
        if resume is not None:
            fields = {f.name for f in dataclasses.fields(ResumeResult)}
            result.resume = ResumeResult(**{k: v for k, v in resume.items() if k in fields})
        return result


def alert_conditions(result: ProbeResult) -> list[str]:
    """The alert conditions that hold for one finished probe.

    TTFT is high when the first token came after the threshold, or when the response was open past the threshold
    without a token. A probe that never got a response is only `failed`, so one fault does not page twice.
    The resumption check is broken when it happened and the stream did not continue right after the last id seen.
    A reconnect the server refuses leaves the run `failed` (a resuming client gets no rest of the answer) but raises
    only SSEProbeResumeBroken, a ticket: the stream itself worked until the probe cut it on purpose.
    """
    alerts = []
    ttft, threshold = result.ttft_seconds, result.ttft_threshold
    if ttft is not None:
        if ttft > threshold:
            alerts.append(ALERT_TTFT_HIGH)
    elif result.headers_seconds is not None and result.duration_seconds > threshold:
        alerts.append(ALERT_TTFT_HIGH)
    refused = result.resume is not None and result.resume.outcome == RESUME_REFUSED
    if refused:  # the stream worked until the probe cut it on purpose: the resumption check's ticket, not a page
        pass
    elif result.outcome == ENDED_EARLY:
        alerts.append(ALERT_ENDED_EARLY)
    elif result.outcome == FAILED:
        alerts.append(ALERT_FAILED)
    if result.resume is not None and result.resume.outcome not in (None, RESUME_RESUMED):
        alerts.append(ALERT_RESUME_BROKEN)
    return alerts
