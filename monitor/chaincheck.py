"""The seeds' proxy-chain checklist, measured end to end through the chain in front of an sse-monitor canary.

`sse-monitor canary` runs behind the team's real chain (CDN -> load balancer -> reverse proxy -> canary); this module
asks it for streams of known shape through that chain and compares what arrives with what the canary sent. Every
canary event carries the moment it was written (`t`, ms since its response start), so one trial needs no shared clock:
the least delayed event of a trial anchors the others, and an event's lateness is how much longer than that it took.

Trials (each one connection, bounded in time, all started together):
- buffering: small incompressible events every 50 ms for a few seconds, `Accept-Encoding: identity`. Events held back
  show as lateness; the bytes the canary wrote after an event and before that event came out are what the chain held.
- the same with `X-Accel-Buffering: no` on the response: whether the per-response switch turns buffering off.
- compression: compressible events with the probe's usual `Accept-Encoding: gzip, deflate`.
- heartbeats: one event, then a silence filled with comment lines every 250 ms: do comments pass in real time?
- idle timeout: silences of 1, 2, 4, ... s up to --max-idle (all at once); a silence longer than the chain's idle
  timeout is cut about that long after the last byte, which also gives the timeout's value; then silences just below
  and above it confirm it, bisecting further when the cuts do not agree, to within 5 % or 1 s (the wider).
- stream length: one event, then heartbeats every second up to --max-duration: is a busy stream cut after some time?
Then the checklist as verdicts: buffering off, no compression, no Content-Length, heartbeats pass, the heartbeat
interval to use (below half the shortest timeout found), idle timeout and length cap at least twice the expected
duration of a stream.
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .probe import run_probe
from .redact import redact_url
from .result import COMPLETED, ProbeResult, ProbeSpec

DEFAULT_EXPECTED_DURATION = 120.0  # a long LLM answer; the checklist wants every timeout at twice the longest stream
DEFAULT_MAX_IDLE = 600.0
GRACE = 10.0  # a trial ends this long after the last thing it waits for was due: the chain "stalled" it
LATE = 0.1  # lateness beyond this is held back, not network jitter (p90 of a trial's events)
DELIVERY = {"events": 100, "interval": 0.05, "size": 400}  # 5 s, ~44 KiB: an 8 KiB buffer holds ~0.9 s
HEARTBEAT_TRIAL = {"silence": 3.0, "heartbeat": 0.25}
LENGTH_HEARTBEAT = 1.0
MAX_BISECTIONS = 8
TRIAL_EVENT_BYTES = 128 * 1024  # a canary event is at most 64 KiB of pad and ~100 bytes more
TRIAL_STREAM_BYTES = 16 * 1024 * 1024  # the largest trial is ~44 KiB

Progress = Callable[[str], None]
# how a trial may end that says the endpoint is not a canary (or a broken one), not that the chain cut it
NOT_A_CHAIN = ("too_many_bytes", "too_many_events", "event_too_large", "not_event_stream", "protocol_error",
               "internal_error")
# the checklist's checks, in the order of the report (the `check` label of sse_chain_check_passed)
CHAIN_CHECKS = ("buffering", "compression", "content_length", "heartbeats", "idle_timeout", "heartbeat_interval",
                "stream_length")


@dataclass(frozen=True)
class ChainCheckSpec:
    """What to check and how far: the canary's URL through the chain, and the bounds of the searches."""

    url: str
    expected_duration: float = DEFAULT_EXPECTED_DURATION  # the longest stream the team expects to serve
    max_idle: float = DEFAULT_MAX_IDLE  # the longest silence tried
    max_duration: float | None = None  # the longest busy stream tried; None: twice expected_duration
    headers: dict[str, str] = field(default_factory=dict)
    verify_tls: bool = True

    @property
    def duration_bound(self) -> float:
        return self.max_duration if self.max_duration is not None else 2 * self.expected_duration


# ---- one trial: one stream of known shape through the chain ------------------------------------------------------------


