"""The scheduler keeps each target's configured rate: jitter spreads runs around a fixed schedule, never slows it."""

from __future__ import annotations

import asyncio
import time

from monitor.config import DEFAULT_JITTER
from monitor.scheduler import ProbeScheduler
from servers import running_daemon

# Names with phases spread over their shared interval (the phase comes from a hash of the name).
RATE_TARGETS = {"two": 0.2, "three": 0.25, "one": 0.25, "alpha": 0.25, "gamma": 0.3}
SLOW = "slow"  # each of its runs lasts longer than its interval


def time_per_run(starts: list[float]) -> float:
    """The least-squares slope of start time against run number."""
    n = len(starts)
    mean_k, mean_t = (n - 1) / 2, sum(starts) / n
    return (sum((k - mean_k) * (t - mean_t) for k, t in enumerate(starts))
            / sum((k - mean_k) ** 2 for k in range(n)))


def off_schedule(starts: list[float], interval: float, origin: float) -> list[float]:
    """How late each run started after its slot `origin + k * interval` (run k in slot k)."""
    return [t - origin - k * interval for k, t in enumerate(starts)]


def test_jittered_runs_keep_the_configured_rate_are_spread_and_never_overlap():
    async def scenario():
        starts: dict[str, list[float]] = {}
        running: dict[str, int] = {}
        peak: dict[str, int] = {}
        skips: list[str] = []

        async def run(name):
            starts.setdefault(name, []).append(time.monotonic())
            running[name] = running.get(name, 0) + 1
            peak[name] = max(peak.get(name, 0), running[name])
            await asyncio.sleep(0.45 if name == SLOW else 0.01)
            running[name] -= 1

        scheduler = ProbeScheduler(run, skips.append, jitter=DEFAULT_JITTER)  # capped at half of each interval
        scheduler.start()
        origin = time.monotonic()
        for name, interval in {**RATE_TARGETS, SLOW: 0.2}.items():
            scheduler.schedule(name, interval)
        await asyncio.sleep(7)
        scheduler.shutdown()
        return origin, starts, peak, skips

    origin, starts, peak, skips = asyncio.run(scenario())
    for name, interval in RATE_TARGETS.items():
        runs = starts[name]
        assert len(runs) >= 20, name
        assert abs(time_per_run(runs) / interval - 1) < 0.02, (name, time_per_run(runs))
        late = off_schedule(runs, interval, origin)
        assert max(late) - min(late) > interval / 4, name  # each run has its own delay
    phases = [sum(off_schedule(starts[name], 0.25, origin)) / len(starts[name])
              for name, interval in RATE_TARGETS.items() if interval == 0.25]
    assert max(phases) - min(phases) > 0.25 / 4  # targets sharing an interval do not start together
    assert set(peak.values()) == {1}
    assert set(skips) == {SLOW} and len(skips) >= 5


def test_a_reload_that_changes_the_jitter_delays_later_runs_and_keeps_the_phase(simulator, tmp_path):
    interval = 0.3
    config = ("scheduler: {{jitter: {jitter}}}\ntargets:\n  - name: steady\n    interval: 300ms\n"
              f"    url: \"{simulator}/v1/chat/completions?ttft=0.01&tokens=1\"\n")
    starts: list[float] = []

    async def scenario():
        async with running_daemon(config.format(jitter="0s"), tmp_path) as (daemon, _):
            daemon.result_listeners.append(lambda target, result: starts.append(result.started_at))
            await asyncio.sleep(2.5)
            (tmp_path / "c.yaml").write_text(config.format(jitter="5s"))  # capped at half the interval, 0.15 s
            ran_before, errors = len(starts), daemon.reload()
            await asyncio.sleep(4)
            return ran_before, errors

    before, errors = asyncio.run(scenario())
    assert errors == []
    assert before >= 6 and len(starts) - before >= 12
    origin = sum(off_schedule(starts[:before], interval, 0.0)) / before  # the phase: on time while jitter was 0
    late = off_schedule(starts, interval, origin)[before:]
    assert max(late) > interval / 8  # the new jitter delays runs ...
    assert min(late) > -0.03 and max(late) < interval / 2 + 0.05  # ... around the same slots (+ loop latency)
