"""A reference slow-LLM origin: four LLM wire formats and a generic one, with every timing and fault on demand."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import math
import os
import re
import socket
import struct
import sys
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .serving import AppServer

DIALECT_PATHS: dict[str, str] = {
    "openai-chat": "/v1/chat/completions",
    "openai-responses": "/v1/responses",
    "anthropic": "/v1/messages",
    "gemini": "/v1beta/models/sim-1:streamGenerateContent",
    "generic": "/v1/stream",
}
DEFAULT_MODEL = "sim-1"
EVENT_STREAM = "text/event-stream; charset=utf-8"
PROMPT_TOKENS = 10  # what the usage blocks claim for the prompt
HEADER_NAME = re.compile(r"[A-Za-z0-9-]+")
REQUEST_IDS = itertools.count(1)  # the request ids sent with server_timing
PIECE = 64 * 1024  # bodies of hostile modes go out in pieces of this size
LINE_ENDINGS = {"lf": "\n", "crlf": "\r\n", "cr": "\r"}
RESUME_FAULTS = ("none", "refuse", "restart", "gap", "duplicate", "noids")  # what a resumed stream does wrong
NEVER_UTF8 = bytes(range(0xF5, 0x100)) + b"\xc0\xc1"  # byte values that never occur in valid UTF-8
GARBAGE_TABLE = bytes(NEVER_UTF8[i % len(NEVER_UTF8)] for i in range(256))

Event = tuple[str | None, Any]  # (`event:` field or None, data: a dict sent as JSON, or a literal string)
Step = tuple[str, int]  # (kind, count): preamble, huge, heartbeat, token, end, error, drop


class SimulatedDrop(Exception):
    """Raised inside a response body so that uvicorn cuts the connection without finishing the body."""


# ---- parameters ------------------------------------------------------------------------------------------------------


def _number(raw: str, kind: Callable[[str], Any], ok: Callable[[Any], bool], expected: str) -> Any:
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or not ok(value):
        raise ValueError(f"expected {expected}")
    return value


def _seconds(raw: str) -> float:
    return _number(raw, float, lambda x: x >= 0, "a number of seconds >= 0")


def _rate(raw: str) -> float:
    return _number(raw, float, lambda x: x > 0, "a number of tokens per second > 0")


def _count(raw: str) -> int:
    return _number(raw, int, lambda x: x >= 0, "an integer >= 0")


def _status(raw: str) -> int:
    return _number(raw, int, lambda x: 400 <= x <= 599, "an HTTP status from 400 to 599")


def _flag(raw: str) -> bool:
    value = {"0": False, "1": True, "false": False, "true": True}.get(raw.strip().lower())
    if value is None:
        raise ValueError("expected 0 or 1")
    return value


def _line_ending(raw: str) -> str:
    if raw.strip().lower() not in LINE_ENDINGS:
        raise ValueError("expected lf, crlf or cr")
    return LINE_ENDINGS[raw.strip().lower()]


def _resume_fault(raw: str) -> str:
    if raw.strip().lower() not in RESUME_FAULTS:
        raise ValueError(f"expected {', '.join(RESUME_FAULTS[:-1])} or {RESUME_FAULTS[-1]}")
    return raw.strip().lower()


def _header_value(raw: str) -> str:
    if not (raw.isascii() and raw.isprintable()):
        raise ValueError("expected printable ASCII (it becomes a response header)")
    return raw


def _header_map(raw: str) -> tuple[tuple[str, str], ...]:
    try:
        headers = json.loads(raw)
    except ValueError:
        headers = None
    if not isinstance(headers, dict) or not all(
            HEADER_NAME.fullmatch(k) and isinstance(v, str) and v.isascii() and v.isprintable()
            for k, v in headers.items()):
        raise ValueError("expected a JSON object of header names to printable ASCII values, "
                         'e.g. {"x-queue-time": "12"}')
    return tuple(headers.items())


def _param(default: Any, parse: Callable[[str], Any]) -> Any:
    return dataclasses.field(default=default, metadata={"parse": parse})


@dataclasses.dataclass(frozen=True)
class Params:
    """One request's behaviour, from query parameters or `X-Sim-<Name>` headers."""

    ttft: float = _param(0.2, _seconds)
    tokens: int = _param(20, _count)
    endless: bool = _param(False, _flag)
    rate: float = _param(20.0, _rate)
    pause_after: int | None = _param(None, _count)
    pause: float = _param(0.0, _seconds)
    heartbeat: float = _param(0.0, _seconds)
    drop_after: int | None = _param(None, _count)
    no_terminal: bool = _param(False, _flag)
    error_after: int | None = _param(None, _count)
    status: int | None = _param(None, _status)
    line_ending: str = _param("\n", _line_ending)
    headers_delay: float = _param(0.0, _seconds)
    content_type: str | None = _param(None, _header_value)
    gzip: bool = _param(False, _flag)
    content_length: bool = _param(False, _flag)
    x_accel_buffering: str | None = _param(None, _header_value)
    huge_line: int = _param(0, _count)
    garbage: int = _param(0, _count)
    gzip_bomb: int = _param(0, _count)
    redirect: str | None = _param(None, _header_value)
    tag: str | None = _param(None, _header_value)  # an opaque label for the truth log (--truth-log); nothing else
    ids: bool = _param(False, _flag)  # token events carry `id: <i>` (always on a resumed request, see resume_point)
    resume_fault: str = _param("none", _resume_fault)  # what a resumed request gets (see first_event)
    # the format's own timing headers (headers_delay as the server's processing time) and a request id
    server_timing: bool = _param(False, _flag)
    thinking: int = _param(0, _count)  # the first this many tokens are reasoning (thinking), not the visible answer
    response_headers: tuple[tuple[str, str], ...] = _param((), _header_map)  # extra headers, as a JSON object


