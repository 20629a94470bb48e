"""Reading what was recorded: the simulator's truth logs, the daemon's JSON log, each run paired with its request."""

from __future__ import annotations

import bisect
import collections
import datetime
import json
import math
import subprocess
import time
from pathlib import Path


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def summary_ms(values: list[float]) -> dict:
    """n, p50, p99, max and min of seconds, in ms."""
    def ms(x: float | None) -> float | None:
        return None if x is None else round(x * 1000, 3)

    return {"n": len(values), "p50_ms": ms(percentile(values, 50)), "p99_ms": ms(percentile(values, 99)),
            "max_ms": ms(max(values) if values else None), "min_ms": ms(min(values) if values else None)}


FLOOD_WAIT_SECONDS = 40.0  # at most this long after the window for a run of the flooding target to end


def _wait_for_log(path: Path, *needles: bytes, timeout: float, proc: subprocess.Popen) -> bool:
    """Until a line of the log holds every needle (bounded by `timeout`, or the process's end)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with open(path, "rb") as f:
            if any(all(n in line for n in needles) for line in f):
                return True
        time.sleep(0.5)
    return False


def read_truth(path: Path) -> dict[str, list[dict]]:
    """The simulator's records by tag, each list ordered by receipt."""
    by_tag: dict[str, list[dict]] = collections.defaultdict(list)
    if path.exists():
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    r = json.loads(line)
                except ValueError:  # a line cut by a kill
                    continue
                by_tag[r.get("tag") or ""].append(r)
    for records in by_tag.values():
        records.sort(key=lambda r: r["received"])
    return by_tag


def read_daemon_log(path: Path) -> dict:
    finished, skipped, levels, events, bad = [], [], collections.Counter(), collections.Counter(), 0
    with open(path, "rb") as f:
        for line in f:
            try:
                obj = json.loads(line)
            except ValueError:
                bad += 1
                continue
            event = obj.get("event")
            events[event] += 1
            levels[obj.get("level")] += 1
            if event == "probe_finished":
                finished.append(obj)
            elif event == "probe_skipped":
                skipped.append(_log_time(obj))
    return {"finished": finished, "skipped": skipped, "levels": dict(levels), "events": dict(events),
            "not_json_lines": bad}


def _log_time(obj: dict) -> float | None:
    try:
        return datetime.datetime.fromisoformat(str(obj["timestamp"]).replace("Z", "+00:00")).timestamp()
    except (KeyError, ValueError):
        return None


class Pairer:
    """Finds the simulator's record of a probe: same tag, received within `window` after the probe started."""

    def __init__(self, truth: dict[str, list[dict]], window: float) -> None:
        self.truth = truth
        self.window = window
        self.received = {tag: [r["received"] for r in records] for tag, records in truth.items()}
        self.used: set[int] = set()

    def find(self, tag: str, started_at: float) -> dict | None:
        times = self.received.get(tag)
        if not times:
            return None
        i = bisect.bisect_left(times, started_at - 0.005)  # wall clocks of two processes: allow a hair of skew
        if i < len(times) and times[i] - started_at < self.window:
            record = self.truth[tag][i]
            self.used.add(id(record))
            return record
        return None
