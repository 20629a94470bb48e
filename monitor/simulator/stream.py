"""A stream's bytes: events on the wire, one chunk per timeline step, sent until the client goes away."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .faults import SimulatedDrop, _huge_line
from .format import Event, Format
from .lateness import Lateness, Paced
from .params import Params
from .pacer import paced as send_paced
from .timeline import _Clock, first_token_due, steps, timeline
from .truth import Truth


_JSON = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode  # one encoder: json.dumps makes one a call
SERVER_SEND = "sse_monitor.simulator.send"  # in the ASGI scope: the server's own send, under the app's wrappers
TRANSPORT_KEY = "sse_monitor.simulator.transport"  # in the ASGI scope: the connection's transport (server.py)
YIELD_EVERY = 16  # chunks a body may send without waiting before the sender lets the loop run (a disconnect is seen)


SHARED_TOKENS_MAX = 4096  # token steps kept rendered for the streams that send the same ones (a second's worth)
_shared_tokens: dict[tuple[Any, ...], tuple[tuple[bytes, bytes | None], ...]] = {}


def event_parts(event: Event, eol: bytes, event_id: int | None = None) -> tuple[bytes, bytes | None]:
    """One event on the wire, in two parts around its `sim_sent` value, the send time on the system-wide monotonic
    clock: a dict's JSON gets it as its last key. (bytes, None) for data sent as it is (a string)."""
    name, data = event
    head = b"event: " + name.encode() + eol if name else b""
    if event_id is not None:
        head = b"id: %d" % event_id + eol + head
    if isinstance(data, dict):
        return head + b"data: " + (_JSON(data)[:-1] + ("," if data else "") + '"sim_sent":').encode(), b"}" + eol + eol
    return head + b"data: " + data.encode() + eol + eol, None


def _stamped(parts: tuple[tuple[bytes, bytes | None], ...]) -> bytes:
    """Events from their parts, each with its `sim_sent` now."""
    if len(parts) == 1:
        before, after = parts[0]
        return before if after is None else b"%b%r%b" % (before, time.monotonic(), after)
    return b"".join(before if after is None else b"%b%r%b" % (before, time.monotonic(), after)
                    for before, after in parts)


def encode_event(event: Event, eol: bytes, event_id: int | None = None) -> bytes:
    """One event on the wire, its `sim_sent` now (see event_parts)."""
    return _stamped((event_parts(event, eol, event_id),))


def step_renderer(p: Params, fmt: Format) -> Callable[[str, int], bytes]:
    """The bytes of a preamble, token, end or error step of a stream (b"" when the format sends no event for it). A
    format whose token events depend on nothing but the token, the model, the creation second and the thinking
    (Format.pure_tokens) has them rendered once for every stream that sends the same ones: only `sim_sent` is new."""
    eol = p.line_ending.encode()
    render = {"preamble": fmt.preamble, "token": fmt.token, "end": fmt.end, "error": fmt.error}
    ids = p.ids
    shared = (type(fmt), fmt.model, fmt.created, fmt.thinking, eol, ids) if fmt.pure_tokens else None
    cache = _shared_tokens

    def chunk(kind: str, n: int) -> bytes:
        event_id = n if kind == "token" and ids else None
        if kind == "token" and shared is not None:
            key = (shared, n)
            parts = cache.get(key)
            if parts is None:
                if len(cache) >= SHARED_TOKENS_MAX:
                    cache.clear()
                parts = cache[key] = tuple(event_parts(e, eol, event_id) for e in fmt.token(n))
        else:
            parts = tuple(event_parts(e, eol, event_id) for e in render[kind](n))
        return _stamped(parts) if parts else b""

    return chunk


async def event_stream(p: Params, fmt: Format, t0: float, instant: bool = False, truth: Truth | None = None,
                       start: int = 1, paced: Paced | None = None) -> AsyncIterator[bytes]:
    """The bytes of a stream, one chunk per timeline step, each produced when its step is due; tokens from `start`.
    With `paced`, a token chunk's due time goes with it to the sender (Stream), which measures its lateness."""
    eol = p.line_ending.encode()
    render = step_renderer(p, fmt)
    clock = _Clock(p.heartbeat, instant)
    async for kind, n in timeline(p, t0, instant, start, clock):
        if kind == "drop":
            raise SimulatedDrop
        if kind == "heartbeat":
            yield b": ping" + eol + eol
        elif kind == "huge":
            for piece in _huge_line(n, eol):
                yield piece
        else:
            chunk = render(kind, n)
            if chunk:
                if paced is not None and kind == "token":
                    paced.due = clock.due
                if truth is not None and kind == "token" and truth.first_token is None:
                    truth.first_token = time.time()  # the consumer sends this chunk as soon as it is yielded
                    yield chunk
                    truth.done()  # resumed: the chunk is out
                else:
                    yield chunk