class BadParam(ValueError):
    """An invalid parameter value; the message names the parameter."""


def parse_params(query: Any, headers: Any) -> Params:
    """Parameters from the query (which wins) or the `X-Sim-*` headers; raises BadParam naming the culprit."""
    values = {}
    for f in dataclasses.fields(Params):
        dashed = "x-sim-" + f.name.replace("_", "-")
        raw = query.get(f.name, headers.get(dashed, headers.get("x-sim-" + f.name)))
        if raw is None:
            continue
        try:
            values[f.name] = f.metadata["parse"](raw)
        except ValueError as exc:
            raise BadParam(f"invalid value {raw!r} for parameter {f.name!r}: {exc}") from None
    params = Params(**values)
    if params.pause > 0 and params.pause_after is None:
        raise BadParam("parameter 'pause_after' is required with 'pause'")
    if params.content_length and params.endless and params.drop_after is None and params.error_after is None:
        raise BadParam("parameter 'content_length' cannot buffer an endless stream (add drop_after or error_after)")
    return params


def resume_point(query: Any, headers: Any) -> int | None:
    """The event id a request resumes after: its `resume` query parameter, else its `Last-Event-ID` header; None when
    it has neither. Raises BadParam naming the culprit when it is not an event id (an integer >= 0)."""
    where, raw = (("parameter 'resume'", query["resume"]) if "resume" in query
                  else ("header 'Last-Event-ID'", headers.get("last-event-id")))
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise BadParam(f"invalid value {raw!r} for {where}: expected an event id (an integer >= 0)")
    return int(raw)


def first_event(last: int | None, fault: str) -> int | None:
    """The id of the first event a stream sends: 1 unless it resumes after event `last`; then last + 1, or by `fault`:
    restart 1, gap last + 3 (two skipped), duplicate last (the one the client saw comes again), refuse None (no
    stream: the server refuses to resume)."""
    if last is None:
        return 1
    return {"refuse": None, "restart": 1, "gap": last + 3, "duplicate": max(last, 1)}.get(fault, last + 1)


# ---- ground truth: when each request came in and when its first byte and first token went out ----------------------

RECEIVED_KEY = "sse_monitor.simulator.received"  # in the ASGI scope: (time.time() of the request's first bytes, how)
SO_TIMESTAMPNS = 35  # Linux (asm-generic): the kernel's receive time of each segment, as a timespec in recvmsg
_TIMESPEC = struct.Struct("=qq")


class TruthLog:
    """Per request, JSON lines of wall-clock times (time.time()), for a benchmark to pair with what a monitor reported:

        {"tag": ..., "path": ..., "status": 200, "received": T, "received_by": "kernel", "app": T,
         "first_byte": T, "first_token": T}

    `received`: the request's first bytes arrived (`received_by` "kernel": the kernel's receive time; "loop": when the
    event loop handed them over, see _stamping_protocol; "app": the endpoint's entry, when create_app() is served by
    another server); `app`: the endpoint was entered; `first_byte`: just before the response start (status line and
    headers) was handed to the server; `first_token`: just before the chunk carrying the first token event was (null
    when none was sent). A record is written once the first token is out, or when the response ends. Writes go to a
    1 MiB buffer flushed at most once a second and on close; after `max_records` records the rest are only counted
    (`dropped`)."""

    FLUSH_SECONDS = 1.0

    def __init__(self, path: str | os.PathLike[str], max_records: int = 1_000_000) -> None:
        self.path = os.fspath(path)
        self.max_records = max_records
        self.written = 0
        self.dropped = 0
        self._file: Any = open(self.path, "a", buffering=1 << 20, encoding="utf-8")  # noqa: SIM115 (closed by close())
        self._flushed = time.monotonic()

    def request(self, path: str, tag: str | None, received: tuple[float | None, str], app: float) -> Truth:
        at, how = received
        return Truth(self, path, tag, app if at is None else at, how, app)

    def write(self, record: dict[str, Any]) -> None:
        if self._file is None or self.written >= self.max_records:
            self.dropped += 1
            return
        try:
            self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
            self.written += 1
            now = time.monotonic()
            if now - self._flushed >= self.FLUSH_SECONDS:
                self._flushed = now
                self._file.flush()
        except (OSError, ValueError):  # a full disk must not take the origin down: stop logging, keep counting
            self.dropped += 1
            self._close_file()

    def close(self) -> None:
        self._close_file()

    def _close_file(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError, ValueError):
                file.close()