@dataclass
class Trial:
    """One canary stream as it arrived. Times are seconds since the request was sent (the probe's time zero); `sent`
    times are the canary's, since its response start."""

    name: str
    result: ProbeResult
    canary: bool = False  # the canary's hello event arrived
    hello_at: float | None = None
    done: bool = False  # the canary's last event arrived: nothing was cut
    events: list[tuple[float, float, int]] = field(default_factory=list)  # (arrival, sent, bytes as the canary wrote)
    comments: list[tuple[float, float]] = field(default_factory=list)  # (arrival, sent)
    last_byte: float | None = None  # arrival of the last event or comment (None: none came)

    @property
    def refused(self) -> bool:
        """The canary turned the request down (400: longer or larger than its --max-duration allows)."""
        return self.result.status_code == 400 and not self.canary

    @property
    def ended_at(self) -> float:
        return self.result.duration_seconds

    def cut(self) -> str:
        """How the stream ended, when it did not reach the canary's last event."""
        r = self.result
        if r.reason == "http_status":
            return f"http_{r.status_code}"
        if r.reason == "connection_lost":
            return "reset" if "reset" in r.detail.lower() else "closed"
        if r.reason == "no_terminal_event":
            return "clean_close"
        if r.reason in ("idle_timeout", "timeout"):
            return "stalled"
        return r.reason

    def misbehaved(self) -> str | None:
        """Why this stream was not a canary's, when it ended in a way no chain causes (our own budgets, garbage)."""
        r = self.result
        if r.reason in NOT_A_CHAIN:
            return f"the {self.name} trial ended with {r.reason}: {r.detail}"
        return None

    def anchor(self) -> float:
        """When the canary's response started, on our clock, as the least delayed thing it wrote shows it (the hello
        goes out at the canary's 0, events and comments at their `t`); the request's moment when nothing came. Not
        the response headers: a buffering hop may hold them back with the body."""
        points = [self.hello_at, *(at - sent for at, sent, _ in self.events), *(at - sent for at, sent in self.comments)]
        return min((p for p in points if p is not None), default=0.0)

    def silence_at_cut(self) -> float:
        """How long the canary had been silent when the stream was cut: from when it wrote the last event that came
        through (so a hop holding that event back does not shorten the silence), else from the request."""
        written = max((sent for _, sent, _ in self.events), default=0.0)
        return max(0.0, self.ended_at - self.anchor() - written)


def _canary_url(base: str, **params: Any) -> str:
    parts = urllib.parse.urlsplit(base)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query += [(k, f"{v:g}" if isinstance(v, float) else str(v)) for k, v in params.items()]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


async def run_trial(spec: ChainCheckSpec, name: str, lasts: float, accept_encoding: str = "identity",
                    **params: Any) -> Trial:
    """One stream from the canary with these parameters, expected to last `lasts` seconds; bounded by that plus
    GRACE: silence beyond it means the chain stopped passing the stream on (the cut kind `stalled`)."""
    headers = {**spec.headers, "Accept": "text/event-stream", "Accept-Encoding": accept_encoding}
    # budgets from what the canary sends for these parameters, with room: a hostile or broken endpoint at this URL
    # cannot make a trial's trace (every event's data) large
    beat = params.get("heartbeat", 0)
    expected = int(params.get("events", 3)) + 2 + (math.ceil(lasts / beat) if beat else 0)
    probe = ProbeSpec(url=_canary_url(spec.url, **params), dialect="generic", terminal_event="done", headers=headers,
                      timeout=lasts + 2 * GRACE, idle_timeout=lasts + GRACE, verify_tls=spec.verify_tls,
                      trace=True, ttft_threshold=math.inf, max_events=expected + 64, max_event_bytes=TRIAL_EVENT_BYTES,
                      max_stream_bytes=TRIAL_STREAM_BYTES)
    result = await run_probe(probe)
    trial = Trial(name, result)
    for entry in result.trace or ():
        at = entry["t"]
        if entry["kind"] == "comment":
            text = entry["data"].strip()
            sent = _ms(text[3:]) if text.startswith("hb ") else None
            if sent is not None:
                trial.comments.append((at, sent))
            trial.last_byte = at
            continue
        trial.last_byte = at
        data = _json(entry["data"])
        if entry["type"] == "canary":
            trial.canary, trial.hello_at = data.get("canary") == "sse-monitor", at
        elif entry["type"] == "done":
            trial.done = True
        elif "seq" in data and (sent := _ms(data.get("t"))) is not None:
            wire = len(entry["data"]) + len("data: \n\n") + (len(f"id: {entry['id']}\n") if entry["id"] else 0)
            trial.events.append((at, sent, wire))
    result.trace = None  # the trace served its purpose; a report keeps the summary
    return trial


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _ms(value: Any) -> float | None:
    """A canary's `t` (milliseconds) as seconds; None unless a plausible time (what else came is not a canary's)."""
    try:
        ms = float(value)
    except (TypeError, ValueError):
        return None
    return ms / 1000 if 0 <= ms < 1e8 else None