class Plan:
    """A plain paced stream's steps, for the fast lane (pacer.py): only for a stream with none of heartbeats, gzip,
    a huge line or endless mode (`Plan.fits`)."""

    __slots__ = ("p", "render", "t0", "start", "lateness")

    def __init__(self, p: Params, fmt: Format, t0: float, start: int, lateness: Lateness | None) -> None:
        self.p, self.render, self.t0, self.start, self.lateness = p, step_renderer(p, fmt), t0, start, lateness

    @staticmethod
    def fits(p: Params) -> bool:
        return not (p.heartbeat > 0 or p.gzip or p.huge_line or p.endless or p.content_length)

    def steps(self) -> Iterator[tuple[float | None, str, int]]:
        return steps(self.p, first_token_due(self.p, self.t0, time.monotonic()), self.start)


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
                 truth: Truth | None = None, paced: Paced | None = None, plan: Plan | None = None) -> None:
        self.chunks = chunks
        self.plan = plan
        self.status_code = status_code
        self.background = None
        self.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        self.truth = truth
        self.paced = paced

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sender = asyncio.current_task()
        assert sender is not None
        watch = _Watch(receive, sender)
        dropped = False
        try:
            await self._send_all(send, scope.get(SERVER_SEND, send), self._lane(scope))
        except SimulatedDrop:
            dropped = True
        except asyncio.CancelledError:
            if not watch.gone or sender.uncancel() > 0:  # not (only) the client's leaving: someone else's cancel
                raise
        finally:
            watch.stop()
            if self.truth is not None:
                self.truth.done()
        if dropped:
            raise SimulatedDrop

    def _lane(self, scope: Scope) -> Any:
        """The transport to write the body's chunks to from the pacer (the fast lane), when this stream has a plan
        and its connection frames a body in HTTP/1.1 chunks; else None."""
        if self.plan is None or scope.get("http_version") != "1.1" or scope.get("method") == "HEAD":
            return None
        return scope.get(TRANSPORT_KEY)

    async def _send_all(self, send: Send, body_send: Send, transport: Any = None) -> None:
        """The response through the app's `send`; the body chunks, the bulk of it, through `body_send` (the server's
        own send when the app put it in the scope: the app's wrappers only look at the response start), or written
        to the `transport` by the pacer (the fast lane)."""
        if self.truth is not None:
            self.truth.status = self.status_code
            self.truth.first_byte = time.time()
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async with contextlib.aclosing(self.chunks) as chunks:
            if transport is not None and self.plan is not None:
                plan = self.plan
                await send_paced(plan.steps(), plan.render, transport, self.truth, plan.lateness)
            else:
                sent = 0
                async for chunk in chunks:
                    await body_send({"type": "http.response.body", "body": chunk, "more_body": True})
                    if self.paced is not None:
                        self.paced.sent()
                    sent += 1
                    if sent % YIELD_EVERY == 0:
                        await asyncio.sleep(0)  # let a disconnect be noticed even when the body never waits
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class _Watch:
    """Cancels the task sending a response if its client goes away (http.disconnect) before it has finished; a plain
    asyncio task, as an anyio task group costs ~0.1 ms a stream (its cancellation message formats the task's repr).
    Once the response is done the server's receive() says http.disconnect too, and the watch ends by itself: no
    cancellation, whose exception and traceback would be garbage in cycles for the collector."""

    def __init__(self, receive: Receive, sender: asyncio.Task[Any]) -> None:
        self.gone = self.finished = False
        self.sender = sender
        self.task = asyncio.get_running_loop().create_task(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        if not self.finished:
            self.gone = True
            self.sender.cancel()

    def stop(self) -> None:
        self.finished = True