class Truth:
    """One request's record in a TruthLog: filled as the response goes out, written once."""

    __slots__ = ("log", "path", "tag", "received", "received_by", "app", "first_byte", "first_token", "status",
                 "written")

    def __init__(self, log: TruthLog, path: str, tag: str | None, received: float, received_by: str,
                 app: float) -> None:
        self.log, self.path, self.tag, self.received, self.app = log, path, tag, received, app
        self.received_by = received_by
        self.first_byte: float | None = None
        self.first_token: float | None = None
        self.status: int | None = None
        self.written = False

    def done(self) -> None:
        if not self.written:
            self.written = True
            self.log.write({"tag": self.tag, "path": self.path, "status": self.status, "received": self.received,
                            "received_by": self.received_by, "app": self.app, "first_byte": self.first_byte,
                            "first_token": self.first_token})


# ---- the timeline: when each step of a stream is due -----------------------------------------------------------------


class _Clock:
    """Sleeps until absolute deadlines on the loop's clock (or `now`), yielding the heartbeats that fall due
    meanwhile."""

    def __init__(self, heartbeat: float, instant: bool, now: Callable[[], float] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.now = now or self.loop.time
        self.start = self.now()
        self.instant = instant
        self.heartbeat = heartbeat
        self.next_beat = self.start + heartbeat if heartbeat > 0 and not instant else math.inf

    async def until(self, deadline: float) -> AsyncIterator[Step]:
        if self.instant:
            return
        while self.next_beat < deadline:
            await self._sleep_until(self.next_beat)
            yield ("heartbeat", 0)
            self.next_beat += self.heartbeat
            now = self.now()
            while self.next_beat <= now:  # skip the beats a slow reader made us miss
                self.next_beat += self.heartbeat
        await self._sleep_until(deadline)

    async def _sleep_until(self, deadline: float) -> None:
        while (left := deadline - self.now()) > 0:  # timers may fire a little early (uvloop: whole ms)
            await asyncio.sleep(left)


def in_stream(start: int, after: int | None) -> int | None:
    """The point "after event `after`" (0: before the first) if a stream starting at event `start` reaches it: it
    sends that event, or, for 0, starts at the first. Else None: a pause, drop or error placed after an event that a
    resumed stream does not send again is not in that stream, which goes on at once."""
    return after if after is not None and (after >= start or after == start - 1 == 0) else None


def _token_time(p: Params, first: float, i: int, start: int = 1) -> float:
    """When token i is due in a stream whose first token is `start`: paced from that one (due at `first`), shifted by
    the pause after token pause_after."""
    pause_after = in_stream(start, p.pause_after)
    paused = p.pause if pause_after is not None and i > pause_after else 0.0
    return first + (i - start) / p.rate + paused


async def timeline(p: Params, t0: float, instant: bool = False, start: int = 1) -> AsyncIterator[Step]:
    """The steps of one stream, each yielded when it is due (at once when instant): the only timing logic. Tokens
    are counted from `start` (a resumed stream's first), due after ttft as usual; see in_stream() for the drop,
    error and pause."""
    clock = _Clock(p.heartbeat, instant)
    yield ("preamble", 0)
    if p.huge_line:
        yield ("huge", p.huge_line)
    first = max(t0 + p.ttft, clock.start)
    drop_after, error_after = in_stream(start, p.drop_after), in_stream(start, p.error_after)
    sent = start - 1
    while (p.endless or sent < p.tokens) and sent != drop_after and sent != error_after:
        sent += 1
        async for beat in clock.until(_token_time(p, first, sent, start)):
            yield beat
        yield ("token", sent)
    if sent == drop_after:
        yield ("drop", sent)
    elif sent == error_after:
        yield ("error", sent)
    elif not p.no_terminal:
        async for beat in clock.until(first):  # with no token at all, the end comes when the first token would have
            yield beat
        yield ("end", min(sent, p.tokens))  # a resumed stream's start may lie beyond the last token


# ---- wire formats ----------------------------------------------------------------------------------------------------


def _text_of(n: int) -> str:
    return "".join(f"{i}\n" for i in range(1, n + 1))


class Format:
    """One wire format: the events of each timeline step, and its JSON bodies for errors and non-streamed replies."""

    def __init__(self, model: str, body: dict[str, Any]) -> None:
        self.model = model
        self.body = body
        self.created = int(time.time())
        self.thinking = 0  # tokens of reasoning before the visible answer (Params.thinking)

    def thought(self, i: int) -> bool:
        """Token i is reasoning, not answer."""
        return i <= self.thinking

    def thoughts(self, n: int) -> int:
        """Of n tokens sent, how many were reasoning."""
        return min(n, self.thinking)

    def preamble(self, n: int) -> list[Event]:
        return []

    def output_cap(self) -> Any:
        """The request's cap on the answer's tokens, as this API names it (None: none)."""
        return None

    def timing_headers(self, ms: int, request_id: str) -> dict[str, str]:
        """What this API's servers say of their own time (`ms` before the headers) and of the request."""
        return {"server-timing": f"app;dur={ms}", "x-request-id": request_id}

    def token(self, i: int) -> list[Event]:
        raise NotImplementedError

    def end(self, n: int) -> list[Event]:
        raise NotImplementedError

    def error(self, n: int) -> list[Event]:
        raise NotImplementedError

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        raise NotImplementedError

    def whole(self, n: int) -> dict[str, Any]:
        raise NotImplementedError


def _openai_timing(ms: int, request_id: str) -> dict[str, str]:
    return {"openai-processing-ms": str(ms), "x-request-id": request_id}


def _openai_error(status: int, message: str) -> dict[str, Any]:
    kind = "server_error" if status >= 500 else "requests" if status == 429 else "invalid_request_error"
    code = "rate_limit_exceeded" if status == 429 else None
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class OpenAIChat(Format):
    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {**self._envelope(), "choices": [choice]}

    def _envelope(self) -> dict[str, Any]:
        return {"id": "chatcmpl-sim", "object": "chat.completion.chunk", "created": self.created, "model": self.model}

    def _usage(self, n: int) -> dict[str, Any]:
        usage: dict[str, Any] = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": n,
                                 "total_tokens": PROMPT_TOKENS + n}
        if self.thinking:
            usage["completion_tokens_details"] = {"reasoning_tokens": self.thoughts(n)}
        return usage

    def preamble(self, n: int) -> list[Event]:
        return [(None, self._chunk({"role": "assistant", "content": ""}))]

    def timing_headers(self, ms: int, request_id: str) -> dict[str, str]:
        return _openai_timing(ms, request_id)

    def output_cap(self) -> Any:
        return self.body.get("max_completion_tokens", self.body.get("max_tokens"))

    def token(self, i: int) -> list[Event]:
        return [(None, self._chunk({"reasoning_content" if self.thought(i) else "content": f"{i}\n"}))]

    def end(self, n: int) -> list[Event]:
        events: list[Event] = [(None, self._chunk({}, "stop"))]
        options = self.body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") is True:
            events.append((None, {**self._envelope(), "choices": [], "usage": self._usage(n)}))
        return [*events, (None, "[DONE]")]

    def error(self, n: int) -> list[Event]:
        return [(None, {"error": {"message": "simulated server error", "type": "server_error", "code": None}})]

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return _openai_error(status, message)

    def whole(self, n: int) -> dict[str, Any]:
        choice = {"index": 0, "message": {"role": "assistant", "content": _text_of(n)}, "finish_reason": "stop"}
        return {**self._envelope(), "object": "chat.completion", "choices": [choice], "usage": self._usage(n)}


