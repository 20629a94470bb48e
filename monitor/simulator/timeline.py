"""The timeline: when each step of a stream is due (the simulator's only timing logic)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable

from .params import Params

Step = tuple[str, int]  # (kind, count): preamble, huge, heartbeat, token, end, error, drop


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