# ---- delivery: did events come out when they went in? -----------------------------------------------------------------


@dataclass
class Delivery:
    """How a stream of small events came through: what the chain held back, and for how long."""

    events_sent: int
    events_received: int
    buffered: bool
    held_bytes: int  # the most bytes the chain held at once (as the canary wrote them, before any compression)
    held_seconds: float  # the longest an event was held
    late_p90_seconds: float
    whole_response: bool  # nothing came out before the canary had written its last event
    first_event_seconds: float | None  # from the request to the first data event

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in self.__dict__.items()}


def delivery(trial: Trial, events_sent: int) -> Delivery:
    events = sorted(trial.events, key=lambda e: e[1])
    if not events:
        return Delivery(events_sent, 0, False, 0, 0.0, 0.0, False, None)
    base = min(at - sent for at, sent, _ in events)  # the least delayed event: network and request time
    late = [at - sent - base for at, sent, _ in events]
    held_bytes = 0
    for i, (at, sent, size) in enumerate(events):
        if late[i] <= LATE:
            continue
        written_before = at - base  # on the canary's clock: what it had written when event i came out
        held = size + sum(s for a, t, s in events[i + 1:] if t < written_before)
        held_bytes = max(held_bytes, held)
    p90 = _quantile(late, 0.9)
    whole = len(events) >= 3 and events[0][0] - base >= events[-1][1] - LATE
    return Delivery(events_sent, len(events), p90 > LATE or whole, held_bytes, max(late), p90, whole,
                    min(at for at, _, _ in events))


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


# ---- the idle timeout: the shortest silence the chain cuts ------------------------------------------------------------


def _tolerance(seconds: float) -> float:
    return max(0.05 * seconds, 1.0)


def _ladder(max_idle: float) -> list[float]:
    steps, s = [], 1.0
    while s < max_idle:
        steps.append(s)
        s *= 2
    return [*steps, max_idle]


@dataclass
class IdleTimeout:
    searched_up_to: float
    seconds: float | None = None  # None: no silence up to searched_up_to was cut
    low: float = 0.0  # the longest silence that passed
    high: float | None = None  # the shortest silence that was cut
    cut: str | None = None  # how the chain cut: reset, closed, clean_close, http_5xx, stalled
    trials: list[dict[str, Any]] = field(default_factory=list)
    misbehaved: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"seconds": _r(self.seconds), "low_seconds": _r(self.low), "high_seconds": _r(self.high),
                "cut": self.cut, "searched_up_to_seconds": self.searched_up_to, "trials": self.trials}


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


