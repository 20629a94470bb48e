"""Runs each target on its own interval with APScheduler: spread first runs, jitter, no overlap, skips counted."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

# We count and log skips ourselves; APScheduler's own warning for each would only repeat it.
logging.getLogger("apscheduler").setLevel(logging.ERROR)


def first_run_offset(name: str, interval: float) -> float:
    """Where in its first interval a target starts: spread by a hash of its name, so it is stable across restarts."""
    return (zlib.crc32(name.encode()) / 2**32) * interval


class ProbeScheduler:
    """Calls `run(name)` for every target on its interval. At most one run of a target at a time: a run still
    going when the next is due makes that next run a skip (`on_skip(name)`), never a queue."""

    def __init__(self, run: Callable[[str], Awaitable[None]], on_skip: Callable[[str], None], jitter: float = 0.0) -> None:
        self._run = run
        self._on_skip = on_skip
        self.jitter = jitter
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
        """Add a target, or replace its schedule. The first run comes within one interval, spread by name."""
        delay = first_run_offset(name, interval) if first_run_in is None else first_run_in
        self._scheduler.add_job(
            self._run,
            IntervalTrigger(seconds=interval, jitter=min(self.jitter, interval / 2) or None, timezone=timezone.utc),
            args=(name,),
            id=name,
            name=name,
            max_instances=1,
            coalesce=True,
            replace_existing=True,
            next_run_time=datetime.now(timezone.utc) + timedelta(seconds=delay),
        )

    def unschedule(self, name: str) -> None:
        if self._scheduler.get_job(name) is not None:
            self._scheduler.remove_job(name)

    def scheduled(self) -> set[str]:
        return {job.id for job in self._scheduler.get_jobs()}

    def _skipped(self, event: JobSubmissionEvent) -> None:
        self._on_skip(event.job_id)
