"""The proxy-chain canary: an origin to deploy as one more backend behind a real chain (CDN -> load balancer -> reverse
proxy), serving Server-Sent-Events streams whose shape the requester chooses, so that `sse-monitor chain-check` can
measure what the chain does to them (buffering, compression, idle and length limits, resumption).

Routes: `GET /-/healthy` answers 200 `ok`. Every other path, GET or POST, is a stream, so the canary can be mounted
under any prefix (e.g. /api/sse-canary). Request bodies are never read.

A stream's shape, from query parameters (all optional; unknown ones are ignored):

  events         0..100000, default 3        data events, ids 1..events
  interval       seconds 0..60, default 0.05 between consecutive data events
  size           0..65536, default 0         length of each data event's `pad` string
  pad            random (default) | text     random: printable ASCII, fresh for each event, that compressors hardly
                                             shrink; text: repeated English words, that they do
  silence        seconds 0..max-duration, default 0: an extra pause after data event number `silence_after`
  silence_after  0..100000, default 1        0: the pause comes before the first data event; `events`: before `done`
  heartbeat      0 (default: none), or seconds 0.05..60: a comment `: hb <t>` every `heartbeat` seconds from the
                 response start, silences included, until the end
  accel          no | yes                    the response carries `X-Accel-Buffering: <value>` (absent otherwise)
  resume         the event id to resume after (as the `Last-Event-ID` header, which it overrides)
  resume_fault   none (default) | refuse | restart | gap | duplicate | noids: what a resumed request gets

The response: 200, `Content-Type: text/event-stream; charset=utf-8`, `Cache-Control: no-cache`, never a
Content-Length, one write per event or comment, LF line endings, compact JSON. For
`?events=2&interval=0.5&heartbeat=0.3&size=8&pad=text`:

  event: canary
  data: {"canary":"sse-monitor","version":1,"t":0.0}

  id: 1
  data: {"seq":1,"t":0.123,"pad":"the quic"}

  : hb 301.088

  id: 2
  data: {"seq":2,"t":500.082,"pad":"the quic"}

  event: done
  data: {"seq":2,"t":500.385}

The hello event goes out with the headers. `t` (in heartbeats too) is milliseconds since the response start, taken
just before the write, rounded to 0.001. Data event i is due (i-1)*interval after the response start, plus `silence`
when i > silence_after; heartbeats at k*heartbeat, k = 1, 2, ...; `done` (seq: the last id sent, or 0) when the last
data event is out, then the body ends properly. Deadlines are absolute: lateness never accumulates.

Resumption (a `Last-Event-ID` header or the `resume` parameter: L, an integer >= 0): the hello event, then data events
L+1..events, scheduled from this response's start: the first one due at once, and a silence only if this response
sends event silence_after again (it came after that one). With `resume_fault`, a resumed request gets instead:
refuse: 409; restart: events from 1; gap: from L+3 (two skipped); duplicate: from L (the last one seen, again).
noids: no `id:` lines at all, on any request.

Bounded: a planned duration ((events-1)*interval + silence) of at most --max-duration seconds (default 900), at most
64 MiB of events (events*(size+100)), at most --max-streams streams at once (default 64; beyond: 503 at once). Every
refusal is text/plain with a fixed message naming the parameter or the bound: the canary never echoes anything of a
request.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .cli_types import positive
from .serving import split_listen
from .simulator.app import EVENT_STREAM, quiet_drops
from .simulator.faults import first_event
from .simulator.params import BadParam, _number, _resume_fault, resume_point
from .simulator.server import RunningSimulator, _AnnouncingServer
from .simulator.stream import Stream
from .simulator.timeline import _Clock, in_stream

MAX_EVENTS = 100_000
MAX_SIZE = 65_536
MAX_BYTES = 64 * 1024 * 1024  # events * (size + EVENT_BYTES)
EVENT_BYTES = 100  # what an event takes besides its pad, rounded up
HELLO = b'event: canary\ndata: {"canary":"sse-monitor","version":1,"t":0.0}\n\n'
PAD_ALPHABET = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in '"\\')  # 93 that JSON never escapes
PAD_TABLE = bytes(ord(PAD_ALPHABET[i % len(PAD_ALPHABET)]) for i in range(256))
TEXT = "the quick brown fox jumps over the lazy dog while the five boxing wizards jump quickly "


@dataclasses.dataclass(frozen=True)
class CanaryLimits:
    max_duration: float = 900.0  # seconds a stream may be planned to last (also the longest silence)
    max_streams: int = 64  # streams at once


@dataclasses.dataclass(frozen=True)
class Shape:
    """One stream's shape, from its query parameters (see the module's docstring)."""

    events: int = 3
    interval: float = 0.05
    size: int = 0
    pad: str = "random"
    silence: float = 0.0
    silence_after: int = 1
    heartbeat: float = 0.0
    accel: str | None = None
    resume_fault: str = "none"


class Refused(Exception):
    """A request the canary does not stream: its status and a fixed text/plain message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _whole(high: int) -> Callable[[str], int]:
    return lambda raw: _number(raw, int, lambda x: 0 <= x <= high, f"a whole number from 0 to {high}")