class OpenAIResponses(Format):
    WHERE = {"item_id": "msg_sim", "output_index": 0, "content_index": 0}  # the one text part of the one message

    def __init__(self, model: str, body: dict[str, Any]) -> None:
        super().__init__(model, body)
        self.sequence = itertools.count()

    def _event(self, kind: str, **fields: Any) -> Event:
        return (kind, {"type": kind, "sequence_number": next(self.sequence), **fields})

    def _response(self, status: str, n: int = 0, **extra: Any) -> dict[str, Any]:
        output = [self._item("completed", n)] if status == "completed" else []
        response = {"id": "resp_sim", "object": "response", "created_at": self.created, "status": status}
        return {**response, "model": self.model, "output": output, **extra}

    def _item(self, status: str, n: int | None = None) -> dict[str, Any]:
        content = [] if n is None else [self._part(n)]
        return {"id": "msg_sim", "type": "message", "status": status, "role": "assistant", "content": content}

    def _part(self, n: int) -> dict[str, Any]:
        return {"type": "output_text", "text": _text_of(n), "annotations": []}

    def _usage(self, n: int) -> dict[str, Any]:
        usage: dict[str, Any] = {"input_tokens": PROMPT_TOKENS, "output_tokens": n, "total_tokens": PROMPT_TOKENS + n}
        if self.thinking:
            usage["output_tokens_details"] = {"reasoning_tokens": self.thoughts(n)}
        return usage

    def output_cap(self) -> Any:
        return self.body.get("max_output_tokens")

    def timing_headers(self, ms: int, request_id: str) -> dict[str, str]:
        return _openai_timing(ms, request_id)

    def preamble(self, n: int) -> list[Event]:
        return [
            self._event("response.created", response=self._response("in_progress")),
            self._event("response.in_progress", response=self._response("in_progress")),
            self._event("response.output_item.added", output_index=0, item=self._item("in_progress")),
            self._event("response.content_part.added", **self.WHERE, part=self._part(0)),
        ]

    def token(self, i: int) -> list[Event]:
        if self.thought(i):
            where = {"item_id": "rs_sim", "output_index": 0, "summary_index": 0}
            return [self._event("response.reasoning_summary_text.delta", **where, delta=f"{i}\n")]
        return [self._event("response.output_text.delta", **self.WHERE, delta=f"{i}\n")]

    def end(self, n: int) -> list[Event]:
        return [
            self._event("response.output_text.done", **self.WHERE, text=_text_of(n)),
            self._event("response.content_part.done", **self.WHERE, part=self._part(n)),
            self._event("response.output_item.done", output_index=0, item=self._item("completed", n)),
            self._event("response.completed", response=self._response("completed", n, usage=self._usage(n))),
        ]

    def error(self, n: int) -> list[Event]:
        failure = {"code": "server_error", "message": "simulated server error"}
        return [self._event("response.failed", response=self._response("failed", error=failure))]

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return _openai_error(status, message)

    def whole(self, n: int) -> dict[str, Any]:
        return self._response("completed", n, usage=self._usage(n))


ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


