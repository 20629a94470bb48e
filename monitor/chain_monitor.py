"""The daemon's scheduled chain checks (`chain_checks:` in the config): each on its own interval, its findings as
`sse_chain_*` metrics and a log line, its last report kept for the API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from .chaincheck import ChainReport, check_chain
from .config import ChainCheckConfig
from .metrics import Metrics
from .scheduler import ProbeScheduler, first_run_offset

log = structlog.get_logger("sse_monitor")

FIRST_RUN_WITHIN = 60.0  # after a start, every chain is checked within this (spread by name), then on its interval


class ChainMonitor:
    def __init__(self, metrics: Metrics, owns: Callable[[str], bool] = lambda name: True) -> None:
        self.metrics = metrics
        self.owns = owns  # sharding: the replica that owns a chain's name checks it
        self.checks: dict[str, ChainCheckConfig] = {}
        self.reports: dict[str, ChainReport] = {}
        self.scheduler = ProbeScheduler(self._run, self._on_skip)
        self._in_flight: set[asyncio.Task] = set()

    def apply(self, configs: list[ChainCheckConfig]) -> None:
        """Add, change and remove chain checks; an unchanged one keeps its schedule and its last findings."""
        new = {c.name: c for c in configs if self.owns(c.name)}
        for name in self.checks.keys() - new.keys():
            self.scheduler.unschedule(name)
            self.metrics.remove_chain(name)
            self.reports.pop(name, None)
        for name, check in new.items():
            old = self.checks.get(name)
            if old == check:
                continue
            self.metrics.add_chain(name, check.expected_duration)
            if old is None or old.interval != check.interval:
                first = first_run_offset(name, min(check.interval, FIRST_RUN_WITHIN))
                self.scheduler.schedule(name, check.interval, first_run_in=first)
        self.checks = new

    def start(self) -> None:
        self.scheduler.start()

    async def stop(self, grace: float) -> None:
        self.scheduler.shutdown()
        tasks = list(self._in_flight)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=grace)

    async def _run(self, name: str) -> None:
        check = self.checks.get(name)
        if check is None:
            return
        task = asyncio.current_task()
        self._in_flight.add(task)
        try:
            report = await check_chain(check.to_spec())
        except asyncio.CancelledError:
            return  # stopping: an interrupted check is recorded as nothing
        finally:
            self._in_flight.discard(task)
        self.record(name, report)

    def record(self, name: str, report: ChainReport) -> None:
        if name not in self.checks:
            return
        self.reports[name] = report
        self.metrics.observe_chain(name, report, time.time())
        idle = report.idle
        log.info(
            "chain_check_finished",
            chain=name,
            ok=report.ok,
            reachable=report.reachable,
            failed=[c.name for c in report.checks if c.ok is False],
            idle_timeout_seconds=idle.seconds if idle else None,
            buffered_bytes=report.buffering.held_bytes if report.buffering else None,
            content_encoding=report.content_encoding,
            duration_seconds=round(report.duration_seconds, 3),
            problem=report.problem or None,
        )

    def _on_skip(self, name: str) -> None:
        log.warning("chain_check_skipped", chain=name, why="the previous check is still running")
