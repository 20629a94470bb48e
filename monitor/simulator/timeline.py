"""The timeline: when each step of a stream is due (the simulator's only timing logic)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

from .params import Params

D = TypeVar("D", bound="Deadlines")
Step = tuple[str, int]  # (kind, count): preamble, huge, heartbeat, token, end, error, drop


class Deadlines:
    """Items of one event loop waiting for their deadlines (on time.monotonic()), all served by one timer set for the
    earliest: an item costs a heap entry, not a timer of its own. The timer fires at most once per millisecond of
    uvloop's clock, and nothing spins: an item is served (`_due`) by the first firing at or after its deadline (never
    early); one still ahead then waits for a later firing."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waits: list[tuple[float, int, Any]] = []  # a heap: (deadline, order, item)
        self.order = itertools.count()
        self.timer: asyncio.TimerHandle | None = None
        self.armed = math.inf  # the deadline the timer is set for

    def push(self, deadline: float, item: Any) -> None:
        heapq.heappush(self.waits, (deadline, next(self.order), item))
        if deadline < self.armed:
            if self.timer is not None:
                self.timer.cancel()
            self._arm(deadline)

    def _arm(self, deadline: float) -> None:
        self.armed = deadline
        self.timer = self.loop.call_later(max(deadline - time.monotonic(), TICK), self._fire)

    def _fire(self) -> None:
        self.timer, self.armed = None, math.inf
        now, waits = time.monotonic(), self.waits
        while waits and waits[0][0] <= now:
            item = heapq.heappop(waits)[2]
            again = self._due(item, now)
            if again is not None:
                heapq.heappush(waits, (again, next(self.order), item))
        if waits:
            self._arm(waits[0][0])

    def _due(self, item: Any, now: float) -> float | None:
        """Serve an item whose deadline has come; its next deadline, or None when it waits no more."""
        raise NotImplementedError


class _Ticker(Deadlines):
    """Wakes the waits of one event loop whose deadlines have come: a stream's wait costs a heap entry and a future."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.done: asyncio.Future[None] = loop.create_future()  # what a deadline already passed waits for: nothing
        self.done.set_result(None)

    def wait(self, deadline: float) -> asyncio.Future[None]:
        future = self.loop.create_future()
        self.push(deadline, future)
        return future

    def _due(self, future: asyncio.Future[None], now: float) -> None:
        if not future.done():  # not cancelled with its stream
            future.set_result(None)


TICK = 0.001  # uvloop's timer resolution: the shortest wait the timer asks for
_PER_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[type, Deadlines]] = weakref.WeakKeyDictionary()


def per_loop(kind: type[D]) -> D:
    """The running loop's one instance of this Deadlines class."""
    loop = asyncio.get_running_loop()
    found = _PER_LOOP.setdefault(loop, {})
    if kind not in found:
        found[kind] = kind(loop)
    return found[kind]  # type: ignore[return-value]


def _ticker() -> _Ticker:
    return per_loop(_Ticker)


class _Clock:
    """Sleeps until absolute deadlines on time.monotonic() (not uvloop's loop.time(): whole milliseconds of a coarse
    clock), yielding the heartbeats that fall due meanwhile; `due` is the deadline last slept to."""

    def __init__(self, heartbeat: float, instant: bool) -> None:
        self.start = time.monotonic()
        self.instant = instant
        self.heartbeat = heartbeat
        self.next_beat = self.start + heartbeat if heartbeat > 0 and not instant else math.inf
        self.due: float | None = None
        self.ticker = _ticker()

    async def until(self, deadline: float) -> AsyncIterator[Step]:
        if self.instant:
            return
        while self.next_beat < deadline:
            await self.sleep_until(self.next_beat)
            yield ("heartbeat", 0)
            self.next_beat += self.heartbeat
            now = time.monotonic()
            while self.next_beat <= now:  # skip the beats a slow reader made us miss
                self.next_beat += self.heartbeat
        await self.sleep_until(deadline)

    def sleep_until(self, deadline: float) -> asyncio.Future[None]:
        """What to await to sleep until `deadline`: done already if it has passed (or the clock is instant); see `until`
        for heartbeats. A future, not a coroutine: a waiting stream keeps one object fewer for the collector to walk."""
        self.due = deadline
        if self.instant or deadline <= time.monotonic():
            return self.ticker.done
        return self.ticker.wait(deadline)


def in_stream(start: int, after: int | None) -> int | None:
    """The point "after event `after`" (0: before the first) if a stream starting at event `start` reaches it: it
    sends that event, or, for 0, starts at the first. Else None: a pause, drop or error placed after an event that a
    resumed stream does not send again is not in that stream, which goes on at once."""
    return after if after is not None and (after >= start or after == start - 1 == 0) else None


def steps(p: Params, first: float, start: int = 1) -> Iterator[tuple[float | None, str, int]]:
    """The steps of one stream in order, each with when it is due on time.monotonic() (None: as soon as the one
    before is out): the only timing logic, without heartbeats (the clock puts those in, see timeline()). `first`: when
    the first token is due. Tokens are counted from `start` (a resumed stream's first); see in_stream() for the drop,
    error and pause."""
    yield (None, "preamble", 0)
    if p.huge_line:
        yield (None, "huge", p.huge_line)
    drop_after, error_after = in_stream(start, p.drop_after), in_stream(start, p.error_after)
    pause_after = in_stream(start, p.pause_after)
    sent = start - 1
    while (p.endless or sent < p.tokens) and sent != drop_after and sent != error_after:
        sent += 1
        # token `sent` is paced from the stream's first (due at `first`), shifted by the pause after pause_after
        paused = p.pause if pause_after is not None and sent > pause_after else 0.0
        yield (first + (sent - start) / p.rate + paused, "token", sent)
    if sent == drop_after:
        yield (None, "drop", sent)
    elif sent == error_after:
        yield (None, "error", sent)
    elif not p.no_terminal:
        yield (first, "end", min(sent, p.tokens))  # with no token at all, the end comes when the first token would
        # have; a resumed stream's start may lie beyond the last token


def first_token_due(p: Params, t0: float, clock_start: float) -> float:
    """When the first token of a request that arrived at `t0` is due, for a stream that starts at `clock_start`."""
    return max(t0 + p.ttft, clock_start)


async def timeline(p: Params, t0: float, instant: bool = False, start: int = 1,
                   clock: _Clock | None = None) -> AsyncIterator[Step]:
    """The steps of one stream (steps()), each yielded when it is due (at once when instant), heartbeats between
    them. `t0`: the request's arrival on time.monotonic(). A `clock` given says when each step was due (its `due`)."""
    clock = clock or _Clock(p.heartbeat, instant)
    for due, kind, n in steps(p, first_token_due(p, t0, clock.start), start):
        if due is not None:
            if clock.next_beat < due:
                async for beat in clock.until(due):
                    yield beat
            else:  # no heartbeat on the way: a plain wait, without a generator of its own
                await clock.sleep_until(due)
        yield (kind, n)
