"""Runs each target on its own interval with APScheduler: spread first runs, jitter, no overlap, skips counted."""

from __future__ import annotations

import logging
import random
import zlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger

# We count and log skips ourselves; APScheduler's own warning for each would only repeat it.
logging.getLogger("apscheduler").setLevel(logging.ERROR)


def first_run_offset(name: str, interval: float) -> float:
    """Where in its first interval a target starts: spread by a hash of its name, so it is stable across restarts."""
    return (zlib.crc32(name.encode()) / 2**32) * interval


class SlotTrigger(BaseTrigger):
    """Fires in slot k at `start + k * interval`, delayed by that run's own share of the jitter. The next slot is
    counted from `start`, never from the delayed run, so jitter spreads runs but never slows the rate (APScheduler's
    `IntervalTrigger(jitter=...)` adds each delay to all later runs). The jitter is read for each run, so a new value
    applies from the next run on, and is capped at half the interval so a delayed run stays in its own slot."""

    __slots__ = ("name", "start", "interval", "jitter")

    def __init__(self, name: str, start: datetime, interval: float, jitter: Callable[[], float]) -> None:
        self.name = name
        self.start = start
        self.interval = interval
        self.jitter = jitter

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime:
        if previous_fire_time is None:
            return self.fire_time(0)
        # slot k fires k to k + 0.5 intervals after start: minus 0.25 and rounded, that is k, whatever the rounding
        slot = round((previous_fire_time - self.start).total_seconds() / self.interval - 0.25)
        return self.fire_time(slot + 1)

    def fire_time(self, slot: int) -> datetime:
        """The slot's start plus its delay: a fraction drawn from the target's name and slot number, the same on
        every call (APScheduler asks for the next run more than once), times the jitter in force now."""
        delay = random.Random(f"{self.name}/{slot}").random() * min(self.jitter(), self.interval / 2)
        return self.start + timedelta(seconds=slot * self.interval + delay)


class ProbeScheduler:
    """Calls `run(name)` for every target on its interval. At most one run of a target at a time: a run still
    going when the next is due makes that next run a skip (`on_skip(name)`), never a queue."""

    def __init__(self, run: Callable[[str], Awaitable[None]], on_skip: Callable[[str], None], jitter: float = 0.0) -> None:
        self._run = run
        self._on_skip = on_skip
        self.jitter = jitter  # each run starts up to this much (at most half its interval) after its slot
        self._scheduler = AsyncIOScheduler(timezone=timezone.utc, job_defaults={"misfire_grace_time": None})
        self._scheduler.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES)

    @property
    def running(self) -> bool:
        return self._scheduler.running

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def schedule(self, name: str, interval: float, first_run_in: float | None = None) -> None:
        """Add a target, or replace its schedule. Its slots start within one interval, spread by name, and keep
        that phase until the target is scheduled again."""
        delay = first_run_offset(name, interval) if first_run_in is None else first_run_in
        start = datetime.now(timezone.utc) + timedelta(seconds=delay)
        self._scheduler.add_job(
            self._run,
            SlotTrigger(name, start, interval, lambda: self.jitter),
            args=(name,),
            id=name,
            name=name,
            max_instances=1,
            coalesce=True,
            replace_existing=True,
        )

    def unschedule(self, name: str) -> None:
        if self._scheduler.get_job(name) is not None:
            self._scheduler.remove_job(name)

    def scheduled(self) -> set[str]:
        return {job.id for job in self._scheduler.get_jobs()}

    def _skipped(self, event: JobSubmissionEvent) -> None:
        self._on_skip(event.job_id)