async def idle_timeout(spec: ChainCheckSpec, progress: Progress) -> IdleTimeout:
    found = IdleTimeout(searched_up_to=spec.max_idle)
    cut_silences: list[float] = []
    kinds: list[str] = []

    async def attempt(silences: list[float]) -> None:
        trials = await asyncio.gather(*(
            run_trial(spec, f"idle {s:g} s", s, events=2, interval=0, silence=s, silence_after=1) for s in silences))
        for s, trial in zip(silences, trials):
            passed = trial.done
            entry = {"silence_seconds": s, "passed": passed}
            found.misbehaved = found.misbehaved or trial.misbehaved()
            if trial.refused:
                entry["refused_by_canary"] = True
                refused.append(s)
            elif passed:
                found.low = max(found.low, s)
            else:
                found.high = s if found.high is None else min(found.high, s)
                entry["cut"], entry["cut_after_seconds"] = trial.cut(), round(trial.silence_at_cut(), 3)
                kinds.append(trial.cut())
                if trial.cut() != "stalled":  # a stall's end is our own deadline, not the chain's timer
                    cut_silences.append(trial.silence_at_cut())
            found.trials.append(entry)
        found.trials.sort(key=lambda e: e["silence_seconds"])

    refused: list[float] = []
    ladder = _ladder(spec.max_idle)
    progress(f"idle timeout: silences of {ladder[0]:g} to {ladder[-1]:g} s, all at once")
    await attempt(ladder)
    if found.misbehaved:  # not a canary's stream: nothing to search
        return found
    if refused:  # the canary's --max-duration is shorter than --max-idle: the search ends below it
        found.searched_up_to = max([s for s in ladder if s < min(refused)], default=0.0)
    if found.high is None:
        return found
    hint = statistics.median(cut_silences) if cut_silences else None
    if hint is not None and found.low < hint < found.high:
        half = 0.45 * _tolerance(hint)  # the two confirmations then bracket the timeout within the tolerance
        probes = sorted({round(min(max(hint - half, found.low + 0.01), found.high - 0.01), 2),
                         round(min(max(hint + half, found.low + 0.01), found.high - 0.01), 2)})
        progress(f"idle timeout: cuts came {hint:.2f} s into a silence; confirming with {', '.join(f'{p:.2f}' for p in probes)} s")
        await attempt(probes)
        if found.misbehaved:
            return found
    for _ in range(MAX_BISECTIONS):
        if found.high - found.low <= _tolerance(found.low):
            break
        middle = round((found.low + found.high) / 2, 2)
        progress(f"idle timeout: between {found.low:.2f} and {found.high:.2f} s; trying {middle:.2f} s")
        await attempt([middle])
        if found.misbehaved:
            return found
    found.cut = max(set(kinds), key=kinds.count)
    consistent = [c for c in cut_silences if found.low - 0.1 <= c <= found.high + 0.1]
    found.seconds = statistics.median(consistent) if consistent else (found.low + found.high) / 2
    return found


# ---- the whole check --------------------------------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    ok: bool | None  # None: the search did not reach far enough to tell
    finding: str
    advice: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "finding": self.finding, "advice": self.advice}


@dataclass
class ChainReport:
    url: str
    expected_duration: float
    started_at: float
    duration_seconds: float = 0.0
    reachable: bool = False
    problem: str = ""  # why nothing could be measured
    headers: dict[str, Any] = field(default_factory=dict)
    buffering: Delivery | None = None
    buffering_accel_no: Delivery | None = None
    content_encoding: str | None = None  # what the chain added when asked with Accept-Encoding: gzip, deflate
    compression: Delivery | None = None
    heartbeats: dict[str, Any] = field(default_factory=dict)
    idle: IdleTimeout | None = None
    length: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    unmeasured: dict[str, str] = field(default_factory=dict)  # check -> why its trial gave nothing to judge by

    @property
    def ok(self) -> bool:
        return self.reachable and all(c.ok is not False for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url, "ok": self.ok, "reachable": self.reachable, "problem": self.problem,
            "started_at": self.started_at, "duration_seconds": round(self.duration_seconds, 3),
            "expected_duration_seconds": self.expected_duration, "headers": self.headers,
            "buffering": self.buffering.to_dict() if self.buffering else None,
            "buffering_with_x_accel_buffering_no": self.buffering_accel_no.to_dict() if self.buffering_accel_no else None,
            "compression": {"content_encoding": self.content_encoding,
                            "delivery": self.compression.to_dict() if self.compression else None},
            "heartbeats": self.heartbeats,
            "idle_timeout": self.idle.to_dict() if self.idle else None, "stream_length": self.length,
            "checks": [c.to_dict() for c in self.checks],
        }


