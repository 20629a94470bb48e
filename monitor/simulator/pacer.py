"""The fast lane: a plain paced stream's chunks written straight to its connection from one timer for all streams.

A stream on the general path is a task whose async generators wake once per event and hand each chunk to the server
(uvicorn frames it). A stream with nothing but a timeline of steps (no heartbeat, gzip, huge line or endless mode) on
an HTTP/1.1 connection goes through the Pacer instead: its steps (timeline.steps) are taken by one timer callback
for every stream of the loop, each due chunk rendered, framed as an HTTP/1.1 chunk and written to the transport
there. The response's start and its end (the last chunk, "0") still go through the server. What the client receives
is the same bytes at the same times, for about a third less of the simulator's CPU per event (bench/README.md, "The
simulator's own capacity")."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

from .faults import SimulatedDrop
from .lateness import Lateness
from .timeline import Deadlines, per_loop
from .truth import Truth


WRITE_HIGH = 64 * 1024  # bytes waiting in a transport past which a lane sends nothing more (asyncio's high-water mark)
BACKLOG_RETRY = 0.01  # how often such a lane looks again


class Lane:
    """One stream in the Pacer: its remaining steps, how to render them, and where its chunks go."""

    __slots__ = ("steps", "render", "transport", "truth", "lateness", "finished", "due", "kind", "n", "stopped")

    def __init__(self, steps: Iterator[tuple[float | None, str, int]], render: Callable[[str, int], bytes],
                 transport: asyncio.WriteTransport, truth: Truth | None, lateness: Lateness | None,
                 finished: asyncio.Future[None]) -> None:
        self.steps, self.render, self.transport = steps, render, transport
        self.truth, self.lateness, self.finished = truth, lateness, finished
        self.due: float | None = None
        self.kind, self.n = "", 0
        self.stopped = False  # its client went away, or the server is stopping it: take no more steps

    def advance(self, now: float) -> float | None:
        """Send the step that is due and every one after it that is due by `now`; the next one's due time, or None
        when the stream has ended (`finished` says how)."""
        while True:
            if self.kind:
                if self.transport.is_closing():
                    self.stop(None)
                    return None
                if self.transport.get_write_buffer_size() > WRITE_HIGH:  # a client that does not read: wait for it
                    return now + BACKLOG_RETRY  # (the step goes out late, as the server's flow control would have it)
                self._send()
            step = next(self.steps, None)
            if step is None:
                self.stop(None)
                return None
            due, self.kind, self.n = step
            if self.kind == "drop":
                self.stop(SimulatedDrop())
                return None
            self.due = due
            if due is not None and due > now:
                return due

    def _send(self) -> None:
        chunk = self.render(self.kind, self.n)
        if not chunk:
            return
        framed = b"%x\r\n%b\r\n" % (len(chunk), chunk)
        truth = self.truth
        if self.kind == "token":
            if truth is not None and truth.first_token is None:
                truth.first_token = time.time()
                self.transport.write(framed)
                truth.done()
            else:
                self.transport.write(framed)
            if self.lateness is not None and self.due is not None:
                self.lateness.add(time.monotonic() - self.due)
        else:
            self.transport.write(framed)

    def stop(self, error: BaseException | None) -> None:
        self.stopped = True
        if not self.finished.done():
            if error is None:
                self.finished.set_result(None)
            else:
                self.finished.set_exception(error)


class Pacer(Deadlines):
    """The lanes of one event loop, each waiting for its next step (timeline.Deadlines: one timer for all, never
    early, nothing spins)."""

    def start(self, lane: Lane) -> None:
        """Take the lane's steps that are due now, and queue it for the next."""
        due = _advance(lane, time.monotonic())
        if due is not None:
            self.push(due, lane)

    def _due(self, lane: Lane, now: float) -> float | None:
        return None if lane.stopped else _advance(lane, now)


def _advance(lane: Lane, now: float) -> float | None:
    """lane.advance(), an error in one stream ending that stream (its sender raises it), never the pacer's timer."""
    try:
        return lane.advance(now)
    except Exception as exc:  # noqa: BLE001 - handed to the stream's sender, which raises it as its own
        lane.stop(exc)
        return None


def pacer() -> Pacer:
    """The running loop's pacer."""
    return per_loop(Pacer)


async def paced(steps: Iterator[tuple[float | None, str, int]], render: Callable[[str, int], bytes],
                transport: Any, truth: Truth | None, lateness: Lateness | None) -> None:
    """Send a stream's steps through the running loop's pacer; returns when the last is out (raises SimulatedDrop for
    a drop). Cancelled (its client went away), the stream takes no more steps."""
    finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    lane = Lane(steps, render, transport, truth, lateness, finished)
    pacer().start(lane)
    try:
        await finished
    finally:
        lane.stopped = True