TEXT_BLOCK = {"type": "text", "text": ""}
THINKING_BLOCK = {"type": "thinking", "thinking": ""}


class Anthropic(Format):
    def _message(self, content: list[Any], stop: str | None, n: int) -> dict[str, Any]:
        message = {"id": "msg_sim", "type": "message", "role": "assistant", "model": self.model, "content": content}
        usage = {"input_tokens": PROMPT_TOKENS, "output_tokens": n}
        return {**message, "stop_reason": stop, "stop_sequence": None, "usage": usage}

    def preamble(self, n: int) -> list[Event]:
        return [
            ("message_start", {"type": "message_start", "message": self._message([], None, 1)}),
            self._block_start(0, THINKING_BLOCK if self.thinking else TEXT_BLOCK),
            ("ping", {"type": "ping"}),
        ]

    def _block_start(self, index: int, block: dict[str, Any]) -> Event:
        return ("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})

    def _block(self, i: int) -> int:
        """The content block of token i: with thinking, the thinking block is 0 and the text block 1."""
        return 1 if self.thinking and not self.thought(i) else 0

    def timing_headers(self, ms: int, request_id: str) -> dict[str, str]:
        return {"x-envoy-upstream-service-time": str(ms), "request-id": request_id}

    def output_cap(self) -> Any:
        return self.body.get("max_tokens")

    def token(self, i: int) -> list[Event]:
        if self.thought(i):
            delta = {"type": "thinking_delta", "thinking": f"{i}\n"}
        else:
            delta = {"type": "text_delta", "text": f"{i}\n"}
        events: list[Event] = []
        if self.thinking and i == self.thinking + 1:  # the answer begins: the thinking block ends
            events = [("content_block_stop", {"type": "content_block_stop", "index": 0}),
                      self._block_start(1, TEXT_BLOCK)]
        index = self._block(i)
        return [*events, ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})]

    def end(self, n: int) -> list[Event]:
        delta = {"stop_reason": "end_turn", "stop_sequence": None}
        return [
            ("content_block_stop", {"type": "content_block_stop", "index": self._block(n)}),
            ("message_delta", {"type": "message_delta", "delta": delta, "usage": {"output_tokens": n}}),
            ("message_stop", {"type": "message_stop"}),
        ]

    def error(self, n: int) -> list[Event]:
        return [("error", self.error_body(529, "Overloaded"))]

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        kind = ANTHROPIC_ERRORS.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    def whole(self, n: int) -> dict[str, Any]:
        return self._message([{"type": "text", "text": _text_of(n)}], "end_turn", n)


GEMINI_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class Gemini(Format):
    def _chunk(self, text: str, n: int | None = None, thought: bool = False) -> dict[str, Any]:
        part: dict[str, Any] = {"text": text, "thought": True} if thought else {"text": text}
        candidate: dict[str, Any] = {"content": {"parts": [part], "role": "model"}}
        if n is None:
            return {"candidates": [{**candidate, "index": 0}], "modelVersion": self.model}
        thoughts = self.thoughts(n)
        usage = {"promptTokenCount": PROMPT_TOKENS, "candidatesTokenCount": n - thoughts,
                 "totalTokenCount": PROMPT_TOKENS + n}
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        candidate = {**candidate, "finishReason": "STOP", "index": 0}
        return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": self.model}

    def timing_headers(self, ms: int, request_id: str) -> dict[str, str]:
        return {"server-timing": f"gfet4t7; dur={ms}", "x-goog-request-id": request_id}

    def output_cap(self) -> Any:
        config = self.body.get("generationConfig")
        return config.get("maxOutputTokens") if isinstance(config, dict) else None

    def token(self, i: int) -> list[Event]:
        return [(None, self._chunk(f"{i}\n", thought=self.thought(i)))]

    def end(self, n: int) -> list[Event]:
        return [(None, self._chunk("", n))]

    def error(self, n: int) -> list[Event]:
        return [(None, self.error_body(503, "The model is overloaded."))]

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        kind = GEMINI_STATUSES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
        return {"error": {"code": status, "message": message, "status": kind}}

    def whole(self, n: int) -> dict[str, Any]:
        return self._chunk(_text_of(n), n)


class Generic(Format):
    def token(self, i: int) -> list[Event]:
        return [(None, {"token": f"{i}\n"})]

    def end(self, n: int) -> list[Event]:
        return [("done", {})]

    def error(self, n: int) -> list[Event]:
        return [("error", {"message": "simulated server error"})]

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return {"error": {"status": status, "message": message}}

    def whole(self, n: int) -> dict[str, Any]:
        return {"text": _text_of(n), "tokens": n}