async def check_chain(spec: ChainCheckSpec, progress: Progress = lambda _: None) -> ChainReport:
    """Measure the chain in front of the canary at spec.url and judge it against the seeds' checklist. Never raises
    for what the chain does; an unreachable canary is a report with `reachable` False."""
    report = ChainReport(url=redact_url(spec.url), expected_duration=spec.expected_duration, started_at=time.time())
    began = time.monotonic()
    progress("reaching the canary")
    hello = await run_trial(spec, "hello", 1.0, events=1)
    report.headers = _headers(hello.result)
    if not hello.canary:
        r = hello.result
        report.problem = (f"no sse-monitor canary answered at this URL: {r.outcome} ({r.reason}) {r.detail}".rstrip()
                          if r.outcome != COMPLETED else "the stream did not come from an sse-monitor canary "
                          "(no `event: canary` hello); run `sse-monitor canary` behind the chain and point at it")
        report.duration_seconds = time.monotonic() - began
        return report
    report.reachable = True
    lasts = DELIVERY["events"] * DELIVERY["interval"]
    length_bound = spec.duration_bound
    progress(f"buffering, compression and heartbeats ({lasts:g} s); idle timeout up to {spec.max_idle:g} s; "
             f"stream length up to {length_bound:g} s")
    plain, accel, gzipped, beats, idle, length = await asyncio.gather(
        run_trial(spec, "buffering", lasts, **DELIVERY, pad="random"),
        run_trial(spec, "buffering, X-Accel-Buffering: no", lasts, **DELIVERY, pad="random", accel="no"),
        run_trial(spec, "compression", lasts, "gzip, deflate", **DELIVERY, pad="text"),
        run_trial(spec, "heartbeats", HEARTBEAT_TRIAL["silence"], events=2, interval=0, silence_after=1,
                  **HEARTBEAT_TRIAL),
        idle_timeout(spec, progress),
        run_trial(spec, "stream length", length_bound, events=2, interval=0, silence_after=1, silence=length_bound,
                  heartbeat=LENGTH_HEARTBEAT),
    )
    odd = [t.misbehaved() for t in (plain, accel, gzipped, beats, length)] + [idle.misbehaved]
    if any(odd):  # the stream showed it is not a working canary's: what it did says nothing about the chain
        report.reachable = False
        report.problem = "the endpoint does not behave like an sse-monitor canary: " + next(o for o in odd if o)
        report.duration_seconds = time.monotonic() - began
        return report
    for name, trial in (("buffering", plain), ("compression", gzipped), ("heartbeats", beats)):
        if not trial.events and not trial.comments:  # the trial itself failed: nothing to judge the chain by
            r = trial.result
            report.unmeasured[name] = ("the canary refused the trial (its --max-duration is below "
                                       f"{lasts:g} s)" if trial.refused else f"{r.outcome} ({r.reason}) {r.detail}".strip())
    report.buffering = delivery(plain, DELIVERY["events"])
    report.buffering_accel_no = delivery(accel, DELIVERY["events"])
    report.content_encoding = gzipped.result.response_headers.get("content-encoding")
    report.compression = delivery(gzipped, DELIVERY["events"])
    report.heartbeats = _heartbeats(beats)
    report.idle = idle
    report.length = _length(length, length_bound)
    report.checks = verdicts(report, spec)
    report.duration_seconds = time.monotonic() - began
    return report


def _headers(r: ProbeResult) -> dict[str, Any]:
    h = r.response_headers
    return {"status": r.status_code, "http_version": r.http_version, "content_type": h.get("content-type"), "content_length": h.get("content-length"),
            "content_encoding": h.get("content-encoding"), "transfer_encoding": h.get("transfer-encoding"),
            "cache_control": h.get("cache-control"), "x_accel_buffering": h.get("x-accel-buffering"),
            "via": h.get("via"), "server": h.get("server")}


def _heartbeats(trial: Trial) -> dict[str, Any]:
    sent = math.ceil(HEARTBEAT_TRIAL["silence"] / HEARTBEAT_TRIAL["heartbeat"]) - 1  # beats strictly inside the silence
    out: dict[str, Any] = {"sent": sent, "received": len(trial.comments), "late_p90_seconds": None,
                           "held_seconds": None}
    points = [(at, t) for at, t in trial.comments] + [(at, t) for at, t, _ in trial.events]
    if trial.comments and points:
        base = min(at - t for at, t in points)
        late = [at - t - base for at, t in trial.comments]
        out["late_p90_seconds"], out["held_seconds"] = round(_quantile(late, 0.9), 4), round(max(late), 4)
    out["real_time"] = (len(trial.comments) >= sent - 1 and out["late_p90_seconds"] is not None
                        and out["late_p90_seconds"] <= LATE)
    return out