def _seconds(high: float) -> Callable[[str], float]:
    return lambda raw: _number(raw, float, lambda x: 0 <= x <= high, f"seconds from 0 to {high:g}")


def _heartbeat(raw: str) -> float:
    return _number(raw, float, lambda x: x == 0 or 0.05 <= x <= 60, "0, or seconds from 0.05 to 60")


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.strip().lower() not in choices:
            raise ValueError(f"expected {' or '.join(choices)}")
        return raw.strip().lower()

    return parse


def parse_shape(query: Any, limits: CanaryLimits) -> Shape:
    """The shape a request asks for; raises Refused (400) naming the first invalid parameter, or what is too much."""
    parsers: dict[str, Callable[[str], Any]] = {
        "events": _whole(MAX_EVENTS), "interval": _seconds(60), "size": _whole(MAX_SIZE),
        "pad": _one_of("random", "text"), "silence": _seconds(limits.max_duration),
        "silence_after": _whole(MAX_EVENTS), "heartbeat": _heartbeat, "accel": _one_of("no", "yes"),
        "resume_fault": _resume_fault,
    }
    values = {}
    for name, parse in parsers.items():
        if name in query:
            try:
                values[name] = parse(query[name])
            except ValueError as exc:  # its message says what is expected, never what was sent
                raise Refused(400, f"invalid parameter {name!r}: {exc}") from None
    s = Shape(**values)
    if max(s.events - 1, 0) * s.interval + s.silence > limits.max_duration:
        raise Refused(400, f"stream too long: (events-1)*interval + silence must be at most "
                           f"{limits.max_duration:g} seconds")
    if s.events * (s.size + EVENT_BYTES) > MAX_BYTES:
        raise Refused(400, f"stream too large: events*(size+{EVENT_BYTES}) must be at most {MAX_BYTES} bytes")
    return s