# ---- bodies ----------------------------------------------------------------------------------------------------------


def encode_event(event: Event, eol: bytes, event_id: int | None = None) -> bytes:
    """One event on the wire; a dict's JSON gets `sim_sent`, the send time on the system-wide monotonic clock."""
    name, data = event
    if isinstance(data, dict):
        data = json.dumps({**data, "sim_sent": time.monotonic()}, separators=(",", ":"))
    head = b"event: " + name.encode() + eol if name else b""
    if event_id is not None:
        head = b"id: %d" % event_id + eol + head
    return head + b"data: " + data.encode() + eol + eol


def _pieces(total: int, size: int = PIECE) -> Iterator[int]:
    for start in range(0, total, size):
        yield min(size, total - start)


def _huge_line(size: int, eol: bytes) -> Iterator[bytes]:
    """One `data:` line of `size` bytes (its terminator aside), as an event of its own."""
    yield b"data: "
    for n in _pieces(max(0, size - len(b"data: "))):
        yield b"x" * n
    yield eol + eol


async def event_stream(p: Params, fmt: Format, t0: float, instant: bool = False,
                       truth: Truth | None = None, start: int = 1) -> AsyncIterator[bytes]:
    """The bytes of a stream, one chunk per timeline step, each produced when its step is due; tokens from `start`."""
    eol = p.line_ending.encode()
    render = {"preamble": fmt.preamble, "token": fmt.token, "end": fmt.end, "error": fmt.error}
    async for kind, n in timeline(p, t0, instant, start):
        if kind == "drop":
            raise SimulatedDrop
        if kind == "heartbeat":
            yield b": ping" + eol + eol
        elif kind == "huge":
            for piece in _huge_line(n, eol):
                yield piece
        else:
            events = render[kind](n)
            if events:
                event_id = n if kind == "token" and p.ids else None
                chunk = b"".join(encode_event(e, eol, event_id) for e in events)
                if truth is not None and kind == "token" and truth.first_token is None:
                    truth.first_token = time.time()  # the consumer sends this chunk as soon as it is yielded
                    yield chunk
                    truth.done()  # resumed: the chunk is out
                else:
                    yield chunk


async def gzipped(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Gzip a stream, flushing after every chunk so it still streams; a drop leaves the gzip member unfinished."""
    z = zlib.compressobj(wbits=31)
    async for chunk in chunks:
        yield z.compress(chunk) + z.flush(zlib.Z_SYNC_FLUSH)
    yield z.flush()


async def garbage(size: int) -> AsyncIterator[bytes]:
    for n in _pieces(size):
        yield os.urandom(n).translate(GARBAGE_TABLE)


async def gzip_bomb(size: int) -> AsyncIterator[bytes]:
    """A gzip member that inflates to `size` bytes of `a`, compressed a block at a time."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = memoryview(b"a" * (1 << 20))
    for n in _pieces(size, len(block)):
        out = z.compress(block[:n])
        if out:
            yield out
        await asyncio.sleep(0)
    yield z.flush()


async def _all_at_once(body: bytes, dropped: bool) -> AsyncIterator[bytes]:
    yield body
    if dropped:
        raise SimulatedDrop


async def buffered(chunks: AsyncIterator[bytes], headers: dict[str, str], truth: Truth | None = None) -> Response:
    """The whole stream at once with a Content-Length; a dropped one announces a byte more than it sends."""
    parts, dropped = [], False
    try:
        async for chunk in chunks:
            parts.append(chunk)
    except SimulatedDrop:
        dropped = True
    body = b"".join(parts)
    return Stream(_all_at_once(body, dropped), {**headers, "content-length": str(len(body) + dropped)}, truth=truth)


class Stream(Response):
    """A streamed body that stops as soon as the client goes away, and may end in a SimulatedDrop."""

    def __init__(self, chunks: AsyncIterator[bytes], headers: dict[str, str], status_code: int = 200,
                 truth: Truth | None = None) -> None:
        self.chunks = chunks
        self.status_code = status_code
        self.background = None
        self.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        self.truth = truth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        dropped = False
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_cancel_on_disconnect, receive, tasks.cancel_scope)
                try:
                    await self._send_all(send)
                except SimulatedDrop:
                    dropped = True
                tasks.cancel_scope.cancel()
        finally:
            if self.truth is not None:
                self.truth.done()
        if dropped:
            raise SimulatedDrop

    async def _send_all(self, send: Send) -> None:
        if self.truth is not None:
            self.truth.status = self.status_code
            self.truth.first_byte = time.time()
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async with contextlib.aclosing(self.chunks) as chunks:
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await asyncio.sleep(0)  # let a disconnect be noticed even when the body never waits
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


# ---- the app ---------------------------------------------------------------------------------------------------------