def _length(trial: Trial, bound: float) -> dict[str, Any]:
    out: dict[str, Any] = {"searched_up_to_seconds": bound, "heartbeat_seconds": LENGTH_HEARTBEAT,
                           "cap_seconds": None, "cut": None, "cut_by_idle_timeout": False}
    if trial.done:
        return out
    if trial.refused:  # longer than the canary's --max-duration allows: nothing was tried
        out["searched_up_to_seconds"], out["refused_by_canary"] = 0.0, True
        return out
    out["cut"] = trial.cut()
    beats = [at for at, _ in trial.comments]
    if not beats or trial.ended_at - beats[-1] > 4 * LENGTH_HEARTBEAT:  # heartbeats stopped coming out well before
        out["cut_by_idle_timeout"] = True
    out["cap_seconds"] = round(trial.ended_at, 3)
    return out


# ---- the checklist ----------------------------------------------------------------------------------------------------


def _kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n} bytes"


def _held(d: Delivery) -> str:
    if d.whole_response:
        return f"the whole response: nothing came out until the stream ended ({_kib(d.held_bytes)} held)"
    return f"held up to {_kib(d.held_bytes)} for up to {d.held_seconds:.2f} s"


def verdicts(report: ChainReport, spec: ChainCheckSpec) -> list[Check]:
    checks: list[Check] = []
    twice = 2 * spec.expected_duration
    b, accel = report.buffering, report.buffering_accel_no
    for name, why in report.unmeasured.items():
        checks.append(Check(name, None, f"not measured: {why}"))
    if b is not None and "buffering" not in report.unmeasured:
        if not b.buffered:
            checks.append(Check("buffering", True, f"off: events came out within {b.late_p90_seconds * 1000:.0f} ms "
                                "(p90) of being written"))
        else:
            rescue = (" The app's `X-Accel-Buffering: no` turns it off for its responses." if accel and not accel.buffered
                      else " `X-Accel-Buffering: no` on the response does not help here.")
            checks.append(Check("buffering", False, f"on: {_held(b)}.{rescue}",
                                "turn buffering off for the streaming route at every hop (nginx: proxy_buffering off; "
                                "HAProxy: option http-no-delay; the app: X-Accel-Buffering: no)"))
    encoding, late = report.content_encoding, report.compression
    if "compression" in report.unmeasured:
        pass
    elif encoding:
        how = f"; events {_held(late)}" if late is not None and late.buffered else "; events still came out on time"
        checks.append(Check("compression", False, f"the chain adds Content-Encoding: {encoding}{how}",
                            "turn compression off for text/event-stream (nginx: gzip off; Apache: SetEnv no-gzip 1)"))
    else:
        checks.append(Check("compression", True, "none added (asked with Accept-Encoding: gzip, deflate)"))
    length_header = report.headers.get("content_length")
    checks.append(Check("content_length", length_header is None,
                        "no Content-Length on the stream" if length_header is None else
                        f"Content-Length: {length_header} added: the chain buffers whole responses",
                        "" if length_header is None else "stream the response (no buffering) at every hop"))
    hb = report.heartbeats
    if hb and "heartbeats" not in report.unmeasured:
        ok = bool(hb.get("real_time"))
        finding = (f"comment lines pass in real time ({hb['received']} of {hb['sent']}, p90 {hb['late_p90_seconds'] * 1000:.0f} ms late)"
                   if ok else f"comment lines do not pass in real time: {hb['received']} of {hb['sent']} arrived"
                   + (f", held up to {hb['held_seconds']:.2f} s" if hb.get("held_seconds") is not None else ""))
        checks.append(Check("heartbeats", ok, finding, "" if ok else
                            "heartbeats only keep a stream alive if every hop forwards them at once: turn buffering off"))
    idle, length = report.idle, report.length
    timeouts = [t for t in (idle.seconds if idle else None,
                            None if length.get("cut_by_idle_timeout") else length.get("cap_seconds")) if t is not None]
    if idle is not None:
        if idle.seconds is None:
            ok = True if idle.searched_up_to >= twice else None
            finding = f"no silence up to {idle.searched_up_to:g} s was cut"
            advice = "" if ok else f"search further (--max-idle {twice:g}) to prove {twice:g} s"
            if any(t.get("refused_by_canary") for t in idle.trials):
                finding += " (the canary refused longer silences)"
                advice = f"start the canary with --max-duration of at least {spec.max_idle:g} s"
        else:
            ok = idle.seconds >= twice
            finding = (f"{idle.seconds:.2f} s (silences of {idle.low:g} s pass, {idle.high:g} s are cut; "
                       f"the cut: {idle.cut})")
            advice = "" if ok else (f"raise the idle timeout of every hop to at least {twice:g} s "
                                    f"(twice the expected stream of {spec.expected_duration:g} s)")
        checks.append(Check("idle_timeout", ok, finding, advice))
        shortest = min(timeouts) if timeouts else None
        if "heartbeats" in report.unmeasured:
            checks.append(Check("heartbeat_interval", None, "not known: the heartbeats were not measured"))
        elif not hb.get("real_time"):
            checks.append(Check("heartbeat_interval", False, "no interval helps while the chain holds comment lines "
                                "back (see heartbeats)", "fix buffering first, then run the check again"))
        elif shortest is not None:
            below = shortest / 2
            suggested = 15.0 if below > 15 else max(round(below * 0.8, 1), 0.1)
            checks.append(Check("heartbeat_interval", True, f"send heartbeats more often than every {below:.2f} s "
                                f"(half the shortest timeout, {shortest:.2f} s)", f"e.g. every {suggested:g} s"))
        else:
            checks.append(Check("heartbeat_interval", True, f"no timeout found up to {idle.searched_up_to:g} s; any "
                                f"interval below {idle.searched_up_to / 2:g} s keeps the chain open",
                                "e.g. every 15 s (the seeds' choice)"))
    if length:
        cap = length.get("cap_seconds")
        if cap is None:
            ok = True if length["searched_up_to_seconds"] >= twice else None
            finding = f"a busy stream lasted {length['searched_up_to_seconds']:g} s uncut"
            advice = "" if ok else f"search further (--max-duration {twice:g})"
            if length.get("refused_by_canary"):
                finding = f"not measured: the canary refused a stream of {spec.duration_bound:g} s"
                advice = f"start the canary with --max-duration of at least {spec.duration_bound:g} s"
        elif length.get("cut_by_idle_timeout"):
            ok, finding = False, (f"a stream with heartbeats every {LENGTH_HEARTBEAT:g} s was cut after {cap:.1f} s "
                                  "because its heartbeats were held back (an idle timeout downstream)")
            advice = "turn buffering off so heartbeats pass"
        else:
            ok = cap >= twice
            finding = f"a busy stream is cut after {cap:.1f} s ({length['cut']})"
            advice = "" if ok else f"raise the hop's maximum stream or request time to at least {twice:g} s"
        checks.append(Check("stream_length", ok, finding, advice))
    checks.sort(key=lambda c: CHAIN_CHECKS.index(c.name))
    return checks