def _pad(s: Shape) -> Callable[[], str]:
    if s.pad == "text":
        text = (TEXT * (s.size // len(TEXT) + 1))[:s.size]
        return lambda: text
    return lambda: os.urandom(s.size).translate(PAD_TABLE).decode("ascii")  # fresh for each event


def _json(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"))


async def canary_stream(s: Shape, start: int = 1, ids: bool = True) -> AsyncIterator[bytes]:
    """The body of one stream, data events from id `start`; each chunk is produced when it is due."""
    # deadlines from now, as the response start has just gone out; on a finer clock than uvloop's (whole ms)
    clock = _Clock(s.heartbeat, instant=False)

    def ms() -> float:
        return round((time.monotonic() - clock.start) * 1000, 3)

    def silence(i: int) -> float:  # the pause after event silence_after, when this stream passes it before event i
        after = in_stream(start, s.silence_after)
        return s.silence if after is not None and i > after else 0.0

    async def until(due: float) -> AsyncIterator[bytes]:
        async for _ in clock.until(clock.start + due):
            yield b": hb %s\n\n" % repr(ms()).encode()

    yield HELLO
    pad, sent = _pad(s), range(start, s.events + 1)
    for k, i in enumerate(sent):
        async for beat in until(k * s.interval + silence(i)):
            yield beat
        head, padding = b"id: %d\n" % i if ids else b"", pad()
        yield head + b"data: " + _json({"seq": i, "t": ms(), "pad": padding}).encode() + b"\n\n"
    async for beat in until(max(len(sent) - 1, 0) * s.interval + silence(s.events + 1)):
        yield beat
    yield b"event: done\ndata: " + _json({"seq": sent[-1] if sent else 0, "t": ms()}).encode() + b"\n\n"


class _Slots:
    """How many more streams may open now (of CanaryLimits.max_streams)."""

    def __init__(self, size: int) -> None:
        self.free = size


class _SlotStream(Stream):
    """A Stream holding one of the canary's slots until it ends, however it ends (its client may leave first)."""

    def __init__(self, chunks: AsyncIterator[bytes], headers: dict[str, str], slots: _Slots) -> None:
        super().__init__(chunks, headers)
        self.slots = slots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slots.free += 1


def create_app(limits: CanaryLimits = CanaryLimits()) -> Starlette:
    """The canary's ASGI app: the health check, and a stream on every other path."""
    quiet_drops()
    slots = _Slots(limits.max_streams)

    async def stream(request: Request) -> Response:
        try:
            s = parse_shape(request.query_params, limits)
            try:
                last = resume_point(request.query_params, request.headers)
            except BadParam:
                raise Refused(400, "invalid Last-Event-ID: expected an event id this canary sent (a number)") from None
            start = first_event(last, s.resume_fault)
            if start is None:
                raise Refused(409, "resumption refused (resume_fault=refuse)")
            if slots.free <= 0:
                raise Refused(503, "too many streams")
        except Refused as exc:
            return PlainTextResponse(str(exc), status_code=exc.status)
        headers = {"content-type": EVENT_STREAM, "cache-control": "no-cache"}
        if s.accel is not None:
            headers["x-accel-buffering"] = s.accel
        slots.free -= 1  # given back by the response once it ends
        return _SlotStream(canary_stream(s, start, ids=s.resume_fault != "noids"), headers, slots)

    async def healthy(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/-/healthy", healthy, methods=["GET"]),
                             Route("/{path:path}", stream, methods=["GET", "POST"])])


# ---- serving ---------------------------------------------------------------------------------------------------------


class _AnnouncingCanary(_AnnouncingServer):
    NAME = "canary"


def serve(host: str = "0.0.0.0", port: int = 8901, limits: CanaryLimits = CanaryLimits()) -> None:
    """Run the canary until SIGINT or SIGTERM; prints `sse-monitor canary listening on <url>` once it accepts."""
    server = _AnnouncingCanary(create_app(limits), host, port, handle_signals=True)
    server.run(sockets=[server.socket])


class RunningCanary(RunningSimulator):
    """The canary as a task on the running loop: `async with RunningCanary() as canary: canary.base_url`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, limits: CanaryLimits = CanaryLimits()) -> None:
        super().__init__(host, port)
        self.limits = limits

    def app(self) -> Starlette:
        return create_app(self.limits)


def _listen(raw: str) -> str:
    try:
        _, port = split_listen(raw)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("expected HOST:PORT (PORT 0..65535; 0 picks a free one)")
    return raw


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The canary's options: --listen, --max-duration, --max-streams (for run())."""
    parser.add_argument("--listen", type=_listen, default="0.0.0.0:8901", metavar="HOST:PORT",
                        help="where to accept connections (default 0.0.0.0:8901; port 0 picks a free one)")
    parser.add_argument("--max-duration", type=positive(float), default=900.0, metavar="SECONDS",
                        help="the longest stream a request may ask for, silences included (default 900)")
    parser.add_argument("--max-streams", type=positive(int), default=64, metavar="N",
                        help="streams at once; more are answered 503 (default 64)")


def run(args: argparse.Namespace) -> int:
    """Serve the canary as add_arguments() configured it until SIGINT or SIGTERM; the exit status."""
    host, port = split_listen(args.listen)
    try:
        serve(host, port, CanaryLimits(args.max_duration, args.max_streams))
    except OSError as exc:
        print(f"sse-monitor canary: cannot listen on {args.listen}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitor.canary", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