async def respond(p: Params, fmt: Format, t0: float, truth: Truth | None = None, start: int | None = 1) -> Response:
    """The response to one request whose parameters are valid, once its headers are due; its tokens from `start`
    (None: it asked to resume, and that is refused). A `truth` record is filled by a streamed response (Stream); the
    caller completes it for any other."""
    if p.redirect is not None:
        return RedirectResponse(p.redirect, status_code=302)
    if p.status is not None:
        return JSONResponse(fmt.error_body(p.status, f"simulated error (HTTP {p.status})"), status_code=p.status)
    if start is None:
        return JSONResponse(fmt.error_body(409, "resumption refused (resume_fault=refuse)"), status_code=409)
    headers = {"cache-control": "no-cache", "content-type": p.content_type or EVENT_STREAM}
    if p.server_timing:
        headers.update(fmt.timing_headers(round(p.headers_delay * 1000), f"req_sim_{next(REQUEST_IDS)}"))
    headers.update(p.response_headers)
    if p.x_accel_buffering is not None:
        headers["x-accel-buffering"] = p.x_accel_buffering
    if p.garbage:
        return Stream(garbage(p.garbage), headers, truth=truth)
    if p.gzip_bomb:
        return Stream(gzip_bomb(p.gzip_bomb), {**headers, "content-encoding": "gzip"}, truth=truth)
    if "json" in headers["content-type"].lower():
        return Response(json.dumps(fmt.whole(p.tokens)), headers=headers)
    # with content_length the events are made at once, long before the response goes out: first_token stays null
    chunks = event_stream(p, fmt, t0, instant=p.content_length, truth=None if p.content_length else truth,
                          start=start)
    if p.gzip:
        chunks, headers["content-encoding"] = gzipped(chunks), "gzip"
    return await buffered(chunks, headers, truth) if p.content_length else Stream(chunks, headers, truth=truth)


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _endpoint(format_class: type[Format], truth_log: TruthLog | None = None) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        t0 = asyncio.get_running_loop().time()
        if truth_log is not None:
            entered = time.time()
            received = request.scope.get(RECEIVED_KEY) or (None, "app")
        body = await _json_body(request)
        fmt = format_class(str(request.path_params.get("model") or body.get("model") or DEFAULT_MODEL), body)
        try:
            p = parse_params(request.query_params, request.headers)
            last = resume_point(request.query_params, request.headers)
        except BadParam as exc:
            response: Response = JSONResponse(fmt.error_body(400, str(exc)), status_code=400)
            if truth_log is not None:
                _unstreamed(truth_log.request(request.url.path, request.query_params.get("tag"), received, entered),
                            response)
            return response
        p = _capped(p, fmt.output_cap())
        fmt.thinking = p.thinking
        if last is not None or p.resume_fault == "noids":  # a resumed stream carries ids, unless they are the fault
            p = dataclasses.replace(p, ids=p.resume_fault != "noids")
        await asyncio.sleep(p.headers_delay)
        truth = truth_log.request(request.url.path, p.tag, received, entered) if truth_log is not None else None
        response = await respond(p, fmt, t0, truth, first_event(last, p.resume_fault))
        if truth is not None and not isinstance(response, Stream):
            _unstreamed(truth, response)
        return response

    return endpoint


def _capped(p: Params, cap: Any) -> Params:
    """A stream of `tokens` tokens stops at the request's output cap, as a model's answer does (an endless one
    does not: it is a hostile mode)."""
    if isinstance(cap, int) and not isinstance(cap, bool) and 0 <= cap < p.tokens and not p.endless:
        return dataclasses.replace(p, tokens=cap)
    return p


def _unstreamed(truth: Truth, response: Response) -> None:
    """A response sent whole (an error, a redirect, JSON): it goes out as soon as the endpoint returns."""
    truth.status = response.status_code
    truth.first_byte = time.time()
    truth.done()


async def _healthy(request: Request) -> Response:
    return PlainTextResponse("ok")


class _QuietDrops(logging.Filter):
    """Keeps uvicorn from logging a traceback for each connection cut on purpose: a drop, or a stream cancelled at
    the end of the graceful shutdown (uvicorn already says it cancelled them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, (SimulatedDrop, asyncio.CancelledError))


def quiet_drops() -> None:
    """Installs _QuietDrops on uvicorn's error log (once)."""
    uvicorn_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietDrops) for f in uvicorn_log.filters):
        uvicorn_log.addFilter(_QuietDrops())


def create_app(truth_log: TruthLog | None = None) -> Starlette:
    """The simulator's ASGI app: one route per wire format, plus a health check. With a `truth_log`, every request
    to a format's route is recorded in it (see TruthLog)."""
    quiet_drops()
    formats = {
        "openai-chat": OpenAIChat,
        "openai-responses": OpenAIResponses,
        "anthropic": Anthropic,
        "gemini": Gemini,
        "generic": Generic,
    }
    paths = {**DIALECT_PATHS, "gemini": "/v1beta/models/{model}:streamGenerateContent"}
    routes = [Route(paths[name], _endpoint(cls, truth_log), methods=["GET", "POST"], name=name)
              for name, cls in formats.items()]
    return Starlette(routes=[*routes, Route("/-/healthy", _healthy, methods=["GET"])])


# ---- serving ---------------------------------------------------------------------------------------------------------