# ---- output -----------------------------------------------------------------------------------------------------------

MARK = {True: "PASS", False: "FAIL", None: "?"}


def summary(report: ChainReport) -> str:
    lines = [f"chain check of {report.url} ({report.duration_seconds:.1f} s)"]
    if not report.reachable:
        lines.append(f"  FAIL  canary: {report.problem}")
        return "\n".join(lines)
    h = report.headers
    shown = ", ".join(f"{k.replace('_', '-')}: {v}" for k, v in h.items()
                      if v is not None and k not in ("status", "http_version"))
    lines.append(f"  response: {h.get('http_version') or 'HTTP'} {h.get('status')}; {shown}")
    width = max(len(c.name) for c in report.checks)
    for c in report.checks:
        lines.append(f"  {MARK[c.ok]:<4}  {c.name:<{width}}  {c.finding}")
        if c.advice and c.ok is not True:
            lines.append(f"  {'':<4}  {'':<{width}}  -> {c.advice}")
    failed = [c.name for c in report.checks if c.ok is False]
    unknown = [c.name for c in report.checks if c.ok is None]
    verdict = ("fails: " + ", ".join(failed) if failed else
               "passes what could be measured; not known: " + ", ".join(unknown) if unknown else
               "the chain passes the checklist")
    lines.append(f"verdict: {verdict} (streams expected to last up to {report.expected_duration:g} s)")
    return "\n".join(lines)


def to_json(report: ChainReport) -> str:
    return json.dumps(report.to_dict(), indent=2)