def _enable_receive_stamps(sock: socket.socket) -> bool:
    """On a listening socket: every accepted connection inherits kernel receive timestamps, and (TCP_DEFER_ACCEPT) a
    connection is handed to the server only once its first bytes have arrived, so that the request is always there
    to be peeked at when it is accepted (Linux). Clients see no difference: the kernel completes their connect as
    before. False when this system cannot stamp."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)  # seconds: a client silent longer comes anyway
    return True


def _kernel_receipt(transport: Any) -> float | None:
    """The kernel's receive time of the first bytes waiting on a just-accepted connection, read with MSG_PEEK (the
    bytes stay for the server); None when nothing has arrived yet or there is no stamp."""
    raw = transport.get_extra_info("socket")
    if raw is None or not hasattr(socket, "CMSG_SPACE"):
        return None
    try:
        with socket.socket(fileno=os.dup(raw.fileno())) as sock:
            flags = socket.MSG_PEEK | socket.MSG_DONTWAIT
            _, ancillary, _, _ = sock.recvmsg(1, socket.CMSG_SPACE(_TIMESPEC.size), flags)
    except OSError:  # nothing there yet (EAGAIN), or not a socket that can say
        return None
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            return seconds + nanoseconds / 1e9
    return None


def _stamping_protocol() -> type:
    """uvicorn's HTTP protocol (the one it would pick), noting when each request's first bytes arrived and passing
    that on in the request's scope: the truth log's `received`. The first request of a connection, waiting when the
    connection is accepted (always, with _enable_receive_stamps' deferred accept), gets the kernel's receive time
    ("kernel": what a busy origin's event loop takes to get to it is not the client's delay); a later request on a
    kept-alive connection, the time the event loop handed its bytes over ("loop"), before any parsing. Parsing (h11
    in pure Python when httptools is absent), a task switch and starlette's routing come later: ~0.2 ms on an idle
    machine, more under load (the record's `app`)."""
    from uvicorn.config import HTTP_PROTOCOLS
    from uvicorn.importer import import_from_string

    base = import_from_string(HTTP_PROTOCOLS["auto"])

    class StampingProtocol(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._first_bytes: tuple[float, str] | None = None
            self._waiting: float | None = None  # the kernel's stamp of bytes waiting at the accept
            inner = self.app

            async def app(scope: Scope, receive: Receive, send: Send) -> None:
                scope[RECEIVED_KEY], self._first_bytes = self._first_bytes, None  # the next request stamps anew
                await inner(scope, receive, send)

            self.app = app

        def connection_made(self, transport: Any) -> None:
            self._waiting = _kernel_receipt(transport)
            super().connection_made(transport)

        def data_received(self, data: bytes) -> None:
            if self._first_bytes is None:
                waiting, self._waiting = self._waiting, None
                self._first_bytes = (waiting, "kernel") if waiting is not None else (time.time(), "loop")
            super().data_received(data)

    return StampingProtocol


class _AnnouncingServer(AppServer):
    """Prints the URL once connections are accepted, so scripts and tests can wait for that line."""

    NAME = "simulator"

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            print(f"sse-monitor {self.NAME} listening on {self.base_url}", flush=True)


def serve(host: str = "127.0.0.1", port: int = 8900, truth_log: str | None = None,
          truth_max_records: int = 1_000_000) -> None:
    """Run the simulator until SIGINT or SIGTERM; prints its URL once it accepts connections. `truth_log`: a file
    to append one JSON line of ground truth per request to (TruthLog), complete once this returns."""
    log = TruthLog(truth_log, truth_max_records) if truth_log else None
    try:
        server = _AnnouncingServer(create_app(log), host, port, handle_signals=True)
        if log is not None:
            server.config.http = _stamping_protocol()
            _enable_receive_stamps(server.socket)
        server.run(sockets=[server.socket])
    finally:
        if log is not None:
            log.close()
            if log.dropped:
                print(f"sse-monitor simulator: truth log {log.path}: {log.written} records written, "
                      f"{log.dropped} not (bound of {log.max_records} reached, or a write failed)",
                      file=sys.stderr, flush=True)


class RunningSimulator:
    """The simulator as a task on the running loop: `async with RunningSimulator() as sim: sim.base_url`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.base_url = ""
        self._server: AppServer | None = None

    def app(self) -> Starlette:
        return create_app()

    async def __aenter__(self) -> RunningSimulator:
        self._server = AppServer(self.app(), self.host, self.port)
        self.base_url, self.port = self._server.base_url, self._server.port
        await self._server.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        await self._server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m monitor.simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900, help="0 picks a free port (the URL printed tells which)")
    parser.add_argument("--truth-log", metavar="FILE",
                        help="append one JSON line per request: wall-clock times of its receipt, first byte and first "
                             "token (a benchmark's ground truth; the `tag` parameter labels a request)")
    parser.add_argument("--truth-max-records", type=int, default=1_000_000, metavar="N",
                        help="records written at most; the rest are counted (default 1,000,000)")
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.truth_log, args.truth_max_records)


if __name__ == "__main__":
    main()
